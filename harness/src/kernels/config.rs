//! `kernels.toml`: the kernel matrix as the user writes it.
//!
//! ```toml
//! [debian]
//! mirror = "http://mirror.example/debian"   # optional, see `Mirror`
//!
//! [[kernel]]
//! label = "6.1"                              # optional: MAJOR.MINOR by default
//! debian = { suite = "bookworm", package = "linux-image-6.1.0-50-cloud-amd64" }
//! sha256 = { "linux-image-6.1.0-50-cloud-amd64" = "<64 hex digits>" }
//!
//! [[kernel]]
//! arch = "arm64"                             # optional: amd64 by default
//! debian = { suite = "bookworm", package = "linux-image-6.1.0-50-cloud-arm64" }
//! sha256 = { … }                             # label: `6.1-arm64`
//! ```
//!
//! `sha256` pins every `.deb` the kernel is made of: one package for most
//! kernels, and the binary, modules and base packages that a split kernel's
//! `linux-image` metapackage depends on.
//!
//! Other sources:
//!
//! ```toml
//! [ubuntu]
//! mirror = "http://mirror.example/ubuntu"   # required for `ubuntu` entries
//!
//! [[kernel]]                                  # Ubuntu's archive: the image and
//! ubuntu = { suite = "jammy-updates", package = "linux-image-5.15.0-91-generic" }
//! sha256 = { … }                              # the linux-modules it depends on
//!
//! [[kernel]]                                  # an OCI image (cilium/ci-kernels layout)
//! oci = "<registry>/cilium/ci-kernels:6.6"
//! sha256 = { manifest = "<the image manifest's digest>" }
//!
//! [[kernel]]                                  # an OCI image (little-vm-helper layout)
//! label = "bpf-next"                          # a tag not starting with its version
//! version = "6.17"                            # names neither
//! oci = "<registry>/<lvh-images>/kernel-images:bpf-next-20250101.012345"
//! sha256 = { manifest = "<the image manifest's digest>" }
//!
//! [[kernel]]                                  # files over HTTP(S)
//! version = "6.1.158"
//! url = { image = "https://…/vmlinuz", modules = "https://…/modules.tar.gz" }
//! sha256 = { image = "<64 hex>", modules = "<64 hex>" }
//!
//! [[kernel]]                                  # an RPM distribution's kernel
//! rpm = { repo = "https://mirror.example/9-stream/BaseOS/x86_64/os", package = "kernel-core-5.14.0-570.el9", keyring = "RPM-GPG-KEY-centosofficial" }
//! sha256 = { "kernel-core-5.14.0-570.el9.x86_64" = "<64 hex>", "kernel-modules-core-5.14.0-570.el9.x86_64" = "<64 hex>" }
//!
//! [mainline]                                  # Ubuntu's mainline builds
//! base = "http://<your-mainline-mirror>/mainline"
//! keyring = "kernel-ppa.gpg"                  # signs each release's CHECKSUMS
//!
//! [[kernel]]                                  # one upstream release of them
//! mainline = "6.6.64"
//! sha256 = { "linux-image-unsigned-6.6.64-060664-generic" = "<64 hex>", … }
//!
//! [[kernel]]                                  # one Debian build, from the snapshot
//! debian = { suite = "bookworm", build = "6.1.0-20" }   # archive (`flavour`:
//! sha256 = { … }                              # "cloud" by default)
//!
//! [[kernel]]                                  # a kernel on disk; no pin
//! path = { image = "../linux/arch/x86/boot/bzImage", modules = "../linux/mods" }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use kmatrix_protocol::Arch;

use super::source::distro::Distro;
use super::Version;
use crate::toml_file::{self, SyntaxError};

/// The parsed and checked kernel matrix.
#[derive(Clone, Debug)]
pub struct Matrix {
    /// Where it was read from ([`BUILT_IN_NAME`] for the built-in one).
    pub path: PathBuf,
    /// Whether it is the built-in matrix (no file to update).
    pub built_in: bool,
    /// The Debian mirror named in the file, if any.
    pub debian_mirror: Option<String>,
    /// The Ubuntu mirror named in the file, if any.
    pub ubuntu_mirror: Option<String>,
    /// The kernels, in file order.
    pub kernels: Vec<KernelEntry>,
    /// `[mainline]`: where Ubuntu's mainline builds are, and their keyring.
    pub mainline: MainlineConfig,
}

/// `[mainline]` as kernels.toml gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MainlineConfig {
    /// The directory holding the `vX.Y.Z/` directories.
    pub base: Option<String>,
    /// The keyring that signs their `CHECKSUMS` (relative to the file).
    pub keyring: Option<PathBuf>,
}

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

