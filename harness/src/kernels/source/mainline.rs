//! Ubuntu's mainline builds: a `.deb` build of every upstream release, one
//! directory per release below a base URL, each with a `CHECKSUMS` signed
//! by Ubuntu's kernel team (layout in [`super::checksums`]).
//!
//! Trust: `CHECKSUMS` is used only once `gpgv` verifies `CHECKSUMS.gpg`
//! against the configured keyring (the kernel team's key; kmatrix ships
//! none); `kmatrix kernels update` pins the sha256 it gives of the image
//! and modules packages, and a fetch downloads the file that the verified
//! `CHECKSUMS` lists with the pinned sha256, checked against the pin.

use std::path::PathBuf;

use kmatrix_protocol::Arch;

use super::checksums::{self, Checksums};
use super::release::{download, download_if_there, Keyring};
use crate::kernels::artifacts::Input;
use crate::kernels::blobs::Blobs;
use crate::kernels::error::FetchError;
use crate::kernels::{KernelEntry, Matrix, Pinning, Version};

/// Environment variable that overrides `[mainline] base`.
pub const BASE_ENV: &str = "KMATRIX_MAINLINE_BASE";

/// Environment variable that overrides `[mainline] keyring`.
pub const KEYRING_ENV: &str = "KMATRIX_MAINLINE_KEYRING";

/// Failures while reading the mainline builds.
#[derive(Debug, thiserror::Error)]
pub enum MainlineError {
    /// No base URL is configured.
    #[error("no mainline base configured: set {BASE_ENV} or `[mainline] base = \"http://<your-mainline-mirror>/mainline\"` in kernels.toml")]
    NoBase,
    /// No keyring is configured.
    #[error("no keyring to verify the mainline CHECKSUMS with: set {KEYRING_ENV} or `[mainline] keyring` in kernels.toml to a keyring holding the key Ubuntu's kernel team signs them with (kmatrix ships none)")]
    NoKeyring,
    /// A file could not be fetched.
    #[error("cannot fetch {url}: {reason}; check `[mainline] base` ({origin})")]
    Network {
        /// What was asked for.
        url: String,
        /// Where the base came from.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The release's directory has no `CHECKSUMS`.
    #[error("{url} has no CHECKSUMS for {arch} (neither in {arch}/ nor at its top): no such release at this base, or its {arch} build failed")]
    NoChecksums {
        /// The release's directory.
        url: String,
        /// The architecture.
        arch: Arch,
    },
    /// `CHECKSUMS` is unsigned or its signature does not verify.
    #[error("the CHECKSUMS at {url} could not be verified, so kmatrix uses none of it: {reason}. If the base is right, point {KEYRING_ENV} or `[mainline] keyring` at the keyring that signs it")]
    Unverified {
        /// The `CHECKSUMS`.
        url: String,
        /// Why.
        reason: String,
    },
    /// The verified `CHECKSUMS` names no usable kernel.
    #[error("the CHECKSUMS at {url}: {reason}")]
    NoKernel {
        /// The `CHECKSUMS`.
        url: String,
        /// Why.
        reason: String,
    },
    /// The verified `CHECKSUMS` lists nothing with a pinned sha256.
    #[error("the signed CHECKSUMS at {url} lists no file with the sha256 pinned for `{package}` ({pin}): the release was rebuilt or the pin is wrong; run `kmatrix kernels update --kernels {label}` to re-pin")]
    Repinned {
        /// The kernel's label.
        label: String,
        /// The pin's name.
        package: String,
        /// The pin.
        pin: String,
        /// The `CHECKSUMS`.
        url: String,
    },
}

/// The mainline builds as a matrix configures them.
pub struct Mainline {
    base: Option<String>,
    keyring: Option<PathBuf>,
    origin: String,
}

/// A release's verified `CHECKSUMS` and the directory its names are below.
struct Release {
    dir: String,
    url: String,
    checksums: Checksums,
}

impl Mainline {
    /// The builds `matrix` configures ([`BASE_ENV`] and [`KEYRING_ENV`]
    /// first).
    pub fn new(matrix: &Matrix) -> Self {
        let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let (base, origin) = match env(BASE_ENV) {
            Some(base) => (Some(base.to_string_lossy().into_owned()), BASE_ENV.into()),
            None => (
                matrix.mainline.base.clone(),
                matrix.path.display().to_string(),
            ),
        };
        Self {
            base: base.map(|b| b.trim_end_matches('/').to_owned()),
            keyring: env(KEYRING_ENV)
                .map(PathBuf::from)
                .or_else(|| matrix.mainline.keyring.clone()),
            origin,
        }
    }

    fn base(&self) -> Result<&str, MainlineError> {
        self.base.as_deref().ok_or(MainlineError::NoBase)
    }

    fn network(&self, url: &str) -> impl FnOnce(String) -> MainlineError {
        let (url, origin) = (url.to_owned(), self.origin.clone());
        move |reason| MainlineError::Network {
            url,
            origin,
            reason,
        }
    }

    /// Every release the base directory lists, ordered by version.
    pub async fn releases(
        &self,
        client: &reqwest::Client,
    ) -> Result<Vec<(Version, String)>, MainlineError> {
        let url = format!("{}/", self.base()?);
        let page = download(client, &url).await.map_err(self.network(&url))?;
        Ok(checksums::releases(&String::from_utf8_lossy(&page)))
    }

