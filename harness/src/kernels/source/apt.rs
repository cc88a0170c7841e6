//! Debian's archive: which mirror to use, the suites' package indexes, and
//! which `.deb` files make up a kernel.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::release::{self, Fetched, Keyring, Release};
use crate::kernels::bounded::{read_capped, MAX_INDEX};

/// The package index kmatrix reads, below a suite's `dists/` directory.
const PACKAGES: &str = "main/binary-amd64/Packages.xz";
use super::release::KEYRING_ENV;
use super::snapshot::SNAPSHOT_ENV;
use crate::kernels::{Version, MIRROR_ENV};

/// A Debian mirror and where its address came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// Base URL, e.g. `http://host/debian`, without a trailing slash.
    pub url: String,
    /// Where the URL was configured.
    pub origin: String,
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.url, self.origin)
    }
}

/// Failures while talking to the Debian archive.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// No mirror is configured anywhere.
    #[error("no Debian mirror configured: set {MIRROR_ENV} or `[debian] mirror` in kernels.toml (no Debian source was found in the apt sources either)")]
    NoMirror,
    /// The suite's index could not be fetched.
    #[error("cannot fetch the package index of `{suite}` from {mirror}; if this is not a Debian mirror, set {MIRROR_ENV} or `[debian] mirror` in kernels.toml")]
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
    #[error("the index of `{suite}` at {mirror} could not be verified, so kmatrix uses none of it: {reason}. If the mirror is right, point {KEYRING_ENV} at the keyring that signs it")]
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
    #[error("package `{package}` is not in `{suite}` at {mirror}: Debian drops superseded kernels from its mirrors; run `kmatrix kernels update --kernels {label}` to move the pin to the current package, or set {SNAPSHOT_ENV} to Debian's snapshot archive to keep using this one")]
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

impl Mirror {
    /// The mirror to use: [`MIRROR_ENV`], then `configured` (kernels.toml),
    /// then the first Debian source of the machine's apt configuration.
    pub fn resolve(configured: Option<&str>, matrix: &Path) -> Result<Self, DebianError> {
        if let Some(url) = std::env::var(MIRROR_ENV).ok().filter(|u| !u.is_empty()) {
            return Ok(Self::new(url, MIRROR_ENV.to_owned()));
        }
        if let Some(url) = configured {
            return Ok(Self::new(url.to_owned(), matrix.display().to_string()));
        }
        apt_mirror().ok_or(DebianError::NoMirror)
    }

