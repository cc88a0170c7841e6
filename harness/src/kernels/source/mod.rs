//! Where kernels come from, one file per kind of source: each gives the
//! pinned inputs an entry is extracted from, and the pins it would have on
//! what its source offers now (`kmatrix kernels update`).

pub mod apt;
pub mod checksums;
pub mod debian;
pub mod mainline;
pub mod oci;
pub mod packages;
pub mod release;
pub mod snapshot;

use super::artifacts::Input;
use super::blobs::Blobs;
use super::error::FetchError;
use super::{KernelEntry, Matrix, Pinning, Source};

/// The downloaded (or local) inputs of `entry`, fetched through `blobs`
/// where they are not cached.
pub async fn inputs(
    blobs: &Blobs,
    sources: &Sources,
    entry: &KernelEntry,
) -> Result<Vec<Input>, FetchError> {
    match &entry.source {
        Source::Debian { suite, .. } => debian::inputs(blobs, &sources.archive, entry, suite).await,
        Source::Mainline { tag } => mainline::inputs(blobs, &sources.mainline, entry, tag).await,
        Source::Oci { reference } => Ok(oci::pull(blobs, entry, reference)
            .await?
            .into_iter()
            .map(Input::Tarball)
            .collect()),
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
    /// The Debian archive.
    pub archive: debian::Archive,
    /// Ubuntu's mainline builds.
    pub mainline: mainline::Mainline,
}

impl Sources {
    /// The sources `matrix` configures.
    pub fn new(matrix: &Matrix) -> Self {
        Self {
            archive: debian::Archive::new(matrix),
            mainline: mainline::Mainline::new(matrix),
        }
    }
}

/// The pins `entry` would have now: the newest image package of its
/// series in its Debian suite, the packages of its mainline release, or the
/// manifest its OCI tag names. `None` for sources that name fixed content
/// (URLs, paths).
pub async fn newest(
    blobs: &Blobs,
    sources: &Sources,
    entry: &KernelEntry,
) -> Result<Option<Pinning>, FetchError> {
    match &entry.source {
        Source::Debian { suite, package } => {
            debian::newest(blobs, &sources.archive, entry, suite, package)
                .await
                .map(Some)
        }
        Source::Mainline { tag } => mainline::newest(blobs, &sources.mainline, entry, tag)
            .await
            .map(Some),
        Source::Oci { reference } => oci::newest(entry, reference).await.map(Some),
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
