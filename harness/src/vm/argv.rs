//! The QEMU command line, built from small pure helpers.

use std::ffi::OsString;
use std::path::Path;

use kmatrix_protocol::{Arch, PORT_NAME};

/// The kernel command line every VM gets after its console: quiet (serial
/// output is slow under emulation), and reboot at once on panic so that
/// `-no-reboot` turns a panic into a QEMU exit.
const BASE_CMDLINE: &str = "quiet panic=-1 rdinit=/init";

/// The CPU an arm64 guest gets under TCG: every feature QEMU emulates (LSE
/// atomics, BTI, and what else the BPF JIT and the kernel may use) except
/// pointer authentication, whose emulated QARMA cipher runs on every
/// function entry and return and makes boots four to five times slower.
/// The JIT's PAC instructions are hints that run as no-ops without it, so
/// the code the kernel generates and verifies is the same.
const ARM64_TCG_CPU: &str = "max,pauth=off";

/// The machine a kernel boots on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Machine {
    /// A PC with a PCI bus: works with every kernel.
    Pc,
    /// QEMU's minimal machine with virtio-mmio devices found through ACPI:
    /// less firmware and fewer devices to probe, for kernels with
    /// `virtio_mmio`.
    Microvm,
    /// QEMU's arm64 board; its ports on virtio-mmio (described in the
    /// device tree) for kernels with `virtio_mmio`, else on PCIe.
    Virt {
        /// Whether the kernel has `virtio_mmio`.
        mmio: bool,
    },
}

impl Machine {
    /// The machine for an `arch` kernel; `mmio` is whether it has
    /// `virtio_mmio`.
    pub fn for_kernel(arch: Arch, mmio: bool) -> Self {
        match (arch, mmio) {
            (Arch::Amd64, true) => Machine::Microvm,
            (Arch::Amd64, false) => Machine::Pc,
            (Arch::Arm64, mmio) => Machine::Virt { mmio },
        }
    }

    /// QEMU's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Microvm => "microvm",
            Machine::Virt { .. } => "virt",
        }
    }

    /// The architecture it emulates.
    pub fn arch(self) -> Arch {
        match self {
            Machine::Pc | Machine::Microvm => Arch::Amd64,
            Machine::Virt { .. } => Arch::Arm64,
        }
    }
}

/// The kernel command line for `arch`. `tsc_khz` is the host's TSC
/// frequency, given to amd64 guests under TCG so that the kernel does not
/// calibrate its TSC against an emulated PIT (on microvm that calibration
/// hangs some boots).
///
/// Nothing else is added: `mitigations=off nokaslr no_timer_check
/// i8042.noaux i8042.nokbd 8250.nr_uarts=1 random.trust_cpu=on`, measured
/// one by one on microvm under TCG, changed a bare boot by less than its
/// noise, and the first two would change what the kernel under test runs.
pub fn kernel_cmdline(arch: Arch, tsc_khz: Option<u64>) -> String {
    let console = match arch {
        Arch::Amd64 => "ttyS0",
        Arch::Arm64 => "ttyAMA0",
    };
    let mut line = format!("console={console} {BASE_CMDLINE}");
    if let (Arch::Amd64, Some(khz)) = (arch, tsc_khz) {
        line.push_str(&format!(" tsc_early_khz={khz}"));
    }
    line
}

/// The accelerator a VM runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// A fixed machine with no default devices and nothing read from the host.
pub fn base_args(machine: Machine, memory_mib: u32) -> Vec<OsString> {
    let mut args = os(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-machine",
    ]);
    args.push(match machine {
        Machine::Pc => "pc".into(),
        Machine::Microvm => "microvm,acpi=on,isa-serial=on,rtc=on".into(),
        Machine::Virt { .. } => "virt".into(),
    });
    args.extend(os(&["-smp", "1", "-m"]));
    args.push(format!("{memory_mib}M").into());
    args
}

/// The virtio-serial controller `machine` has its ports on.
pub fn serial_controller(machine: Machine) -> &'static str {
    match machine {
        Machine::Pc | Machine::Virt { mmio: false } => "virtio-serial-pci",
        Machine::Microvm | Machine::Virt { mmio: true } => "virtio-serial-device",
    }
}

/// Acceleration and the CPU model that goes with it, for `arch`.
pub fn accel_args(accel: Accel, arch: Arch) -> Vec<OsString> {
    match (accel, arch) {
        (Accel::Kvm, _) => os(&["-accel", "kvm", "-cpu", "host"]),
        (Accel::Tcg, Arch::Amd64) => os(&["-accel", "tcg", "-cpu", "max"]),
        (Accel::Tcg, Arch::Arm64) => os(&["-accel", "tcg", "-cpu", ARM64_TCG_CPU]),
    }
}

