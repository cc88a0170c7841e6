//! One `[[kernel]]` entry of a matrix: where the kernel comes from
//! ([`Source`]), as kernels.toml gives it and as checked, with its version
//! and label found from the source when the entry gives none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmatrix_protocol::Arch;
use serde::Deserialize;

use super::Version;

/// One kernel of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEntry {
    /// The name reports and `--kernels` use, e.g. `6.1`.
    pub label: String,
    /// The kernel's version.
    pub version: Version,
    /// The architecture it runs on.
    pub arch: Arch,
    /// Where the kernel comes from.
    pub source: Source,
    /// sha256 pins, by package (or artifact) name.
    pub sha256: BTreeMap<String, [u8; 32]>,
}

impl KernelEntry {
    /// Whether the entry pins its artifacts, as runs need (a `path` source
    /// needs no pin).
    pub fn is_pinned(&self) -> bool {
        !self.sha256.is_empty() || matches!(self.source, Source::Path { .. })
    }
}

/// Where a kernel comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Debian kernel package.
    Debian {
        /// The suite, e.g. `bookworm` or `trixie-backports`.
        suite: String,
        /// The `linux-image-*` package.
        package: String,
    },
    /// An Ubuntu kernel: its image package and the modules package it
    /// depends on.
    Ubuntu {
        /// The suite (with its pocket), e.g. `jammy-updates`.
        suite: String,
        /// The `linux-image-*` or `linux-image-unsigned-*` package.
        package: String,
    },
    /// One build of a Debian kernel, from Debian's snapshot archive (which
    /// keeps every build): `debian = { suite, build }` in kernels.toml.
    DebianSnapshot {
        /// The suite it was published in, e.g. `bookworm`.
        suite: String,
        /// The kernel's ABI name, e.g. `6.1.0-20`.
        build: String,
        /// The image package: `linux-image-<build>-<flavour>-<arch>`.
        package: String,
    },
    /// An OCI image holding `/boot/vmlinuz` and `/lib/modules` (the
    /// cilium/ci-kernels layout), pinned by its image manifest's digest.
    Oci {
        /// `registry/repository:tag` or `registry/repository@sha256:…`.
        reference: String,
    },
    /// An RPM distribution's kernel package (and its modules package),
    /// from a repository with createrepo metadata.
    Rpm {
        /// The repository's base URL (the directory holding `repodata/`).
        repo: String,
        /// The package's `name-version-release`, e.g.
        /// `kernel-core-5.14.0-570.el9`.
        package: String,
        /// The keyring that signs the packages (and `repomd.xml`, where the
        /// repository signs it).
        keyring: Option<PathBuf>,
    },
    /// One upstream release of Ubuntu's mainline builds, by its directory
    /// (`v6.6.64`), pinned by the sha256 of its packages.
    Mainline {
        /// The release's directory name, `v` included.
        tag: String,
    },
    /// A kernel image, and optionally a tarball of its modules, over HTTP(S).
    Url {
        /// The image's URL.
        image: String,
        /// The modules tarball's URL (`lib/modules/<release>/…` inside).
        modules: Option<String>,
    },
    /// A kernel on disk, used in place.
    Path {
        /// The image (e.g. `arch/x86/boot/bzImage`).
        image: PathBuf,
        /// A directory holding the modules (searched recursively).
        modules: Option<PathBuf>,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Debian { suite, package } => write!(f, "debian:{suite}/{package}"),
            Source::Ubuntu { suite, package } => write!(f, "ubuntu:{suite}/{package}"),
            Source::DebianSnapshot { suite, package, .. } => {
                write!(f, "debian-snapshot:{suite}/{package}")
            }
            Source::Oci { reference } => write!(f, "oci:{reference}"),
            Source::Rpm { repo, package, .. } => write!(f, "rpm:{package} ({repo})"),
            Source::Mainline { tag } => write!(f, "mainline:{tag}"),
            Source::Url { image, .. } => write!(f, "url:{image}"),
            Source::Path { image, .. } => write!(f, "path:{}", image.display()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKernel {
    label: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    debian: Option<RawAptSource>,
    ubuntu: Option<RawAptSource>,
    rpm: Option<RawRpmSource>,
    oci: Option<String>,
    mainline: Option<String>,
    url: Option<RawFiles<String>>,
    path: Option<RawFiles<PathBuf>>,
    #[serde(default)]
    sha256: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles<T> {
    image: T,
    modules: Option<T>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRpmSource {
    repo: String,
    package: String,
    keyring: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAptSource {
    suite: String,
    package: Option<String>,
    build: Option<String>,
    flavour: Option<String>,
}

pub(super) fn check_entry(
    raw: RawKernel,
    index: usize,
    dir: &Path,
) -> Result<KernelEntry, (String, String)> {
    let provisional = raw
        .label
        .clone()
        .unwrap_or_else(|| format!("#{}", index + 1));
    let fail = |message: String| (provisional.clone(), message);
    let sources = [
        raw.debian.is_some(),
        raw.ubuntu.is_some(),
        raw.rpm.is_some(),
        raw.oci.is_some(),
        raw.mainline.is_some(),
        raw.url.is_some(),
        raw.path.is_some(),
    ];
    let source = match (
        raw.debian,
        raw.ubuntu,
        raw.rpm,
        raw.oci,
        raw.mainline,
        raw.url,
        raw.path,
    ) {
        _ if sources.iter().filter(|s| **s).count() > 1 => {
            return Err(fail(
                "give one source: `debian`, `ubuntu`, `rpm`, `oci`, `mainline`, `url` or `path`"
                    .into(),
            ))
        }
        (Some(debian), ..) => debian_source(debian, raw.arch.as_deref()).map_err(fail)?,
        (_, Some(ubuntu), ..) => Source::Ubuntu {
            package: match (ubuntu.package, ubuntu.build, ubuntu.flavour) {
                (Some(package), None, None) => package,
                _ => {
                    return Err(fail(
                        "an `ubuntu` entry names its `suite` and `package` (no `build` or `flavour`: those are for Debian's snapshot archive)".into(),
                    ))
                }
            },
            suite: ubuntu.suite,
        },
        (_, _, Some(rpm), ..) => Source::Rpm {
            repo: rpm.repo.trim_end_matches('/').to_owned(),
            package: rpm.package,
            keyring: rpm.keyring.map(|k| dir.join(k)),
        },
        (_, _, _, Some(reference), ..) => Source::Oci { reference },
        (_, _, _, _, Some(release), ..) => Source::Mainline {
            tag: super::source::checksums::tag(&release).map_err(fail)?,
        },
        (_, _, _, _, _, Some(url), _) => Source::Url {
            image: url.image,
            modules: url.modules,
        },
        (.., Some(path)) => Source::Path {
            image: dir.join(path.image),
            modules: path.modules.map(|m| dir.join(m)),
        },
        (None, None, None, None, None, None, None) => {
            return Err(fail(
                "no source: add `debian = { suite = \"…\", package = \"linux-image-…\" }`, `ubuntu = { … }` (the same keys), `rpm = { repo = \"…\", package = \"kernel-core-…\", keyring = \"…\" }`, `oci = \"…\"`, `mainline = \"6.6.64\"`, `url = { image = \"…\" }` or `path = { image = \"…\" }`".into(),
            ))
        }
    };
    if let Source::Ubuntu { package, .. } = &source {
        if !package.starts_with("linux-image-") {
            return Err(fail(format!(
                "`{package}` is not an Ubuntu kernel image package: name the `linux-image-<release>` (or `linux-image-unsigned-<release>`) package, whose Depends name its modules"
            )));
        }
    }
    let version = match &raw.version {
        Some(text) => text.parse().map_err(fail)?,
        None => source_version(&source).ok_or_else(|| {
            fail(format!(
                "cannot tell the kernel version from `{source}`: add `version = \"MAJOR.MINOR[.PATCH]\"`"
            ))
        })?,
    };
    let arch = match &raw.arch {
        Some(text) => text.parse().map_err(fail)?,
        None => Arch::Amd64,
    };
    if let Source::Debian { package, .. } = &source {
        if let Some(other) = Arch::ALL
            .into_iter()
            .find(|a| *a != arch && package.ends_with(&format!("-{a}")))
        {
            return Err(fail(format!(
                "`{package}` is an {other} kernel but the entry's architecture is {arch}: add `arch = \"{other}\"`"
            )));
        }
    }
    let label = raw.label.unwrap_or_else(|| default_label(&version, arch));
    let fail = |message: String| (label.clone(), message);
    let mut sha256 = BTreeMap::new();
    for (name, digest) in raw.sha256 {
        let mut bytes = [0u8; 32];
        let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
        hex::decode_to_slice(hex, &mut bytes).map_err(|_| {
            fail(format!(
                "the sha256 pin of `{name}` is `{digest}`, not 64 hex digits"
            ))
        })?;
        sha256.insert(name, bytes);
    }
    Ok(KernelEntry {
        label,
        version,
        arch,
        source,
        sha256,
    })
}

/// A `debian` entry: a package of the mirror's suite (`package`), or one
/// build from the snapshot archive (`build`, with an optional `flavour`).
fn debian_source(raw: RawAptSource, arch: Option<&str>) -> Result<Source, String> {
    match (raw.package, raw.build) {
        (Some(package), None) if raw.flavour.is_none() => Ok(Source::Debian {
            suite: raw.suite,
            package,
        }),
        (None, Some(build)) => {
            if !build.starts_with(|c: char| c.is_ascii_digit())
                || Version::find_in(&build).is_none()
                || build.contains(|c: char| c.is_whitespace() || c == '/')
            {
                return Err(format!(
                    "`{build}` is not a Debian kernel build: give its ABI name as the package names it, e.g. `6.1.0-20` (from `linux-image-6.1.0-20-cloud-amd64`)"
                ));
            }
            let arch: Arch = arch.unwrap_or("amd64").parse()?;
            let flavour = raw.flavour.as_deref().unwrap_or("cloud");
            Ok(Source::DebianSnapshot {
                package: super::source::names::image_package(&build, flavour, arch),
                suite: raw.suite,
                build,
            })
        }
        _ => Err("a `debian` entry names `package` (a package of the mirror's suite) or `build` (one build from the snapshot archive, with an optional `flavour`), not both".into()),
    }
}

/// The label of an entry that gives none: `MAJOR.MINOR`, with `-arm64`
/// for arm64 kernels.
pub fn default_label(version: &Version, arch: Arch) -> String {
    match arch {
        Arch::Amd64 => format!("{}.{}", version.major, version.minor),
        other => format!("{}.{}-{other}", version.major, version.minor),
    }
}

/// The version a source names: in a Debian package name, an OCI tag, a
/// URL's file name, or (for a file on disk) the image's own header.
fn source_version(source: &Source) -> Option<Version> {
    match source {
        Source::Debian { package, .. } | Source::Ubuntu { package, .. } => {
            Version::find_in(package)
        }
        Source::DebianSnapshot { build, .. } => Version::find_in(build),
        Source::Oci { reference } => {
            super::source::names::tag_version(reference.split('@').next()?.rsplit_once(':')?.1)
        }
        Source::Mainline { tag } => Version::find_in(tag),
        Source::Url { image, .. } => Version::find_in(image.rsplit('/').next()?),
        Source::Rpm { package, .. } => nvr_version(package),
        Source::Path { image, .. } => {
            let bytes = std::fs::read(image).ok()?;
            Version::find_in(&super::bzimage::version_string(&bytes)?)
        }
    }
}

/// The upstream version in an RPM package's `name-version-release`
/// (`5.14.0` in `kernel-core-5.14.0-570.el9`).
pub fn nvr_version(package: &str) -> Option<Version> {
    let mut fields = package.rsplitn(3, '-');
    let (_release, version) = (fields.next()?, fields.next()?);
    fields.next()?;
    Version::find_in(version)
}