/// A `kernels.toml` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The file could not be read.
    #[error("cannot read the kernel matrix {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// An entry is well-formed but unusable.
    #[error("{}: kernel `{label}`: {message}", path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// The entry's label (or its position when it has none).
        label: String,
        /// What is wrong and what to do.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    #[serde(default)]
    debian: RawArchive,
    #[serde(default)]
    ubuntu: RawArchive,
    #[serde(default)]
    kernel: Vec<RawKernel>,
    #[serde(default)]
    mainline: RawMainline,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMainline {
    base: Option<String>,
    keyring: Option<PathBuf>,
}

/// An apt archive's table (`[debian]`, `[ubuntu]`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    mirror: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
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

/// The shipped kernels.toml, built in: used when no file is found, and
/// what `kmatrix init` writes out.
pub const BUILT_IN: &str = include_str!("../../../kernels.toml");

/// What the built-in matrix is called in messages.
pub const BUILT_IN_NAME: &str = "the built-in kernels.toml";

impl Matrix {
    /// The built-in matrix.
    pub fn built_in() -> Result<Self, MatrixError> {
        let mut matrix = Self::parse(BUILT_IN, Path::new(BUILT_IN_NAME))?;
        matrix.built_in = true;
        Ok(matrix)
    }

    /// The mirror of `distro`'s archive the file names, if any.
    pub fn mirror(&self, distro: Distro) -> Option<&str> {
        match distro {
            Distro::Debian => self.debian_mirror.as_deref(),
            Distro::Ubuntu => self.ubuntu_mirror.as_deref(),
        }
    }

    /// Reads and checks the matrix at `path`.
    pub fn load(path: &Path) -> Result<Self, MatrixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks matrix text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, MatrixError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let raw: RawMatrix = toml_file::parse(text, path)?;
        let mut labels = HashSet::new();
        let mut kernels = Vec::with_capacity(raw.kernel.len());
        for (index, kernel) in raw.kernel.into_iter().enumerate() {
            let entry =
                check_entry(kernel, index, dir).map_err(|(label, message)| MatrixError::Entry {
                    path: path.to_owned(),
                    label,
                    message,
                })?;
            if !labels.insert(entry.label.clone()) {
                return Err(MatrixError::Entry {
                    path: path.to_owned(),
                    label: entry.label,
                    message: "the label is used twice; labels must be unique".into(),
                });
            }
            kernels.push(entry);
        }
        if kernels.is_empty() {
            return Err(MatrixError::Entry {
                path: path.to_owned(),
                label: "(none)".into(),
                message: "the matrix has no [[kernel]] entries".into(),
            });
        }
        Ok(Matrix {
            built_in: false,
            path: path.to_owned(),
            debian_mirror: raw.debian.mirror,
            ubuntu_mirror: raw.ubuntu.mirror,
            kernels,
            mainline: MainlineConfig {
                base: raw.mainline.base,
                keyring: raw.mainline.keyring.map(|k| dir.join(k)),
            },
        })
    }
}

