//! An apt archive as a matrix configures it (Debian's or Ubuntu's): its
//! mirrors (Ubuntu's ports archive has its own), each suite's verified
//! index read at most once per run, the pinned packages of an entry
//! downloaded through it, and the newest pins; where the two archives
//! differ, its [`Distro`] says.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kmatrix_protocol::Arch;
use tokio::sync::OnceCell;

use super::apt::{AptError, Mirror};
use super::debian;
use super::distro::{Distro, MirrorSetting};
use super::packages::PackageIndex;
use crate::kernels::artifacts::Input;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Matrix, Pinning};

/// One suite's index for one architecture, read at most once.
type IndexCell = Arc<OnceCell<Arc<PackageIndex>>>;

/// An apt archive as a matrix configures it, with each suite's index read
/// at most once.
pub struct Archive {
    distro: Distro,
    /// The mirrors kernels.toml names: the main archive's, and Ubuntu's
    /// ports archive's.
    configured: [Option<String>; 2],
    matrix_path: PathBuf,
    indexes: Mutex<HashMap<(String, Arch), IndexCell>>,
}

impl Archive {
    /// `distro`'s archive as `matrix` configures it.
    pub fn new(matrix: &Matrix, distro: Distro) -> Self {
        Self {
            distro,
            configured: [false, true].map(|ports| {
                matrix
                    .mirror(MirrorSetting { distro, ports })
                    .map(str::to_owned)
            }),
            matrix_path: matrix.path.clone(),
            indexes: Mutex::default(),
        }
    }

    /// The mirror to use for `arch`'s packages.
    pub fn mirror(&self, arch: Arch) -> Result<Mirror, AptError> {
        let setting = self.distro.mirror_for(arch);
        Mirror::resolve(
            setting,
            self.configured[usize::from(setting.ports)].as_deref(),
            &self.matrix_path,
        )
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

    /// Every package `entry` pins, downloaded where not cached; one
    /// `suite` no longer lists comes from the snapshot archive where the
    /// distribution has one ([`Distro::has_snapshot_archive`]) and one is
    /// set, else is an error.
    pub async fn inputs(
        &self,
        blobs: &Blobs,
        entry: &KernelEntry,
        suite: &str,
    ) -> Result<Vec<Input>, FetchError> {
        let mut inputs = Vec::new();
        for (package, pin) in &entry.sha256 {
            if let Some(gone) = self.fetch_pinned(blobs, entry, suite, package, pin).await? {
                if !self.distro.has_snapshot_archive() {
                    return Err(gone.into());
                }
                debian::from_snapshot(blobs, entry, package, pin, gone).await?;
            }
            inputs.push(Input::Deb(blobs.cache().blob(pin)));
        }
        Ok(inputs)
    }

    /// Makes sure the pinned `package` is in the blob store: cached, or
    /// downloaded from the mirror after its verified index agrees with the
    /// pin. `Ok(Some(gone))` when the index does not list it.
    async fn fetch_pinned(
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
        let mirror = self.mirror(entry.arch)?;
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
    /// `package`'s series and flavour (signed or unsigned as it is) in
    /// `suite`, with the packages it is made of ([`Distro::parts`]).
    pub async fn newest(
        &self,
        blobs: &Blobs,
        entry: &KernelEntry,
        suite: &str,
        package: &str,
    ) -> Result<Pinning, FetchError> {
        let mirror = self.mirror(entry.arch)?;
        let index = self.index(blobs, &mirror, suite, entry.arch).await?;
        let gone = || AptError::Gone {
            label: entry.label.clone(),
            package: package.to_owned(),
            suite: suite.to_owned(),
            mirror: mirror.clone(),
        };
        let newest = index.newest_like(package).ok_or_else(gone)?;
        let packages = (self.distro.parts())(&index, newest).ok_or_else(gone)?;
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
