//! The apt archives kernels come from, Debian's and Ubuntu's: the facts
//! that tell them apart (names, where their mirrors and keyring are
//! configured, which mirror serves an architecture, the keyring kmatrix
//! ships, the packages a kernel is made of, where a package the mirror
//! dropped is sought). Everything else is the
//! one apt machinery both go through (`apt.rs`, `release.rs`,
//! `archive.rs`).

use std::fmt;

use kmatrix_protocol::Arch;

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

    /// The mirror setting its packages for `arch` come through: Debian's
    /// one mirror carries every architecture; Ubuntu's archive carries
    /// amd64, and the other architectures are on its ports archive (the
    /// same layout, signed by the same keyring, at another address).
    pub fn mirror_for(self, arch: Arch) -> MirrorSetting {
        MirrorSetting {
            distro: self,
            ports: self == Distro::Ubuntu && arch != Arch::Amd64,
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

/// One of an archive's mirror settings (see [`Distro::mirror_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MirrorSetting {
    /// The archive.
    pub distro: Distro,
    /// Whether it is Ubuntu's ports archive.
    pub ports: bool,
}

impl MirrorSetting {
    /// Environment variable naming the mirror, over kernels.toml's.
    pub fn env(self) -> &'static str {
        match (self.distro, self.ports) {
            (Distro::Debian, _) => "KMATRIX_DEBIAN_MIRROR",
            (Distro::Ubuntu, false) => "KMATRIX_UBUNTU_MIRROR",
            (Distro::Ubuntu, true) => "KMATRIX_UBUNTU_PORTS_MIRROR",
        }
    }

    /// Its key in the archive's kernels.toml table.
    pub fn key(self) -> &'static str {
        if self.ports {
            "ports_mirror"
        } else {
            "mirror"
        }
    }

    /// What the archive is called in messages ("Ubuntu ports").
    pub fn archive(self) -> String {
        if self.ports {
            format!("{} ports", self.distro)
        } else {
            self.distro.to_string()
        }
    }
}

/// `` `[ubuntu] ports_mirror` ``: the kernels.toml setting.
impl fmt::Display for MirrorSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`[{}] {}`", self.distro.key(), self.key())
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
