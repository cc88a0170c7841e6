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

/// Loads objects with libbpf. Made only by [`Libbpf::new`], which routes
/// libbpf's messages here: without them a refusal has no reason.
pub struct Libbpf {
    _messages_routed: (),
}

impl Libbpf {
    /// Routes libbpf's messages to this loader.
    pub fn new() -> Self {
        // SAFETY: `print` matches libbpf's print callback and lives for the
        // whole process.
        unsafe { sys::libbpf_set_print(Some(print)) };
        Self {
            _messages_routed: (),
        }
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

#[cfg(test)]
mod tests {
    use kmatrix_protocol::{GlobalSetting, MapSetting};

    use super::*;
    use crate::isolate::globalize_static_programs;
    use crate::test_data::{build, LOADER};

    /// libbpf's messages go to one buffer: one test opens at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn open(plan: &ObjectPlan, data: &[u8], program: &str) -> Result<Opened, Verdict> {
        Libbpf::new();
        Opened::open(plan, data, program, None)
    }

    fn map_setting(name: &str, max_entries: Option<u32>, value_size: Option<u32>) -> MapSetting {
        MapSetting {
            name: name.into(),
            max_entries,
            value_size,
        }
    }

    #[test]
    fn a_static_program_stops_libbpf_and_the_globalized_copy_opens() {
        let _serial = SERIAL.lock();
        let data = build(LOADER, "bpf", &["WITH_STATIC"]);
        let plan = ObjectPlan::default();
        match open(&plan, &data, "count") {
            Err(Verdict::Unsupported {
                loader: Loader::Libbpf,
                error,
            }) => assert!(
                error.contains("program 'classify' is static and not supported"),
                "{error}"
            ),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("libbpf 1.7 opened an object with a static program"),
        }
        let globalized = globalize_static_programs(&data).expect("globalize");
        assert_eq!(globalized.programs, ["classify"]);
        for program in ["count", "classify"] {
            let opened = open(&plan, &globalized.object, program)
                .unwrap_or_else(|v| panic!("{program}: {v:?}"));
            // SAFETY: the program belongs to the open object.
            let name = unsafe { CStr::from_ptr(sys::bpf_program__name(opened.prog)) };
            assert_eq!(name.to_str(), Ok(program));
        }
    }

    #[test]
    fn only_the_planned_program_loads() {
        let _serial = SERIAL.lock();
        let data = build(LOADER, "bpf", &[]);
        let opened = open(&ObjectPlan::default(), &data, "count_too").expect("open");
        let mut autoloaded = Vec::new();
        let mut prog = std::ptr::null_mut();
        loop {
            // SAFETY: `obj` is open; `prog` is null or one of its programs.
            prog = unsafe { sys::bpf_object__next_program(opened.obj, prog) };
            if prog.is_null() {
                break;
            }
            // SAFETY: as above.
            if unsafe { sys::bpf_program__autoload(prog) } {
                // SAFETY: as above; the name is a C string.
                let name = unsafe { CStr::from_ptr(sys::bpf_program__name(prog)) };
                autoloaded.push(name.to_string_lossy().into_owned());
            }
        }
        assert_eq!(autoloaded, ["count_too"]);
        assert_eq!(
            open(&ObjectPlan::default(), &data, "over").err(),
            Some(missing("program", "over")),
            "a .text function is no program"
        );
    }

    #[test]
    fn the_suite_settings_are_applied_before_the_load() {
        let _serial = SERIAL.lock();
        let data = build(LOADER, "bpf", &[]);
        let plan = ObjectPlan {
            maps: vec![
                map_setting("stacks", Some(1024), Some(8 * 127)),
                map_setting("ring", Some(4096), None),
            ],
            globals: vec![GlobalSetting {
                name: "limit".into(),
                value: vec![1, 2, 3, 4, 5, 6, 7, 8],
            }],
            ..ObjectPlan::default()
        };
        let opened = open(&plan, &data, "record_stack").expect("open");
        let sizes = |name: &str| {
            let map = opened.map(name).expect(name);
            // SAFETY: `map` belongs to the open object.
            unsafe {
                (
                    sys::bpf_map__max_entries(map),
                    sys::bpf_map__value_size(map),
                )
            }
        };
        assert_eq!(sizes("stacks"), (1024, 8 * 127));
        assert_eq!(sizes("ring").0, 4096);
        let rodata = opened.map(".rodata").expect(".rodata");
        let mut size = 0;
        // SAFETY: libbpf returns the map's initial value and its size.
        let value = unsafe { sys::bpf_map__initial_value(rodata, &mut size) };
        // SAFETY: `value` holds `size` bytes while the object is open.
        let value = unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size as usize) };
        assert_eq!(&value[..4], 0x11223344u32.to_le_bytes(), "threshold kept");
        assert_eq!(&value[8..16], [1, 2, 3, 4, 5, 6, 7, 8]);

        for (plan, verdict) in [
            (
                ObjectPlan {
                    maps: vec![map_setting("nope", Some(1), None)],
                    ..ObjectPlan::default()
                },
                missing("map", "nope"),
            ),
            (
                ObjectPlan {
                    globals: vec![GlobalSetting {
                        name: "nope".into(),
                        value: vec![0],
                    }],
                    ..ObjectPlan::default()
                },
                missing("global", "nope"),
            ),
            (
                ObjectPlan {
                    globals: vec![GlobalSetting {
                        name: "limit".into(),
                        value: vec![0; 9],
                    }],
                    ..ObjectPlan::default()
                },
                missing("global", "limit"),
            ),
        ] {
            assert_eq!(open(&plan, &data, "count").err(), Some(verdict));
        }
    }

    #[test]
    fn a_refused_map_gets_the_hint_of_its_sizes_as_libbpf_made_it() {
        let _serial = SERIAL.lock();
        let data = build(LOADER, "bpf", &[]);
        let refused = |name: &str| format!("libbpf: map '{name}': failed to create: -EINVAL\n");
        let bare = open(&ObjectPlan::default(), &data, "record_stack").expect("open");
        assert_eq!(
            bare.refused_map_hint(&refused("stacks")).as_deref(),
            Some("map `stacks` is declared with max_entries 0 and value_size 0, for its loader to size at run time: give them in the suite, `maps = { stacks = { max_entries = N, value_size = BYTES } }`")
        );
        assert_eq!(bare.refused_map_hint(&refused("sized_events")), None);
        assert_eq!(bare.refused_map_hint("libbpf: failed to load\n"), None);
        let plan = ObjectPlan {
            maps: vec![map_setting("stacks", Some(1024), Some(8 * 127))],
            ..ObjectPlan::default()
        };
        let sized = open(&plan, &data, "record_stack").expect("open");
        assert_eq!(sized.refused_map_hint(&refused("stacks")), None);
    }

    #[test]
    fn libbpf_warnings_are_one_line_each() {
        assert_eq!(
            summary("libbpf: map 'stacks': failed to create\n\nlibbpf:   failed to load object\n"),
            "map 'stacks': failed to create; failed to load object"
        );
        assert_eq!(summary("\n"), "libbpf said nothing more");
        assert_eq!(log_text(b"0: R1=ctx\n\0\0stale".to_vec()), "0: R1=ctx\n");
        assert_eq!(log_text(b"full".to_vec()), "full");
    }
}
