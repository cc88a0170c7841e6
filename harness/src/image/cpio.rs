//! A writer for the `newc` cpio format the kernel unpacks as an initramfs.
//!
//! The kernel accepts several archives concatenated, each with its own
//! trailer, which lets kmatrix cache the parts that do not change.

/// An archive being written in memory.
pub struct Archive {
    buf: Vec<u8>,
    next_inode: u32,
}

impl Default for Archive {
    fn default() -> Self {
        Self::new()
    }
}

const MODE_DIR: u32 = 0o040000;
const MODE_FILE: u32 = 0o100000;
const TRAILER: &str = "TRAILER!!!";

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            next_inode: 1,
        }
    }

    /// Adds a directory (mode 0755). Parents must be added first.
    pub fn dir(&mut self, path: &str) {
        self.entry(path, MODE_DIR | 0o755, 2, &[]);
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, MODE_FILE | (perm & 0o7777), 1, data);
    }

    /// Appends the trailer and returns the archive's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry(TRAILER, 0, 1, &[]);
        self.buf
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, data: &[u8]) {
        let name_size = path.len() + 1;
        let ino = self.next_inode;
        self.next_inode += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so archives are reproducible
            data.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name_size as u32,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for field in fields {
            self.buf
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.buf.extend_from_slice(path.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        let padded = self.buf.len().next_multiple_of(4);
        self.buf.resize(padded, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, data) per entry.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&bytes[..6], b"070701", "magic at offset {offset}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap();
                u32::from_str_radix(s, 16).unwrap() as usize
            };
            let (mode, size, name_size) = (field(1) as u32, field(6), field(11));
            let name = std::str::from_utf8(&bytes[110..110 + name_size - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[110 + name_size - 1], 0);
            let data_start = (110 + name_size).next_multiple_of(4);
            let data = bytes[data_start..data_start + size].to_vec();
            let next = (data_start + size).next_multiple_of(4);
            offset += next;
            bytes = &bytes[next..];
            if name == TRAILER {
                assert!(bytes.is_empty());
                return entries;
            }
            entries.push((name, mode, data));
        }
    }

    #[test]
    fn writes_aligned_newc_entries() {
        let mut archive = Archive::new();
        archive.dir("kmatrix");
        archive.file("kmatrix/a", 0o644, b"hello");
        archive.file("init", 0o755, b"");
        archive.file("kmatrix/odd-name.bin", 0o600, &[1, 2, 3]);
        let bytes = archive.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            parse(&bytes),
            [
                ("kmatrix".into(), 0o040755, vec![]),
                ("kmatrix/a".into(), 0o100644, b"hello".to_vec()),
                ("init".into(), 0o100755, vec![]),
                ("kmatrix/odd-name.bin".into(), 0o100600, vec![1, 2, 3]),
            ]
        );
    }

    #[test]
    fn matches_the_header_layout_byte_for_byte() {
        let mut archive = Archive::new();
        archive.file("x", 0o644, b"ab");
        let bytes = archive.finish();
        let header = "070701\
            00000001000081a4000000000000000000000001000000000000000200000000\
            0000000000000000000000000000000200000000";
        assert_eq!(&bytes[..110], header.as_bytes());
        // 110 + "x\0" is already aligned; the data is padded to 116.
        assert_eq!(&bytes[110..116], b"x\0ab\0\0");
    }
}
