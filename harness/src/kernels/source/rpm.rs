//! RPM distributions' kernels (CentOS Stream, AlmaLinux, Rocky, Fedora,
//! Amazon Linux): the packages an entry pins, found in its repository's
//! metadata and downloaded from it.
//!
//! Trust: `repodata/repomd.xml`, checked against its detached signature
//! `repomd.xml.asc` with the entry's keyring where the repository signs
//! it; `primary.xml` checked against the checksum repomd gives; each
//! package's sha256 from primary, pinned in kernels.toml. Most
//! distributions sign packages, not metadata, so every package's header
//! signature is checked against the keyring when it is extracted
//! ([`crate::kernels::rpm`]), whatever its metadata said.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kmatrix_protocol::Arch;
use sha2::Digest as _;
use tokio::sync::OnceCell;

use super::release::{self, Keyring};
use super::repodata::{self, RpmPackage};
use crate::kernels::artifacts::Input;
use crate::kernels::blobs::Blobs;
use crate::kernels::bounded::{read_capped, MAX_INDEX};
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Pinning, Version};

/// Failures while talking to an RPM repository.
#[derive(Debug, thiserror::Error)]
pub enum RpmError {
    /// The repository's metadata could not be fetched or read.
    #[error("cannot read the RPM repository {repo}: {reason}; check the entry's `repo` (the directory holding repodata/)")]
    Index {
        /// The repository's base URL.
        repo: String,
        /// Why.
        reason: String,
    },
    /// `repomd.xml.asc` does not verify, or cannot be checked.
    #[error("the metadata of the RPM repository {repo} could not be verified, so kmatrix uses none of it: {reason}")]
    Unverified {
        /// The repository's base URL.
        repo: String,
        /// Why.
        reason: String,
    },
    /// `primary.xml` is not what `repomd.xml` says it is.
    #[error("the RPM repository {repo} served a primary metadata file ({href}) with sha256 {actual}, but its repomd.xml says {expected}: the repository is corrupt or tampered with, and nothing from it was used")]
    Tampered {
        /// The repository's base URL.
        repo: String,
        /// The file.
        href: String,
        /// What repomd.xml says.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The package is not (or no longer) in the repository.
    #[error("package `{package}` is not in the RPM repository {repo}; run `kmatrix kernels update --kernels {label}` to move the pin to what it has now")]
    Gone {
        /// The kernel's label.
        label: String,
        /// The package.
        package: String,
        /// The repository's base URL.
        repo: String,
    },
    /// The repository has the package, with another digest than the pin.
    #[error("`{package}` in {repo} now has sha256 {actual}, not the pinned {expected}: the package was rebuilt or the pin is wrong; run `kmatrix kernels update --kernels {label}` to re-pin")]
    Repinned {
        /// The kernel's label.
        label: String,
        /// The package.
        package: String,
        /// The repository's base URL.
        repo: String,
        /// The pin.
        expected: String,
        /// The repository's digest.
        actual: String,
    },
    /// The entry names no keyring to check packages with.
    #[error("kernel `{label}` names no keyring: add `keyring = \"<path>\"` to its `rpm` table, the distribution's package signing key (the RPM-GPG-KEY-… file its release package installs under /etc/pki/rpm-gpg/, armored or binary)")]
    NoKeyring {
        /// The kernel's label.
        label: String,
    },
}

/// The architecture name RPM repositories use for `arch`.
pub fn rpm_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "aarch64",
    }
}

/// One repository's packages for one architecture, read at most once.
type IndexCell = Arc<OnceCell<Arc<Vec<RpmPackage>>>>;

/// A repository, an architecture, and the keyring its metadata is
/// verified with.
type IndexKey = (String, Arch, Option<PathBuf>);

/// The RPM repositories a matrix's entries name, each one's packages read
/// at most once per run (per architecture, and per keyring its metadata is
/// verified with).
#[derive(Default)]
pub struct Repositories {
    indexes: Mutex<HashMap<IndexKey, IndexCell>>,
}

