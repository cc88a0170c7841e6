//! `debian = { suite, build }` entries: any build of a Debian kernel, from
//! Debian's snapshot archive.
//!
//! Trust: `kmatrix kernels update` pins the image package's sha256 from a
//! signed index: the suite's `InRelease` as the snapshot archive kept it at
//! the time it first saw the package (verified with Debian's archive
//! keyring like the mirror's), and the `Packages.xz` it signs. A fetch
//! downloads the package's files from the snapshot archive until one
//! matches the pin.

use kmatrix_protocol::Arch;

use super::apt::{AptError, Mirror};
use super::distro::Distro;
use super::snapshot::{self, SNAPSHOT_ENV};
use crate::kernels::artifacts::Input;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Pinning};

/// The suites whose index may list a build first seen in the archive:
/// the entry's, then those a Debian kernel reaches it through.
fn suites(suite: &str) -> Vec<String> {
    let mut suites = vec![suite.to_owned()];
    if !suite.contains('-') {
        for pocket in ["security", "proposed-updates", "backports"] {
            suites.push(format!("{suite}-{pocket}"));
        }
    }
    suites
}

/// The source package Debian builds `arch`'s signed images from, whose
/// versions list a series' builds.
pub fn source_package(arch: Arch) -> String {
    format!("linux-signed-{arch}")
}

fn base(entry: &KernelEntry, package: &str) -> Result<String, FetchError> {
    snapshot::base().ok_or_else(|| FetchError::SnapshotBuild {
        label: entry.label.clone(),
        package: package.to_owned(),
        reason: format!("no snapshot archive configured: set {SNAPSHOT_ENV} to Debian's snapshot archive or a mirror of it"),
    })
}

fn fail<'a>(entry: &'a KernelEntry, package: &'a str) -> impl Fn(String) -> FetchError + 'a {
    move |reason| FetchError::SnapshotBuild {
        label: entry.label.clone(),
        package: package.to_owned(),
        reason,
    }
}

/// The pinned image package, from the blob store or downloaded from the
/// snapshot archive: each of its files there is tried until one matches
/// the pin.
pub async fn inputs(
    blobs: &Blobs,
    entry: &KernelEntry,
    package: &str,
) -> Result<Vec<Input>, FetchError> {
    let pin = super::pin(entry, package)?;
    if blobs.needs_download(&entry.label, package, pin)? {
        let base = base(entry, package)?;
        let candidates = snapshot::candidates(blobs.client(), &base, package, entry.arch)
            .await
            .map_err(fail(entry, package))?;
        let what = format!("{package} (from the snapshot archive)");
        let mut mismatch = None;
        for url in &candidates {
            match blobs.get_url(&entry.label, &what, url, pin, None).await {
                Ok(_) => {
                    mismatch = None;
                    break;
                }
                Err(err @ FetchError::DigestMismatch { .. }) => mismatch = Some(err),
                Err(err) => return Err(err),
            }
        }
        if candidates.is_empty() {
            return Err(fail(entry, package)(format!(
                "the archive names no {} file of it; run `kmatrix kernels update --kernels {}` to pin it again",
                entry.arch, entry.label
            )));
        }
        if let Some(mismatch) = mismatch {
            return Err(fail(entry, package)(format!(
                "none of its {} files there matches the pin: the last, {mismatch}",
                candidates.len()
            )));
        }
    }
    Ok(vec![Input::Deb(blobs.cache().blob(pin))])
}

/// The pin of `package` (the build the entry names): the sha256 that the
/// signed index of the entry's suite (or one of its pockets) gives for it,
/// as the snapshot archive kept that index when it first saw the package.
pub async fn newest(
    blobs: &Blobs,
    entry: &KernelEntry,
    suite: &str,
    package: &str,
) -> Result<Pinning, FetchError> {
    let base = base(entry, package)?;
    let client = blobs.client();
    let fail = fail(entry, package);
    let versions = snapshot::versions(client, &base, package)
        .await
        .map_err(&fail)?;
    let Some(version) = versions.first() else {
        return Err(fail(
            "the snapshot archive has no such package: check the entry's `build` and `flavour`"
                .into(),
        ));
    };
    let mut tried = Vec::new();
    for hash in snapshot::hashes(client, &base, package, version, entry.arch)
        .await
        .map_err(&fail)?
    {
        for seen in snapshot::seen(client, &base, &hash).await.map_err(&fail)? {
            let mirror = Mirror::new(
                Distro::Debian.mirror_for(entry.arch),
                snapshot::archive_at(&base, &seen),
                SNAPSHOT_ENV.to_owned(),
            );
            for suite in suites(suite) {
                let index = match mirror.index(client, &suite, entry.arch).await {
                    Ok(index) => index,
                    // No such suite in that archive then.
                    Err(AptError::Index { .. }) => {
                        tried.push(format!("{suite} (no index)"));
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                };
                if let Some(found) = index.get(package) {
                    return Ok(Pinning {
                        label: entry.label.clone(),
                        package: None,
                        sha256: [(package.to_owned(), found.sha256.clone())].into(),
                        missing: Vec::new(),
                    });
                }
                tried.push(suite);
            }
        }
    }
    Err(fail(format!(
        "no signed index lists version {version} where the snapshot archive first saw it (tried {}): name the suite it was published in",
        if tried.is_empty() { "none: the archive names no file of it".to_owned() } else { tried.join(", ") }
    )))
}
