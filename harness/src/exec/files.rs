//! Opening the files sent, safely: regular files only (a FIFO, a device or
//! a socket is an error naming it), opened with `O_NONBLOCK` so that a FIFO
//! never blocks, read no longer than they were when opened; and the files
//! below what `--file` names, symbolic links to directories not followed.

use std::path::{Path, PathBuf};

use super::ExecError;

/// Every regular file below `path` (or `path` itself), given with
/// `--file`, and its length: symbolic links to files are followed, to directories not, and
/// anything else is an error naming it.
pub(super) fn walk_given(path: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<(), ExecError> {
    let read = |source| ExecError::Read {
        path: path.to_owned(),
        source,
    };
    let mut meta = std::fs::symlink_metadata(path).map_err(read)?;
    if meta.is_symlink() {
        meta = std::fs::metadata(path).map_err(read)?;
        if meta.is_dir() {
            return Err(ExecError::LinkedDirectory {
                path: path.to_owned(),
                target: std::fs::read_link(path).map_err(read)?,
            });
        }
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(read)? {
            walk_given(&entry.map_err(read)?.path(), files)?;
        }
    } else if meta.is_file() {
        files.push((path.to_owned(), meta.len()));
    } else {
        return Err(ExecError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(())
}

/// What a file that is no regular file is, for errors.
fn kind_of(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "no regular file"
    }
}

/// Opens `path` (following symbolic links) if it is a regular file,
/// without blocking on a FIFO: its file and length.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64), ExecError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| ExecError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(ExecError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of the regular file at `path`, as long as it was when opened,
/// and its permission bits.
pub fn read_regular(path: &Path) -> Result<(Vec<u8>, u32), ExecError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let (file, len) = open_regular(path)?;
    let read = |source| ExecError::Read {
        path: path.to_owned(),
        source,
    };
    let mode = file.metadata().map_err(read)?.permissions().mode() & 0o7777;
    let mut data = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut data).map_err(read)?;
    Ok((data, mode))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::{prepare, ExecError, Prepared};

    /// [`prepare`] of `/bin/true` with `extra`, failing the test if it
    /// blocks.
    fn prepare_with(extra: &[PathBuf]) -> Result<Prepared, ExecError> {
        let extra = extra.to_vec();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(prepare(&["/bin/true".into()], &extra, &[], false, 512));
        });
        result
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("preparing blocked")
    }

    #[test]
    fn a_file_given_is_a_regular_file_or_a_directory_and_links_to_directories_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("given");
        std::fs::create_dir(&given).unwrap();
        std::fs::write(given.join("data"), "data").unwrap();
        std::os::unix::fs::symlink(given.join("data"), given.join("link")).unwrap();
        let prepared = prepare_with(std::slice::from_ref(&given)).unwrap();
        assert!(prepared.files.contains(&given.join("data")));
        assert!(prepared.files.contains(&given.join("link")));

        std::os::unix::fs::symlink(&given, given.join("loop")).unwrap();
        let err = prepare_with(std::slice::from_ref(&given))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "{} is a symbolic link to the directory",
                given.join("loop").display()
            )),
            "{err}"
        );
        std::fs::remove_file(given.join("loop")).unwrap();

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = prepare_with(std::slice::from_ref(&fifo))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{} is a FIFO", fifo.display())),
            "{err}"
        );

        let err = prepare_with(&["/dev/zero".into()]).unwrap_err().to_string();
        assert!(err.contains("/dev/zero is a character device"), "{err}");
    }
}
