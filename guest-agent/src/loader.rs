//! Loads every program of every object under test and reports each one.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aya::programs::{Program, ProgramError};
use aya::{Btf, EbpfLoader};
use kmatrix_protocol::{Frame, ProgramResult, Verdict};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use crate::channel::Channel;

/// Longest verifier log sent back; the verifier's reason is at its end, so
/// the tail is kept.
const MAX_LOG: usize = 256 * 1024;

/// Loads the objects in `dir` (named by their index) and sends a result per
/// program.
///
/// Parsing the kernel's BTF is the costliest step under emulation, so it is
/// done at most twice per run rather than per object: once by the one
/// `EbpfLoader` every object goes through (for CO-RE relocations), and once
/// more only if a program needs BTF to name its attach target.
pub fn load_all(dir: &Path, channel: &Channel) {
    let mut loader = EbpfLoader::new();
    let btf = OnceCell::new();
    for (index, path) in objects(dir) {
        match fs::read(&path) {
            Ok(data) => load_object(index, &data, &mut loader, &btf, channel),
            Err(err) => channel.send(Frame::AgentError(format!(
                "object {index}: read {}: {err}",
                path.display()
            ))),
        }
    }
}

fn objects(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut objects: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let index = entry.file_name().to_str()?.parse().ok()?;
            Some((index, entry.path()))
        })
        .collect();
    objects.sort();
    objects
}

fn load_object(
    index: u32,
    data: &[u8],
    loader: &mut EbpfLoader<'_>,
    btf: &OnceCell<Option<Btf>>,
    channel: &Channel,
) {
    let sections = match program_sections(data) {
        Ok(sections) => sections,
        Err(err) => {
            channel.send(Frame::AgentError(format!("object {index}: {err}")));
            return;
        }
    };
    let report = |program: &str, verdict, load_us| {
        channel.send(Frame::Program(ProgramResult {
            object: index,
            program: program.to_owned(),
            section: sections.get(program).cloned().unwrap_or_default(),
            verdict,
            load_us,
        }))
    };

    let start = Instant::now();
    let mut ebpf = match loader.load(data) {
        Ok(ebpf) => ebpf,
        Err(err) => {
            // Maps and relocations are shared: no program of this object can
            // load, and each says why.
            let error = format!("loading the object failed: {}", chain(&err));
            let elapsed = start.elapsed().as_micros() as u64;
            let mut names: Vec<_> = sections.keys().collect();
            names.sort();
            for name in names {
                let verdict = Verdict::Failed {
                    error: error.clone(),
                };
                report(name, verdict, elapsed);
            }
            return;
        }
    };
    let mut programs: Vec<_> = ebpf.programs_mut().collect();
    programs.sort_by(|a, b| a.0.cmp(b.0));
    for (name, program) in programs {
        let section = sections.get(name).map(String::as_str).unwrap_or_default();
        let start = Instant::now();
        let result = load_program(program, section, btf);
        let load_us = start.elapsed().as_micros() as u64;
        report(name, verdict(result), load_us);
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

/// An error and its sources on one line.
fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
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
