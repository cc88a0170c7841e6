//! The aya loader: every map type aya can create (`allow_unsupported_maps`),
//! PERF_EVENT_ARRAY maps of 0 entries sized to the possible CPUs as libbpf
//! sizes them, the suite's map sizes (value sizes through
//! [`set_value_sizes`], as aya's loader cannot set them) and read-only
//! globals, and what aya cannot express (a section it does not know, a
//! relocation it cannot do) reported as its limitation rather than the
//! kernel's verdict.
//!
//! aya relocates every program of an object at once, so each program is
//! loaded from an object in which aya sees it alone ([`isolate`]): a sibling
//! aya cannot relocate or parse is not the program's failure.
//!
//! The kernel's BTF is parsed at most once per run ([`KernelBtf`]), and
//! only for a load that needs it: an object with CO-RE relocations, or a
//! program kind attached through it.

use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{Map, MapError};
use aya::programs::{Program, ProgramError};
use aya::{Btf, Ebpf, EbpfError, EbpfLoader};
use kmatrix_protocol::{Loader, ObjectPlan, Verdict};

use super::common::{self, missing, Instance, PERF_EVENT_ARRAY};
use super::kernel_btf::{has_core_relocations, KernelBtf};
use crate::btf_maps::set_value_sizes;
use crate::error::chain;
use crate::isolate::{self, isolate};

/// Map types whose value size aya 0.14 sets itself, 4 or 8 bytes by the
/// kernel's features: CPUMAP, DEVMAP, DEVMAP_HASH.
const VALUE_SIZED_BY_AYA: [u32; 3] = [14, 16, 25];

/// Loads objects with aya.
pub struct Aya {
    /// The kernel's BTF, for CO-RE and BTF-attached kinds.
    btf: KernelBtf,
    /// The loader of the object last loaded from, by its index: made
    /// without the kernel's BTF, with the object's settings.
    loader: Option<(u32, EbpfLoader<'static>)>,
}

impl Aya {
    /// A loader; the kernel's BTF comes from `btf`.
    pub fn new(btf: KernelBtf) -> Self {
        Self { btf, loader: None }
    }

    /// Does now what loads would wait for (the kernel's BTF, aya's feature
    /// probes), so that a VM saved after this starts with it done.
    pub fn prepare(&mut self) {
        self.btf.get();
        aya::features();
    }

    /// Time spent parsing the kernel's BTF, or waiting for its parse.
    pub fn btf_waited(&self) -> std::time::Duration {
        self.btf.waited()
    }

    /// The loader for `object`, with its settings: the last one where it
    /// is the object last loaded from.
    fn loader_for(&mut self, object: &ObjectPlan) -> &mut EbpfLoader<'static> {
        if self
            .loader
            .as_ref()
            .is_none_or(|(index, _)| *index != object.index)
        {
            let mut loader = self.btf.bare_loader();
            loader.allow_unsupported_maps();
            for map in &object.maps {
                if let Some(max_entries) = map.max_entries {
                    loader.map_max_entries(leak(&map.name), max_entries);
                }
            }
            for global in &object.globals {
                let value: &'static [u8] = Box::leak(global.value.clone().into_boxed_slice());
                loader.override_global(leak(&global.name), value, true);
            }
            self.loader = Some((object.index, loader));
        }
        &mut self.loader.as_mut().expect("made above").1
    }

