//! What Debian's archive has that Ubuntu's lacks: the snapshot archive,
//! where a pinned package the mirror dropped is sought. Everything else of
//! a Debian kernel goes through the apt machinery both share
//! ([`super::archive::Archive`]).

use super::apt::AptError;
use super::snapshot;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::KernelEntry;

/// A pinned package the mirror no longer has, from the snapshot archive:
/// each build of it is tried until one matches the pin; `gone` when no
/// snapshot archive is set.
pub async fn from_snapshot(
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
