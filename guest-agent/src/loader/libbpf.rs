//! The libbpf loader: libbpf itself, linked statically, as most C and Go
//! projects ship it. It knows every `SEC()` name, `.kconfig` externs,
//! CO-RE into flexible arrays and struct_ops, and sizes PERF_EVENT_ARRAY
//! maps to the possible CPUs.
//!
//! Each program loads alone (every other program's autoload is off). When
//! the kernel rejects it, it is loaded once more with a log buffer that
//! grows until the verifier's whole log fits, so the log is the same as
//! aya's.

use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::BorrowedFd;
use std::sync::Mutex;

use kmatrix_protocol::{Loader, ObjectPlan, ProgramStats, Verdict};
use libbpf_sys as sys;

use super::common::{missing, unsized_hint, Instance};
use super::elf::global_location;

/// What libbpf printed during the current load.
static MESSAGES: Mutex<String> = Mutex::new(String::new());

/// The first verifier log buffer; it doubles up to [`MAX_LOG_BUF`].
const FIRST_LOG_BUF: usize = 1 << 20;
const MAX_LOG_BUF: usize = 256 << 20;

/// The buffer for the statistics alone (a few lines).
const STATS_LOG_BUF: usize = 16 * 1024;

/// `BPF_LOG_LEVEL1`: the verifier's whole log.
const LOG_VERBOSE: u32 = 1;

/// `BPF_LOG_STATS`: its statistics (time, stack depth, instructions and
/// states).
const LOG_STATS: u32 = 4;

extern "C" {
    fn vsnprintf(
        buf: *mut c_char,
        size: usize,
        fmt: *const c_char,
        args: *mut sys::__va_list_tag,
    ) -> c_int;
}

