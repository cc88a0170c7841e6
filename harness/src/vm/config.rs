//! How VMs are run: the QEMU binary, the accelerator (KVM only where it is
//! real), memory, deadlines and snapshots, and the host's TSC frequency
//! that TCG guests are told.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmatrix_protocol::Arch;

use super::argv::{Accel, Hardware, Machine};

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
    /// A loopback port for QEMU's gdbstub (`kmatrix shell --gdb`).
    pub gdb_port: Option<u16>,
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
    /// Time from QEMU's start to the agent's hello, unless told otherwise.
    pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(60);

    /// Time from the hello to the agent's last result, unless told
    /// otherwise.
    pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

    /// Guest memory in MiB, unless told otherwise.
    pub const DEFAULT_MEMORY_MIB: u32 = 512;

    /// The accelerator `accel` resolves to, and every default: the QEMU
    /// binaries of [`Self::default_qemu`], the default memory and
    /// deadlines, snapshots on. Every front end starts here.
    pub fn new(accel: AccelChoice) -> Self {
        Self {
            qemu: Self::default_qemu(),
            accel: accel.resolve(),
            memory_mib: Self::DEFAULT_MEMORY_MIB,
            boot_timeout: Self::DEFAULT_BOOT_TIMEOUT,
            run_timeout: Self::DEFAULT_RUN_TIMEOUT,
            snapshots: true,
            gdb_port: None,
        }
    }

    /// The accelerator for an `arch` guest: KVM only where it was chosen
    /// and the host is of the same architecture.
    pub fn accel_for(&self, arch: Arch) -> Accel {
        match Arch::host() {
            Some(host) if host == arch => self.accel,
            _ => Accel::Tcg,
        }
    }

    /// What a VM on `machine` is given.
    pub fn hardware(&self, machine: Machine) -> Hardware {
        Hardware {
            machine,
            memory_mib: self.memory_mib,
            accel: self.accel_for(machine.arch),
        }
    }

    /// The host's TSC frequency for an `arch` kernel's command line
    /// ([`tsc_khz_told`]).
    pub fn tsc_khz(&self, arch: Arch) -> Option<u64> {
        tsc_khz_told(arch, self.accel_for(arch))
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

/// The host's TSC frequency an `arch` kernel under `accel` is told: under
/// TCG (whose guest TSC is the host's); KVM guests calibrate well alone,
/// and only amd64 kernels are told.
pub(super) fn tsc_khz_told(arch: Arch, accel: Accel) -> Option<u64> {
    match (arch, accel) {
        (Arch::Amd64, Accel::Tcg) => host_tsc_khz(),
        _ => None,
    }
}

/// Where the kernel states its TSC frequency in kHz, on kernels that have
/// it.
const SYSFS_TSC_KHZ: &str = "/sys/devices/system/cpu/cpu0/tsc_freq_khz";

/// The host's TSC frequency in kHz as guests are told it: the kernel's own
/// calibration where it can be read, else measured; rounded to the MHz.
/// A guest keeps time with it, and a rounding of at most 500 kHz leaves
/// its clock within 0.05% at 1 GHz and less on faster TSCs, while the
/// figure (part of every amd64 saved VM's key) no longer changes with the
/// last digits of a measurement.
fn host_tsc_khz() -> Option<u64> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        [kernel_tsc_khz as fn() -> Option<u64>, measured_tsc_khz]
            .into_iter()
            .find_map(|source| source().filter(|khz| plausible_tsc_khz(*khz)))
            .map(round_to_mhz)
    })
}

/// A few MHz to tens of GHz; anything else is a broken TSC.
fn plausible_tsc_khz(khz: u64) -> bool {
    (1_000..100_000_000).contains(&khz)
}

/// `khz` rounded to the nearest MHz.
fn round_to_mhz(khz: u64) -> u64 {
    (khz + 500) / 1000 * 1000
}

/// The kernel's calibration: its sysfs figure where it has one, else what
/// its log says.
fn kernel_tsc_khz() -> Option<u64> {
    std::fs::read_to_string(SYSFS_TSC_KHZ)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .or_else(|| tsc_khz_in_log(kernel_log().iter().map(String::as_str)))
}

/// The kernel log's messages still in its ring buffer, read from
/// `/dev/kmsg` (none where it cannot be read).
fn kernel_log() -> Vec<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    // One record per read: `<prefix>;<message>\n`, then dictionary lines.
    let mut record = vec![0; 8192];
    let mut lines = Vec::new();
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]);
                if let Some((_, message)) = text.split_once(';') {
                    lines.push(message.lines().next().unwrap_or_default().to_owned());
                }
            }
            // A record overwritten while read: the next one follows.
            Err(err) if err.raw_os_error() == Some(nix::libc::EPIPE) => {}
            Err(_) => break,
        }
    }
    lines
}