    /// The BTF to relocate `object`'s CO-RE relocations against: the
    /// kernel's where it has any (its parse waited for), none otherwise.
    /// Without the kernel's BTF, aya would load such an object unrelocated.
    /// The kernel's BTF, for an object with CO-RE relocations. Without
    /// it, an `isolated` program's own relocations cannot be made: the
    /// kernel's failure; a whole object's may be a sibling's, so aya
    /// cannot tell this program's verdict: its limitation.
    fn relocation_btf(
        &mut self,
        object: Option<&aya_obj::Object>,
        isolated: bool,
    ) -> Result<Option<&'static Btf>, Verdict> {
        if !object.is_some_and(has_core_relocations) {
            return Ok(None);
        }
        let without =
            "and the kernel has no BTF (/sys/kernel/btf/vmlinux) to relocate them against";
        self.btf.get().map(Some).ok_or_else(|| {
            if isolated {
                Verdict::Failed {
                    error: format!("the program has CO-RE relocations, {without}"),
                }
            } else {
                Verdict::Unsupported {
                    loader: Loader::Aya,
                    error: format!("aya loads this program with its whole object, which has CO-RE relocations (perhaps only a sibling's), {without}"),
                }
            }
        })
    }

    /// Loads `program` of `object` (in section `section`) in a fresh
    /// instance of the object, isolated where it can be (the whole object
    /// otherwise).
    pub fn load(
        &mut self,
        object: &ObjectPlan,
        data: &[u8],
        program: &str,
        section: &str,
    ) -> Result<Box<dyn Instance>, Verdict> {
        let value_sizes: Vec<_> = object
            .maps
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.value_size?)))
            .collect();
        let sized;
        let data = if value_sizes.is_empty() {
            data
        } else {
            sized = set_value_sizes(data, &value_sizes).map_err(|err| Verdict::Unsupported {
                loader: Loader::Aya,
                error: format!("cannot give aya the suite's value sizes: {err}"),
            })?;
            &sized[..]
        };
        let isolated = isolate(data, program);
        let loaded = isolated.as_deref().unwrap_or(data);
        // aya parses it again: where this fails, its load fails too.
        let parsed = aya_obj::Object::parse(loaded).ok();
        let btf = self.relocation_btf(parsed.as_ref(), isolated.is_ok())?;
        let loader = self.loader_for(object);
        loader.btf(btf);
        for name in parsed.iter().flat_map(unsized_perf_arrays) {
            if !object
                .maps
                .iter()
                .any(|m| m.name == name && m.max_entries.is_some())
            {
                loader.map_max_entries(leak(&name), possible_cpus());
            }
        }
        let mut ebpf = loader.load(loaded).map_err(|err| {
            let blame = match &isolated {
                Ok(_) => None,
                Err(why) => {
                    sibling_failure(&err, data, program, section).map(|sibling| (sibling, why))
                }
            };
            let mut verdict = object_verdict(err, |name| unsized_hint(loaded, object, name));
            if let (Some((sibling, why)), Verdict::Unsupported { error, .. }) =
                (blame, &mut verdict)
            {
                error.push_str(&format!(
                    " (from {sibling}, not from `{program}`, which could not be loaded alone: {why})"
                ));
            }
            verdict
        })?;
        let Some(prog) = ebpf.program_mut(program) else {
            return Err(missing("program", program));
        };
        let btf = if needs_btf(prog) {
            self.btf.get()
        } else {
            None
        };
        load_program(prog, section, btf).map_err(program_verdict)?;
        Ok(Box::new(AyaInstance {
            ebpf,
            program: program.to_owned(),
        }))
    }
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// The PERF_EVENT_ARRAY maps declared with 0 entries, which libbpf gives
/// one slot per possible CPU.
fn unsized_perf_arrays(object: &aya_obj::Object) -> Vec<String> {
    object
        .maps
        .iter()
        .filter(|(_, map)| map.max_entries() == 0 && map.map_type() == PERF_EVENT_ARRAY)
        .map(|(name, _)| name.clone())
        .collect()
}

/// [`common::unsized_hint`] for map `name` of `data` as aya creates it:
/// with `object`'s `max_entries` and the value size it was given.
fn unsized_hint(data: &[u8], object: &ObjectPlan, name: &str) -> Option<String> {
    let parsed = aya_obj::Object::parse(data).ok()?;
    let map = parsed.maps.get(name)?;
    let max_entries = object
        .maps
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.max_entries)
        .unwrap_or(map.max_entries());
    let value_size = if VALUE_SIZED_BY_AYA.contains(&map.map_type()) {
        4
    } else {
        map.value_size()
    };
    common::unsized_hint(name, map.map_type(), max_entries, value_size)
}

fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n as u32)
}

struct AyaInstance {
    ebpf: Ebpf,
    program: String,
}

impl Instance for AyaInstance {
    fn program_fd(&self) -> BorrowedFd<'_> {
        self.ebpf
            .program(&self.program)
            .and_then(|p| p.fd().ok())
            .expect("the program loaded")
            .as_fd()
    }

    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, String> {
        match self.ebpf.map(name) {
            Some(Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data)) => {
                Ok(data.fd().as_fd())
            }
            Some(_) => Err(format!(
                "map `{name}` is not an ARRAY, HASH or LRU_HASH map"
            )),
            None => Err(format!("the object has no map `{name}`")),
        }
    }
}

