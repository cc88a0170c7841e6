//! The working directory's share: its files, walked and sent read-only,
//! build output and version control left out, symbolic links that lead out
//! of it and what cannot be read left out with notices, as long as it fits
//! besides the rest ([`ExecError::ShareTooLarge`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::files::open_regular;
use super::sent::Sent;
use super::ExecError;

/// Directories never shared: version control, and build output (Cargo's
/// `target/` is marked by a `CACHEDIR.TAG`).
const NOT_SHARED: &[&str] = &[".git", ".hg", ".svn", ".jj"];

/// Adds the files of the directory `root` worth sharing to `sent`, as
/// long as they fit; returns notices of what was left out.
pub(super) fn share(root: &Path, sent: &mut Sent) -> Result<Vec<String>, ExecError> {
    let mut share = Share {
        root,
        sent,
        bytes: 0,
        outside: Vec::new(),
        unreadable: Vec::new(),
    };
    share.walk(root)?;
    Ok(share.notices())
}

/// The walk of a shared directory.
struct Share<'a> {
    /// The directory, as the kernel resolves it.
    root: &'a Path,
    sent: &'a mut Sent,
    /// What it shares.
    bytes: u64,
    /// Symbolic links left out as they lead out of the directory, and
    /// where to.
    outside: Vec<(PathBuf, PathBuf)>,
    /// What was left out as it cannot be read, and why.
    unreadable: Vec<(PathBuf, std::io::Error)>,
}

impl Share<'_> {
    /// Shares the files below `dir`: build output and version control are
    /// left out, symbolic links to directories are not followed, a link to
    /// a file is shared as a copy of it when the file is in the directory,
    /// and what cannot be read is left out.
    fn walk(&mut self, dir: &Path) -> Result<(), ExecError> {
        if dir.join("CACHEDIR.TAG").exists() {
            return Ok(());
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                self.unreadable.push((dir.to_owned(), err));
                return Ok(());
            }
        };
        for entry in entries {
            let (path, kind) = match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
                Ok(found) => found,
                Err(err) => {
                    self.unreadable.push((dir.to_owned(), err));
                    continue;
                }
            };
            if kind.is_dir() {
                let name = path.file_name().unwrap_or_default();
                if !NOT_SHARED.iter().any(|n| name == OsStr::new(n)) {
                    self.walk(&path)?;
                }
                continue;
            }
            if kind.is_symlink() {
                let Some(target) = std::fs::canonicalize(&path).ok().filter(|t| t.is_file()) else {
                    continue;
                };
                if !target.starts_with(self.root) {
                    self.outside.push((path, target));
                    continue;
                }
            } else if !kind.is_file() {
                continue;
            }
            match open_regular(&path) {
                Ok((_, len)) => {
                    if !self.sent.fits(len) {
                        return Err(ExecError::ShareTooLarge {
                            dir: self.root.to_owned(),
                            shared: self.bytes + len,
                            other: self.sent.bytes - self.bytes,
                            room: self.sent.room,
                            memory_mib: self.sent.memory_mib,
                        });
                    }
                    self.bytes += len;
                    self.sent.add(path, len)?;
                }
                Err(ExecError::Read { source, .. }) => self.unreadable.push((path, source)),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// What was left out, a line per reason.
    fn notices(&self) -> Vec<String> {
        let name = |path: &Path| {
            path.strip_prefix(self.root)
                .unwrap_or(path)
                .display()
                .to_string()
        };
        let mut notices = Vec::new();
        if !self.outside.is_empty() {
            let links = self
                .outside
                .iter()
                .map(|(link, target)| format!("{} -> {}", name(link), target.display()));
            notices.push(format!(
                "not sharing symbolic links that lead out of {}: {}",
                self.root.display(),
                listed(links)
            ));
        }
        if !self.unreadable.is_empty() {
            let files = self
                .unreadable
                .iter()
                .map(|(path, err)| format!("{} ({err})", name(path)));
            notices.push(format!(
                "not sharing what cannot be read in {}: {}; fix its permissions if the program needs it, or pass --no-share",
                self.root.display(),
                listed(files)
            ));
        }
        notices
    }
}

