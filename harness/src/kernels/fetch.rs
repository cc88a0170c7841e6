//! Turning a matrix entry into cached, verified [`KernelArtifacts`]: the
//! entry's [source](super::source) gives its inputs through the
//! [blob store](super::blobs), and [`super::artifacts`] extracts them.

use std::path::PathBuf;

use kmatrix_protocol::Arch;

use super::artifacts::{self, KernelArtifacts};
use super::blobs::Blobs;
use super::error::{FetchError, FetchEvent};
use super::source::listing::{self, Line, ListError};
use super::source::{self, Sources};
use super::{KernelEntry, Matrix, Pinning};
use crate::cache::{self, Cache};

/// Fetches the kernels of one matrix into the cache.
pub struct Fetcher {
    blobs: Blobs,
    sources: Sources,
    kernels: Vec<KernelEntry>,
}

impl Fetcher {
    /// A fetcher for the kernels of `matrix`, reporting to `progress`;
    /// `offline` forbids downloads.
    pub fn new(
        cache: Cache,
        matrix: &Matrix,
        offline: bool,
        progress: impl Fn(FetchEvent) + Send + Sync + 'static,
    ) -> Self {
        Self {
            blobs: Blobs::new(cache, offline, progress),
            sources: Sources::new(matrix),
            kernels: matrix.kernels.clone(),
        }
    }

    /// The cache this fetcher fills.
    pub fn cache(&self) -> &Cache {
        self.blobs.cache()
    }

    /// `entry`'s artifacts, if they are in the cache.
    pub fn cached(&self, entry: &KernelEntry) -> Option<KernelArtifacts> {
        KernelArtifacts::open(&self.cache().kernel_dir(&artifacts::key(entry)))
    }

    /// Cache entries no entry of the matrix uses: downloads and kernel
    /// directories it does not reference, and stale temporary files.
    pub fn unused(&self) -> Vec<cache::Entry> {
        self.cache().unreferenced(&self.used())
    }

    /// The cache entries the matrix's kernels use: their downloads and
    /// kernel directories.
    pub fn used(&self) -> std::collections::HashSet<PathBuf> {
        let mut keep = std::collections::HashSet::new();
        for kernel in &self.kernels {
            let dir = self.cache().kernel_dir(&artifacts::key(kernel));
            let blobs = kernel
                .sha256
                .values()
                .map(hex::encode)
                .chain(artifacts::inputs(&dir));
            keep.extend(blobs.map(|b| self.cache().root().join("blobs/sha256").join(b)));
            keep.insert(dir);
        }
        keep
    }

    /// The pins `entry` would have on what its source offers now; `None`
    /// for sources that name fixed content (URLs, paths).
    pub async fn newest_pinning(&self, entry: &KernelEntry) -> Result<Option<Pinning>, FetchError> {
        source::newest(&self.blobs, &self.sources, entry).await
    }

    /// The names of every release `line` has for `arch`, as its source
    /// lists them ([`Line::between`] orders them).
    pub async fn releases(&self, line: &Line, arch: Arch) -> Result<Vec<String>, ListError> {
        listing::list(&self.blobs, &self.sources, line, arch).await
    }

    /// The builds of Debian's `series` (`6.1`) in the snapshot archive, as
    /// `(build, first source version)`, oldest first: the images of
    /// `flavour` (`cloud`) for `arch`.
    pub async fn debian_builds(
        &self,
        series: &str,
        flavour: &str,
        arch: Arch,
    ) -> Result<Vec<(String, String)>, String> {
        let base = source::snapshot::base().ok_or_else(|| {
            format!(
                "no snapshot archive configured: set {}",
                source::snapshot::SNAPSHOT_ENV
            )
        })?;
        source::snapshot::builds(
            self.blobs.client(),
            &base,
            &source::debian_snapshot::source_package(arch),
            series,
            &format!("{flavour}-{arch}"),
        )
        .await
    }

    /// Makes sure `entry`'s artifacts are in the cache, downloading and
    /// extracting what is missing; an unpinned entry is refused before the
    /// cache or the network is asked.
    pub async fn fetch(&self, entry: &KernelEntry) -> Result<KernelArtifacts, FetchError> {
        if !entry.is_pinned() {
            return Err(FetchError::NotPinned {
                label: entry.label.clone(),
            });
        }
        let dir: PathBuf = self.cache().kernel_dir(&artifacts::key(entry));
        if let Some(artifacts) = KernelArtifacts::open(&dir) {
            return Ok(artifacts);
        }
        if dir.exists() {
            // Cut short by a crash or a clean-up: rebuilt from its blobs
            // (or downloaded again), never a dead end.
            self.blobs.progress(FetchEvent::Rebuilding {
                label: entry.label.clone(),
            });
            self.cache()
                .discard_dir(&dir)
                .map_err(|source| FetchError::Io {
                    path: dir.clone(),
                    source,
                })?;
        }
        let inputs = source::inputs(&self.blobs, &self.sources, entry).await?;
        let cache = self.cache().clone();
        let what = entry.source.to_string();
        let (label, arch) = (entry.label.clone(), entry.arch);
        let artifacts = tokio::task::spawn_blocking(move || {
            artifacts::extract(&cache, &inputs, &dir, &label, &what, arch)
        })
        .await
        .expect("extraction does not panic")?;
        self.blobs.progress(FetchEvent::Extracted {
            label: entry.label.clone(),
            release: artifacts.release.clone(),
        });
        Ok(artifacts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpinned_entry_is_refused_before_the_cache_or_the_network() {
        let dir = tempfile::tempdir().unwrap();
        // A mirror nothing listens on: asking it would fail otherwise.
        let text = "[debian]\nmirror = \"http://127.0.0.1:9/debian\"\n\n[[kernel]]\nlabel = \"6.12\"\ndebian = { suite = \"trixie\", package = \"linux-image-6.12.117+deb13-cloud-amd64\" }\n";
        let matrix = Matrix::parse(text, &dir.path().join("kernels.toml")).unwrap();
        let cache = Cache::at(dir.path().join("cache")).unwrap();
        let events = std::sync::Arc::new(std::sync::Mutex::new(0));
        let counted = events.clone();
        let fetcher = Fetcher::new(cache, &matrix, false, move |_| {
            *counted.lock().unwrap() += 1;
        });
        let fetched = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(fetcher.fetch(&matrix.kernels[0]));
        match fetched {
            Err(err @ FetchError::NotPinned { .. }) => assert_eq!(
                err.to_string(),
                "kernel `6.12` is not pinned, so it is not fetched or run: `kmatrix kernels update --kernels 6.12` pins it"
            ),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("an unpinned kernel was fetched"),
        }
        assert_eq!(*events.lock().unwrap(), 0, "no download began");
        let kernels = std::fs::read_dir(dir.path().join("cache/kernels")).unwrap();
        assert_eq!(kernels.count(), 0);
    }
}