impl Repositories {
    /// `repo`'s packages for `arch`, verified with `keyring` where the
    /// repository signs its metadata; downloaded once.
    async fn index(
        &self,
        client: &reqwest::Client,
        repo: &str,
        keyring: Option<&Path>,
        arch: Arch,
    ) -> Result<Arc<Vec<RpmPackage>>, RpmError> {
        let cell = self
            .indexes
            .lock()
            .expect("index map lock")
            .entry((repo.to_owned(), arch, keyring.map(Path::to_owned)))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let verifier = keyring.map(keyring_at);
            read_index(client, repo, verifier.as_ref(), arch)
                .await
                .map(Arc::new)
        })
        .await
        .cloned()
    }
}

/// Every package `entry` pins, downloaded where not cached; each is
/// checked against `keyring` when it is extracted.
pub async fn inputs(
    blobs: &Blobs,
    repositories: &Repositories,
    entry: &KernelEntry,
    repo: &str,
    keyring: Option<&Path>,
) -> Result<Vec<Input>, FetchError> {
    let keyring = keyring.ok_or_else(|| RpmError::NoKeyring {
        label: entry.label.clone(),
    })?;
    let mut inputs = Vec::new();
    for (package, pin) in &entry.sha256 {
        if blobs.needs_download(&entry.label, package, pin)? {
            let packages = repositories
                .index(blobs.client(), repo, Some(keyring), entry.arch)
                .await?;
            let found = packages
                .iter()
                .find(|p| p.nvra() == *package)
                .ok_or_else(|| RpmError::Gone {
                    label: entry.label.clone(),
                    package: package.to_owned(),
                    repo: repo.to_owned(),
                })?;
            let actual = found.sha256.clone().unwrap_or_default();
            if actual != hex::encode(pin) {
                return Err(RpmError::Repinned {
                    label: entry.label.clone(),
                    package: package.to_owned(),
                    repo: repo.to_owned(),
                    expected: hex::encode(pin),
                    actual,
                }
                .into());
            }
            let base = found.base.as_deref().unwrap_or(repo).trim_end_matches('/');
            let url = format!("{base}/{}", found.href);
            blobs
                .get_url(&entry.label, package, &url, pin, found.size)
                .await?;
        }
        inputs.push(Input::Rpm {
            path: blobs.cache().blob(pin),
            keyring: keyring.to_owned(),
        });
    }
    Ok(inputs)
}

/// The keyring at `path`, named by its path in messages.
pub fn keyring_at(path: &Path) -> Keyring {
    Keyring::at(path.to_owned(), path.display().to_string())
}

/// The newest build of `package`'s name, architecture and kernel series
/// in the repository, with the `-modules-core` package of the same build
/// where the distribution splits its kernel that way (Fedora 38 on, RHEL
/// 9.3 on).
pub async fn newest(
    blobs: &Blobs,
    repositories: &Repositories,
    entry: &KernelEntry,
    repo: &str,
    package: &str,
    keyring: Option<&Path>,
) -> Result<Pinning, FetchError> {
    let packages = repositories
        .index(blobs.client(), repo, keyring, entry.arch)
        .await?;
    let gone = || RpmError::Gone {
        label: entry.label.clone(),
        package: package.to_owned(),
        repo: repo.to_owned(),
    };
    let named = packages
        .iter()
        .find(|p| p.nvr() == package || p.nvra() == package)
        .or_else(|| {
            // An unpinned entry may name only the package and its series.
            packages
                .iter()
                .filter(|p| package.starts_with(&format!("{}-", p.name)))
                .find(|p| same_series(p, entry.version))
        })
        .ok_or_else(gone)?;
    let newest = packages
        .iter()
        .filter(|p| p.name == named.name && same_series(p, entry.version))
        .max_by(|a, b| a.cmp_evr(b))
        .unwrap_or(named);
    let mut parts = vec![newest];
    if let Some(stem) = newest.name.strip_suffix("-core") {
        let modules = format!("{stem}-modules-core");
        parts.extend(
            packages
                .iter()
                .find(|p| p.name == modules && p.cmp_evr(newest) == std::cmp::Ordering::Equal),
        );
    }
    let mut sha256 = std::collections::BTreeMap::new();
    for part in parts {
        let digest = part.sha256.clone().ok_or_else(|| RpmError::Index {
            repo: repo.to_owned(),
            reason: format!("its primary metadata gives {} no sha256", part.nvra()),
        })?;
        sha256.insert(part.nvra(), digest);
    }
    Ok(Pinning {
        label: entry.label.clone(),
        package: Some(newest.nvr()),
        sha256,
        missing: Vec::new(),
    })
}