    fn new(url: String, origin: String) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            origin,
        }
    }

    fn index_url(&self, suite: &str) -> String {
        format!("{}/dists/{suite}/{PACKAGES}", self.url)
    }

    /// The URL of a file named by an index's `Filename` field.
    pub fn file_url(&self, filename: &str) -> String {
        format!("{}/{filename}", self.url)
    }

    /// Downloads the suite's package index, verified up to the archive's
    /// signature: `InRelease` checked with the keyring, `Packages.xz`
    /// checked against the digest and size `InRelease` gives.
    pub async fn index(
        &self,
        client: &reqwest::Client,
        suite: &str,
    ) -> Result<PackageIndex, DebianError> {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| DebianError::Index {
            suite: suite.to_owned(),
            mirror: self.clone(),
            source,
        };
        let unverified = |reason: String| DebianError::Unverified {
            suite: suite.to_owned(),
            mirror: self.clone(),
            reason,
        };
        let keyring = Keyring::resolve().map_err(|e| unverified(format!("no keyring: {e}")))?;
        let text = release::signed_text(client, &format!("{}/dists/{suite}", self.url), &keyring)
            .await
            .map_err(|e| match e {
                Fetched::Network(e) => fail(e.into()),
                Fetched::Unverified(e) => unverified(e),
            })?;
        let release = Release::parse(&text);
        let (digest, size) = release
            .get(PACKAGES)
            .ok_or_else(|| unverified(format!("the signed InRelease lists no {PACKAGES}")))?;
        let compressed = release::download(client, &self.index_url(suite))
            .await
            .map_err(|e| fail(e.into()))?;
        let actual = hex::encode(sha2::Sha256::digest(&compressed));
        if actual != digest || compressed.len() as u64 != size {
            return Err(DebianError::Tampered {
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
        .map_err(|e| fail(format!("{PACKAGES}: {e}").into()))?;
        Ok(PackageIndex::parse(&text))
    }
}

/// The Debian mirror in the machine's apt sources, if any.
fn apt_mirror() -> Option<Mirror> {
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
        Some(Mirror::new(url, path.display().to_string()))
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

/// One package of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Path of the `.deb` below the mirror.
    pub filename: String,
    /// Its sha256, as hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The names in its `Depends` field (alternatives and versions dropped).
    pub depends: Vec<String>,
}

/// A suite's `Packages` index, by package name.
#[derive(Debug, Default)]
pub struct PackageIndex {
    packages: HashMap<String, Package>,
}

impl PackageIndex {
    /// Parses the text of a `Packages` file.
    pub fn parse(text: &str) -> Self {
        let mut packages = HashMap::new();
        for stanza in text.split("\n\n") {
            let mut name = None;
            let mut package = Package {
                filename: String::new(),
                sha256: String::new(),
                size: 0,
                depends: Vec::new(),
            };
            for line in stanza.lines() {
                let Some((key, value)) = line.split_once(": ") else {
                    continue;
                };
                match key {
                    "Package" => name = Some(value.to_owned()),
                    "Filename" => package.filename = value.to_owned(),
                    "SHA256" => package.sha256 = value.to_owned(),
                    "Size" => package.size = value.parse().unwrap_or(0),
                    "Depends" => {
                        package.depends = value
                            .split(',')
                            .filter_map(|dep| dep.split(['|', '(']).next())
                            .map(|dep| dep.trim().to_owned())
                            .collect()
                    }
                    _ => {}
                }
            }
            if let Some(name) = name {
                packages.insert(name, package);
            }
        }
        Self { packages }
    }

    /// Looks a package up by name.
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }

    /// The packages a kernel is made of: the image package itself, or, for a
    /// split kernel (Debian 6.19 on), the packages its metapackage depends on
    /// that carry the same version and flavour (`linux-binary-…`,
    /// `linux-modules-…`, `linux-base-…`).
    pub fn kernel_packages(&self, image: &str) -> Option<Vec<(String, &Package)>> {
        let package = self.get(image)?;
        let suffix = image.strip_prefix("linux-image-").unwrap_or(image);
        let parts: Vec<_> = package
            .depends
            .iter()
            .filter(|dep| dep.starts_with("linux-") && dep.ends_with(suffix) && *dep != image)
            .filter_map(|dep| Some((dep.clone(), self.get(dep)?)))
            .collect();
        if parts.is_empty() {
            Some(vec![(image.to_owned(), package)])
        } else {
            Some(parts)
        }
    }

    /// The newest `linux-image-<version>-<flavour>` in the index for the
    /// series of `like` (same flavour suffix), by Debian version order of the
    /// package names' numbers.
    pub fn newest_like(&self, like: &str) -> Option<&str> {
        let series = Version::find_in(like)?.series();
        let wanted = flavour(like);
        self.packages
            .keys()
            .filter(|name| name.starts_with("linux-image-") && flavour(name) == wanted)
            .filter(|name| Version::find_in(name).is_some_and(|v| v.series() == series))
            .filter(|name| !name.ends_with("-dbg"))
            .max_by_key(|name| numbers(name))
            .map(String::as_str)
    }
}

/// The part of a kernel package name after its version and ABI, e.g.
/// `cloud-amd64` or `cloud-amd64-unsigned`.
fn flavour(name: &str) -> &str {
    let rest = name.strip_prefix("linux-image-").unwrap_or(name);
    match rest.find(|c: char| c.is_ascii_alphabetic()) {
        Some(start) => {
            let rest = &rest[start..];
            // `+deb13-cloud-amd64`: skip the distribution tag.
            match rest.strip_prefix("deb") {
                Some(tagged) => tagged.split_once('-').map_or(tagged, |(_, f)| f),
                None => rest,
            }
        }
        None => "",
    }
}

/// The numbers in a package name, for ordering versions.
fn numbers(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: linux-image-7.3.4+deb13-cloud-amd64
Version: 7.3.4-1~bpo13+1
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1)
Filename: pool/main/l/linux-signed-amd64/linux-image-7.3.4+deb13-cloud-amd64_7.3.4-1~bpo13+1_amd64.deb
Size: 1928
SHA256: 4545cda1cab2f7e975e9b3ad1744b4a360092a85a793156bf48f1bdf02906cc9

Package: linux-binary-7.3.4+deb13-cloud-amd64
Filename: pool/b.deb
Size: 13604064
SHA256: bb

Package: linux-modules-7.3.4+deb13-cloud-amd64
Filename: pool/m.deb
SHA256: mm

Package: linux-base-7.3.4+deb13-cloud-amd64
Filename: pool/base.deb
SHA256: 00

Package: linux-image-7.3.10+deb13-cloud-amd64
Depends: linux-base (>= 4.3~), initramfs-tools
Filename: pool/i.deb
SHA256: ii

Package: linux-image-6.1.0-50-cloud-amd64
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-cloud-amd64_6.1.158-1_amd64.deb
Size: 25000000
SHA256: 61

Package: linux-image-6.1.0-9-cloud-amd64
Filename: pool/old.deb
SHA256: 69

Package: linux-image-6.1.0-50-cloud-amd64-unsigned
Filename: pool/u.deb
SHA256: 6u
";

    #[test]
    fn a_whole_kernel_is_one_package() {
        let index = PackageIndex::parse(INDEX);
        let parts = index
            .kernel_packages("linux-image-6.1.0-50-cloud-amd64")
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, "linux-image-6.1.0-50-cloud-amd64");
        assert_eq!(parts[0].1.size, 25_000_000);
        assert!(parts[0].1.filename.ends_with("6.1.158-1_amd64.deb"));
    }

    #[test]
    fn a_split_kernel_follows_its_depends() {
        let index = PackageIndex::parse(INDEX);
        let parts = index
            .kernel_packages("linux-image-7.3.4+deb13-cloud-amd64")
            .unwrap();
        let names: Vec<_> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-base-7.3.4+deb13-cloud-amd64",
                "linux-binary-7.3.4+deb13-cloud-amd64",
                "linux-modules-7.3.4+deb13-cloud-amd64"
            ]
        );
        assert_eq!(parts[1].1.sha256, "bb");
        assert!(index
            .kernel_packages("linux-image-9.9.9-cloud-amd64")
            .is_none());
    }

    #[test]
    fn newest_package_of_a_series_and_flavour() {
        let index = PackageIndex::parse(INDEX);
        assert_eq!(
            index.newest_like("linux-image-6.1.0-9-cloud-amd64"),
            Some("linux-image-6.1.0-50-cloud-amd64")
        );
        assert_eq!(
            index.newest_like("linux-image-7.3.4+deb13-cloud-amd64"),
            Some("linux-image-7.3.10+deb13-cloud-amd64")
        );
    }

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
}
