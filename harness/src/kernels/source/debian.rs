//! Debian kernels: the packages an entry pins, found in its suite's
//! package index (read once per suite and run) and downloaded from the
//! mirror, or from the snapshot archive once the mirror dropped them.

use super::apt::AptError;
use super::archive::Archive;
use super::packages::PackageIndex;
use super::snapshot;
use crate::kernels::artifacts::Input;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Pinning};

/// Every package `entry` pins, downloaded where not cached; one the suite
/// no longer lists comes from the snapshot archive, where one is set.
pub async fn inputs(
    blobs: &Blobs,
    archive: &Archive,
    entry: &KernelEntry,
    suite: &str,
) -> Result<Vec<Input>, FetchError> {
    let mut inputs = Vec::new();
    for (package, pin) in &entry.sha256 {
        if let Some(gone) = archive
            .fetch_pinned(blobs, entry, suite, package, pin)
            .await?
        {
            from_snapshot(blobs, entry, package, pin, gone).await?;
        }
        inputs.push(Input::Deb(blobs.cache().blob(pin)));
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
    gone: AptError,
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
    archive
        .newest(blobs, entry, suite, package, PackageIndex::kernel_packages)
        .await
}
