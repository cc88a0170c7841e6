//! The `ar` container of a `.deb`, read without trusting it. A `.deb` is
//! `!<arch>\n` followed by members, each a 60-byte header (name, dates,
//! owner, mode, decimal size, `` `\n ``) and its data, padded to an even
//! length. Debian's members have short names, so the GNU and BSD long-name
//! schemes are refused rather than followed; sizes bound each member's
//! reader, never an allocation. (The `ar` crate panicked on a crafted
//! archive that the fuzz target found: a GNU name index into an empty name
//! table.)

use std::io::{self, Read};

const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER_LEN: usize = 60;

/// Reads the members of an `ar` archive one at a time.
pub struct Archive<R> {
    reader: Counted<R>,
    /// Where the next member's header starts.
    next: u64,
}

/// A member: its name and a reader of exactly its data.
pub type Member<'a, R> = (String, io::Take<&'a mut Counted<R>>);

/// A reader that counts what it has read.
pub struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Read> Archive<R> {
    /// An archive read from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader: Counted {
                inner: reader,
                read: 0,
            },
            next: 0,
        }
    }

    /// The next member's name and a reader of exactly its data; `None` at
    /// the end of the archive.
    pub fn next_member(&mut self) -> io::Result<Option<Member<'_, R>>> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        if self.next == 0 {
            let mut magic = [0u8; 8];
            self.reader.read_exact(&mut magic)?;
            if &magic != MAGIC {
                return Err(invalid("not an ar archive (no !<arch> magic)".into()));
            }
            self.next = MAGIC.len() as u64;
        }
        // Whatever of the previous member its reader did not read.
        let unread = self.next.saturating_sub(self.reader.read);
        io::copy(&mut (&mut self.reader).take(unread), &mut io::sink())?;
        let mut header = [0u8; HEADER_LEN];
        match read_full(&mut self.reader, &mut header)? {
            0 => return Ok(None),
            HEADER_LEN => {}
            n => return Err(invalid(format!("a member header cut after {n} bytes"))),
        }
        if &header[58..60] != b"`\n" {
            return Err(invalid("a member header does not end in `\\n".into()));
        }
        let name = String::from_utf8_lossy(&header[..16]).trim_end().to_owned();
        if name.starts_with('/') || name.starts_with("#1/") {
            return Err(invalid(format!(
                "member `{name}` uses a long-name table, which no .deb has"
            )));
        }
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()
            .map(str::trim)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("member `{name}` has no valid size")))?;
        self.next = self
            .reader
            .read
            .saturating_add(size)
            .saturating_add(size % 2);
        let name = name.trim_end_matches('/').to_owned();
        Ok(Some((name, (&mut self.reader).take(size))))
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            644,
            data.len()
        )
        .into_bytes();
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn reads_members_and_refuses_what_a_deb_never_has() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(member("debian-binary", b"2.0\n"));
        bytes.extend(member("odd", b"abc"));
        bytes.extend(member("data.tar", b"tar!"));
        let mut archive = Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        while let Some((name, mut data)) = archive.next_member().unwrap() {
            let mut text = String::new();
            data.read_to_string(&mut text).unwrap();
            seen.push((name, text));
        }
        assert_eq!(
            seen,
            [
                ("debian-binary".into(), "2.0\n".into()),
                ("odd".into(), "abc".into()),
                ("data.tar".into(), "tar!".into())
            ]
        );

        let mut gnu = MAGIC.to_vec();
        gnu.extend(member("/0", b""));
        let err = Archive::new(&gnu[..]).next_member().err().unwrap();
        assert!(err.to_string().contains("long-name table"), "{err}");
        assert!(Archive::new(&b"!<arch>\n too short"[..])
            .next_member()
            .is_err());
        assert!(Archive::new(&b"PK\x03\x04"[..]).next_member().is_err());
    }
}
