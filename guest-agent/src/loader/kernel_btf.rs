//! The kernel's BTF for aya, parsed once, at first use, by a load that
//! needs it (unless it cannot be hidden from aya's loaders, see
//! [`KernelBtf::bare_loader`]). aya's loaders are made without it and given
//! it where the object's CO-RE relocations or the program's kind call for
//! it. It is not parsed in the background: the guest has one CPU, and a
//! parse beside the agent's start slowed the start more than it saved (see
//! ARCHITECTURE.md, "The cold path").

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::{Btf, EbpfLoader};

/// Where the kernel exposes its BTF, and where aya reads it.
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF: parsed (`None` where the kernel has none), or to be
/// parsed at first use.
pub struct KernelBtf {
    parsed: Option<Option<&'static Btf>>,
    /// Time the agent spent parsing it.
    waited: Duration,
    /// Whether loaders can be made where it cannot be read (known after
    /// the first try; a failure is said once, on the console).
    hiding: Option<bool>,
}

impl KernelBtf {
    /// Not parsed yet.
    pub fn new() -> Self {
        Self {
            parsed: None,
            waited: Duration::ZERO,
            hiding: None,
        }
    }

    /// The kernel's BTF (`None` where it has none), parsed at the first
    /// call.
    pub fn get(&mut self) -> Option<&'static Btf> {
        if let Some(parsed) = self.parsed {
            return parsed;
        }
        let begun = Instant::now();
        // The agent runs once per VM: what it leaks lives as long as the
        // loaders and programs that borrow it.
        let parsed = Btf::from_sys_fs()
            .ok()
            .map(|btf| &*Box::leak(Box::new(btf)));
        self.waited += begun.elapsed();
        self.parsed = Some(parsed);
        parsed
    }

    /// Whether it has been parsed.
    #[cfg(test)]
    pub fn is_parsed(&self) -> bool {
        self.parsed.is_some()
    }

    /// Time the agent spent parsing it.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// An aya loader that has not parsed the kernel's BTF, for the caller
    /// to give it ([`EbpfLoader::btf`]). `EbpfLoader::new` always parses
    /// it, so the loader is made where it cannot be read ([`hidden`]);
    /// where that fails, it is not tried again: loaders are made plainly,
    /// each parse counted as waited for.
    pub fn bare_loader(&mut self) -> EbpfLoader<'static> {
        if self.hiding != Some(false) {
            match hidden(EbpfLoader::new) {
                Ok(loader) => {
                    self.hiding = Some(true);
                    return loader;
                }
                Err(err) => {
                    eprintln!("kmatrix-agent: aya's loaders parse the kernel's BTF each time: it cannot be hidden from them: {err}");
                    self.hiding = Some(false);
                }
            }
        }
        let begun = Instant::now();
        let loader = EbpfLoader::new();
        self.waited += begun.elapsed();
        loader
    }
}

impl Default for KernelBtf {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `make` in the calling thread with an empty directory as its root,
/// where the kernel's BTF cannot be read, and puts the root back. The
/// thread first takes its own filesystem attributes (`CLONE_FS`), so that
/// no other thread's root moves. In the thread, not a thread of its own:
/// under emulation a guest's first thread costs several milliseconds.
fn hidden<T>(make: fn() -> T) -> io::Result<T> {
    let empty = std::env::temp_dir().join("kmatrix-no-btf");
    std::fs::create_dir_all(&empty)?;
    // SAFETY: unshare takes flags alone; CLONE_FS gives this thread its
    // own root and working directory.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let root = File::open("/")?;
    let cwd = File::open(".")?;
    nix::unistd::chroot(&empty)?;
    let made = nix::unistd::chdir("/")
        .map_err(io::Error::from)
        .and_then(|()| match Path::new(VMLINUX).exists() {
            true => Err(io::Error::other(format!("{VMLINUX} is still visible"))),
            false => Ok(make()),
        });
    // A root's directory outside the chroot, made the root again.
    let restored = nix::unistd::fchdir(root.as_raw_fd())
        .and_then(|()| nix::unistd::chroot("."))
        .and_then(|()| nix::unistd::fchdir(cwd.as_raw_fd()));
    if let Err(err) = restored {
        panic!("putting the agent's root back after making an aya loader: {err}");
    }
    made
}

/// Whether `object` (as aya will load it) has CO-RE relocations, which aya
/// applies against the kernel's BTF, or skips without it.
pub fn has_core_relocations(object: &aya_obj::Object) -> bool {
    object.has_btf_relocations()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        (unsafe { libc::geteuid() }) == 0
    }

    #[test]
    fn a_bare_loader_has_not_parsed_the_kernels_btf() {
        if !is_root() || !Path::new(VMLINUX).exists() {
            eprintln!("skipped: needs root (chroot) and {VMLINUX}");
            return;
        }
        // The loader's BTF is private; its Debug output shows whether it
        // has one.
        let has_btf = |loader: &EbpfLoader<'_>| !format!("{loader:?}").contains("btf: None");
        assert!(has_btf(&EbpfLoader::new()), "aya parses it when it can");
        let cwd = std::env::current_dir().unwrap();
        let mut btf = KernelBtf::new();
        let loader = btf.bare_loader();
        assert!(!has_btf(&loader), "the bare loader parsed the kernel's BTF");
        assert!(!btf.is_parsed());
        assert_eq!(btf.waited(), Duration::ZERO, "made without parsing");
        // The root and working directory are back.
        assert!(Path::new(VMLINUX).exists());
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert!(has_btf(&EbpfLoader::new()), "aya reads it again");
    }

    #[test]
    fn the_kernels_btf_is_parsed_once_and_its_wait_counted() {
        if !Path::new(VMLINUX).exists() {
            eprintln!("skipped: needs {VMLINUX}");
            return;
        }
        let mut btf = KernelBtf::new();
        assert!(!btf.is_parsed());
        assert!(btf.waited().is_zero());
        let first = btf.get().expect("the host's BTF");
        assert!(btf.is_parsed());
        let waited = btf.waited();
        assert!(!waited.is_zero());
        let again = btf.get().expect("the host's BTF");
        assert!(std::ptr::eq(first, again), "parsed once");
        assert_eq!(btf.waited(), waited, "nothing waited for the second time");
    }
}
