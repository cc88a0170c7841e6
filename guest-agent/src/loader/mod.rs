//! Loads the planned programs of every object under test and runs their
//! cases. Each program is loaded in a fresh instance of its object (maps
//! created anew), as veristat does, so that its verdict does not depend on
//! which siblings loaded before it; the object's loader (`aya` or
//! `libbpf`) is the plan's choice, and the cases run the same way
//! whichever loaded the program.
//!
//! Imports go one way: this driver uses `aya` and `libbpf`, which use only
//! `common` (the `Instance` they give and the verdicts they word alike)
//! and `elf` (what they read of an object), never the driver or each
//! other.

use std::fs;
use std::path::Path;
use std::time::Instant;

use kmatrix_protocol::{Frame, Loader, Plan, ProgramResult, ProgramStats, Verdict};

use self::aya::Aya;
use self::elf::program_sections;
use self::libbpf::Libbpf;
use crate::cases;
use crate::channel::Channel;
use crate::kmsg::KernelLog;

mod aya;
mod common;
mod elf;
mod kernel_btf;
mod libbpf;

/// Longest verifier log sent back; the verifier's reason is at its end, so
/// the tail is kept.
const MAX_LOG: usize = 256 * 1024;

/// A case that ran within this was seen to finish quickly: the next case of
/// its program runs without writing out the results queued before it.
const QUICK: std::time::Duration = std::time::Duration::from_millis(1);

/// Both loaders, kept for the agent's life so that what they parse once
/// (the kernel's BTF) is parsed once.
pub struct Loaders {
    aya: Aya,
    libbpf: Libbpf,
    /// Time spent in loads so far.
    loads: std::time::Duration,
}

impl Default for Loaders {
    fn default() -> Self {
        Self::new()
    }
}

impl Loaders {
    /// The loaders, nothing parsed yet.
    pub fn new() -> Self {
        Self {
            aya: Aya::new(kernel_btf::KernelBtf::new()),
            libbpf: Libbpf::new(),
            loads: std::time::Duration::ZERO,
        }
    }

    /// Does now what the first load would wait for (see [`Aya::prepare`]).
    pub fn prepare(&mut self) {
        self.aya.prepare();
    }

    /// Time spent parsing the kernel's BTF for aya, or waiting for its
    /// parse, so far.
    pub fn btf_waited(&self) -> std::time::Duration {
        self.aya.btf_waited()
    }

    /// Time spent in the programs' loads so far.
    pub fn loads(&self) -> std::time::Duration {
        self.loads
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
        self.loads += run_plan(dir, plan, channel, log, &mut self.aya, &mut self.libbpf);
    }
}

fn run_plan(
    dir: &Path,
    plan: &Plan,
    channel: &mut Channel,
    log: &mut KernelLog,
    aya: &mut Aya,
    libbpf: &mut Libbpf,
) -> std::time::Duration {
    let mut loads = std::time::Duration::ZERO;
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
            let load_time = start.elapsed();
            loads += load_time;
            let load_us = load_time.as_micros() as u64;
            let (verdict, instance) = match loaded {
                Ok(instance) => (Verdict::Loaded, Some(instance)),
                Err(verdict) => (bounded(verdict), None),
            };
            // A loaded program's size and count from the kernel, and the
            // verifier's other figures from its loader's log (aya keeps
            // none: libbpf loads it once more for them, where the plan
            // asks); a rejected one's from the stats lines ending its log.
            let stats = match (&instance, &verdict) {
                (Some(instance), _) => {
                    let mut stats = crate::sys::prog_stats(instance.program_fd())
                        .unwrap_or_default()
                        .or(instance.stats());
                    if object.loader == Loader::Aya && plan.verifier_stats {
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
                    let id = [object.index, index as u32, case_index as u32];
                    channel.send_case(id, outcome, kernel_log);
                }
            }
        }
    }
    loads
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
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    use kmatrix_protocol::Decoder;

    use super::*;
    use crate::kmsg::tests::{fake_log, log};

    #[test]
    fn a_long_verifier_log_keeps_its_end_on_a_character_boundary() {
        assert_eq!(tail("short".into(), 5), "short");
        let text = format!("{}é{}", "a".repeat(10), "z".repeat(8));
        // 19 bytes from the end falls inside `é`: the cut moves past it.
        assert_eq!(tail(text.clone(), 9), "[… 12 bytes cut …]\nzzzzzzzz");
        assert_eq!(tail(text, 10), "[… 10 bytes cut …]\nézzzzzzzz");

        let long = format!("{}\nR0 !read_ok", "x".repeat(MAX_LOG));
        let Verdict::Rejected { verifier_log, .. } = bounded(Verdict::Rejected {
            error: "Permission denied".into(),
            verifier_log: long,
        }) else {
            panic!("a rejection stays one");
        };
        assert!(verifier_log.ends_with("\nR0 !read_ok"));
        assert!(verifier_log.len() < MAX_LOG + 64, "{}", verifier_log.len());
        let failed = Verdict::Failed {
            error: "e".repeat(2 * MAX_LOG),
        };
        assert_eq!(bounded(failed.clone()), failed);
    }

    /// The frames `send_splat` sends, given what the kernel logged before
    /// (drained) and since.
    fn splat_frames(before: &[&str], since: &[&str]) -> Vec<Frame> {
        let (mut kernel_log, kernel) = fake_log();
        log(&kernel, before);
        kernel_log.drain();
        log(&kernel, since);
        let (port, mut host) = UnixStream::pair().expect("socket pair");
        let mut channel = Channel::open(File::from(OwnedFd::from(port)));
        send_splat(&mut kernel_log, &mut channel);
        channel.flush();
        drop(channel);
        let mut bytes = Vec::new();
        host.read_to_end(&mut bytes).expect("read the frames");
        let mut decoder = Decoder::new();
        decoder.extend(&bytes);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame().expect("decode") {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn a_splat_outside_any_test_is_sent_from_its_cut_here_line() {
        let cut = "------------[ cut here ]------------";
        let warning = "WARNING: CPU: 1 PID: 42 at kernel/bpf/verifier.c:100 check+0x10/0x20";
        assert_eq!(
            splat_frames(&["bpf: loaded", cut], &[warning, "Call Trace:", " <TASK>"]),
            [Frame::Splat(vec![
                cut.into(),
                warning.into(),
                "Call Trace:".into(),
                " <TASK>".into()
            ])]
        );
        assert_eq!(
            splat_frames(&[], &["noise", warning]),
            [Frame::Splat(vec![warning.into()])]
        );
        assert_eq!(splat_frames(&[cut], &["bpf: no splat here"]), []);
        assert_eq!(splat_frames(&[warning], &[]), [], "sent with its test");
    }
}
