//! The guest definitions of `images/guests.toml`, built in: per
//! architecture, the QEMU binary, machine, CPU and console, and for every
//! guest the kernel command line and the modules it loads to reach its
//! results port. The one place these facts live; `vm/` and `kernels/` read
//! them here.

use std::sync::OnceLock;

use kmatrix_protocol::Arch;
use serde::Deserialize;

const TEXT: &str = include_str!("../../images/guests.toml");

/// Every guest's definitions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guests {
    /// The kernel command line after `console=`.
    pub cmdline: String,
    /// Modules loaded, in order, where the kernel has them as modules.
    pub port_modules: Vec<String>,
    /// The virtio-mmio transport's module.
    pub mmio_module: String,
    /// The results port's controller on virtio-mmio.
    pub port_device_mmio: String,
    /// Its controller on PCI.
    pub port_device_pci: String,
    arch: Arches,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arches {
    amd64: Machine,
    arm64: Machine,
}

/// How one architecture's kernels boot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The default QEMU binary.
    pub qemu: String,
    /// The Debian package that installs it.
    pub qemu_package: String,
    /// The serial console's device name in the guest.
    pub console: String,
    /// `-machine` for kernels with virtio-mmio.
    pub machine_mmio: String,
    /// `-machine` for the others.
    pub machine_pci: String,
    /// `-cpu` under TCG.
    pub cpu_tcg: String,
    /// Whether the kernel is told the host's TSC frequency under TCG.
    pub tsc_khz: bool,
    /// What this architecture's kernels get on their command line besides
    /// the shared part.
    #[serde(default)]
    pub cmdline: String,
}

/// The built-in definitions.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| toml::from_str(TEXT).expect("images/guests.toml is valid"))
}

impl Guests {
    /// How `arch` kernels boot.
    pub fn machine(&self, arch: Arch) -> &Machine {
        match arch {
            Arch::Amd64 => &self.arch.amd64,
            Arch::Arm64 => &self.arch.arm64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_definitions_parse() {
        let guests = guests();
        assert_eq!(guests.port_modules, ["virtio_pci", "virtio_console"]);
        assert_eq!(guests.machine(Arch::Arm64).console, "ttyAMA0");
        assert!(guests.machine(Arch::Amd64).tsc_khz);
    }
}
