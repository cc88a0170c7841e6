//! Debian kernels: the packages an entry pins, found in its suite's
//! package index (read once per suite and run) and downloaded from the
//! mirror.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kmatrix_protocol::Arch;
use tokio::sync::OnceCell;

use super::apt::{DebianError, Mirror};
use super::packages::PackageIndex;
use super::snapshot;
use crate::kernels::artifacts::Input;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Matrix, Pinning};

/// One suite's index for one architecture, read at most once.
type IndexCell = Arc<OnceCell<Arc<PackageIndex>>>;

/// The Debian archive as a matrix configures it, with each suite's index
/// read at most once.
pub struct Archive {
    configured: Option<String>,
    matrix_path: PathBuf,
    indexes: Mutex<HashMap<(String, Arch), IndexCell>>,
}

impl Archive {
    /// The archive `matrix` configures.
    pub fn new(matrix: &Matrix) -> Self {
        Self {
            configured: matrix.debian_mirror.clone(),
            matrix_path: matrix.path.clone(),
            indexes: Mutex::default(),
        }
    }

    /// The mirror to use.
    pub fn mirror(&self) -> Result<Mirror, DebianError> {
        Mirror::resolve(self.configured.as_deref(), &self.matrix_path)
    }

    async fn index(
        &self,
        blobs: &Blobs,
        mirror: &Mirror,
        suite: &str,
        arch: Arch,
    ) -> Result<Arc<PackageIndex>, DebianError> {
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
}

/// Every package `entry` pins, downloaded where not cached.
pub async fn inputs(
    blobs: &Blobs,
    archive: &Archive,
    entry: &KernelEntry,
    suite: &str,
) -> Result<Vec<Input>, FetchError> {
    let mut inputs = Vec::new();
    for (package, pin) in &entry.sha256 {
        let path = blobs.cache().blob(pin);
        if !path.exists() {
            if blobs.offline() {
                return Err(FetchError::Offline {
                    label: entry.label.clone(),
                    what: package.to_owned(),
                });
            }
            let mirror = archive.mirror()?;
            let index = archive.index(blobs, &mirror, suite, entry.arch).await?;
            let Some(found) = index.get(package) else {
                let gone = DebianError::Gone {
                    label: entry.label.clone(),
                    package: package.to_owned(),
                    suite: suite.to_owned(),
                    mirror: mirror.clone(),
                };
                from_snapshot(blobs, entry, package, pin, gone).await?;
                inputs.push(Input::Deb(path));
                continue;
            };
            if found.sha256 != hex::encode(pin) {
                return Err(DebianError::Repinned {
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
        }
        inputs.push(Input::Deb(path));
    }
    Ok(inputs)
}

/// A pinned package the mirror no longer has, from the snapshot archive:
/// each build of it is tried until one matches the pin.
async fn from_snapshot(
    blobs: &Blobs,
    entry: &KernelEntry,
    package: &str,
    pin: &[u8; 32],
    gone: DebianError,
) -> Result<(), FetchError> {
    let Some(base) = snapshot::base() else {
        return Err(gone.into());
    };
    let candidates = snapshot::candidates(blobs.client(), &base, package, entry.arch)
        .await
        .map_err(|e| FetchError::Snapshot {
            label: entry.label.clone(),
            package: package.to_owned(),
            reason: e,
        })?;
    let what = format!("{package} (gone from the mirror; from the snapshot archive)");
    for url in &candidates {
        match blobs.get_url(&entry.label, &what, url, pin, None).await {
            Ok(_) => return Ok(()),
            Err(FetchError::DigestMismatch { .. }) => continue,
            Err(err) => return Err(err),
        }
    }
    Err(FetchError::Snapshot {
        label: entry.label.clone(),
        package: package.to_owned(),
        reason: format!(
            "none of its {} builds there matches the pin",
            candidates.len()
        ),
    })
}

/// The newest image package of `package`'s series and flavour in `suite`,
/// with every package it is made of.
pub async fn newest(
    blobs: &Blobs,
    archive: &Archive,
    entry: &KernelEntry,
    suite: &str,
    package: &str,
) -> Result<Pinning, FetchError> {
    let mirror = archive.mirror()?;
    let index = archive.index(blobs, &mirror, suite, entry.arch).await?;
    let gone = || DebianError::Gone {
        label: entry.label.clone(),
        package: package.to_owned(),
        suite: suite.to_owned(),
        mirror: mirror.clone(),
    };
    let newest = index.newest_like(package).ok_or_else(gone)?;
    let parts = index.kernel_packages(newest).ok_or_else(gone)?;
    let missing = index.missing_parts(newest);
    Ok(Pinning {
        missing,
        label: entry.label.clone(),
        package: Some(newest.to_owned()),
        sha256: parts
            .into_iter()
            .map(|(name, p)| (name, p.sha256.clone()))
            .collect(),
    })
}
