//! The QEMU command line, built from small pure helpers.

use std::ffi::OsString;
use std::path::Path;

use kmatrix_protocol::{Arch, PORT_NAME};
use serde::{Deserialize, Serialize};

use crate::presets::guests;

/// The machine a kernel boots on: its architecture's board (from
/// `images/guests.toml`), with the results port on virtio-mmio where the
/// kernel has `virtio_mmio`, else on PCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Machine {
    /// The architecture.
    pub arch: Arch,
    /// Whether the kernel has `virtio_mmio`.
    pub mmio: bool,
}

impl Machine {
    /// The machine for an `arch` kernel; `mmio` is whether it has
    /// `virtio_mmio`.
    pub fn for_kernel(arch: Arch, mmio: bool) -> Self {
        Self { arch, mmio }
    }

    /// QEMU's `-machine` value.
    pub fn qemu_machine(self) -> &'static str {
        let preset = guests().machine(self.arch);
        if self.mmio {
            &preset.machine_mmio
        } else {
            &preset.machine_pci
        }
    }

    /// QEMU's name for it (`microvm`, `pc`, `virt`).
    pub fn name(self) -> &'static str {
        let machine = self.qemu_machine();
        machine.split(',').next().unwrap_or(machine)
    }
}

/// The kernel command line for `arch`. `tsc_khz`, the host's TSC frequency,
/// is given where the architecture's definition asks for it.
pub fn kernel_cmdline(arch: Arch, tsc_khz: Option<u64>) -> String {
    let guests = guests();
    let preset = guests.machine(arch);
    let mut line = format!("console={} {}", preset.console, guests.cmdline);
    if !preset.cmdline.is_empty() {
        line.push(' ');
        line.push_str(&preset.cmdline);
    }
    if let (true, Some(khz)) = (preset.tsc_khz, tsc_khz) {
        line.push_str(&format!(" tsc_early_khz={khz}"));
    }
    line
}

/// The accelerator a VM runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

/// What a VM is given: its machine, memory and accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// The machine.
    pub machine: Machine,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The accelerator.
    pub accel: Accel,
}

impl Hardware {
    /// QEMU's whole command line: `kernel` booted with `initrd` (its
    /// command line telling the TSC figure `tsc_khz`), the console log and
    /// the results and QMP sockets in `dir`.
    pub fn args(
        &self,
        kernel: &Path,
        initrd: &Path,
        tsc_khz: Option<u64>,
        dir: &Path,
    ) -> Vec<OsString> {
        let arch = self.machine.arch;
        let mut args = base_args(self.machine, self.memory_mib);
        args.extend(accel_args(self.accel, arch));
        args.extend(kernel_args(kernel, initrd, &kernel_cmdline(arch, tsc_khz)));
        args.extend(console_args(&dir.join("console.log")));
        args.extend(results_port_args(self.machine, &dir.join("results.sock")));
        args.extend(qmp_args(&dir.join("qmp.sock")));
        // A guest that shuts down (or resets: `-no-reboot`, as on a panic)
        // is paused, not gone, so that its memory can still be read.
        args.extend(os(&["-action", "shutdown=pause"]));
        args
    }
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// QEMU's gdbstub on the loopback `port` (`kmatrix shell --gdb`).
pub fn gdb_args(port: u16) -> Vec<OsString> {
    vec!["-gdb".into(), format!("tcp:127.0.0.1:{port}").into()]
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
    args.push(machine.qemu_machine().into());
    args.extend(os(&["-smp", "1", "-m"]));
    args.push(format!("{memory_mib}M").into());
    args
}

/// The virtio-serial controller `machine` has its ports on.
pub fn serial_controller(machine: Machine) -> &'static str {
    let guests = guests();
    if machine.mmio {
        &guests.port_device_mmio
    } else {
        &guests.port_device_pci
    }
}

