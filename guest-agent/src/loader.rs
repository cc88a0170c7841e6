//! Loads the planned programs of every object under test, reports each
//! one, and runs its cases.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::Map;
use aya::programs::{Program, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};
use kmatrix_protocol::{CaseResult, Frame, ObjectPlan, Plan, ProgramResult, Verdict};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use crate::cases;
use crate::channel::Channel;
use crate::error::chain;

/// Longest verifier log sent back; the verifier's reason is at its end, so
/// the tail is kept.
const MAX_LOG: usize = 256 * 1024;

/// Carries out `plan` on the objects in `dir` (named by their index):
/// loads each planned program, sends its result, then runs its cases.
///
/// Parsing the kernel's BTF is the costliest step under emulation, so it is
/// done at most twice per run rather than per object: once by the one
/// `EbpfLoader` every object goes through (for CO-RE relocations), and once
/// more only if a program needs BTF to name its attach target.
pub fn run_plan(dir: &Path, plan: &Plan, channel: &mut Channel) {
    let mut loader = EbpfLoader::new();
    let btf = OnceCell::new();
    for object in &plan.objects {
        let path = dir.join(object.index.to_string());
        match fs::read(&path) {
            Ok(data) => run_object(object, &data, &mut loader, &btf, plan.report_cases, channel),
            Err(err) => channel.send(&Frame::AgentError(format!(
                "object {}: read {}: {err}",
                object.index,
                path.display()
            ))),
        }
    }
}

fn run_object(
    plan: &ObjectPlan,
    data: &[u8],
    loader: &mut EbpfLoader<'_>,
    btf: &OnceCell<Option<Btf>>,
    report_cases: bool,
    channel: &mut Channel,
) {
    let sections = match program_sections(data) {
        Ok(sections) => sections,
        Err(err) => {
            channel.send(&Frame::AgentError(format!("object {}: {err}", plan.index)));
            return;
        }
    };
    let result = |program: &str, verdict, load_us| {
        Frame::Program(ProgramResult {
            object: plan.index,
            program: program.to_owned(),
            section: sections.get(program).cloned().unwrap_or_default(),
            verdict,
            load_us,
        })
    };

    let start = Instant::now();
    let mut ebpf = match loader.load(data) {
        Ok(ebpf) => ebpf,
        Err(err) => {
            // Maps and relocations are shared: no program of this object can
            // load, and each says why.
            let error = format!("loading the object failed: {}", chain(&err));
            let elapsed = start.elapsed().as_micros() as u64;
            for program in &plan.programs {
                let verdict = Verdict::Failed {
                    error: error.clone(),
                };
                channel.send(&result(&program.name, verdict, elapsed));
            }
            return;
        }
    };
    for (index, program) in plan.programs.iter().enumerate() {
        let section = sections
            .get(&program.name)
            .map(String::as_str)
            .unwrap_or_default();
        let start = Instant::now();
        let loaded = match ebpf.program_mut(&program.name) {
            Some(p) => load_program(p, section, btf),
            None => Err(LoadFailure::Other(format!(
                "the object has no program `{}`",
                program.name
            ))),
        };
        let load_us = start.elapsed().as_micros() as u64;
        let ok = loaded.is_ok();
        channel.send(&result(&program.name, verdict(loaded), load_us));
        if !ok || program.cases.is_empty() {
            continue;
        }
        // The load result goes out before what may be a long series of cases.
        channel.flush();
        let ebpf = &ebpf;
        let prog = ebpf.program(&program.name).expect("loaded above");
        for (case_index, case) in program.cases.iter().enumerate() {
            let outcome = cases::run(prog, program.test_run, case, |name| map_fd(ebpf, name));
            if report_cases {
                channel.send(&Frame::Case(CaseResult {
                    object: plan.index,
                    program: index as u32,
                    case: case_index as u32,
                    outcome,
                }));
            }
        }
    }
}

/// The fd of a map the suite may read and write.
fn map_fd<'a>(ebpf: &'a Ebpf, name: &str) -> Result<BorrowedFd<'a>, String> {
    match ebpf.map(name) {
        Some(Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data)) => {
            Ok(data.fd().as_fd())
        }
        Some(_) => Err(format!(
            "map `{name}` is not an ARRAY, HASH or LRU_HASH map"
        )),
        None => Err(format!("the object has no map `{name}`")),
    }
}

/// Maps each program (function symbol) to the name of its ELF section.
fn program_sections(data: &[u8]) -> Result<HashMap<String, String>, object::Error> {
    let file = object::File::parse(data)?;
    let mut sections = HashMap::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || !symbol.is_global() {
            continue;
        }
        let Some(section) = symbol
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        else {
            continue;
        };
        let (Ok(name), Ok(section)) = (symbol.name(), section.name()) else {
            continue;
        };
        if section != ".text" {
            sections.insert(name.to_owned(), section.to_owned());
        }
    }
    Ok(sections)
}

/// Why a program did not load.
enum LoadFailure {
    Program(ProgramError),
    Other(String),
}

fn load_program(
    program: &mut Program,
    section: &str,
    btf: &OnceCell<Option<Btf>>,
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
        btf.get_or_init(|| Btf::from_sys_fs().ok())
            .as_ref()
            .ok_or_else(|| {
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

fn verdict(result: Result<(), LoadFailure>) -> Verdict {
    match result {
        Ok(()) => Verdict::Loaded,
        Err(LoadFailure::Program(ProgramError::LoadError {
            io_error,
            verifier_log,
        })) => Verdict::Rejected {
            error: io_error.to_string(),
            verifier_log: tail(verifier_log.to_string(), MAX_LOG),
        },
        Err(LoadFailure::Program(err)) => Verdict::Failed { error: chain(&err) },
        Err(LoadFailure::Other(error)) => Verdict::Failed { error },
    }
}

fn tail(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &text[start..])
}