/// The first few of `items`, and how many in all if there are more.
fn listed(items: impl ExactSizeIterator<Item = String>) -> String {
    const SHOWN: usize = 5;
    let count = items.len();
    let mut text = items.take(SHOWN).collect::<Vec<_>>().join(", ");
    if count > SHOWN {
        text += &format!(", … ({count} in all)");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use kmatrix_protocol::ExecPlan;

    use super::super::{Prepared, MIB};
    use super::*;
    use crate::image::ImageParts;

    /// Runs `f` on a thread without the capabilities that let root read
    /// any file (capabilities are a thread's own), so that a file of mode
    /// 000 cannot be read there by anyone.
    fn without_read_override<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const CAP_DAC_OVERRIDE: u32 = 1;
        const CAP_DAC_READ_SEARCH: u32 = 2;
        std::thread::spawn(move || {
            let mut header = Header {
                version: 0x2008_0522,
                pid: 0,
            };
            let mut data = [Data::default(); 2];
            // SAFETY: capget and capset with a version 3 header and its two
            // data words, as capget(2) gives them; pid 0 is this thread.
            unsafe {
                let got = nix::libc::syscall(nix::libc::SYS_capget, &mut header, data.as_mut_ptr());
                assert_eq!(got, 0);
                data[0].effective &= !(1 << CAP_DAC_OVERRIDE | 1 << CAP_DAC_READ_SEARCH);
                let set = nix::libc::syscall(nix::libc::SYS_capset, &mut header, data.as_ptr());
                assert_eq!(set, 0);
            }
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn the_share_leaves_out_links_leading_out_and_what_cannot_be_read_with_notices() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let outer = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(outer.path()).unwrap().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        symlink(root.join("a.txt"), root.join("inside")).unwrap();
        let secret = root.parent().unwrap().join("secret");
        std::fs::write(&secret, "not to be shared").unwrap();
        symlink(&secret, root.join("outside")).unwrap();
        std::fs::write(root.join("locked"), "").unwrap();
        std::fs::set_permissions(root.join("locked"), PermissionsExt::from_mode(0o000)).unwrap();

        let (files, notices) = without_read_override({
            let root = root.clone();
            move || {
                let mut sent = Sent::new(512);
                let notices = share(&root, &mut sent).unwrap();
                (sent.files, notices)
            }
        });
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            [root.join("a.txt"), root.join("inside")]
        );
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert_eq!(
            notices[0],
            format!(
                "not sharing symbolic links that lead out of {}: outside -> {}",
                root.display(),
                secret.display()
            )
        );
        assert!(
            notices[1].starts_with(&format!(
                "not sharing what cannot be read in {}: locked (Permission denied",
                root.display()
            )) && notices[1].ends_with("or pass --no-share"),
            "{}",
            notices[1]
        );
    }

    #[test]
    fn the_share_fits_in_the_guest_besides_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(4 * MIB)
            .unwrap();
        let root = dir.path().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::fs::File::create(root.join("data"))
            .unwrap()
            .set_len(2 * MIB)
            .unwrap();
        let mut sent = Sent::new(4);
        sent.add(big, MIB).unwrap();
        let err = share(&root, &mut sent).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "the working directory {} holds more than 2.0 MiB to share with the guest",
                root.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("with the 1.0 MiB of the program and the files it needs is more than the 1.5 MiB a guest of --memory 4 holds"),
            "{err}"
        );
        assert!(err.contains("pass --no-share"), "{err}");
    }

    #[test]
    fn file_names_that_are_not_utf8_reach_the_guest_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let names: [&[u8]; 2] = [b"a\xff", b"a\xfe"];
        for (i, name) in names.iter().enumerate() {
            std::fs::write(root.join(OsStr::from_bytes(name)), [i as u8]).unwrap();
        }
        let mut sent = Sent::new(512);
        share(&root, &mut sent).unwrap();
        let prepared = Prepared {
            files: sent.files.into_iter().collect(),
            plan: ExecPlan::default(),
            notices: Vec::new(),
        };
        let mut parts = ImageParts::new(crate::agent::Init::Agent, &[], &[]).unwrap();
        prepared.pack(&mut parts).unwrap();
        let files = parts.files();
        let mut reader = &files[..];
        let mut received = Vec::new();
        while !reader.is_empty() {
            let kmatrix_protocol::Input::File { path, len, .. } =
                kmatrix_protocol::input::read_input(&mut reader).unwrap()
            else {
                panic!("not a file");
            };
            let (data, rest) = reader.split_at(len as usize);
            received.push((path, data.to_vec()));
            reader = rest;
        }
        received.sort();
        let expected = |i: usize| {
            let mut path = root.as_os_str().as_bytes().to_vec();
            path.push(b'/');
            path.extend_from_slice(names[i]);
            (path, vec![i as u8])
        };
        assert_eq!(received, [expected(1), expected(0)]);
    }
}
