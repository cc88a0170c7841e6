//! An apt archive, Debian's or Ubuntu's: which mirror to use, and each
//! suite's package index, fetched and verified up to the archive's
//! signature.

use std::fmt;
use std::path::{Path, PathBuf};

use kmatrix_protocol::Arch;
use sha2::Digest as _;

use super::distro::{Distro, MirrorSetting};
use super::packages::PackageIndex;
use super::release::{self, Fetched, Keyring, Release};
use super::snapshot::SNAPSHOT_ENV;
use crate::kernels::bounded::{read_capped, MAX_INDEX};

/// The package index kmatrix reads for `arch`, below a suite's `dists/`
/// directory.
fn packages(arch: Arch) -> String {
    format!("main/binary-{arch}/Packages.xz")
}

/// A mirror of an apt archive and where its address came from (for
/// messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The archive it mirrors, and the setting that names it.
    pub setting: MirrorSetting,
    /// Base URL, e.g. `http://host/debian`, without a trailing slash.
    pub url: String,
    /// Where the URL was configured (boxed: every error carries a mirror).
    pub origin: Box<str>,
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.url, self.origin)
    }
}

/// Failures while talking to an apt archive.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    /// No mirror is configured anywhere.
    #[error("no {} mirror configured: set {} or {setting} in kernels.toml{}", .setting.archive(), .setting.env(), no_mirror_note(*.setting))]
    NoMirror {
        /// The setting that names none.
        setting: MirrorSetting,
    },
    /// The suite's index could not be fetched.
    #[error("cannot fetch the package index of `{suite}` from {mirror}; if this is not a {} mirror, set {} or {} in kernels.toml", .mirror.setting.archive(), .mirror.setting.env(), .mirror.setting)]
    Index {
        /// The suite.
        suite: String,
        /// The mirror.
        mirror: Mirror,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The suite's `InRelease` is missing its signature, or it does not
    /// verify: nothing from it is used.
    #[error("the index of `{suite}` at {mirror} could not be verified, so kmatrix uses none of it: {reason}. If the mirror is right, point {} at the keyring that signs it", .mirror.setting.distro.keyring_env())]
    Unverified {
        /// The suite.
        suite: String,
        /// The mirror.
        mirror: Mirror,
        /// Why.
        reason: String,
    },
    /// `Packages.xz` is not what the signed `InRelease` says it is.
    #[error("the mirror served a Packages.xz for `{suite}` that the archive did not sign ({actual}; the signed InRelease says {expected}): {mirror} is corrupt or tampered with, and nothing from it was used")]
    Tampered {
        /// The suite.
        suite: String,
        /// The mirror.
        mirror: Mirror,
        /// What InRelease says.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The package is not (or no longer) in the suite.
    #[error("package `{package}` is not in `{suite}` at {mirror}: {}", gone_advice(.mirror.setting.distro, .label))]
    Gone {
        /// The kernel's label.
        label: String,
        /// The package.
        package: String,
        /// The suite.
        suite: String,
        /// The mirror.
        mirror: Mirror,
    },
    /// The index has the package, but with another digest than the pin.
    #[error("`{package}` in `{suite}` now has sha256 {actual}, not the pinned {expected}: the package was rebuilt or the pin is wrong; run `kmatrix kernels update --kernels {label}` to re-pin")]
    Repinned {
        /// The kernel's label.
        label: String,
        /// The package.
        package: String,
        /// The suite.
        suite: String,
        /// The pin.
        expected: String,
        /// The index's digest.
        actual: String,
    },
}

/// What [`AptError::NoMirror`] adds: that the apt sources were searched,
/// or why Ubuntu's ports archive has a setting of its own.
fn no_mirror_note(setting: MirrorSetting) -> &'static str {
    if setting.distro.mirror_from_apt_sources() {
        " (no Debian source was found in the apt sources either)"
    } else if setting.ports {
        " (Ubuntu publishes the architectures other than amd64 on its ports archive, apart from its main one: name a mirror of the ports archive)"
    } else {
        ""
    }
}

