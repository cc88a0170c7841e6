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
//! ports_mirror = "http://mirror.example/ubuntu-ports"  # for arm64 ones
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

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::entry::{check_entry, KernelEntry, RawKernel};
use super::source::distro::{Distro, MirrorSetting};
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
    /// The mirror of Ubuntu's ports archive (its architectures other than
    /// amd64) named in the file, if any.
    pub ubuntu_ports_mirror: Option<String>,
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
    ubuntu: RawUbuntu,
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

/// `[debian]`: one mirror for every architecture.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    mirror: Option<String>,
}

/// `[ubuntu]`: its main archive's mirror and its ports archive's.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUbuntu {
    mirror: Option<String>,
    ports_mirror: Option<String>,
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

    /// The mirror the file names for `setting`, if any.
    pub fn mirror(&self, setting: MirrorSetting) -> Option<&str> {
        match (setting.distro, setting.ports) {
            (Distro::Debian, _) => self.debian_mirror.as_deref(),
            (Distro::Ubuntu, false) => self.ubuntu_mirror.as_deref(),
            (Distro::Ubuntu, true) => self.ubuntu_ports_mirror.as_deref(),
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
            ubuntu_ports_mirror: raw.ubuntu.ports_mirror,
            kernels,
            mainline: MainlineConfig {
                base: raw.mainline.base,
                keyring: raw.mainline.keyring.map(|k| dir.join(k)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::entry::{nvr_version, Source};
    use kmatrix_protocol::Arch;

    const PIN: &str = "4545cda1cab2f7e975e9b3ad1744b4a360092a85a793156bf48f1bdf02906cc9";

    /// Each kernel's label, source and version.
    fn named(matrix: &Matrix) -> Vec<(&str, String, String)> {
        matrix
            .kernels
            .iter()
            .map(|k| {
                (
                    k.label.as_str(),
                    k.source.to_string(),
                    k.version.to_string(),
                )
            })
            .collect()
    }

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
        let mirror = |distro: Distro, arch| matrix.mirror(distro.mirror_for(arch));
        assert_eq!(mirror(Distro::Ubuntu, Arch::Amd64), Some("http://u/ubuntu"));
        assert_eq!(mirror(Distro::Ubuntu, Arch::Arm64), None);
        assert_eq!(mirror(Distro::Debian, Arch::Amd64), None);
        let kernel = &matrix.kernels[0];
        assert_eq!((kernel.label.as_str(), kernel.arch), ("5.15", Arch::Amd64));
        assert_eq!(
            kernel.source.to_string(),
            "ubuntu:jammy-updates/linux-image-unsigned-5.15.0-91-generic"
        );

        let ports = parse(&format!("[ubuntu]\nports_mirror = \"http://u/ubuntu-ports\"\n\n[[kernel]]\narch = \"arm64\"\nubuntu = {{ suite = \"noble-updates\", package = \"linux-image-6.8.0-31-generic\" }}\nsha256 = {{ \"linux-image-6.8.0-31-generic\" = \"{PIN}\" }}\n"))
            .unwrap();
        let kernel = &ports.kernels[0];
        assert_eq!(
            (kernel.label.as_str(), kernel.arch),
            ("6.8-arm64", Arch::Arm64)
        );
        assert_eq!(
            ports.mirror(Distro::Ubuntu.mirror_for(Arch::Arm64)),
            Some("http://u/ubuntu-ports")
        );
        assert_eq!(ports.mirror(Distro::Ubuntu.mirror_for(Arch::Amd64)), None);
        let err = parse("[debian]\nports_mirror = \"http://d/debian\"\n\n[[kernel]]\npath = { image = \"x\" }\nversion = \"6.1\"\n")
            .unwrap_err();
        assert!(err.contains("ports_mirror"), "{err}");

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
        let named = named(&matrix);
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
        let named = named(&matrix);
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