fn check_entry(raw: RawKernel, index: usize, dir: &Path) -> Result<KernelEntry, (String, String)> {
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
                package: format!("linux-image-{build}-{flavour}-{arch}"),
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
        // A tag names its version only when it starts with it (`6.6`,
        // `6.6-20250101.012345`): `bpf-next-20250101.012345` and
        // `rhel9.6-…` name none.
        Source::Oci { reference } => {
            let tag = reference.split('@').next()?.rsplit_once(':')?.1;
            tag.starts_with(|c: char| c.is_ascii_digit())
                .then(|| Version::find_in(tag))?
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

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "4545cda1cab2f7e975e9b3ad1744b4a360092a85a793156bf48f1bdf02906cc9";

    fn parse(text: &str) -> Result<Matrix, String> {
        Matrix::parse(text, "kernels.toml".as_ref()).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_entries_with_defaults() {
        let matrix = parse(&format!(
            "[debian]\nmirror = \"http://m/debian\"\n\n[[kernel]]\ndebian = {{ suite = \"trixie-backports\", package = \"linux-image-7.3.4+deb13-cloud-amd64\" }}\nsha256 = {{ \"linux-binary-7.3.4+deb13-cloud-amd64\" = \"{PIN}\" }}\n"
        ))
        .unwrap();
        assert_eq!(matrix.debian_mirror.as_deref(), Some("http://m/debian"));
        let kernel = &matrix.kernels[0];
        assert_eq!(kernel.label, "7.3");
        assert_eq!(kernel.version.to_string(), "7.3.4");
        assert_eq!(
            hex::encode(kernel.sha256["linux-binary-7.3.4+deb13-cloud-amd64"]),
            PIN
        );
    }

    #[test]
    fn rpm_entries_take_their_version_from_the_package() {
        let matrix = parse(&format!(
            "[[kernel]]\nrpm = {{ repo = \"http://m/os/\", package = \"kernel-core-5.14.0-570.el9\", keyring = \"keys/RPM-GPG-KEY\" }}\nsha256 = {{ \"kernel-core-5.14.0-570.el9.x86_64\" = \"{PIN}\" }}\n"
        ))
        .unwrap();
        let kernel = &matrix.kernels[0];
        assert_eq!(kernel.label, "5.14");
        assert_eq!(kernel.version.to_string(), "5.14.0");
        assert_eq!(
            kernel.source,
            Source::Rpm {
                repo: "http://m/os".into(),
                package: "kernel-core-5.14.0-570.el9".into(),
                keyring: Some("keys/RPM-GPG-KEY".into()),
            }
        );
        assert_eq!(
            nvr_version("kernel-64k-core-6.12.0-55.el10").map(|v| v.to_string()),
            Some("6.12.0".into())
        );
        assert_eq!(nvr_version("kernel"), None);
        let err = parse("[[kernel]]\nrpm = { repo = \"r\", package = \"p\" }\noci = \"x:6.1\"\n")
            .unwrap_err();
        assert!(err.contains("give one source"), "{err}");
    }

    #[test]
    fn syntax_errors_point_at_line_and_column() {
        let err = parse(
            "[[kernel]]\nlabel = \"6.1\"\ndebian = { suite = \"bookworm\" package = \"x\" }\n",
        )
        .unwrap_err();
        assert!(err.starts_with("kernels.toml:3:"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let err = parse(&format!(
            "[[kernel]]\nlable = \"6.1\"\ndebian = {{ suite = \"b\", package = \"linux-image-6.1.0-50-cloud-amd64\" }}\nsha256 = {{ a = \"{PIN}\" }}\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("kernels.toml:2:1: unknown field `lable`"),
            "{err}"
        );
    }

    #[test]
    fn entry_errors_name_the_kernel_and_the_fix() {
        let unpinned = parse("[[kernel]]\ndebian = { suite = \"b\", package = \"linux-image-6.1.0-50-cloud-amd64\" }\n")
            .unwrap();
        assert!(!unpinned.kernels[0].is_pinned());

        let bad_pin = parse("[[kernel]]\ndebian = { suite = \"b\", package = \"linux-image-6.1.0-50-cloud-amd64\" }\nsha256 = { a = \"abc\" }\n")
            .unwrap_err();
        assert!(bad_pin.contains("not 64 hex digits"), "{bad_pin}");

        let twice = format!("[[kernel]]\ndebian = {{ suite = \"b\", package = \"linux-image-6.1.0-50-cloud-amd64\" }}\nsha256 = {{ a = \"{PIN}\" }}\n");
        let err = parse(&format!("{twice}{twice}")).unwrap_err();
        assert!(
            err.contains("kernel `6.1`: the label is used twice"),
            "{err}"
        );

        assert!(parse("").unwrap_err().contains("no [[kernel]] entries"));
    }

    #[test]
    fn arm64_entries_get_their_own_label_and_must_say_so() {
        let matrix = parse(&format!("[[kernel]]\ndebian = {{ suite = \"b\", package = \"linux-image-6.1.0-50-cloud-amd64\" }}\nsha256 = {{ a = \"{PIN}\" }}\n[[kernel]]\narch = \"arm64\"\ndebian = {{ suite = \"b\", package = \"linux-image-6.1.0-50-cloud-arm64\" }}\nsha256 = {{ a = \"{PIN}\" }}\n"))
            .unwrap();
        let labels: Vec<_> = matrix
            .kernels
            .iter()
            .map(|k| (k.label.as_str(), k.arch))
            .collect();
        assert_eq!(labels, [("6.1", Arch::Amd64), ("6.1-arm64", Arch::Arm64)]);

        let err = parse("[[kernel]]\ndebian = { suite = \"b\", package = \"linux-image-6.1.0-50-cloud-arm64\" }\n")
            .unwrap_err();
        assert!(err.contains("add `arch = \"arm64\"`"), "{err}");
        let err = parse("[[kernel]]\narch = \"mips\"\ndebian = { suite = \"b\", package = \"linux-image-6.1.0-50-cloud-amd64\" }\n")
            .unwrap_err();
        assert!(err.contains("amd64 or arm64"), "{err}");
    }

    #[test]
    fn ubuntu_entries_and_their_mirror() {
        let matrix = parse(&format!("[ubuntu]\nmirror = \"http://u/ubuntu\"\n\n[[kernel]]\nubuntu = {{ suite = \"jammy-updates\", package = \"linux-image-unsigned-5.15.0-91-generic\" }}\nsha256 = {{ \"linux-modules-5.15.0-91-generic\" = \"{PIN}\" }}\n"))
            .unwrap();
        assert_eq!(matrix.mirror(Distro::Ubuntu), Some("http://u/ubuntu"));
        assert_eq!(matrix.mirror(Distro::Debian), None);
        let kernel = &matrix.kernels[0];
        assert_eq!((kernel.label.as_str(), kernel.arch), ("5.15", Arch::Amd64));
        assert_eq!(
            kernel.source.to_string(),
            "ubuntu:jammy-updates/linux-image-unsigned-5.15.0-91-generic"
        );

        let err = parse("[[kernel]]\nubuntu = { suite = \"jammy\", package = \"linux-modules-5.15.0-91-generic\" }\n")
            .unwrap_err();
        assert!(err.contains("not an Ubuntu kernel image package"), "{err}");
        let err = parse("[[kernel]]\nubuntu = { suite = \"jammy\", package = \"linux-image-5.15.0-91-generic\" }\ndebian = { suite = \"b\", package = \"linux-image-6.1.0-50-cloud-amd64\" }\n")
            .unwrap_err();
        assert!(err.contains("give one source"), "{err}");
    }

    #[test]
    fn mainline_entries_name_a_release_and_the_keyring_is_beside_the_file() {
        let matrix = Matrix::parse(
            "[mainline]\nbase = \"http://m/mainline\"\nkeyring = \"ppa.gpg\"\n[[kernel]]\nmainline = \"6.6.64\"\n[[kernel]]\nmainline = \"v6.1\"\n",
            "dir/kernels.toml".as_ref(),
        )
        .unwrap();
        assert_eq!(matrix.mainline.base.as_deref(), Some("http://m/mainline"));
        assert_eq!(matrix.mainline.keyring, Some(PathBuf::from("dir/ppa.gpg")));
        let named: Vec<_> = matrix
            .kernels
            .iter()
            .map(|k| {
                (
                    k.label.as_str(),
                    k.source.to_string(),
                    k.version.to_string(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                ("6.6", "mainline:v6.6.64".to_owned(), "6.6.64".to_owned()),
                ("6.1", "mainline:v6.1".to_owned(), "6.1.0".to_owned())
            ]
        );
        let err = parse("[[kernel]]\nmainline = \"latest\"\n").unwrap_err();
        assert!(err.contains("give it as `6.6.64`"), "{err}");
        let err = parse("[[kernel]]\nmainline = \"6.6.64\"\noci = \"r/k:6.6\"\n").unwrap_err();
        assert!(err.contains("give one source"), "{err}");
    }

    #[test]
    fn an_oci_tag_names_a_version_only_when_it_starts_with_one() {
        let matrix =
            parse("[[kernel]]\noci = \"r/lvh/kernel-images:6.6-20250101.012345\"\n").unwrap();
        assert_eq!(matrix.kernels[0].label, "6.6");
        for tag in ["bpf-next-20250101.012345", "rhel9.6-20250101.012345"] {
            let err = parse(&format!(
                "[[kernel]]\noci = \"r/lvh/kernel-images:{tag}\"\n"
            ))
            .unwrap_err();
            assert!(err.contains("cannot tell the kernel version"), "{err}");
        }
        let matrix = parse(
            "[[kernel]]\nlabel = \"rhel9.6\"\nversion = \"5.14\"\noci = \"r/lvh/kernel-images:rhel9.6-main\"\n",
        )
        .unwrap();
        assert_eq!(matrix.kernels[0].version.to_string(), "5.14.0");
    }

    #[test]
    fn debian_builds_come_from_the_snapshot_archive() {
        let matrix = parse("[[kernel]]\ndebian = { suite = \"bookworm\", build = \"6.1.0-20\" }\n[[kernel]]\narch = \"arm64\"\ndebian = { suite = \"trixie\", build = \"6.12.38+deb13\", flavour = \"rt\" }\n")
            .unwrap();
        let named: Vec<_> = matrix
            .kernels
            .iter()
            .map(|k| {
                (
                    k.label.as_str(),
                    k.source.to_string(),
                    k.version.to_string(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                (
                    "6.1",
                    "debian-snapshot:bookworm/linux-image-6.1.0-20-cloud-amd64".to_owned(),
                    "6.1.0".to_owned()
                ),
                (
                    "6.12-arm64",
                    "debian-snapshot:trixie/linux-image-6.12.38+deb13-rt-arm64".to_owned(),
                    "6.12.38".to_owned()
                )
            ]
        );
        let both = parse("[[kernel]]\ndebian = { suite = \"b\", build = \"6.1.0-20\", package = \"linux-image-6.1.0-20-cloud-amd64\" }\n").unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let bad =
            parse("[[kernel]]\ndebian = { suite = \"b\", build = \"../6.1\" }\n").unwrap_err();
        assert!(bad.contains("not a Debian kernel build"), "{bad}");
        let ubuntu = parse("[[kernel]]\nubuntu = { suite = \"jammy\", build = \"5.15.0-91\" }\n")
            .unwrap_err();
        assert!(ubuntu.contains("no `build`"), "{ubuntu}");
    }
}