    /// `tag`'s `CHECKSUMS` for `arch`, verified: `<tag>/<arch>/CHECKSUMS`,
    /// else (older releases) `<tag>/CHECKSUMS`.
    async fn release(
        &self,
        client: &reqwest::Client,
        tag: &str,
        arch: Arch,
    ) -> Result<Release, MainlineError> {
        let top = format!("{}/{tag}", self.base()?);
        let keyring = self.keyring.clone().ok_or(MainlineError::NoKeyring)?;
        let origin = format!("the mainline keyring {}", keyring.display());
        let keyring = Keyring::at(keyring, origin);
        for dir in [format!("{top}/{arch}"), top.clone()] {
            let url = format!("{dir}/CHECKSUMS");
            let Some(text) = download_if_there(client, &url)
                .await
                .map_err(self.network(&url))?
            else {
                continue;
            };
            let signature_url = format!("{url}.gpg");
            let signature = download_if_there(client, &signature_url)
                .await
                .map_err(self.network(&signature_url))?
                .ok_or_else(|| MainlineError::Unverified {
                    url: url.clone(),
                    reason: "there is no CHECKSUMS.gpg beside it".into(),
                })?;
            let verified = keyring
                .verify_detached(&text, &signature)
                .map_err(|reason| MainlineError::Unverified {
                    url: url.clone(),
                    reason,
                })?;
            return Ok(Release {
                dir,
                url,
                checksums: Checksums::parse(&verified),
            });
        }
        Err(MainlineError::NoChecksums { url: top, arch })
    }
}

fn fail(entry: &KernelEntry) -> impl Fn(MainlineError) -> FetchError + '_ {
    |source| FetchError::Mainline {
        label: entry.label.clone(),
        source: Box::new(source),
    }
}

/// Every package `entry` pins, downloaded where not cached: the file the
/// verified `CHECKSUMS` lists with the pinned sha256.
pub async fn inputs(
    blobs: &Blobs,
    mainline: &Mainline,
    entry: &KernelEntry,
    tag: &str,
) -> Result<Vec<Input>, FetchError> {
    if entry.sha256.is_empty() {
        return Err(FetchError::Unpinned {
            label: entry.label.clone(),
            what: "its packages".into(),
        });
    }
    let pinned = pinned_tag(entry, tag);
    let tag = pinned.as_str();
    let mut release = None;
    let mut inputs = Vec::new();
    for (package, pin) in &entry.sha256 {
        if blobs.needs_download(&entry.label, package, pin)? {
            if release.is_none() {
                release = Some(
                    mainline
                        .release(blobs.client(), tag, entry.arch)
                        .await
                        .map_err(fail(entry))?,
                );
            }
            let release = release.as_ref().expect("set above");
            let pin_hex = hex::encode(pin);
            let file = release.checksums.by_digest(&pin_hex).ok_or_else(|| {
                fail(entry)(MainlineError::Repinned {
                    label: entry.label.clone(),
                    package: package.clone(),
                    pin: pin_hex.clone(),
                    url: release.url.clone(),
                })
            })?;
            let url = format!("{}/{}", release.dir, file.name);
            blobs
                .get_url(&entry.label, package, &url, pin, None)
                .await?;
        }
        inputs.push(Input::Deb(blobs.cache().blob(pin)));
    }
    Ok(inputs)
}

/// The release a `vX.Y.x` entry was pinned to, from its pinned packages'
/// names (`linux-image-unsigned-6.6.64-060664-generic`); `tag` itself for
/// an entry naming one release.
fn pinned_tag(entry: &KernelEntry, tag: &str) -> String {
    checksums::series(tag)
        .and_then(|_| {
            let version = entry
                .sha256
                .keys()
                .find_map(|name| Version::find_in(name))?;
            checksums::tag(&version.to_string()).ok()
        })
        .unwrap_or_else(|| tag.to_owned())
}

/// The pins of `tag`'s generic kernel (of a `vX.Y.x` series' newest
/// release) for `entry`'s architecture, from its
/// verified `CHECKSUMS`.
pub async fn newest(
    blobs: &Blobs,
    mainline: &Mainline,
    entry: &KernelEntry,
    tag: &str,
) -> Result<Pinning, FetchError> {
    let tag = match checksums::series(tag) {
        Some(series) => mainline
            .releases(blobs.client())
            .await
            .map_err(fail(entry))?
            .into_iter()
            .rev()
            .find(|(v, _)| v.series() == series.series())
            .map(|(_, tag)| tag)
            .ok_or_else(|| {
                fail(entry)(MainlineError::NoKernel {
                    url: format!("{}/", mainline.base().unwrap_or_default()),
                    reason: format!(
                        "the listing has no {}.{} release",
                        series.major, series.minor
                    ),
                })
            })?,
        None => tag.to_owned(),
    };
    let release = mainline
        .release(blobs.client(), &tag, entry.arch)
        .await
        .map_err(fail(entry))?;
    let kernel = release.checksums.kernel(entry.arch).map_err(|reason| {
        fail(entry)(MainlineError::NoKernel {
            url: release.url.clone(),
            reason,
        })
    })?;
    Ok(Pinning {
        label: entry.label.clone(),
        package: None,
        sha256: kernel
            .into_iter()
            .map(|f| (f.package().to_owned(), f.sha256.clone()))
            .collect(),
        missing: Vec::new(),
    })
}
