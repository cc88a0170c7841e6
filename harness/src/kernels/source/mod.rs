//! Where kernels come from, one file per kind of source: each gives the
//! pinned inputs an entry is extracted from, and the pins it would have on
//! what its source offers now (`kmatrix kernels update`).

pub mod apt;
pub mod debian;
pub mod oci;
pub mod packages;
pub mod release;
pub mod repodata;
pub mod rpm;
pub mod snapshot;

use super::artifacts::Input;
use super::blobs::Blobs;
use super::error::FetchError;
use super::{KernelEntry, Pinning, Source};

/// The downloaded (or local) inputs of `entry`, fetched through `blobs`
/// where they are not cached.
pub async fn inputs(
    blobs: &Blobs,
    archive: &debian::Archive,
    entry: &KernelEntry,
) -> Result<Vec<Input>, FetchError> {
    match &entry.source {
        Source::Debian { suite, .. } => debian::inputs(blobs, archive, entry, suite).await,
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
        Source::Rpm { repo, keyring, .. } => {
            rpm::inputs(blobs, entry, repo, keyring.as_deref()).await
        }
        Source::Path { image, modules } => {
            let mut inputs = vec![Input::Image(image.clone())];
            inputs.extend(modules.iter().cloned().map(Input::Dir));
            Ok(inputs)
        }
    }
}

/// The pins `entry` would have now: the newest image package of its
/// series in its Debian suite or RPM repository, or the manifest its OCI
/// tag names. `None`
/// for sources that name fixed content (URLs, paths).
pub async fn newest(
    blobs: &Blobs,
    archive: &debian::Archive,
    entry: &KernelEntry,
) -> Result<Option<Pinning>, FetchError> {
    match &entry.source {
        Source::Debian { suite, package } => debian::newest(blobs, archive, entry, suite, package)
            .await
            .map(Some),
        Source::Oci { reference } => oci::newest(entry, reference).await.map(Some),
        Source::Rpm {
            repo,
            package,
            keyring,
        } => rpm::newest(blobs, entry, repo, package, keyring.as_deref())
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