/// What an `InRelease` that lists no index for `arch` suggests, if
/// anything: Ubuntu's main and ports archives each carry only their own
/// architectures.
fn missing_index_note(setting: MirrorSetting) -> String {
    match (setting.distro, setting.ports) {
        (Distro::Debian, _) => String::new(),
        (Distro::Ubuntu, true) => format!(" (is {setting} a mirror of Ubuntu's ports archive? Its main archive carries amd64 and i386 only)"),
        (Distro::Ubuntu, false) => format!(" (is {setting} a mirror of Ubuntu's main archive? Its ports archive carries no amd64)"),
    }
}

/// What to do about a pinned package the suite no longer lists.
fn gone_advice(distro: Distro, label: &str) -> String {
    let update = format!(
        "run `kmatrix kernels update --kernels {label}` to move the pin to the current package"
    );
    match distro {
        Distro::Debian => format!("Debian drops superseded kernels from its mirrors; {update}, or set {SNAPSHOT_ENV} to Debian's snapshot archive to keep using this one"),
        Distro::Ubuntu => format!("the suite no longer lists it (or it is in another pocket: `jammy`, `jammy-updates` and `jammy-security` are indexed apart); {update}"),
    }
}

impl Mirror {
    /// The mirror `setting` names: its environment variable, then
    /// `configured` (kernels.toml), then (Debian's) the first Debian source
    /// of the machine's apt configuration.
    pub fn resolve(
        setting: MirrorSetting,
        configured: Option<&str>,
        matrix: &Path,
    ) -> Result<Self, AptError> {
        let env = setting.env();
        if let Some(url) = std::env::var(env).ok().filter(|u| !u.is_empty()) {
            return Ok(Self::new(setting, url, env.to_owned()));
        }
        if let Some(url) = configured {
            return Ok(Self::new(
                setting,
                url.to_owned(),
                matrix.display().to_string(),
            ));
        }
        setting
            .distro
            .mirror_from_apt_sources()
            .then(|| apt_mirror(setting))
            .flatten()
            .ok_or(AptError::NoMirror { setting })
    }

    /// The mirror `setting` names at `url`, configured by `origin`.
    pub fn new(setting: MirrorSetting, url: String, origin: String) -> Self {
        Self {
            setting,
            url: url.trim_end_matches('/').to_owned(),
            origin: origin.into(),
        }
    }

    fn index_url(&self, suite: &str, arch: Arch) -> String {
        format!("{}/dists/{suite}/{}", self.url, packages(arch))
    }

    /// The URL of a file named by an index's `Filename` field.
    pub fn file_url(&self, filename: &str) -> String {
        format!("{}/{filename}", self.url)
    }

    /// Downloads the suite's package index for `arch`, verified up to the archive's
    /// signature: `InRelease` checked with the keyring, `Packages.xz`
    /// checked against the digest and size `InRelease` gives.
    pub async fn index(
        &self,
        client: &reqwest::Client,
        suite: &str,
        arch: Arch,
    ) -> Result<PackageIndex, AptError> {
        let index = packages(arch);
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| AptError::Index {
            suite: suite.to_owned(),
            mirror: self.clone(),
            source,
        };
        let unverified = |reason: String| AptError::Unverified {
            suite: suite.to_owned(),
            mirror: self.clone(),
            reason,
        };
        let keyring = Keyring::resolve(self.setting.distro)
            .map_err(|e| unverified(format!("no keyring: {e}")))?;
        let text = release::signed_text(client, &format!("{}/dists/{suite}", self.url), &keyring)
            .await
            .map_err(|e| match e {
                Fetched::Network(e) => fail(e.into()),
                Fetched::Unverified(e) => unverified(e),
            })?;
        let release = Release::parse(&text);
        let (digest, size) = release.get(&index).ok_or_else(|| {
            unverified(format!(
                "the signed InRelease lists no {index}{}",
                missing_index_note(self.setting)
            ))
        })?;
        let compressed = release::download(client, &self.index_url(suite, arch))
            .await
            .map_err(|e| fail(e.into()))?;
        let actual = hex::encode(sha2::Sha256::digest(&compressed));
        if actual != digest || compressed.len() as u64 != size {
            return Err(AptError::Tampered {
                suite: suite.to_owned(),
                mirror: self.clone(),
                expected: format!("sha256 {digest}, {size} bytes"),
                actual: format!("sha256 {actual}, {} bytes", compressed.len()),
            });
        }
        let text = tokio::task::spawn_blocking(move || {
            let bytes = read_capped(
                xz2::read::XzDecoder::new(&compressed[..]),
                MAX_INDEX,
                "the decompressed index",
            )?;
            String::from_utf8(bytes).map_err(std::io::Error::other)
        })
        .await
        .expect("index decompression does not panic")
        .map_err(|e| fail(format!("{index}: {e}").into()))?;
        Ok(PackageIndex::parse(&text))
    }
}

