//! The apt archives kernels come from, Debian's and Ubuntu's: the facts
//! that tell them apart (names, where their mirror and keyring are
//! configured, the keyring kmatrix ships, the packages a kernel is made of,
//! where a package the mirror dropped is sought). Everything else is the
//! one apt machinery both go through (`apt.rs`, `release.rs`,
//! `archive.rs`).

use std::fmt;

use super::packages::{Package, PackageIndex};

/// How an archive's kernel is made of packages: from its image package's
/// name, the packages to pin.
pub type Parts = for<'a> fn(&'a PackageIndex, &str) -> Option<Vec<(String, &'a Package)>>;

/// An apt archive kmatrix reads kernels from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Distro {
    /// Debian's archive.
    Debian,
    /// Ubuntu's archive.
    Ubuntu,
}

impl Distro {
    /// The key of its source and of its table in kernels.toml (`debian`,
    /// `ubuntu`).
    pub fn key(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
        }
    }

    /// Environment variable naming its mirror, over kernels.toml's.
    pub fn mirror_env(self) -> &'static str {
        match self {
            Distro::Debian => "KMATRIX_DEBIAN_MIRROR",
            Distro::Ubuntu => "KMATRIX_UBUNTU_MIRROR",
        }
    }

    /// Environment variable naming the keyring that signs it.
    pub fn keyring_env(self) -> &'static str {
        match self {
            Distro::Debian => "KMATRIX_DEBIAN_KEYRING",
            Distro::Ubuntu => "KMATRIX_UBUNTU_KEYRING",
        }
    }

    /// Where its archive keyring is installed (by the `debian-archive-keyring`
    /// and `ubuntu-keyring` packages).
    pub fn system_keyring(self) -> &'static str {
        match self {
            Distro::Debian => "/usr/share/keyrings/debian-archive-keyring.gpg",
            Distro::Ubuntu => "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        }
    }

    /// Its archive keyring as kmatrix ships it (`images/keyring/`).
    pub fn shipped_keyring(self) -> &'static [u8] {
        match self {
            Distro::Debian => {
                include_bytes!("../../../../images/keyring/debian-archive-keyring.gpg")
            }
            Distro::Ubuntu => {
                include_bytes!("../../../../images/keyring/ubuntu-archive-keyring.gpg")
            }
        }
    }

    /// Whether the machine's apt sources may name its mirror when nothing
    /// else does: only Debian's, the machine kmatrix is built for; an
    /// Ubuntu mirror is always configured.
    pub fn mirror_from_apt_sources(self) -> bool {
        self == Distro::Debian
    }

    /// The packages its kernels are made of. Debian's: the image package,
    /// or (split, 6.19 on) the packages its metapackage depends on.
    /// Ubuntu's: the image package (`linux-image-<release>`, its vmlinuz
    /// signed for secure boot, or `linux-image-unsigned-<release>`), which
    /// holds `/boot/vmlinuz-<release>`, and the `linux-modules-<release>` it
    /// depends on (the config, `modules.builtin`, the modules);
    /// `linux-modules-extra-<release>` (drivers no guest here loads) is not
    /// one of them.
    pub fn parts(self) -> Parts {
        match self {
            Distro::Debian => PackageIndex::kernel_packages,
            Distro::Ubuntu => PackageIndex::image_and_parts,
        }
    }

    /// Whether a pinned package its mirror dropped is sought in Debian's
    /// snapshot archive (where one is set); otherwise it is an error that
    /// names `kmatrix kernels update`.
    pub fn has_snapshot_archive(self) -> bool {
        self == Distro::Debian
    }
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distro::Debian => "Debian",
            Distro::Ubuntu => "Ubuntu",
        })
    }
}
