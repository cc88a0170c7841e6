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
        for dir in ["blobs/sha256", "kernels", "tmp"] {
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

    /// A temporary file on the cache's filesystem, removed unless persisted.
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new_in(self.root.join("tmp"))
    }

    /// A temporary directory on the cache's filesystem, removed unless
    /// committed with [`Cache::commit_dir`].
    pub fn temp_dir(&self) -> io::Result<tempfile::TempDir> {
        tempfile::TempDir::new_in(self.root.join("tmp"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
