//! Ubuntu kernels, from Ubuntu's archive through the same apt machinery as
//! Debian's (its own mirror and keyring). Ubuntu splits a kernel: the image
//! package (`linux-image-<release>`, its vmlinuz signed for secure boot, or
//! `linux-image-unsigned-<release>`) holds `/boot/vmlinuz-<release>`, and
//! depends on `linux-modules-<release>`, which holds the config,
//! `modules.builtin` and the modules. Both are pinned and used;
//! `linux-modules-extra-<release>` (drivers no guest here loads) is not.

use super::archive::Archive;
use super::packages::PackageIndex;
use crate::kernels::artifacts::Input;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Pinning};

/// Every package `entry` pins, downloaded where not cached.
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
            return Err(gone.into());
        }
        inputs.push(Input::Deb(blobs.cache().blob(pin)));
    }
    Ok(inputs)
}

/// The newest image package of `package`'s series and flavour (signed or
/// unsigned as it is) in `suite`, with the modules package it depends on.
pub async fn newest(
    blobs: &Blobs,
    archive: &Archive,
    entry: &KernelEntry,
    suite: &str,
    package: &str,
) -> Result<Pinning, FetchError> {
    archive
        .newest(blobs, entry, suite, package, PackageIndex::image_and_parts)
        .await
}
