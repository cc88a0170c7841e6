//! How VMs are run: the QEMU binary, the accelerator (KVM only where it is
//! real), memory, deadlines and snapshots, and the host's TSC frequency
//! that TCG guests are told.

use std::path::PathBuf;
use std::time::Duration;

use super::argv::Accel;

/// Environment variable naming the QEMU binary.
pub const QEMU_ENV: &str = "KMATRIX_QEMU";

/// How a VM is run.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The QEMU binary.
    pub qemu: PathBuf,
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
    /// The host's TSC frequency for the kernel command line, under TCG
    /// (whose guest TSC is the host's); KVM guests calibrate well alone.
    pub fn tsc_khz(&self) -> Option<u64> {
        match self.accel {
            Accel::Tcg => host_tsc_khz(),
            Accel::Kvm => None,
        }
    }

    /// The QEMU binary: [`QEMU_ENV`] or `qemu-system-x86_64` on the PATH.
    pub fn default_qemu() -> PathBuf {
        std::env::var_os(QEMU_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| "qemu-system-x86_64".into())
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