/// Direct kernel boot.
pub fn kernel_args(kernel: &Path, initrd: &Path, cmdline: &str) -> Vec<OsString> {
    vec![
        "-kernel".into(),
        kernel.into(),
        "-initrd".into(),
        initrd.into(),
        "-append".into(),
        cmdline.into(),
    ]
}

/// The serial console, captured to a file.
pub fn console_args(log: &Path) -> Vec<OsString> {
    let mut chardev = OsString::from("file,id=console,path=");
    chardev.push(log);
    vec![
        "-chardev".into(),
        chardev,
        "-serial".into(),
        "chardev:console".into(),
    ]
}

/// The results port: a named virtio-serial port whose other end is a unix
/// socket the host listens on.
pub fn results_port_args(machine: Machine, socket: &Path) -> Vec<OsString> {
    let mut chardev = OsString::from("socket,id=results,path=");
    chardev.push(socket);
    vec![
        "-device".into(),
        serial_controller(machine).into(),
        "-chardev".into(),
        chardev,
        "-device".into(),
        format!("virtserialport,chardev=results,name={PORT_NAME}").into(),
    ]
}

/// The QMP monitor on a unix socket the host listens on.
pub fn qmp_args(socket: &Path) -> Vec<OsString> {
    let mut chardev = OsString::from("socket,id=qmp,path=");
    chardev.push(socket);
    vec![
        "-chardev".into(),
        chardev,
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(args: Vec<OsString>) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn builds_each_part() {
        assert_eq!(
            text(base_args(Machine::Pc, 512)),
            "-nodefaults -no-user-config -display none -no-reboot -machine pc -smp 1 -m 512M"
        );
        assert_eq!(
            text(base_args(Machine::Microvm, 256)),
            "-nodefaults -no-user-config -display none -no-reboot -machine microvm,acpi=on,isa-serial=on,rtc=on -smp 1 -m 256M"
        );
        assert_eq!(
            text(base_args(Machine::for_kernel(Arch::Arm64, true), 512)),
            "-nodefaults -no-user-config -display none -no-reboot -machine virt -smp 1 -m 512M"
        );
        assert_eq!(
            kernel_cmdline(Arch::Amd64, Some(2_596_098)),
            "console=ttyS0 quiet panic=-1 rdinit=/init tsc_early_khz=2596098"
        );
        assert!(!kernel_cmdline(Arch::Amd64, None).contains("tsc_early_khz"));
        assert_eq!(
            kernel_cmdline(Arch::Arm64, Some(2_596_098)),
            "console=ttyAMA0 quiet panic=-1 rdinit=/init"
        );
        assert_eq!(
            text(accel_args(Accel::Tcg, Arch::Amd64)),
            "-accel tcg -cpu max"
        );
        assert_eq!(
            text(accel_args(Accel::Tcg, Arch::Arm64)),
            "-accel tcg -cpu max,pauth=off"
        );
        assert_eq!(
            text(accel_args(Accel::Kvm, Arch::Amd64)),
            "-accel kvm -cpu host"
        );
        assert_eq!(
            text(kernel_args(
                "/k/vmlinuz".as_ref(),
                "/r/initrd".as_ref(),
                "console=ttyS0"
            )),
            "-kernel /k/vmlinuz -initrd /r/initrd -append console=ttyS0"
        );
        assert_eq!(
            text(console_args("/r/console.log".as_ref())),
            "-chardev file,id=console,path=/r/console.log -serial chardev:console"
        );
        assert_eq!(
            text(results_port_args(Machine::Pc, "/r/results.sock".as_ref())),
            "-device virtio-serial-pci -chardev socket,id=results,path=/r/results.sock -device virtserialport,chardev=results,name=org.kmatrix.results"
        );
        assert!(text(results_port_args(Machine::Microvm, "/s".as_ref()))
            .starts_with("-device virtio-serial-device "));
        assert!(text(results_port_args(
            Machine::Virt { mmio: true },
            "/s".as_ref()
        ))
        .starts_with("-device virtio-serial-device "));
        assert!(text(results_port_args(
            Machine::Virt { mmio: false },
            "/s".as_ref()
        ))
        .starts_with("-device virtio-serial-pci "));
        assert_eq!(
            text(qmp_args("/r/qmp.sock".as_ref())),
            "-chardev socket,id=qmp,path=/r/qmp.sock -mon chardev=qmp,mode=control"
        );
    }
}