/// Why the object could not be loaded at all: aya's own limits (parsing,
/// relocations, map types it cannot create), or the kernel refusing a map,
/// with `hint`'s word on the map.
fn object_verdict(err: EbpfError, hint: impl FnOnce(&str) -> Option<String>) -> Verdict {
    let error = chain(&err);
    match &err {
        EbpfError::ParseError(_)
        | EbpfError::BtfError(_)
        | EbpfError::RelocationError(_)
        | EbpfError::BtfRelocationError(_)
        | EbpfError::MapError(MapError::Unsupported { .. } | MapError::InvalidMapType { .. }) => {
            Verdict::Unsupported {
                loader: Loader::Aya,
                error,
            }
        }
        EbpfError::MapError(MapError::CreateError { name, .. }) => Verdict::Failed {
            error: match hint(name) {
                Some(hint) => format!("{error} ({hint})"),
                None => error,
            },
        },
        _ => Verdict::Failed { error },
    }
}

/// The sibling of `program` (in section `section`) that `err`, aya's
/// failure on the whole object, comes from, where it names one: its
/// section (unless shared with `program`) or its name.
fn sibling_failure(err: &EbpfError, data: &[u8], program: &str, section: &str) -> Option<String> {
    let programs = isolate::programs(data).ok()?;
    let in_section = |name: &str| {
        let siblings: Vec<_> = programs
            .iter()
            .filter(|(p, s)| s == name && p != program)
            .map(|(p, _)| format!("`{p}`"))
            .collect();
        (name != section && !siblings.is_empty())
            .then(|| format!("section `{name}` of {}", siblings.join(", ")))
    };
    match err {
        EbpfError::BtfRelocationError(err) => in_section(&err.section),
        EbpfError::ParseError(aya_obj::ParseError::InvalidProgramSection { section }) => {
            in_section(section)
        }
        // aya names the function it failed on, and keeps it private.
        EbpfError::RelocationError(err) => {
            let text = err.to_string();
            let name = text.split('`').nth(1)?;
            (name != program && programs.iter().any(|(p, _)| p == name))
                .then(|| format!("`{name}`"))
        }
        _ => None,
    }
}

fn program_verdict(err: LoadFailure) -> Verdict {
    match err {
        LoadFailure::Program(ProgramError::LoadError {
            io_error,
            verifier_log,
        }) => Verdict::Rejected {
            error: io_error.to_string(),
            verifier_log: verifier_log.to_string(),
        },
        LoadFailure::Program(err) => Verdict::Failed { error: chain(&err) },
        LoadFailure::Other(error) => Verdict::Failed { error },
    }
}

/// Why a program did not load.
enum LoadFailure {
    Program(ProgramError),
    Other(String),
}

/// Whether loading `program` needs the kernel's BTF (for its target).
fn needs_btf(program: &Program) -> bool {
    matches!(
        program,
        Program::FEntry(_)
            | Program::FExit(_)
            | Program::Lsm(_)
            | Program::LsmCgroup(_)
            | Program::BtfTracePoint(_)
            | Program::Iter(_)
    )
}