unsafe extern "C" fn print(
    level: sys::libbpf_print_level,
    fmt: *const c_char,
    args: *mut sys::__va_list_tag,
) -> c_int {
    if level == sys::LIBBPF_DEBUG {
        return 0;
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `fmt` and `args` come from libbpf as a printf pair; `buf`
    // has room for `buf.len()` bytes, which vsnprintf does not exceed.
    let n = unsafe { vsnprintf(buf.as_mut_ptr().cast(), buf.len(), fmt, args) };
    if n > 0 {
        buf.truncate((n as usize).min(buf.len() - 1));
        if let Ok(mut messages) = MESSAGES.lock() {
            messages.push_str(&String::from_utf8_lossy(&buf));
        }
    }
    0
}

/// Loads objects with libbpf.
pub struct Libbpf;

impl Libbpf {
    /// Routes libbpf's messages to this loader.
    pub fn new() -> Self {
        // SAFETY: `print` matches libbpf's print callback and lives for the
        // whole process.
        unsafe { sys::libbpf_set_print(Some(print)) };
        Self
    }

    /// Loads `program` of `object` in a fresh instance of the object.
    pub fn load(
        &mut self,
        object: &ObjectPlan,
        data: &[u8],
        program: &str,
    ) -> Result<Box<dyn Instance>, Verdict> {
        // The first load asks only for the verifier's statistics, which it
        // prints whether or not the program loads.
        let mut stats_log = vec![0u8; STATS_LOG_BUF];
        let mut first = Opened::open(object, data, program, Some((&mut stats_log, LOG_STATS)))?;
        let err = match first.load() {
            Ok(()) => {
                first.stats = ProgramStats::from_log(&log_text(stats_log));
                return Ok(Box::new(first));
            }
            Err(err) => err,
        };
        let messages = take_messages();
        if !messages.contains("BPF program load failed") {
            // libbpf stopped before the kernel saw the program: a map the
            // kernel refused, a relocation against this kernel's BTF.
            let mut error = format!("{}: {}", strerror(err), summary(&messages));
            if messages.contains("missing BPF prog type") {
                // A section name libbpf does not know: its limit, not the
                // kernel's verdict.
                return Err(Verdict::Unsupported {
                    loader: Loader::Libbpf,
                    error,
                });
            }
            if let Some(hint) = first.refused_map_hint(&messages) {
                error.push_str(&format!(" ({hint})"));
            }
            return Err(Verdict::Failed { error });
        }
        drop(first);
        // Again, for the verifier's whole log.
        let mut size = FIRST_LOG_BUF;
        loop {
            let mut log = vec![0u8; size];
            let again = Opened::open(
                object,
                data,
                program,
                Some((&mut log, LOG_VERBOSE | LOG_STATS)),
            )?;
            let err = match again.load() {
                // Loaded this time after all: it is the kernel's to accept.
                Ok(()) => return Ok(Box::new(again)),
                Err(err) => err,
            };
            take_messages();
            if err == -libc::ENOSPC && size < MAX_LOG_BUF {
                size *= 2;
                continue;
            }
            return Err(Verdict::Rejected {
                error: strerror(err),
                verifier_log: log_text(log),
            });
        }
    }
}

impl Libbpf {
    /// The verifier's statistics (`BPF_LOG_STATS`) for `program` as libbpf
    /// loads it: for a program another loader loaded, whose own load gave
    /// no log. `None` when libbpf cannot open or load it.
    pub fn stats_of(
        &mut self,
        object: &ObjectPlan,
        data: &[u8],
        program: &str,
    ) -> Option<ProgramStats> {
        let mut log = vec![0u8; STATS_LOG_BUF];
        let opened = Opened::open(object, data, program, Some((&mut log, LOG_STATS))).ok()?;
        let loaded = opened.load().is_ok();
        drop(opened);
        take_messages();
        loaded.then(|| ProgramStats::from_log(&log_text(log)))
    }
}

impl Default for Libbpf {
    fn default() -> Self {
        Self::new()
    }
}

/// A log buffer's text, up to its NUL.
fn log_text(mut log: Vec<u8>) -> String {
    let len = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    log.truncate(len);
    String::from_utf8_lossy(&log).into_owned()
}

fn take_messages() -> String {
    MESSAGES
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default()
}

/// libbpf's warnings, on one line each, without its `libbpf: ` prefixes.
fn summary(messages: &str) -> String {
    let lines: Vec<&str> = messages
        .lines()
        .map(|l| l.trim_start_matches("libbpf: ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "libbpf said nothing more".into()
    } else {
        lines.join("; ")
    }
}

fn strerror(err: c_int) -> String {
    std::io::Error::from_raw_os_error(-err).to_string()
}

/// An opened object, freed on drop.
struct Opened {
    obj: *mut sys::bpf_object,
    prog: *mut sys::bpf_program,
    /// What the verifier said about the loaded program.
    stats: ProgramStats,
}

impl Drop for Opened {
    fn drop(&mut self) {
        // SAFETY: `obj` came from bpf_object__open_mem and is closed once.
        unsafe { sys::bpf_object__close(self.obj) }
    }
}

impl Opened {
    /// Opens `data` with only `program` to load and the plan's settings
    /// applied; with `log`, the verifier's log at that level goes there.
    fn open(
        plan: &ObjectPlan,
        data: &[u8],
        program: &str,
        log: Option<(&mut Vec<u8>, u32)>,
    ) -> Result<Self, Verdict> {
        take_messages();
        let name = CString::new(format!("obj{}", plan.index)).expect("no NUL");
        // SAFETY: all-zero is the documented "unset" value of every field.
        let mut opts: sys::bpf_object_open_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<sys::bpf_object_open_opts>() as u64;
        opts.object_name = name.as_ptr();
        // SAFETY: `data` outlives the call (libbpf copies it), `opts` is
        // initialised as libbpf expects.
        let obj =
            unsafe { sys::bpf_object__open_mem(data.as_ptr().cast(), data.len() as u64, &opts) };
        if obj.is_null() {
            let err = std::io::Error::last_os_error();
            return Err(Verdict::Unsupported {
                loader: Loader::Libbpf,
                error: format!(
                    "cannot open the object ({err}): {}",
                    summary(&take_messages())
                ),
            });
        }
        let mut opened = Self {
            obj,
            prog: std::ptr::null_mut(),
            stats: ProgramStats::default(),
        };
        let mut prog = std::ptr::null_mut();
        loop {
            // SAFETY: `obj` is open; `prog` is null or one of its programs.
            prog = unsafe { sys::bpf_object__next_program(obj, prog) };
            if prog.is_null() {
                break;
            }
            // SAFETY: `prog` belongs to `obj`; its name is a C string.
            let this = unsafe { CStr::from_ptr(sys::bpf_program__name(prog)) };
            let wanted = this.to_bytes() == program.as_bytes();
            // SAFETY: as above.
            unsafe { sys::bpf_program__set_autoload(prog, wanted) };
            if wanted {
                opened.prog = prog;
            }
        }
        if opened.prog.is_null() {
            return Err(missing("program", program));
        }
        if let Some((log, level)) = log {
            // SAFETY: `log` outlives the load that writes into it.
            unsafe {
                sys::bpf_program__set_log_buf(
                    opened.prog,
                    log.as_mut_ptr().cast(),
                    log.len() as u64,
                );
                sys::bpf_program__set_log_level(opened.prog, level);
            }
        }
        for setting in &plan.maps {
            let map = opened
                .map(&setting.name)
                .ok_or_else(|| missing("map", &setting.name))?;
            let check = |size: &str, err: c_int| match err {
                0 => Ok(()),
                err => Err(Verdict::Unsupported {
                    loader: Loader::Libbpf,
                    error: format!(
                        "cannot set the {size} of map `{}`: {}",
                        setting.name,
                        strerror(err)
                    ),
                }),
            };
            if let Some(max_entries) = setting.max_entries {
                // SAFETY: `map` belongs to the open object, not yet loaded.
                let err = unsafe { sys::bpf_map__set_max_entries(map, max_entries) };
                check("max_entries", err)?;
            }
            if let Some(value_size) = setting.value_size {
                // SAFETY: as above.
                let err = unsafe { sys::bpf_map__set_value_size(map, value_size) };
                check("value_size", err)?;
            }
        }
        for global in &plan.globals {
            let (section, offset) = global_location(data, &global.name)
                .ok_or_else(|| missing("global", &global.name))?;
            let map = opened
                .map(&section)
                .ok_or_else(|| missing("section map", &section))?;
            let mut size = 0;
            // SAFETY: `map` belongs to the open object; libbpf returns its
            // initial value's buffer and size.
            let value = unsafe { sys::bpf_map__initial_value(map, &mut size) };
            if value.is_null() || (offset + global.value.len()) as u64 > size {
                return Err(missing("global", &global.name));
            }
            // SAFETY: bounds checked above.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    global.value.as_ptr(),
                    value.cast::<u8>().add(offset),
                    global.value.len(),
                )
            };
        }
        Ok(opened)
    }

    /// [`unsized_hint`] for the map libbpf's `messages` say the kernel
    /// refused to create, as libbpf created it.
    fn refused_map_hint(&self, messages: &str) -> Option<String> {
        let mut map = std::ptr::null_mut();
        loop {
            // SAFETY: `obj` is open; `map` is null or one of its maps.
            map = unsafe { sys::bpf_object__next_map(self.obj, map) };
            if map.is_null() {
                return None;
            }
            // SAFETY: `map` belongs to `obj`; its name is a C string.
            let name = unsafe { CStr::from_ptr(sys::bpf_map__name(map)) }.to_string_lossy();
            if messages.contains(&format!("map '{name}': failed to create")) {
                // SAFETY: as above.
                let (map_type, max_entries, value_size) = unsafe {
                    (
                        sys::bpf_map__type(map),
                        sys::bpf_map__max_entries(map),
                        sys::bpf_map__value_size(map),
                    )
                };
                return unsized_hint(&name, map_type, max_entries, value_size);
            }
        }
    }

    fn map(&self, name: &str) -> Option<*mut sys::bpf_map> {
        let name = CString::new(name).ok()?;
        // SAFETY: `obj` is open; `name` is a C string.
        let map = unsafe { sys::bpf_object__find_map_by_name(self.obj, name.as_ptr()) };
        (!map.is_null()).then_some(map)
    }

    /// Loads the object: 0, or a negative errno.
    fn load(&self) -> Result<(), c_int> {
        // SAFETY: `obj` is open and not yet loaded.
        let err = unsafe { sys::bpf_object__load(self.obj) };
        if err == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

impl Instance for Opened {
    fn stats(&self) -> ProgramStats {
        self.stats.clone()
    }

    fn program_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the program is loaded; its fd lives as long as `self`.
        unsafe { BorrowedFd::borrow_raw(sys::bpf_program__fd(self.prog)) }
    }

    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, String> {
        let cname = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: `obj` is loaded; `cname` is a C string.
        let fd = unsafe { sys::bpf_object__find_map_fd_by_name(self.obj, cname.as_ptr()) };
        if fd < 0 {
            return Err(format!("the object has no map `{name}`"));
        }
        // SAFETY: the map's fd lives as long as `self`.
        Ok(unsafe { BorrowedFd::borrow_raw(fd) })
    }
}
