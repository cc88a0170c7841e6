//! Loads the planned programs of every object under test and runs their
//! cases. Each program is loaded in a fresh instance of its object (maps
//! created anew), as veristat does, so that its verdict does not depend on
//! which siblings loaded before it; the object's loader ([`aya_loader`] or
//! [`libbpf_loader`]) is the plan's choice, and the cases run the same
//! way whichever loaded the program.
//!
//! [`aya_loader`]: crate::aya_loader
//! [`libbpf_loader`]: crate::libbpf_loader

use std::collections::HashMap;
use std::fs;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Instant;

use kmatrix_protocol::{CaseResult, Frame, Loader, Plan, ProgramResult, ProgramStats, Verdict};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use crate::aya_loader::Aya;
use crate::cases;
use crate::channel::Channel;
use crate::kmsg::KernelLog;
use crate::libbpf_loader::Libbpf;

/// Longest verifier log sent back; the verifier's reason is at its end, so
/// the tail is kept.
const MAX_LOG: usize = 256 * 1024;

/// A case that ran within this was seen to finish quickly: the next case of
/// its program runs without writing out the results queued before it.
const QUICK: std::time::Duration = std::time::Duration::from_millis(1);

/// One program, loaded in its own instance of its object.
pub trait Instance {
    /// The loaded program's fd.
    fn program_fd(&self) -> BorrowedFd<'_>;
    /// The fd of the instance's map `name`, which a suite may read and
    /// write.
    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, String>;
    /// What the verifier's log said about the program, where the loader
    /// keeps it.
    fn stats(&self) -> ProgramStats {
        ProgramStats::default()
    }
}

/// Both loaders, kept for the agent's life so that what they parse once
/// (the kernel's BTF) is parsed once.
#[derive(Default)]
pub struct Loaders {
    aya: Aya,
    libbpf: Libbpf,
}

impl Loaders {
    /// Parses now what the first load would (see [`Aya::prepare`]).
    pub fn prepare(&mut self) {
        self.aya.prepare();
    }

    /// Carries out `plan` on the objects in `dir` (named by their index):
    /// loads each planned program, sends its result, then runs its cases.
    /// What the kernel logs during a load or a case goes with its result.
    pub fn run_plan(
        &mut self,
        dir: &Path,
        plan: &Plan,
        channel: &mut Channel,
        log: &mut KernelLog,
    ) {
        run_plan(dir, plan, channel, log, &mut self.aya, &mut self.libbpf)
    }
}

fn run_plan(
    dir: &Path,
    plan: &Plan,
    channel: &mut Channel,
    log: &mut KernelLog,
    aya: &mut Aya,
    libbpf: &mut Libbpf,
) {
    for object in &plan.objects {
        let path = dir.join(object.index.to_string());
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(err) => {
                channel.send(&Frame::AgentError(format!(
                    "object {}: read {}: {err}",
                    object.index,
                    path.display()
                )));
                continue;
            }
        };
        let sections = match program_sections(&data) {
            Ok(sections) => sections,
            Err(err) => {
                channel.send(&Frame::AgentError(format!(
                    "object {}: {err}",
                    object.index
                )));
                continue;
            }
        };
        // libbpf refuses to open an object with a static entry program; the
        // host plans none for it, and its siblings load from a copy in
        // which they are global (nothing the kernel sees changes).
        let for_libbpf = match crate::isolate::globalize_static_programs(&data) {
            Ok(globalized) if !globalized.programs.is_empty() => globalized.object,
            _ => data.clone(),
        };
        for (index, program) in object.programs.iter().enumerate() {
            let section = sections
                .get(&program.name)
                .map(String::as_str)
                .unwrap_or_default();
            // What the kernel logged since the last test (freeing the last
            // instance) is no part of this load; what was judged so far goes
            // out before a load that might hang or panic the kernel.
            send_splat(log, channel);
            channel.flush();
            let start = Instant::now();
            let loaded = match object.loader {
                Loader::Aya => aya.load(object, &data, &program.name, section),
                Loader::Libbpf => libbpf.load(object, &for_libbpf, &program.name),
            };
            let load_us = start.elapsed().as_micros() as u64;
            let (verdict, instance) = match loaded {
                Ok(instance) => (Verdict::Loaded, Some(instance)),
                Err(verdict) => (bounded(verdict), None),
            };
            // A loaded program's size and count from the kernel, and the
            // verifier's other figures from its loader's log (aya keeps
            // none: libbpf loads it once more for them); a rejected one's
            // from the stats lines ending its log.
            let stats = match (&instance, &verdict) {
                (Some(instance), _) => {
                    let mut stats = crate::sys::prog_stats(instance.program_fd())
                        .unwrap_or_default()
                        .or(instance.stats());
                    if object.loader == Loader::Aya {
                        if let Some(logged) = libbpf.stats_of(object, &for_libbpf, &program.name) {
                            stats = stats.or(logged);
                        }
                    }
                    stats
                }
                (None, Verdict::Rejected { verifier_log, .. }) => {
                    ProgramStats::from_log(verifier_log)
                }
                (None, _) => ProgramStats::default(),
            };
            // libbpf's second load for the statistics is this program's too.
            let kernel_log = log.drain();
            channel.send(&Frame::Program(ProgramResult {
                object: object.index,
                program: program.name.clone(),
                section: section.to_owned(),
                loader: object.loader,
                verdict,
                load_us,
                stats,
                kernel_log,
            }));
            let Some(instance) = instance.filter(|_| !program.cases.is_empty()) else {
                continue;
            };
            // Likewise before a case, until this program's last case was
            // seen to finish quickly: then the results wait in the buffer
            // (at most its time limit) instead of costing a write each.
            let mut last_quick = false;
            for (case_index, case) in program.cases.iter().enumerate() {
                if !last_quick {
                    channel.flush();
                }
                let began = Instant::now();
                let outcome = cases::run(instance.program_fd(), case, |name| instance.map_fd(name));
                last_quick = began.elapsed() < QUICK;
                let kernel_log = log.drain();
                if plan.report_cases {
                    channel.send(&Frame::Case(CaseResult {
                        object: object.index,
                        program: index as u32,
                        case: case_index as u32,
                        outcome,
                        kernel_log,
                    }));
                }
            }
        }
    }
}