/// The Debian mirror in the machine's apt sources, if any.
fn apt_mirror(setting: MirrorSetting) -> Option<Mirror> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
        .collect();
    files.sort();
    files.insert(0, PathBuf::from("/etc/apt/sources.list"));
    files.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        let url = if path.extension().is_some_and(|e| e == "sources") {
            deb822_mirror(&text)
        } else {
            one_line_mirror(&text)
        }?;
        Some(Mirror::new(setting, url, path.display().to_string()))
    })
}

/// A suite name that carries Debian's main archive (not security updates).
fn is_main_suite(suite: &str) -> bool {
    !suite.contains("security")
}

/// The first `deb` source of a deb822 `.sources` file with a main suite.
fn deb822_mirror(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
            })
        };
        let deb = field("Types")?.split_whitespace().any(|t| t == "deb");
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let main = field("Suites")?.split_whitespace().any(is_main_suite);
        (deb && enabled && main)
            .then(|| field("URIs")?.split_whitespace().next().map(str::to_owned))?
    })
}

/// The first `deb` line of a one-line-style `sources.list` with a main suite.
fn one_line_mirror(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut words = words.skip_while(|w| w.starts_with('['));
        let url = words.next()?;
        is_main_suite(words.next()?).then(|| url.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\nURIs: http://a/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb-src deb\nURIs: http://b/debian\nSuites: bookworm bookworm-updates\n";
        assert_eq!(deb822_mirror(deb822).as_deref(), Some("http://b/debian"));
        let list = "# comment\ndeb [arch=amd64] http://c/debian bookworm main\n";
        assert_eq!(one_line_mirror(list).as_deref(), Some("http://c/debian"));
        assert_eq!(
            one_line_mirror("deb http://s/ bookworm-security main"),
            None
        );
    }

    #[test]
    fn errors_name_the_archive_and_its_settings() {
        let none = |arch| {
            AptError::NoMirror {
                setting: Distro::Ubuntu.mirror_for(arch),
            }
            .to_string()
        };
        assert_eq!(none(Arch::Amd64), "no Ubuntu mirror configured: set KMATRIX_UBUNTU_MIRROR or `[ubuntu] mirror` in kernels.toml");
        let ports = none(Arch::Arm64);
        assert!(
            ports.starts_with("no Ubuntu ports mirror configured: set KMATRIX_UBUNTU_PORTS_MIRROR or `[ubuntu] ports_mirror` in kernels.toml (Ubuntu publishes"),
            "{ports}"
        );
        assert_eq!(
            Distro::Debian.mirror_for(Arch::Arm64),
            Distro::Debian.mirror_for(Arch::Amd64),
            "Debian's one mirror carries every architecture"
        );
        let gone = |distro| {
            AptError::Gone {
                label: "5.15".into(),
                package: "linux-modules-5.15.0-91-generic".into(),
                suite: "jammy-updates".into(),
                mirror: Mirror::new(
                    Distro::mirror_for(distro, Arch::Amd64),
                    "http://u/ubuntu/".into(),
                    "kernels.toml".into(),
                ),
            }
            .to_string()
        };
        let ubuntu = gone(Distro::Ubuntu);
        assert!(
            ubuntu.contains("at http://u/ubuntu (from kernels.toml)")
                && ubuntu.contains("kmatrix kernels update --kernels 5.15")
                && !ubuntu.contains("snapshot"),
            "{ubuntu}"
        );
        assert!(gone(Distro::Debian).contains(SNAPSHOT_ENV));
        let unverified = AptError::Unverified {
            suite: "jammy".into(),
            mirror: Mirror::new(
                Distro::Ubuntu.mirror_for(Arch::Arm64),
                "http://u/ubuntu-ports".into(),
                "x".into(),
            ),
            reason: "bad".into(),
        }
        .to_string();
        assert!(
            unverified.contains("point KMATRIX_UBUNTU_KEYRING at"),
            "{unverified}"
        );
    }
}