/// The TSC frequency in kHz a kernel log states: its refined calibration,
/// else the TSC's detected frequency, else the processor's (the kernel
/// names the TSC's only where it differs).
fn tsc_khz_in_log<'a>(lines: impl Iterator<Item = &'a str>) -> Option<u64> {
    const STATEMENTS: [(&str, &str); 3] = [
        ("tsc: Refined TSC clocksource calibration: ", " MHz"),
        ("tsc: Detected ", " MHz TSC"),
        ("tsc: Detected ", " MHz processor"),
    ];
    let mut found: [Option<u64>; 3] = [None; 3];
    for line in lines {
        for (slot, (before, after)) in found.iter_mut().zip(STATEMENTS) {
            let figure = line
                .split_once(before)
                .and_then(|(_, rest)| rest.strip_suffix(after))
                .and_then(mhz_to_khz);
            if figure.is_some() {
                *slot = figure;
            }
        }
    }
    found.into_iter().flatten().next()
}

/// `2596.118` (MHz, as the kernel prints it) in kHz.
fn mhz_to_khz(text: &str) -> Option<u64> {
    let (mhz, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction: u64 = format!("{fraction:0<3}").parse().ok()?;
    Some(mhz.parse::<u64>().ok()? * 1000 + fraction)
}

/// The TSC measured against the monotonic raw clock (which NTP does not
/// slew): the median of three 20 ms windows, each end read where a TSC
/// read on either side of the clock's is closest together, so that being
/// preempted between the reads does not count.
fn measured_tsc_khz() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        use nix::time::{clock_gettime, ClockId};
        // SAFETY: RDTSC has no preconditions on x86_64.
        let rdtsc = || unsafe { std::arch::x86_64::_rdtsc() };
        let reading = || {
            (0..16)
                .filter_map(|_| {
                    let before = rdtsc();
                    let clock = clock_gettime(ClockId::CLOCK_MONOTONIC_RAW).ok()?;
                    let after = rdtsc();
                    let nanos = clock.tv_sec() as u128 * 1_000_000_000 + clock.tv_nsec() as u128;
                    let spread = after.wrapping_sub(before);
                    Some((spread, before.wrapping_add(spread / 2), nanos))
                })
                .min_by_key(|(spread, _, _)| *spread)
                .map(|(_, tsc, nanos)| (tsc, nanos))
        };
        let mut windows = Vec::new();
        for _ in 0..3 {
            let (tsc0, ns0) = reading()?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            let (tsc1, ns1) = reading()?;
            let nanos = ns1.checked_sub(ns0).filter(|n| *n > 0)?;
            windows.push((u128::from(tsc1.wrapping_sub(tsc0)) * 1_000_000 / nanos) as u64);
        }
        windows.sort_unstable();
        Some(windows[1])
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
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

    #[test]
    fn the_kernel_log_gives_the_refined_figure_first() {
        let boot = [
            "tsc: Fast TSC calibration using PIT",
            "tsc: Detected 2596.118 MHz processor",
            "clocksource: tsc-early: mask: 0xffffffffffffffff",
        ];
        assert_eq!(tsc_khz_in_log(boot.into_iter()), Some(2_596_118));
        let differs = [
            "tsc: Detected 3400.000 MHz processor",
            "tsc: Detected 3399.9 MHz TSC",
        ];
        assert_eq!(tsc_khz_in_log(differs.into_iter()), Some(3_399_900));
        let refined = [
            "tsc: Detected 2596.118 MHz processor",
            "tsc: Refined TSC clocksource calibration: 2595.987 MHz",
        ];
        assert_eq!(tsc_khz_in_log(refined.into_iter()), Some(2_595_987));
        assert_eq!(
            tsc_khz_in_log(["tsc: Detected 25x6 MHz processor"].into_iter()),
            None
        );
        assert_eq!(tsc_khz_in_log(std::iter::empty()), None);
    }

    #[test]
    fn figures_are_rounded_to_the_mhz() {
        assert_eq!(round_to_mhz(2_596_118), 2_596_000);
        assert_eq!(round_to_mhz(2_596_500), 2_597_000);
        assert_eq!(round_to_mhz(2_595_501), 2_596_000);
        assert_eq!(mhz_to_khz("2596"), Some(2_596_000));
        assert_eq!(mhz_to_khz("2596.1"), Some(2_596_100));
        assert_eq!(mhz_to_khz("2596.1189"), None);
    }

    #[test]
    fn the_host_figure_is_the_kernel_s_or_a_measurement_close_to_it() {
        let (Some(kernel), Some(measured)) = (kernel_tsc_khz(), measured_tsc_khz()) else {
            return;
        };
        assert!(
            kernel.abs_diff(measured) * 1000 < kernel,
            "{kernel} {measured}"
        );
        assert_eq!(host_tsc_khz(), Some(round_to_mhz(kernel)));
    }
}