fn load_program(
    program: &mut Program,
    section: &str,
    btf: Option<&Btf>,
) -> Result<(), LoadFailure> {
    // BTF-attached kinds name their target after the section's first `/`.
    let target = || {
        section
            .split_once('/')
            .map(|(_, target)| target)
            .filter(|target| !target.is_empty())
            .ok_or_else(|| {
                LoadFailure::Other(format!("section `{section}` names no attach target"))
            })
    };
    let btf = || {
        btf.ok_or_else(|| {
            LoadFailure::Other("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into())
        })
    };
    let result = match program {
        Program::FEntry(p) => p.load(target()?, btf()?),
        Program::FExit(p) => p.load(target()?, btf()?),
        Program::Lsm(p) => p.load(target()?, btf()?),
        Program::LsmCgroup(p) => p.load(target()?, btf()?),
        Program::BtfTracePoint(p) => p.load(target()?, btf()?),
        Program::Iter(p) => p.load(target()?, btf()?),
        Program::Extension(_) => {
            return Err(LoadFailure::Other(
                "freplace programs load against a target program, which a load check has not"
                    .into(),
            ))
        }
        Program::KProbe(p) => p.load(),
        Program::UProbe(p) => p.load(),
        Program::TracePoint(p) => p.load(),
        Program::SocketFilter(p) => p.load(),
        Program::ReusePortSocketFilter(p) => p.load(),
        Program::Xdp(p) => p.load(),
        Program::SkMsg(p) => p.load(),
        Program::SkSkb(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::SockOps(p) => p.load(),
        Program::SchedClassifier(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        Program::CgroupSysctl(p) => p.load(),
        Program::CgroupSockopt(p) => p.load(),
        Program::LircMode2(p) => p.load(),
        Program::PerfEvent(p) => p.load(),
        Program::RawTracePoint(p) => p.load(),
        Program::FlowDissector(p) => p.load(),
        Program::SkLookup(p) => p.load(),
        Program::SkReuseport(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        Program::CgroupDevice(p) => p.load(),
    };
    result.map_err(LoadFailure::Program)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kmatrix_protocol::MapSetting;

    use super::*;
    use crate::test_data::{all_btf_features, build, host_btf, ISOLATE as SOURCE, LOADER};

    /// aya's failure on the whole object, at its CO-RE relocations.
    fn whole_object_failure(data: &[u8]) -> EbpfError {
        let mut object = aya_obj::Object::parse(data).expect("parse");
        object.patch_map_data(HashMap::new()).expect("globals");
        object
            .fixup_and_sanitize_btf(&all_btf_features())
            .expect("BTF");
        EbpfError::BtfRelocationError(
            object
                .relocate_btf(&host_btf())
                .expect_err("aya-obj fails on mount_entry"),
        )
    }

    #[test]
    fn a_whole_object_failure_names_the_sibling_it_comes_from() {
        let data = build(SOURCE, "bpf", &["INLINE"]);
        let err = whole_object_failure(&data);
        assert_eq!(
            sibling_failure(
                &err,
                &data,
                "mount_exit",
                "tracepoint/syscalls/sys_exit_mount"
            )
            .as_deref(),
            Some("section `tracepoint/syscalls/sys_enter_mount` of `mount_entry`")
        );
        let own = sibling_failure(
            &err,
            &data,
            "mount_entry",
            "tracepoint/syscalls/sys_enter_mount",
        );
        assert_eq!(own, None);
    }

    #[test]
    fn a_failure_in_text_names_no_sibling() {
        let data = build(SOURCE, "bpf", &[]);
        let err = whole_object_failure(&data);
        let blamed = sibling_failure(
            &err,
            &data,
            "mount_exit",
            "tracepoint/syscalls/sys_exit_mount",
        );
        assert_eq!(blamed, None, "{}", chain(&err));
    }

    #[test]
    fn only_perf_event_arrays_without_entries_get_one_per_cpu() {
        let data = build(LOADER, "bpf", &[]);
        let object = aya_obj::Object::parse(&data).expect("parse");
        assert_eq!(unsized_perf_arrays(&object), ["events"]);
    }

    #[test]
    fn only_objects_with_co_re_relocations_wait_for_the_kernels_btf() {
        let isolated = |defines: &[&str], program: &str| {
            let data = isolate(&build(SOURCE, "bpf", defines), program).expect("isolated");
            aya_obj::Object::parse(&data).expect("parse")
        };
        let plain = isolated(&[], "pass");
        let core = isolated(&["ONLY_GOOD"], "mount_exit");
        assert!(!has_core_relocations(&plain));
        assert!(has_core_relocations(&core), "BPF_CORE_READ relocates");

        let mut aya = Aya::new(KernelBtf::new());
        assert_eq!(
            aya.relocation_btf(Some(&plain), true).map(|b| b.is_some()),
            Ok(false)
        );
        assert_eq!(
            aya.relocation_btf(None, true).map(|b| b.is_some()),
            Ok(false)
        );
        assert!(
            !aya.btf.is_parsed(),
            "an object without CO-RE waits for nothing"
        );
        let relocation = aya.relocation_btf(Some(&core), true);
        assert!(aya.btf.is_parsed());
        let whole = aya.relocation_btf(Some(&core), false);
        match Btf::from_sys_fs() {
            Ok(_) => assert!(matches!((relocation, whole), (Ok(Some(_)), Ok(Some(_))))),
            Err(_) => {
                assert!(
                    matches!(&relocation, Err(Verdict::Failed { error }) if error.contains("CO-RE")),
                    "without the kernel's BTF, a CO-RE program fails: {relocation:?}"
                );
                assert!(
                    matches!(&whole, Err(Verdict::Unsupported { error, .. }) if error.contains("perhaps only a sibling's")),
                    "a whole object's relocations may be a sibling's: {whole:?}"
                );
            }
        }
    }

    fn plan(maps: &[(&str, Option<u32>)]) -> ObjectPlan {
        ObjectPlan {
            maps: maps
                .iter()
                .map(|&(name, max_entries)| MapSetting {
                    name: name.into(),
                    max_entries,
                    value_size: None,
                })
                .collect(),
            ..ObjectPlan::default()
        }
    }

    #[test]
    fn the_hint_counts_the_sizes_aya_and_the_suite_give() {
        let data = build(LOADER, "bpf", &[]);
        let hint = |object: &ObjectPlan, name: &str| unsized_hint(&data, object, name);
        let none = plan(&[]);
        assert_eq!(
            hint(&none, "stacks").as_deref(),
            Some("map `stacks` is declared with max_entries 0 and value_size 0, for its loader to size at run time: give them in the suite, `maps = { stacks = { max_entries = N, value_size = BYTES } }`")
        );
        let sized = plan(&[("stacks", Some(1024))]);
        assert_eq!(
            hint(&sized, "stacks").as_deref(),
            Some("map `stacks` is declared with value_size 0, for its loader to size at run time: give it in the suite, `maps = { stacks = { value_size = BYTES } }`")
        );
        // The suite's size for another map is not this one's.
        let other = plan(&[("ring", Some(4096))]);
        assert_eq!(hint(&other, "stacks"), hint(&none, "stacks"));
        assert_eq!(
            hint(&none, "ring").as_deref(),
            Some("map `ring` is declared with max_entries 0, for its loader to size at run time: give it in the suite, `maps = { ring = { max_entries = N } }`")
        );
        assert_eq!(hint(&other, "ring"), None);
        // The DEVMAP's value size is 0 in the object, and aya's to set.
        let parsed = aya_obj::Object::parse(&data).expect("parse");
        assert_eq!(parsed.maps["devices"].value_size(), 0);
        assert_eq!(hint(&none, "devices"), None);
        assert_eq!(hint(&none, "events"), None);
        assert_eq!(hint(&none, "nope"), None);
    }

    fn create_error(name: &str) -> EbpfError {
        EbpfError::MapError(MapError::CreateError {
            name: name.into(),
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        })
    }

    #[test]
    fn what_aya_cannot_do_is_its_limitation_and_a_refused_map_a_failure() {
        let parse = EbpfError::ParseError(aya_obj::ParseError::InvalidProgramSection {
            section: "uprobe.multi/x".into(),
        });
        let unsupported = |err: EbpfError| match object_verdict(err, |_| None) {
            Verdict::Unsupported {
                loader: Loader::Aya,
                error,
            } => error,
            other => panic!("not aya's limitation: {other:?}"),
        };
        assert!(unsupported(parse).contains("uprobe.multi/x"));
        unsupported(EbpfError::MapError(MapError::InvalidMapType {
            map_type: 99,
        }));

        let data = build(LOADER, "bpf", &[]);
        let object = plan(&[]);
        let verdict = object_verdict(create_error("stacks"), |name| {
            unsized_hint(&data, &object, name)
        });
        let Verdict::Failed { error } = verdict else {
            panic!("{verdict:?}");
        };
        assert!(
            error.starts_with(&chain(&create_error("stacks"))),
            "{error}"
        );
        assert!(
            error.ends_with("(map `stacks` is declared with max_entries 0 and value_size 0, for its loader to size at run time: give them in the suite, `maps = { stacks = { max_entries = N, value_size = BYTES } }`)"),
            "{error}"
        );
        let verdict = object_verdict(create_error("sized_events"), |name| {
            unsized_hint(&data, &object, name)
        });
        let Verdict::Failed { error } = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(error, chain(&create_error("sized_events")), "no hint");
    }

    #[test]
    fn a_rejected_program_keeps_the_verifier_log() {
        let rejected = program_verdict(LoadFailure::Program(ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new("R1 invalid mem access 'scalar'\n".into()),
        }));
        assert_eq!(
            rejected,
            Verdict::Rejected {
                error: std::io::Error::from_raw_os_error(libc::EACCES).to_string(),
                verifier_log: "R1 invalid mem access 'scalar'\n".into(),
            }
        );
        assert_eq!(
            program_verdict(LoadFailure::Other("no BTF".into())),
            Verdict::Failed {
                error: "no BTF".into()
            }
        );
    }
}
