//! Where kernels come from, one file per kind of source: each gives the
//! pinned inputs an entry is extracted from, and the pins it would have on
//! what its source offers now (`kmatrix kernels update`).

pub mod apt;
pub mod archive;
pub mod checksums;
pub mod debian;
pub mod debian_snapshot;
pub mod distro;
pub mod listing;
pub mod mainline;
pub mod names;
pub mod oci;
pub mod oci_tags;
pub mod packages;
pub mod release;
pub mod repodata;
pub mod rpm;
pub mod snapshot;

use super::artifacts::Input;
use super::blobs::Blobs;
use super::error::FetchError;
use super::{KernelEntry, Matrix, Pinning, Source};
use archive::Archive;
use distro::Distro;

/// The downloaded (or local) inputs of `entry`, fetched through `blobs`
/// where they are not cached.
pub async fn inputs(
    blobs: &Blobs,
    sources: &Sources,
    entry: &KernelEntry,
) -> Result<Vec<Input>, FetchError> {
    match &entry.source {
        Source::Debian { suite, .. } => {
            sources
                .archive(Distro::Debian)
                .inputs(blobs, entry, suite)
                .await
        }
        Source::DebianSnapshot { package, .. } => {
            debian_snapshot::inputs(blobs, entry, package).await
        }
        Source::Ubuntu { suite, .. } => {
            sources
                .archive(Distro::Ubuntu)
                .inputs(blobs, entry, suite)
                .await
        }
        Source::Rpm { repo, keyring, .. } => {
            rpm::inputs(blobs, &sources.rpm, entry, repo, keyring.as_deref()).await
        }
        Source::Mainline { tag } => mainline::inputs(blobs, &sources.mainline, entry, tag).await,
        Source::Oci { reference } => {
            Ok(vec![Input::Oci(oci::pull(blobs, entry, reference).await?)])
        }
        Source::Url { image, modules } => {
            let mut inputs = vec![Input::Image(
                blobs
                    .get_url(&entry.label, "image", image, pin(entry, "image")?, None)
                    .await?,
            )];
            if let Some(modules) = modules {
                let path = blobs
                    .get_url(
                        &entry.label,
                        "modules",
                        modules,
                        pin(entry, "modules")?,
                        None,
                    )
                    .await?;
                inputs.push(Input::Tarball(path));
            }
            Ok(inputs)
        }
        Source::Path { image, modules } => {
            let mut inputs = vec![Input::Image(image.clone())];
            inputs.extend(modules.iter().cloned().map(Input::Dir));
            Ok(inputs)
        }
    }
}

/// The sources a matrix configures: each one's configuration, and what it
/// reads at most once per run.
pub struct Sources {
    debian: Archive,
    ubuntu: Archive,
    rpm: rpm::Repositories,
    mainline: mainline::Mainline,
}

impl Sources {
    /// The sources `matrix` configures.
    pub fn new(matrix: &Matrix) -> Self {
        Self {
            debian: Archive::new(matrix, Distro::Debian),
            ubuntu: Archive::new(matrix, Distro::Ubuntu),
            rpm: rpm::Repositories::default(),
            mainline: mainline::Mainline::new(matrix),
        }
    }

    /// `distro`'s apt archive.
    pub fn archive(&self, distro: Distro) -> &Archive {
        match distro {
            Distro::Debian => &self.debian,
            Distro::Ubuntu => &self.ubuntu,
        }
    }

    /// Ubuntu's mainline builds.
    pub fn mainline(&self) -> &mainline::Mainline {
        &self.mainline
    }
}

/// The pins `entry` would have now: the newest image package of its
/// series in its Debian or Ubuntu suite or RPM repository, the pin of its
/// Debian build from the snapshot archive's signed index, the packages of
/// its mainline release, or the manifest its OCI tag names. `None` for
/// sources that name fixed content (URLs, paths).
pub async fn newest(
    blobs: &Blobs,
    sources: &Sources,
    entry: &KernelEntry,
) -> Result<Option<Pinning>, FetchError> {
    match &entry.source {
        Source::Debian { suite, package } => sources
            .archive(Distro::Debian)
            .newest(blobs, entry, suite, package)
            .await
            .map(Some),
        Source::DebianSnapshot { suite, package, .. } => {
            debian_snapshot::newest(blobs, entry, suite, package)
                .await
                .map(Some)
        }
        Source::Ubuntu { suite, package } => sources
            .archive(Distro::Ubuntu)
            .newest(blobs, entry, suite, package)
            .await
            .map(Some),
        Source::Mainline { tag } => mainline::newest(blobs, &sources.mainline, entry, tag)
            .await
            .map(Some),
        Source::Oci { reference } => oci::newest(entry, reference).await.map(Some),
        Source::Rpm {
            repo,
            package,
            keyring,
        } => rpm::newest(
            blobs,
            &sources.rpm,
            entry,
            repo,
            package,
            keyring.as_deref(),
        )
        .await
        .map(Some),
        Source::Url { .. } | Source::Path { .. } => Ok(None),
    }
}

/// `entry`'s pin named `name`.
pub fn pin<'a>(entry: &'a KernelEntry, name: &str) -> Result<&'a [u8; 32], FetchError> {
    entry.sha256.get(name).ok_or_else(|| FetchError::Unpinned {
        label: entry.label.clone(),
        what: name.to_owned(),
    })
}
