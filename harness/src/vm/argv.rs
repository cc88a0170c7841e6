//! The QEMU command line, built from small pure helpers.

use std::ffi::OsString;
use std::path::Path;

use kmatrix_protocol::PORT_NAME;

/// The kernel command line every VM gets: console on the first serial port,
/// quiet (serial output is slow under emulation), and reboot at once on panic
/// so that `-no-reboot` turns a panic into a QEMU exit.
const BASE_CMDLINE: &str = "console=ttyS0 quiet panic=-1 rdinit=/init";

/// The machine a kernel boots on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Machine {
    /// A PC with a PCI bus: works with every kernel.
    Pc,
    /// QEMU's minimal machine with virtio-mmio devices found through ACPI:
    /// less firmware and fewer devices to probe, for kernels with
    /// `virtio_mmio`.
    Microvm,
}

impl Machine {
    /// QEMU's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Microvm => "microvm",
        }
    }
}

/// The kernel command line for `machine`. `tsc_khz` is the host's TSC
/// frequency, given under TCG so that the kernel does not calibrate its TSC
/// against an emulated PIT (on microvm that calibration hangs some boots).
///
/// Nothing else is added: `mitigations=off nokaslr no_timer_check
/// i8042.noaux i8042.nokbd 8250.nr_uarts=1 random.trust_cpu=on`, measured
/// one by one on microvm under TCG, changed a bare boot by less than its
/// noise, and the first two would change what the kernel under test runs.
pub fn kernel_cmdline(tsc_khz: Option<u64>) -> String {
    let mut line = BASE_CMDLINE.to_owned();
    if let Some(khz) = tsc_khz {
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
    });
    args.extend(os(&["-smp", "1", "-m"]));
    args.push(format!("{memory_mib}M").into());
    args
}

/// The virtio-serial controller `machine` has its ports on.
pub fn serial_controller(machine: Machine) -> &'static str {
    match machine {
        Machine::Pc => "virtio-serial-pci",
        Machine::Microvm => "virtio-serial-device",
    }
}

/// Acceleration and the CPU model that goes with it.
pub fn accel_args(accel: Accel) -> Vec<OsString> {
    match accel {
        Accel::Kvm => os(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => os(&["-accel", "tcg", "-cpu", "max"]),
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
            kernel_cmdline(Some(2_596_098)),
            "console=ttyS0 quiet panic=-1 rdinit=/init tsc_early_khz=2596098"
        );
        assert!(!kernel_cmdline(None).contains("tsc_early_khz"));
        assert_eq!(text(accel_args(Accel::Tcg)), "-accel tcg -cpu max");
        assert_eq!(text(accel_args(Accel::Kvm)), "-accel kvm -cpu host");
        assert_eq!(
            text(kernel_args("/k/vmlinuz".as_ref(), "/r/initrd".as_ref(), BASE_CMDLINE)),
            "-kernel /k/vmlinuz -initrd /r/initrd -append console=ttyS0 quiet panic=-1 rdinit=/init"
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
        assert_eq!(
            text(qmp_args("/r/qmp.sock".as_ref())),
            "-chardev socket,id=qmp,path=/r/qmp.sock -mon chardev=qmp,mode=control"
        );
    }
}
