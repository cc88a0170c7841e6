//! An apt archive as a matrix configures it (Debian's or Ubuntu's): its
//! mirror, each suite's verified index read at most once per run, and the
//! pinned packages of an entry downloaded through it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kmatrix_protocol::Arch;
use tokio::sync::OnceCell;

use super::apt::{AptError, Mirror};
use super::distro::Distro;
use super::packages::Package;
use super::packages::PackageIndex;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Matrix, Pinning};

/// How an archive's kernel is made of packages: from its image package's
/// name, the packages to pin ([`PackageIndex::kernel_packages`],
/// [`PackageIndex::image_and_parts`]).
pub type Parts = for<'a> fn(&'a PackageIndex, &str) -> Option<Vec<(String, &'a Package)>>;

/// One suite's index for one architecture, read at most once.
type IndexCell = Arc<OnceCell<Arc<PackageIndex>>>;

/// An apt archive as a matrix configures it, with each suite's index read
/// at most once.
pub struct Archive {
    distro: Distro,
    configured: Option<String>,
    matrix_path: PathBuf,
    indexes: Mutex<HashMap<(String, Arch), IndexCell>>,
}

impl Archive {
    /// `distro`'s archive as `matrix` configures it.
    pub fn new(matrix: &Matrix, distro: Distro) -> Self {
        Self {
            distro,
            configured: matrix.mirror(distro).map(str::to_owned),
            matrix_path: matrix.path.clone(),
            indexes: Mutex::default(),
        }
    }

    /// The mirror to use.
    pub fn mirror(&self) -> Result<Mirror, AptError> {
        Mirror::resolve(self.distro, self.configured.as_deref(), &self.matrix_path)
    }

    /// `suite`'s verified index for `arch`, downloaded once.
    pub async fn index(
        &self,
        blobs: &Blobs,
        mirror: &Mirror,
        suite: &str,
        arch: Arch,
    ) -> Result<Arc<PackageIndex>, AptError> {
        let cell = self
            .indexes
            .lock()
            .expect("index map lock")
            .entry((suite.to_owned(), arch))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            mirror
                .index(blobs.client(), suite, arch)
                .await
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    /// Makes sure the pinned `package` is in the blob store: cached, or
    /// downloaded from the mirror after its verified index agrees with the
    /// pin. `Ok(Some(gone))` when the index does not list it (the caller
    /// decides whether anything else may have it).
    pub async fn fetch_pinned(
        &self,
        blobs: &Blobs,
        entry: &KernelEntry,
        suite: &str,
        package: &str,
        pin: &[u8; 32],
    ) -> Result<Option<AptError>, FetchError> {
        if !blobs.needs_download(&entry.label, package, pin)? {
            return Ok(None);
        }
        let mirror = self.mirror()?;
        let index = self.index(blobs, &mirror, suite, entry.arch).await?;
        let Some(found) = index.get(package) else {
            return Ok(Some(AptError::Gone {
                label: entry.label.clone(),
                package: package.to_owned(),
                suite: suite.to_owned(),
                mirror,
            }));
        };
        if found.sha256 != hex::encode(pin) {
            return Err(AptError::Repinned {
                label: entry.label.clone(),
                package: package.to_owned(),
                suite: suite.to_owned(),
                expected: hex::encode(pin),
                actual: found.sha256.clone(),
            }
            .into());
        }
        let url = mirror.file_url(&found.filename);
        blobs
            .get_url(&entry.label, package, &url, pin, Some(found.size))
            .await?;
        Ok(None)
    }

    /// The pins `entry` would have now: the newest image package of
    /// `package`'s series and flavour in `suite`, with the packages `parts`
    /// says it is made of.
    pub async fn newest(
        &self,
        blobs: &Blobs,
        entry: &KernelEntry,
        suite: &str,
        package: &str,
        parts: Parts,
    ) -> Result<Pinning, FetchError> {
        let mirror = self.mirror()?;
        let index = self.index(blobs, &mirror, suite, entry.arch).await?;
        let gone = || AptError::Gone {
            label: entry.label.clone(),
            package: package.to_owned(),
            suite: suite.to_owned(),
            mirror: mirror.clone(),
        };
        let newest = index.newest_like(package).ok_or_else(gone)?;
        let packages = parts(&index, newest).ok_or_else(gone)?;
        Ok(Pinning {
            missing: index.missing_parts(newest),
            label: entry.label.clone(),
            package: Some(newest.to_owned()),
            sha256: packages
                .into_iter()
                .map(|(name, p)| (name, p.sha256.clone()))
                .collect(),
        })
    }
}
