//! The judge without VMs: recorded frames fed through [`KernelJudge`].
//! `verdicts.rs` holds the decision tables, `streams.rs` whole runs
//! checked against snapshot files (`snapshots/`).

mod loaders;
mod only;
mod splats;
mod streams;
mod verdicts;

use std::fmt::Write;

use kmatrix_protocol::report::Outcome;
use kmatrix_protocol::{
    CaseOutcome, CaseResult, ExecPlan, Frame, Loader, ProgramResult, TestRunKind, Verdict,
};

use super::kernel::KernelJudge;
use crate::event::RunEvent;
use crate::kernels::{KernelEntry, Source};
use crate::objects::{ProgramInfo, TestObject};
use crate::suite::{CaseSpec, ObjectSettings, ProgramSpec, Suite};

/// A splat as `/dev/kmsg` gives it.
const SPLAT: &[&str] = &[
    "------------[ cut here ]------------",
    "WARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2",
    "Call Trace:",
];

/// A verifier log whose headline is its second line.
const VERIFIER_LOG: &str = "0: (71) r1 = *(u8 *)(r1 +20)\nR1 offset is outside of the packet\n";

fn kernel(label: &str) -> KernelEntry {
    KernelEntry {
        label: label.into(),
        version: label.parse().unwrap(),
        arch: kmatrix_protocol::Arch::Amd64,
        source: Source::Path {
            image: "/boot/vmlinuz".into(),
            modules: None,
        },
        sha256: Default::default(),
    }
}

/// An XDP program that must load everywhere, with no cases.
fn program(name: &str) -> ProgramSpec {
    ProgramSpec::must_load(name.into(), "xdp".into(), Some(TestRunKind::Xdp))
}

/// A case that must return `retval`.
fn case_spec(name: &str, retval: u32) -> CaseSpec {
    CaseSpec {
        name: name.into(),
        plan: Default::default(),
        expect_return: Some(retval),
        expect_output: None,
        expect_maps: Vec::new(),
        test: 0,
    }
}

/// A suite of one object, `probe.bpf.o`, holding `programs`, loaded by aya.
fn suite_of(programs: Vec<ProgramSpec>) -> Suite {
    let mut suite = Suite {
        objects: vec![TestObject {
            path: "probe.bpf.o".into(),
            name: "probe.bpf.o".into(),
            data: Vec::new(),
            programs: programs
                .iter()
                .map(|p| ProgramInfo {
                    name: p.name.clone(),
                    kind: p.kind.clone(),
                    section: p.kind.clone(),
                    test_run: p.test_run,
                    is_static: false,
                })
                .collect(),
            maps: Vec::new(),
            globals: Vec::new(),
            aya_error: None,
        }],
        programs: vec![programs],
        tests: Vec::new(),
        settings: vec![ObjectSettings::default()],
        default_loader: Loader::Aya,
        differential: false,
        only: None,
    };
    suite.use_loaders(Loader::Aya, false);
    suite
}

fn lines(log: &[&str]) -> Vec<String> {
    log.iter().map(|l| (*l).to_owned()).collect()
}

/// Aya's result for `program` of object 0.
fn load(program: &str, verdict: Verdict, log: &[&str]) -> ProgramResult {
    ProgramResult {
        object: 0,
        program: program.into(),
        section: "xdp".into(),
        loader: Loader::Aya,
        verdict,
        load_us: 10,
        stats: Default::default(),
        kernel_log: lines(log),
    }
}

fn rejected() -> Verdict {
    Verdict::Rejected {
        error: "Permission denied".into(),
        verifier_log: VERIFIER_LOG.into(),
    }
}

/// The result of case `case` of planned program `program` of object 0.
fn ran(program: u32, case: u32, retval: u32, log: &[&str]) -> CaseResult {
    CaseResult {
        object: 0,
        program,
        case,
        outcome: CaseOutcome::Ran {
            retval,
            duration_ns: 5,
            output: None,
            reads: Vec::new(),
        },
        kernel_log: lines(log),
    }
}

/// `kmatrix exec`'s plan for a program run with `args`.
fn exec(args: &[&str]) -> ExecPlan {
    ExecPlan {
        argv: std::iter::once("/host/target/debug/deps/probe-0123")
            .chain(args.iter().copied())
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        ..Default::default()
    }
}

/// Every event `frames` give on `label`, the host's decisions first, and
/// the judge's last word after a clean end with an empty console.
fn judged(suite: &Suite, label: &str, frames: impl IntoIterator<Item = Frame>) -> Vec<RunEvent> {
    let kernel = kernel(label);
    let plan = suite.plan_for(&kernel, true);
    let mut judge = KernelJudge::new(suite, &kernel, &plan, None);
    let mut events = judge.skipped();
    for frame in frames {
        events.extend(judge.frame(frame));
    }
    judge.finish().expect("a suite run ends cleanly");
    events
}

/// The outcomes among `events`, by test name.
fn outcomes(events: Vec<RunEvent>) -> Vec<(String, Outcome)> {
    events
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::Outcome { test, outcome, .. } => Some((test, outcome)),
            _ => None,
        })
        .collect()
}

/// A short mark per outcome, as the matrix shows it.
fn mark(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Passed { .. } => "pass",
        Outcome::Failed { .. } => "FAIL",
        Outcome::ExpectedFailure { .. } => "xfail",
        Outcome::Skipped { .. } => "skip",
        Outcome::LoaderLimitation { .. } => "LIMIT",
    }
}

/// An outcome on one line: its mark and its detail or reason.
fn summary(outcome: &Outcome) -> String {
    let text = match outcome {
        Outcome::Passed { detail } => detail,
        Outcome::Failed { reason, .. }
        | Outcome::ExpectedFailure { reason }
        | Outcome::Skipped { reason }
        | Outcome::LoaderLimitation { reason } => reason,
    };
    format!("{}: {text}", mark(outcome))
}