/// Sends a splat the kernel logged outside any load or case, once the
/// kernel has finished printing it (no new line for 20 ms, at most 200 ms).
pub fn send_splat(log: &mut KernelLog, channel: &mut Channel) {
    let Some(mut splat) = kmatrix_protocol::splat::find(&log.drain_with_previous()) else {
        return;
    };
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let more = log.drain();
        if more.is_empty() {
            break;
        }
        splat.lines.extend(more);
    }
    splat.lines.truncate(kmatrix_protocol::splat::MAX_LINES);
    channel.send(&Frame::Splat(splat.lines));
}

/// Settings that name something the object lacks are the suite's error,
/// checked on the host; here they are the loader's failure.
pub fn missing(what: &str, name: &str) -> Verdict {
    Verdict::Failed {
        error: format!("the object has no {what} `{name}`"),
    }
}

/// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: both loaders give one declared with 0
/// entries one per possible CPU.
pub const PERF_EVENT_ARRAY: u32 = 4;

/// Map types created with `max_entries` 0: the local storages (cgroup,
/// per-CPU cgroup, socket, inode, task, cgroup again).
const NO_ENTRIES: [u32; 6] = [19, 21, 24, 28, 29, 32];

/// Map types created with `value_size` 0: the ring buffers and arenas.
const NO_VALUE: [u32; 3] = [27, 31, 33];

/// Why the kernel may have refused to create map `name` (of type
/// `map_type`), given the sizes its loader created it with: those left 0
/// for a loader to set at run time, which the suite sets.
pub fn unsized_hint(
    name: &str,
    map_type: u32,
    max_entries: u32,
    value_size: u32,
) -> Option<String> {
    let mut unset = Vec::new();
    if max_entries == 0 && map_type != PERF_EVENT_ARRAY && !NO_ENTRIES.contains(&map_type) {
        unset.push(("max_entries", "N"));
    }
    if value_size == 0 && !NO_VALUE.contains(&map_type) {
        unset.push(("value_size", "BYTES"));
    }
    let declared: Vec<_> = unset.iter().map(|(size, _)| format!("{size} 0")).collect();
    let settings: Vec<_> = unset
        .iter()
        .map(|(size, value)| format!("{size} = {value}"))
        .collect();
    let them = match unset.len() {
        0 => return None,
        1 => "it",
        _ => "them",
    };
    Some(format!(
        "map `{name}` is declared with {}, for its loader to size at run time: give {them} in the suite, `maps = {{ {name} = {{ {} }} }}`",
        declared.join(" and "),
        settings.join(", ")
    ))
}

/// A verdict whose verifier log fits a frame.
fn bounded(verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Rejected {
            error,
            verifier_log,
        } => Verdict::Rejected {
            error,
            verifier_log: tail(verifier_log, MAX_LOG),
        },
        other => other,
    }
}

/// Maps each program (function symbol, global or static) to the name of
/// its ELF section.
fn program_sections(data: &[u8]) -> Result<HashMap<String, String>, object::Error> {
    let file = object::File::parse(data)?;
    let mut sections = HashMap::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text {
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

/// Where the global `name` lives: its section's name and its offset there.
pub fn global_location(data: &[u8], name: &str) -> Option<(String, usize)> {
    let file = object::File::parse(data).ok()?;
    let symbol = file.symbols().find(|s| s.name() == Ok(name))?;
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    Some((section.name().ok()?.to_owned(), symbol.address() as usize))
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

#[cfg(test)]
mod tests {
    use super::*;

    const STACK_TRACE: u32 = 7;
    const RINGBUF: u32 = 27;
    const TASK_STORAGE: u32 = 29;

    #[test]
    fn the_hint_names_exactly_the_sizes_still_unset() {
        assert_eq!(
            unsized_hint("stacks", STACK_TRACE, 0, 0).as_deref(),
            Some("map `stacks` is declared with max_entries 0 and value_size 0, for its loader to size at run time: give them in the suite, `maps = { stacks = { max_entries = N, value_size = BYTES } }`")
        );
        assert_eq!(
            unsized_hint("stacks", STACK_TRACE, 1024, 0).as_deref(),
            Some("map `stacks` is declared with value_size 0, for its loader to size at run time: give it in the suite, `maps = { stacks = { value_size = BYTES } }`")
        );
        assert_eq!(
            unsized_hint("events", RINGBUF, 0, 0).as_deref(),
            Some("map `events` is declared with max_entries 0, for its loader to size at run time: give it in the suite, `maps = { events = { max_entries = N } }`")
        );
        assert_eq!(unsized_hint("stacks", STACK_TRACE, 1024, 1016), None);
        assert_eq!(unsized_hint("starts", TASK_STORAGE, 0, 8), None);
        assert_eq!(unsized_hint("events", PERF_EVENT_ARRAY, 0, 4), None);
    }
}
