//! What is sent to the guest: the files, closed over what each needs, and
//! their bytes against what the guest holds ([`room`]), with the cap on the
//! host tools a command line and its scripts run ([`TOOLS_LIMIT`]).

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::files::open_regular;
use super::libraries::dependencies;
use super::{room, ExecError, TOOLS_LIMIT};

/// The files to send, and their bytes against what the guest holds.
pub(super) struct Sent {
    pub(super) files: BTreeSet<PathBuf>,
    pub(super) bytes: u64,
    /// The largest file, and its bytes.
    largest: (PathBuf, u64),
    /// What the guest holds ([`room`]), and its memory.
    pub(super) room: u64,
    pub(super) memory_mib: u32,
}

impl Sent {
    pub(super) fn new(memory_mib: u32) -> Self {
        Self {
            files: BTreeSet::new(),
            bytes: 0,
            largest: (PathBuf::new(), 0),
            room: room(memory_mib),
            memory_mib,
        }
    }

    /// Whether `len` more bytes fit.
    pub(super) fn fits(&self, len: u64) -> bool {
        self.bytes + len <= self.room
    }

    /// Adds the file at `path`, of `len` bytes, unless it is there.
    pub(super) fn add(&mut self, path: PathBuf, len: u64) -> Result<(), ExecError> {
        if self.files.contains(&path) {
            return Ok(());
        }
        if len > self.largest.1 {
            self.largest = (path.clone(), len);
        }
        if !self.fits(len) {
            return Err(ExecError::TooLarge {
                room: self.room,
                memory_mib: self.memory_mib,
                largest: self.largest.0.clone(),
                largest_bytes: self.largest.1,
            });
        }
        self.bytes += len;
        self.files.insert(path);
        Ok(())
    }

    /// Adds `roots` and everything they need; the tools that scripts among
    /// them run go to `tools`. Returns the bytes added.
    pub(super) fn close_over(
        &mut self,
        roots: Vec<PathBuf>,
        tools: &mut Vec<PathBuf>,
    ) -> Result<u64, ExecError> {
        let before = self.bytes;
        let mut pending = roots;
        while let Some(path) = pending.pop() {
            if self.files.contains(&path) {
                continue;
            }
            let (_, len) = open_regular(&path)?;
            self.add(path.clone(), len)?;
            let needs = dependencies(&path)?;
            pending.extend(needs.files);
            tools.extend(needs.tools);
        }
        Ok(self.bytes - before)
    }

    /// Adds the host `tools` a command line or script runs, with what they
    /// need, at most [`TOOLS_LIMIT`] bytes.
    pub(super) fn add_tools(&mut self, mut tools: Vec<PathBuf>) -> Result<(), ExecError> {
        let mut total = 0;
        let mut largest = (PathBuf::new(), 0);
        let mut next = 0;
        while let Some(tool) = tools.get(next).cloned() {
            next += 1;
            let bytes = self.close_over(vec![tool.clone()], &mut tools)?;
            total += bytes;
            if bytes > largest.1 {
                largest = (tool, bytes);
            }
            if total > TOOLS_LIMIT {
                return Err(ExecError::ToolsTooLarge {
                    largest: largest.0,
                    largest_bytes: largest.1,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{prepare, room, MIB, TOOLS_LIMIT};

    #[test]
    fn only_commands_bring_tools_and_tools_are_capped() {
        let argv = |script: &str| ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let prepared = prepare(&argv("true # needs uname"), &[], &[], false, 512).unwrap();
        assert!(
            !prepared.files.iter().any(|f| f.ends_with("uname")),
            "{:?}",
            prepared.files
        );

        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big-tool");
        std::fs::write(&big, "#!/bin/sh\n").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        file.set_len(TOOLS_LIMIT + 1).unwrap();
        std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = prepare(
            &argv(&format!("uname; {}", big.display())),
            &[],
            &[],
            false,
            512,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("the largest is {} (64 MiB)", big.display())),
            "{err}"
        );
        assert!(err.contains(&format!("--file {}", big.display())), "{err}");
    }

    #[test]
    fn what_is_sent_fits_in_the_guest() {
        assert_eq!(room(512), 192 * MIB);
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(4 * MIB)
            .unwrap();
        let argv = ["/bin/true".to_owned()];
        let err = prepare(&argv, std::slice::from_ref(&big), &[], false, 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("more than the 3.0 MiB a guest of --memory 8 holds"),
            "{err}"
        );
        assert!(
            err.contains(&format!("the largest is {} (4.0 MiB)", big.display())),
            "{err}"
        );
    }
}