/// Acceleration and the CPU model that goes with it, for `arch`.
pub fn accel_args(accel: Accel, arch: Arch) -> Vec<OsString> {
    match accel {
        Accel::Kvm => os(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => os(&["-accel", "tcg", "-cpu", &guests().machine(arch).cpu_tcg]),
    }
}

/// Direct kernel boot (QEMU takes each value whole, commas included).
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

/// `options` (`key=value,…`, ending in `key=`) followed by `path` as
/// QEMU's option parser reads it back: a comma doubled, any other byte as
/// it is.
pub fn with_path(options: &str, path: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut bytes = options.as_bytes().to_vec();
    for &byte in path.as_os_str().as_bytes() {
        bytes.push(byte);
        if byte == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
}

/// The serial console, captured to a file.
pub fn console_args(log: &Path) -> Vec<OsString> {
    let chardev = with_path("file,id=console,path=", log);
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
    let chardev = with_path("socket,id=results,path=", socket);
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
    let chardev = with_path("socket,id=qmp,path=", socket);
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
    fn the_gdbstub_listens_on_loopback_only() {
        assert_eq!(gdb_args(1234), os(&["-gdb", "tcp:127.0.0.1:1234"]));
    }

    #[test]
    fn builds_each_part() {
        assert_eq!(
            text(base_args(Machine::for_kernel(Arch::Amd64, false), 512)),
            "-nodefaults -no-user-config -display none -no-reboot -machine pc -smp 1 -m 512M"
        );
        assert_eq!(
            text(base_args(Machine::for_kernel(Arch::Amd64, true), 256)),
            "-nodefaults -no-user-config -display none -no-reboot -machine microvm,acpi=on,isa-serial=on,rtc=on -smp 1 -m 256M"
        );
        assert_eq!(
            text(base_args(Machine::for_kernel(Arch::Arm64, true), 512)),
            "-nodefaults -no-user-config -display none -no-reboot -machine virt -smp 1 -m 512M"
        );
        assert_eq!(
            kernel_cmdline(Arch::Amd64, Some(2_596_098)),
            "console=ttyS0 quiet panic=-1 rdinit=/init no_timer_check tsc_early_khz=2596098"
        );
        assert!(!kernel_cmdline(Arch::Amd64, None).contains("tsc_early_khz"));
        assert_eq!(
            kernel_cmdline(Arch::Arm64, Some(2_596_098)),
            "console=ttyAMA0 quiet panic=-1 rdinit=/init"
        );
        assert_eq!(
            text(accel_args(Accel::Tcg, Arch::Amd64)),
            "-accel tcg -cpu max,erms=off,fsrm=off"
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
            text(results_port_args(Machine::for_kernel(Arch::Amd64, false), "/r/results.sock".as_ref())),
            "-device virtio-serial-pci -chardev socket,id=results,path=/r/results.sock -device virtserialport,chardev=results,name=org.kmatrix.results"
        );
        assert!(text(results_port_args(
            Machine::for_kernel(Arch::Amd64, true),
            "/s".as_ref()
        ))
        .starts_with("-device virtio-serial-device "));
        assert!(text(results_port_args(
            Machine::for_kernel(Arch::Arm64, true),
            "/s".as_ref()
        ))
        .starts_with("-device virtio-serial-device "));
        assert!(text(results_port_args(
            Machine::for_kernel(Arch::Arm64, false),
            "/s".as_ref()
        ))
        .starts_with("-device virtio-serial-pci "));
        assert_eq!(
            text(qmp_args("/r/qmp.sock".as_ref())),
            "-chardev socket,id=qmp,path=/r/qmp.sock -mon chardev=qmp,mode=control"
        );
    }

    #[test]
    fn a_comma_in_a_path_is_doubled_and_other_bytes_kept() {
        use std::os::unix::ffi::OsStrExt;
        let dir = Path::new("/tmp/a,b/c,,d");
        assert_eq!(
            text(console_args(&dir.join("console.log"))),
            "-chardev file,id=console,path=/tmp/a,,b/c,,,,d/console.log -serial chardev:console"
        );
        assert_eq!(
            text(results_port_args(
                Machine::for_kernel(Arch::Amd64, false),
                &dir.join("r.sock")
            ))
            .split(' ')
            .nth(3),
            Some("socket,id=results,path=/tmp/a,,b/c,,,,d/r.sock")
        );
        assert_eq!(
            text(qmp_args(&dir.join("q.sock"))).split(' ').nth(1),
            Some("socket,id=qmp,path=/tmp/a,,b/c,,,,d/q.sock")
        );
        let raw = std::ffi::OsStr::from_bytes(b"/\xff,x");
        assert_eq!(
            with_path("path=", Path::new(raw)).as_bytes(),
            b"path=/\xff,,x"
        );
    }
}