/// Whether `package` is a build of `version`'s `major.minor` series.
fn same_series(package: &RpmPackage, version: Version) -> bool {
    Version::find_in(&package.version).is_some_and(|v| v.series() == version.series())
}

/// The repository's packages for `arch`, verified up to its metadata's
/// signature where it has one: `repomd.xml` (with `repomd.xml.asc`
/// checked against `keyring`), then `primary.xml` against repomd's
/// checksum.
async fn read_index(
    client: &reqwest::Client,
    repo: &str,
    keyring: Option<&Keyring>,
    arch: Arch,
) -> Result<Vec<RpmPackage>, RpmError> {
    let repo = repo.trim_end_matches('/');
    let fail = |reason: String| RpmError::Index {
        repo: repo.to_owned(),
        reason,
    };
    let unverified = |reason: String| RpmError::Unverified {
        repo: repo.to_owned(),
        reason,
    };
    let repomd = release::download(client, &format!("{repo}/repodata/repomd.xml"))
        .await
        .map_err(fail)?;
    let signature = release::download_if_there(client, &format!("{repo}/repodata/repomd.xml.asc"))
        .await
        .map_err(fail)?;
    if let Some(signature) = signature {
        let keyring = keyring.ok_or_else(|| {
            unverified(
                "it signs repomd.xml, and the entry names no `keyring` to check it with".into(),
            )
        })?;
        keyring
            .verify_binary(&repomd, &signature)
            .map_err(|e| unverified(format!("repomd.xml.asc: {e}")))?;
    }
    let repomd = String::from_utf8(repomd).map_err(|e| fail(format!("repomd.xml: {e}")))?;
    let primary = repodata::primary_location(&repomd).map_err(fail)?;
    if primary.checksum_type != "sha256" {
        return Err(unverified(format!(
            "repomd.xml gives a {} checksum for its primary metadata; kmatrix checks sha256 only",
            primary.checksum_type
        )));
    }
    let compressed = release::download(client, &format!("{repo}/{}", primary.href))
        .await
        .map_err(fail)?;
    let actual = hex::encode(sha2::Sha256::digest(&compressed));
    if actual != primary.checksum {
        return Err(RpmError::Tampered {
            repo: repo.to_owned(),
            href: primary.href,
            expected: primary.checksum,
            actual,
        });
    }
    let href = primary.href.clone();
    let arch = rpm_arch(arch);
    tokio::task::spawn_blocking(move || {
        let text = decompress(&href, &compressed)?;
        repodata::packages(&text, arch)
    })
    .await
    .expect("metadata decompression does not panic")
    .map_err(fail)
}

/// A metadata file's text, decompressed as its name says.
fn decompress(href: &str, bytes: &[u8]) -> Result<String, String> {
    let what = href.rsplit('/').next().unwrap_or(href);
    let text = if href.ends_with(".gz") {
        read_capped(flate2::read::GzDecoder::new(bytes), MAX_INDEX, what)
    } else if href.ends_with(".zst") {
        zstd::Decoder::new(bytes).and_then(|d| read_capped(d, MAX_INDEX, what))
    } else if href.ends_with(".xz") {
        read_capped(xz2::read::XzDecoder::new(bytes), MAX_INDEX, what)
    } else if href.ends_with(".xml") {
        Ok(bytes.to_vec())
    } else {
        return Err(format!(
            "{what} is compressed in a way kmatrix does not read (gzip, zstd and xz are)"
        ));
    };
    let text = text.map_err(|e| format!("{what}: {e}"))?;
    String::from_utf8(text).map_err(|e| format!("{what}: {e}"))
}
