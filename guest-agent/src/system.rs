//! The agent's view of the machine: filesystems, modules, the results port,
//! and power.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::time::{clock_gettime, ClockId};

use kmatrix_protocol::PORT_NAME;

/// Where the host packs the modules, named so that sorting gives load order.
use kmatrix_protocol::layout::MODULES_DIR;

/// Mounts everything eBPF tests expect. Returns one message per failure.
/// (The initramfs root is itself a writable tmpfs, so `/tmp` needs no mount,
/// and one would hide files packed under it.)
pub fn mount_filesystems() -> Vec<String> {
    const MOUNTS: &[(&str, &str)] = &[
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("bpf", "/sys/fs/bpf"),
        ("debugfs", "/sys/kernel/debug"),
        ("tracefs", "/sys/kernel/tracing"),
        ("cgroup2", "/sys/fs/cgroup"),
    ];
    let mut errors = Vec::new();
    for &(fstype, target) in MOUNTS {
        let _ = fs::create_dir_all(target);
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        if let Err(err) = mount(Some(fstype), target, Some(fstype), flags, None::<&str>) {
            errors.push(format!("mount {fstype} on {target}: {err}"));
        }
    }
    errors
}

/// Makes `dir` read-only in place (a bind mount onto itself, remounted
/// read-only), so that a program cannot write where the host's files are.
pub fn make_read_only(dir: &Path) -> Result<(), String> {
    let _ = fs::create_dir_all(dir);
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .and_then(|()| {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
    })
    .map_err(|err| format!("making {} read-only: {err}", dir.display()))
}

/// Brings the loopback interface up, as tests that send packets expect.
pub fn loopback_up() -> Result<(), String> {
    // SAFETY: a plain AF_INET datagram socket; `ifreq` is zero-initialised
    // and carries a NUL-terminated name for both ioctls; the fd is closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let result = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            Err(format!(
                "SIOCGIFFLAGS lo: {}",
                std::io::Error::last_os_error()
            ))
        } else {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) < 0 {
                Err(format!(
                    "SIOCSIFFLAGS lo: {}",
                    std::io::Error::last_os_error()
                ))
            } else {
                Ok(())
            }
        };
        libc::close(fd);
        result
    }
}

/// Loads the packed modules in order. Returns one message per failure.
pub fn load_modules() -> Vec<String> {
    let mut paths: Vec<_> = match fs::read_dir(MODULES_DIR) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Vec::new(),
    };
    paths.sort();
    let mut errors = Vec::new();
    for path in paths {
        let result = File::open(&path)
            .map_err(|err| nix::Error::from_raw(err.raw_os_error().unwrap_or(0)))
            .and_then(|file| finit_module(&file, c"", ModuleInitFlags::empty()));
        match result {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(err) => errors.push(format!("insmod {}: {err}", path.display())),
        }
    }
    errors
}

/// Finds the results port by name and opens it, waiting up to `timeout` for
/// the device node to appear, calling `meanwhile` between looks.
pub fn open_port(timeout: Duration, mut meanwhile: impl FnMut()) -> Result<File, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(device) = find_port() {
            return OpenOptions::new()
                .read(true)
                .write(true)
                .open(&device)
                .map_err(|err| format!("open {}: {err}", device.display()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no virtio port named {PORT_NAME} under /sys/class/virtio-ports after {timeout:?}"
            ));
        }
        meanwhile();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn find_port() -> Option<std::path::PathBuf> {
    fs::read_dir("/sys/class/virtio-ports")
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            fs::read_to_string(entry.path().join("name")).is_ok_and(|name| name.trim() == PORT_NAME)
        })
        .map(|entry| Path::new("/dev").join(entry.file_name()))
        .filter(|device| device.exists())
}

/// `uname -r`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|err| format!("unknown ({err})"))
}

/// Whether the kernel exposes its own BTF.
pub fn has_btf() -> bool {
    Path::new("/sys/kernel/btf/vmlinux").exists()
}

/// Milliseconds since the kernel started.
pub fn boot_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// `CLOCK_BOOTTIME` in microseconds: time since the kernel started.
pub fn boot_us() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0)
}

/// Powers the machine off. Never returns.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let err = reboot(RebootMode::RB_POWER_OFF).unwrap_err();
    eprintln!("kmatrix-agent: power off failed: {err}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Sets the wall clock to the host's (a restored VM's clock is as old as
/// its saved state).
pub fn set_clock(unix_nanos: u64) -> Option<String> {
    let time = nix::sys::time::TimeSpec::new(
        (unix_nanos / 1_000_000_000) as i64,
        (unix_nanos % 1_000_000_000) as i64,
    );
    nix::time::clock_settime(ClockId::CLOCK_REALTIME, time)
        .err()
        .map(|err| format!("setting the clock: {err}"))
}

/// Mixes the host's randomness into the kernel's pool, credits it, and
/// reseeds the kernel's generator from it, so that VMs restored from one
/// saved state do not share random numbers.
pub fn add_entropy(entropy: &[u8]) -> Option<String> {
    /// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    /// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    if entropy.is_empty() {
        return None;
    }
    let file = match OpenOptions::new().write(true).open("/dev/urandom") {
        Ok(file) => file,
        Err(err) => return Some(format!("open /dev/urandom: {err}")),
    };
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    info.extend_from_slice(&((entropy.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(entropy.len() as i32).to_ne_bytes());
    info.extend_from_slice(entropy);
    info.resize(8 + entropy.len().next_multiple_of(4), 0);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: both ioctls take the fd of /dev/urandom; the first reads a
    // rand_pool_info whose buffer holds `buf_size` bytes.
    unsafe {
        if libc::ioctl(fd, RNDADDENTROPY as _, info.as_ptr()) < 0 {
            return Some(format!(
                "adding the host's entropy: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::ioctl(fd, RNDRESEEDCRNG as _) < 0 {
            return Some(format!(
                "reseeding the kernel's generator: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    None
}