/// One frame on a line, as the snapshots show what went in.
fn show_frame(frame: &Frame) -> String {
    let log = |log: &[String]| match log.len() {
        0 => String::new(),
        n => format!(" (kernel log: {n} lines)"),
    };
    match frame {
        Frame::Hello(hello) => format!("hello from {}", hello.kernel_release),
        Frame::Started { kernel_release } => format!("started on {kernel_release}"),
        Frame::Prepared => "prepared".into(),
        Frame::Probed(probe) => format!("probed {}: {:?}", probe.feature, probe.available),
        Frame::Program(result) => {
            let verdict = match &result.verdict {
                Verdict::Loaded => "loaded".to_owned(),
                Verdict::Rejected { error, .. } => format!("rejected ({error})"),
                Verdict::Failed { error } => format!("failed: {error}"),
                Verdict::Unsupported { error, .. } => format!("unsupported: {error}"),
            };
            format!(
                "program {}:{} by {}: {verdict}{}",
                result.object,
                result.program,
                result.loader.name(),
                log(&result.kernel_log)
            )
        }
        Frame::Case(result) => {
            let outcome = match &result.outcome {
                CaseOutcome::Ran { retval, .. } => format!("returned {retval}"),
                CaseOutcome::Error(error) => format!("error: {error}"),
            };
            format!(
                "case {}/{}/{}: {outcome}{}",
                result.object,
                result.program,
                result.case,
                log(&result.kernel_log)
            )
        }
        Frame::Splat(lines) => format!("splat{}", log(lines)),
        Frame::Queue { pages, .. } => format!("queue in {} pages", pages.len()),
        Frame::AgentError(message) => format!("agent error: {message}"),
        Frame::Output { stream, data } => {
            format!("{stream:?}: {:?}", String::from_utf8_lossy(data))
        }
        Frame::Exit(info) => format!("exit: {info:?}"),
        Frame::Done => "done".into(),
        Frame::Timings(timings) => format!("timings: run done at {} us", timings.done),
    }
}

/// Lines under a heading, indented.
fn block(out: &mut String, heading: &str, text: &str) {
    writeln!(out, "      {heading}:").unwrap();
    for line in text.lines() {
        writeln!(out, "        {line}").unwrap();
    }
}

/// One event the judge gave, indented under its frame.
fn show_event(out: &mut String, event: &RunEvent) {
    match event {
        RunEvent::Outcome { test, outcome, .. } => {
            let summary = summary(outcome);
            let mut lines = summary.lines();
            writeln!(out, "    {test} = {}", lines.next().unwrap_or_default()).unwrap();
            for line in lines {
                writeln!(out, "      | {line}").unwrap();
            }
            if let Outcome::Failed {
                verifier_log,
                kernel_log,
                ..
            } = outcome
            {
                if let Some(log) = verifier_log {
                    block(out, "verifier log", log);
                }
                if let Some(log) = kernel_log {
                    block(out, "kernel log", log);
                }
            }
        }
        RunEvent::Stats { test, stats, .. } => {
            writeln!(out, "    stats of {test}: {stats:?}").unwrap();
        }
        RunEvent::Probed { probe, .. } => {
            writeln!(out, "    probed {}: {:?}", probe.feature, probe.available).unwrap();
        }
        RunEvent::Output { stream, data, .. } => {
            writeln!(
                out,
                "    output {stream:?}: {:?}",
                String::from_utf8_lossy(data)
            )
            .unwrap();
        }
        RunEvent::Exited { info, .. } => writeln!(out, "    exited: {info:?}").unwrap(),
        RunEvent::Splat { source, lines, .. } => {
            writeln!(out, "    splat from {}:", source.name()).unwrap();
            for line in lines {
                writeln!(out, "      {line}").unwrap();
            }
        }
        RunEvent::AgentError { message, .. } => {
            writeln!(out, "    agent error: {message}").unwrap();
        }
        other => panic!("the judge never gives {other:?}"),
    }
}

/// How a recorded run ended.
enum End<'a> {
    /// The VM ended cleanly, its console ending with this.
    Clean(&'a str),
    /// The stream was cut short: the VM's failure ends the kernel, and the
    /// judge is never finished.
    Failed,
}

/// A recorded run through a judge, as text: each frame (`<`) with the
/// events it gave under it, then the console (`|`) with what the judge
/// made of it, and its last word.
fn replay(
    suite: &Suite,
    label: &str,
    exec: Option<&ExecPlan>,
    frames: Vec<Frame>,
    end: End,
) -> String {
    let kernel = kernel(label);
    let mut plan = suite.plan_for(&kernel, true);
    plan.plan.exec = exec.cloned();
    let mut judge = KernelJudge::new(suite, &kernel, &plan, exec);
    let mut out = String::new();
    writeln!(out, "on the host").unwrap();
    for event in judge.skipped() {
        show_event(&mut out, &event);
    }
    for frame in frames {
        writeln!(out, "< {}", show_frame(&frame)).unwrap();
        for event in judge.frame(frame) {
            show_event(&mut out, &event);
        }
    }
    match end {
        End::Clean(console) => {
            writeln!(out, "the VM ended cleanly, its console ending:").unwrap();
            for line in console.lines() {
                writeln!(out, "  | {line}").unwrap();
            }
            for event in judge.console(console) {
                show_event(&mut out, &event);
            }
            match judge.finish() {
                Ok(()) => writeln!(out, "the kernel completed").unwrap(),
                Err(err) => writeln!(out, "the kernel failed: {err}").unwrap(),
            }
        }
        End::Failed => writeln!(out, "the VM failed").unwrap(),
    }
    out
}
