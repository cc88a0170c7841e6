//! The kernel's BTF for aya, parsed once (unless it cannot be hidden from
//! aya's loaders, see [`KernelBtf::bare_loader`]): in the background from
//! boot, at idle priority (the guest has one CPU, so the parse takes only
//! the time the agent spends waiting for the port and the host's input),
//! and waited for only by a load that needs it. aya's loaders are made
//! without it ([`bare_loader`]) and given it where the object's CO-RE
//! relocations or the program's kind call for it.

use std::io;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::{Btf, EbpfLoader};

/// Where the kernel exposes its BTF, and where aya reads it.
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF: being parsed, parsed (`None` where the kernel has
/// none), or to be parsed at first use.
pub struct KernelBtf {
    state: State,
    /// Time the agent spent parsing it, or waiting for its parse.
    waited: Duration,
    /// Whether loaders can be made where it cannot be read (known after
    /// the first try; a failure is said once, on the console).
    hiding: Option<bool>,
}

enum State {
    Lazy,
    /// The thread gives the BTF and when it began parsing it.
    Parsing(JoinHandle<(Option<Btf>, Instant)>),
    Parsed(Option<&'static Btf>),
}

impl KernelBtf {
    /// Starts the parse in a thread at idle priority (`SCHED_IDLE`), which
    /// first warms aya's kernel feature probes, which every aya load needs.
    pub fn spawn() -> Self {
        let thread = std::thread::Builder::new()
            .name("kernel-btf".into())
            .spawn(|| {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: sets the calling thread's policy from a valid
                // `sched_param`; on failure it runs at normal priority.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                aya::features();
                let begun = Instant::now();
                (Btf::from_sys_fs().ok(), begun)
            });
        Self {
            // Without a thread, the first use parses.
            state: thread.map_or(State::Lazy, State::Parsing),
            waited: Duration::ZERO,
            hiding: None,
        }
    }

    /// Parsed at first use, in the caller's thread.
    pub fn lazy() -> Self {
        Self {
            state: State::Lazy,
            waited: Duration::ZERO,
            hiding: None,
        }
    }

    /// The kernel's BTF (`None` where it has none), waiting for its parse
    /// (not for the feature probes before it, which loads wait for anyway).
    pub fn get(&mut self) -> Option<&'static Btf> {
        let mut begun = Instant::now();
        let parsed = match std::mem::replace(&mut self.state, State::Lazy) {
            State::Parsed(btf) => return self.keep(btf),
            State::Lazy => Btf::from_sys_fs().ok(),
            State::Parsing(thread) => match thread.join() {
                Ok((btf, parse_begun)) => {
                    begun = begun.max(parse_begun);
                    btf
                }
                // A thread that panicked parsed nothing: parse here.
                Err(_) => Btf::from_sys_fs().ok(),
            },
        };
        self.waited += Instant::now().saturating_duration_since(begun);
        // The agent runs once per VM: what it leaks lives as long as the
        // loaders and programs that borrow it.
        self.keep(parsed.map(|btf| &*Box::leak(Box::new(btf))))
    }

    /// Waits for the background thread, if it still runs, and lets go of
    /// what it parsed (a later use parses again): for a program of the
    /// user's, which must not run beside aya's feature probes or share
    /// the guest's memory with a BTF nothing will use.
    pub fn settle(&mut self) {
        if let State::Parsing(thread) = std::mem::replace(&mut self.state, State::Lazy) {
            let _ = thread.join();
        }
    }

    fn keep(&mut self, btf: Option<&'static Btf>) -> Option<&'static Btf> {
        self.state = State::Parsed(btf);
        btf
    }

    /// Whether it has been parsed (and waited for).
    pub fn is_parsed(&self) -> bool {
        matches!(self.state, State::Parsed(_))
    }

    /// Time the agent spent parsing the kernel's BTF, or waiting for its
    /// parse (the background's own time is idle time).
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

/// Runs `make` in a thread of its own whose root is an empty directory,
/// where the kernel's BTF cannot be read: a thread that `unshare`s its
/// filesystem attributes (`CLONE_FS`) changes its root alone.
fn hidden<T: Send + 'static>(make: fn() -> T) -> io::Result<T> {
    let empty = std::env::temp_dir().join("kmatrix-no-btf");
    std::fs::create_dir_all(&empty)?;
    std::thread::Builder::new()
        .name("bare-loader".into())
        .spawn(move || {
            // SAFETY: unshare takes flags alone; CLONE_FS gives this thread
            // its own root and working directory.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(io::Error::last_os_error());
            }
            nix::unistd::chroot(&empty)?;
            nix::unistd::chdir("/")?;
            if Path::new(VMLINUX).exists() {
                return Err(io::Error::other(format!("{VMLINUX} is still visible")));
            }
            Ok(make())
        })?
        .join()
        .map_err(|_| io::Error::other("the thread panicked"))?
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
        let mut btf = KernelBtf::lazy();
        let loader = btf.bare_loader();
        assert!(!has_btf(&loader), "the bare loader parsed the kernel's BTF");
        assert!(!btf.is_parsed());
        assert_eq!(btf.waited(), Duration::ZERO, "made without parsing");
        // The thread's root was its own.
        assert!(Path::new(VMLINUX).exists());
    }

    #[test]
    fn settling_ends_the_background_parse_and_keeps_nothing() {
        let mut btf = KernelBtf::spawn();
        assert!(matches!(btf.state, State::Parsing(_)));
        btf.settle();
        assert!(matches!(btf.state, State::Lazy), "the thread was joined");
        assert!(!btf.is_parsed());
        assert_eq!(btf.waited(), Duration::ZERO, "nothing was waited for");
    }

    #[test]
    fn the_kernels_btf_is_parsed_once_and_its_wait_counted() {
        if !Path::new(VMLINUX).exists() {
            eprintln!("skipped: needs {VMLINUX}");
            return;
        }
        for mut btf in [KernelBtf::lazy(), KernelBtf::spawn()] {
            assert!(!btf.is_parsed());
            let first = btf.get().expect("the host's BTF");
            assert!(btf.is_parsed());
            let waited = btf.waited();
            let again = btf.get().expect("the host's BTF");
            assert!(std::ptr::eq(first, again), "parsed once");
            assert_eq!(btf.waited(), waited, "nothing waited for the second time");
        }
        assert!(KernelBtf::lazy().waited().is_zero());
    }
}
