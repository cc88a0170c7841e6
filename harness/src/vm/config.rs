//! How VMs are run: the QEMU binary, the accelerator (KVM only where it is
//! real), memory, deadlines and snapshots, and the host's TSC frequency
//! that TCG guests are told.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmatrix_protocol::Arch;

use super::argv::Accel;

/// Environment variable naming the QEMU binary for amd64 guests.
pub const QEMU_ENV: &str = "KMATRIX_QEMU";

/// Environment variable naming the QEMU binary for arm64 guests.
pub const QEMU_ARM64_ENV: &str = "KMATRIX_QEMU_ARM64";

/// The QEMU binary for each guest architecture.
#[derive(Clone, Debug)]
pub struct QemuBinaries {
    /// For amd64 guests.
    pub amd64: PathBuf,
    /// For arm64 guests.
    pub arm64: PathBuf,
}

impl QemuBinaries {
    /// The binary for `arch`.
    pub fn get(&self, arch: Arch) -> &Path {
        match arch {
            Arch::Amd64 => &self.amd64,
            Arch::Arm64 => &self.arm64,
        }
    }

    /// The environment variable that names the binary for `arch`, and the
    /// Debian package that installs the default one.
    pub fn setting(arch: Arch) -> (&'static str, &'static str) {
        let package = crate::presets::guests().machine(arch).qemu_package.as_str();
        match arch {
            Arch::Amd64 => (QEMU_ENV, package),
            Arch::Arm64 => (QEMU_ARM64_ENV, package),
        }
    }
}

/// How a VM is run.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The QEMU binaries.
    pub qemu: QemuBinaries,
    /// The accelerator.
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Time from QEMU's start to the agent's hello.
    pub boot_timeout: Duration,
    /// Time from the hello to the agent's last result.
    pub run_timeout: Duration,
    /// Whether VMs are saved once booted and restored in later runs.
    pub snapshots: bool,
}

/// Which accelerator to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM where hardware virtualisation is really there, else TCG.
    #[default]
    Auto,
    /// KVM.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl AccelChoice {
    /// Decides `auto`: KVM only if `/dev/kvm` opens and the CPU advertises
    /// `vmx` or `svm` (a paravirtual `/dev/kvm` without them cannot run an
    /// unmodified kernel well).
    pub fn resolve(self) -> Accel {
        match self {
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Auto => {
                let kvm_opens = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvm")
                    .is_ok();
                let hw = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
                    info.lines()
                        .filter(|l| l.starts_with("flags"))
                        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
                });
                if kvm_opens && hw {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                }
            }
        }
    }
}

impl VmConfig {
    /// The accelerator for an `arch` guest: KVM only where it was chosen
    /// and the host is of the same architecture.
    pub fn accel_for(&self, arch: Arch) -> Accel {
        match Arch::host() {
            Some(host) if host == arch => self.accel,
            _ => Accel::Tcg,
        }
    }

    /// The host's TSC frequency for an `arch` kernel's command line, under
    /// TCG (whose guest TSC is the host's); KVM guests calibrate well
    /// alone, and only amd64 kernels are told.
    pub fn tsc_khz(&self, arch: Arch) -> Option<u64> {
        match (arch, self.accel_for(arch)) {
            (Arch::Amd64, Accel::Tcg) => host_tsc_khz(),
            _ => None,
        }
    }

    /// The QEMU binaries: [`QEMU_ENV`] and [`QEMU_ARM64_ENV`], else those
    /// `images/guests.toml` names, on the PATH.
    pub fn default_qemu() -> QemuBinaries {
        let binary = |arch: Arch| {
            std::env::var_os(QemuBinaries::setting(arch).0)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::presets::guests().machine(arch).qemu.clone().into())
        };
        QemuBinaries {
            amd64: binary(Arch::Amd64),
            arm64: binary(Arch::Arm64),
        }
    }
}

/// The host's TSC frequency in kHz, measured once against the monotonic
/// clock over 20 ms.
fn host_tsc_khz() -> Option<u64> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: RDTSC has no preconditions on x86_64.
            let rdtsc = || unsafe { std::arch::x86_64::_rdtsc() };
            let (t0, c0) = (std::time::Instant::now(), rdtsc());
            std::thread::sleep(Duration::from_millis(20));
            let (c1, elapsed) = (rdtsc(), t0.elapsed());
            let khz = (c1.wrapping_sub(c0) as f64 / elapsed.as_secs_f64() / 1000.0).round() as u64;
            // A few MHz to tens of GHz; anything else is a broken TSC.
            (1_000..100_000_000).contains(&khz).then_some(khz)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_never_picks_kvm_without_hardware_virtualisation() {
        let hw = std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|i| i.contains(" vmx") || i.contains(" svm"));
        if !hw {
            assert_eq!(AccelChoice::Auto.resolve(), Accel::Tcg);
        }
        assert_eq!(AccelChoice::Tcg.resolve(), Accel::Tcg);
    }
}
