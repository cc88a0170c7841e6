//! The on-disk cache: downloaded files keyed by their sha256, and the
//! kernel artifacts extracted from them.
//!
//! Every entry is written under `tmp/` first and renamed into place, so a
//! killed process never leaves a partial entry, and two processes that fill
//! the same entry at once both end with a complete one.

use std::io;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "KMATRIX_CACHE_DIR";

/// The cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// The cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the cache directory {} (set {CACHE_ENV} to another): {source}", root.display())]
pub struct CacheError {
    /// The directory.
    pub root: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl Cache {
    /// The cache at [`CACHE_ENV`], or `kmatrix` in the user's cache directory.
    pub fn from_env() -> Result<Self, CacheError> {
        let root = std::env::var_os(CACHE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("kmatrix")))
            .unwrap_or_else(|| std::env::temp_dir().join("kmatrix-cache"));
        Self::at(root)
    }

    /// The cache rooted at `root`, created if needed.
    pub fn at(root: PathBuf) -> Result<Self, CacheError> {
        for dir in ["blobs/sha256", "kernels", "snapshots", "tmp"] {
            if let Err(source) = std::fs::create_dir_all(root.join(dir)) {
                return Err(CacheError { root, source });
            }
        }
        Ok(Self { root })
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file with this sha256 is (or would be) kept.
    pub fn blob(&self, sha256: &[u8; 32]) -> PathBuf {
        self.root.join("blobs/sha256").join(hex::encode(sha256))
    }

    /// Where the artifacts with this key are (or would be) kept.
    pub fn kernel_dir(&self, key: &str) -> PathBuf {
        self.root.join("kernels").join(key)
    }

    /// Where saved VMs are kept.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Where entries are written before they are renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A temporary file on the cache's filesystem, removed unless persisted.
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new_in(self.root.join("tmp"))
    }

    /// A temporary directory on the cache's filesystem, removed unless
    /// committed with [`Cache::commit_dir`].
    pub fn temp_dir(&self) -> io::Result<tempfile::TempDir> {
        tempfile::TempDir::new_in(self.root.join("tmp"))
    }

    /// A private (0700) directory for one VM's initramfs, sockets and
    /// console log, under the cache's `tmp/` so that `kernels gc` removes
    /// what a crashed run left; in the system's temporary directory when
    /// the cache's path is too long for the VM's unix sockets, which take
    /// up to `room` bytes below it.
    pub fn run_dir(&self, room: usize) -> io::Result<tempfile::TempDir> {
        // `sun_path` holds 108 bytes, its NUL included; a `/` comes
        // between the directory and what is below it.
        let max_socket_dir = 108 - 1 - 1 - room;
        let builder = || {
            let mut builder = tempfile::Builder::new();
            builder
                .prefix("kmatrix-vm-")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
            builder
        };
        let dir = builder().tempdir_in(self.root.join("tmp"))?;
        if dir.path().as_os_str().len() <= max_socket_dir {
            Ok(dir)
        } else {
            builder().tempdir()
        }
    }

    /// Moves a broken entry out of the way (into `tmp/`, then removed), so
    /// that it can be rebuilt.
    pub fn discard_dir(&self, dir: &Path) -> io::Result<()> {
        let aside = tempfile::Builder::new()
            .prefix("broken-")
            .tempdir_in(self.root.join("tmp"))?;
        match std::fs::rename(dir, aside.path().join("entry")) {
            Ok(()) => Ok(()),
            // Another process moved it first.
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Moves a filled temporary directory to `dest` atomically. If another
    /// process got there first, its entry is kept and ours dropped.
    pub fn commit_dir(&self, dir: tempfile::TempDir, dest: &Path) -> io::Result<()> {
        match std::fs::rename(dir.path(), dest) {
            Ok(()) => {
                let _ = dir.keep();
                Ok(())
            }
            Err(_) if dest.is_dir() => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// A cache entry and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file or directory.
    pub path: PathBuf,
    /// Its size in bytes (a directory's files added up).
    pub bytes: u64,
}

impl Cache {
    /// Entries no one needs: downloads and kernel directories not in `keep`,
    /// and temporary files older than an hour (left by killed processes).
    pub fn unreferenced(&self, keep: &std::collections::HashSet<PathBuf>) -> Vec<Entry> {
        let mut unused = Vec::new();
        for dir in ["blobs/sha256", "kernels"] {
            for entry in std::fs::read_dir(self.root.join(dir))
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                if !keep.contains(&path) {
                    unused.push(Entry {
                        bytes: size(&path),
                        path,
                    });
                }
            }
        }
        let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for entry in std::fs::read_dir(self.root.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < stale);
            if old {
                let path = entry.path();
                unused.push(Entry {
                    bytes: size(&path),
                    path,
                });
            }
        }
        unused.sort_by(|a, b| a.path.cmp(&b.path));
        unused
    }
}

/// The bytes of a file, or of the files below a directory.
pub fn size(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| size(&e.path()))
            .sum(),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_dir_leaves_room_for_every_socket_below_it() {
        let base = tempfile::tempdir().unwrap();
        let room = "restored/results.sock".len();
        // Cache roots of every length around the limit: the run's directory
        // is under the cache, or in the system's temporary directory.
        for pad in 40..110 {
            let root = base.path().join("c".repeat(pad.min(200)));
            let cache = Cache::at(root.clone()).unwrap();
            let dir = cache.run_dir(room).unwrap();
            let len = dir.path().as_os_str().len();
            assert!(
                len + 1 + room < 108,
                "{} ({len} bytes) leaves no room for {room}",
                dir.path().display()
            );
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    #[test]
    fn committed_dirs_appear_whole_and_first_writer_wins() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::at(root.path().join("c")).unwrap();
        let dest = cache.kernel_dir("k");

        let first = cache.temp_dir().unwrap();
        std::fs::write(first.path().join("f"), "first").unwrap();
        let second = cache.temp_dir().unwrap();
        std::fs::write(second.path().join("f"), "second").unwrap();

        cache.commit_dir(first, &dest).unwrap();
        cache.commit_dir(second, &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "first");
        assert_eq!(
            std::fs::read_dir(cache.root().join("tmp")).unwrap().count(),
            0
        );
    }
}
