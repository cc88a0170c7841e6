//! Recorded frame streams through a judge, checked against snapshots.

use kmatrix_protocol::{ExitInfo, Feature, Frame, Hello, Probe, ProgramStats, Stream, Verdict};

use super::*;
use crate::event::JudgeError;
use crate::suite::Skip;

const LABEL: &str = "6.1";

/// A console's end without a splat.
const QUIET: &str = "[    0.912345] Run /init as init process\n[    1.402000] reboot: Power down\n";

fn hello() -> Frame {
    Frame::Hello(Hello {
        version: kmatrix_protocol::VERSION,
        kernel_release: "6.1.0-35-cloud-amd64".into(),
        btf: true,
        boot_ms: 812,
    })
}

fn started() -> Frame {
    Frame::Started {
        kernel_release: "6.1.0-35-cloud-amd64".into(),
    }
}

/// The agent's first frames.
fn up() -> Vec<Frame> {
    vec![hello(), started()]
}

fn output(text: &str) -> Frame {
    Frame::Output {
        stream: Stream::Stdout,
        data: text.as_bytes().to_vec(),
    }
}

/// A splat from another program of the kernel than the one tested.
const BUG: &[&str] = &[
    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "#PF: supervisor read access in kernel mode",
    "Call Trace:",
];

/// Console lines, timestamped, as the kernel prints them.
fn console(lines: &[&str]) -> String {
    let mut text = String::from("[    0.912345] Run /init as init process\n");
    for line in lines {
        text.push_str(&format!("[    1.200000] {line}\n"));
    }
    text.push_str("[    1.402000] reboot: Power down\n");
    text
}

/// `xdp_pass`, whose case `passes` must return XDP_PASS.
fn xdp_pass() -> ProgramSpec {
    let mut spec = program("xdp_pass");
    spec.cases.push(case_spec("passes", 2));
    spec
}

fn loaded_with_stats(program: &str) -> ProgramResult {
    ProgramResult {
        stats: ProgramStats {
            insns_processed: Some(3),
            verification_us: Some(41),
            ..Default::default()
        },
        ..load(program, Verdict::Loaded, &[])
    }
}

#[test]
fn a_suite_run() {
    let mut counts = program("counts");
    counts.cases.push(case_spec("counts_one", 1));
    let mut slow = program("slow");
    slow.cases.push(case_spec("runs", 2));
    slow.skips.push(Skip {
        kernels: "..6.1".parse().unwrap(),
        reason: "hangs before 6.2".into(),
    });
    let suite = suite_of(vec![xdp_pass(), counts, program("unchecked_read"), slow]);
    let rejected = ProgramResult {
        stats: ProgramStats::from_log("processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0"),
        ..load("unchecked_read", rejected(), &[])
    };
    let frames = [
        up(),
        vec![
            Frame::Program(loaded_with_stats("xdp_pass")),
            Frame::Case(ran(0, 0, 2, &[])),
            Frame::Program(load("counts", Verdict::Loaded, &[])),
            Frame::Case(ran(1, 0, 2, &[])),
            Frame::Program(rejected),
            Frame::Done,
        ],
    ]
    .concat();
    insta::assert_snapshot!(replay(&suite, LABEL, None, frames, End::Clean(QUIET)));
}

#[test]
fn splats_in_a_load_and_outside_any_test() {
    let suite = suite_of(vec![xdp_pass()]);
    let frames = [
        up(),
        vec![
            Frame::Program(load("xdp_pass", Verdict::Loaded, SPLAT)),
            Frame::Case(ran(0, 0, 2, &[])),
            Frame::Splat(lines(BUG)),
            Frame::Done,
        ],
    ]
    .concat();
    // The console shows both again, the load's first.
    let shown = console(&[SPLAT, BUG].concat());
    insta::assert_snapshot!(replay(&suite, LABEL, None, frames, End::Clean(&shown)));
}

#[test]
fn a_splat_only_the_console_shows() {
    let suite = suite_of(vec![xdp_pass()]);
    let frames = [
        up(),
        vec![
            Frame::Program(load("xdp_pass", Verdict::Loaded, &[])),
            Frame::Case(ran(0, 0, 2, &[])),
            Frame::Done,
        ],
    ]
    .concat();
    let shown = console(BUG);
    insta::assert_snapshot!(replay(&suite, LABEL, None, frames, End::Clean(&shown)));
}

#[test]
fn an_exec_run_with_a_splat_during_one_test() {
    let suite = Suite::from_objects(Vec::new());
    let frames = [
        up(),
        vec![
            output("\nrunning 3 tests\n"),
            output("test maps::counts ... "),
            Frame::Splat(lines(SPLAT)),
            output("ok\ntest maps::drops ... FAILED\ntest slow ... ignored, needs 6.6\n"),
            output("\nfailures:\n\n---- maps::drops stdout ----\nassertion failed: dropped >= 1\n\nfailures:\n    maps::drops\n\n"),
            output("test result: FAILED. 1 passed; 1 failed; 1 ignored\n"),
            Frame::Exit(ExitInfo::Code(101)),
            Frame::Done,
        ],
    ]
    .concat();
    let shown = console(SPLAT);
    insta::assert_snapshot!(replay(
        &suite,
        LABEL,
        Some(&exec(&[])),
        frames,
        End::Clean(&shown)
    ));
}

#[test]
fn a_probe_answer_excuses_a_rejection() {
    let required = |name: &str, feature: &str| {
        let mut spec = program(name);
        spec.requires.push(feature.parse().unwrap());
        spec
    };
    let suite = suite_of(vec![
        required("loop_sum", "helper:bpf_loop@xdp"),
        required("ringbuf_out", "map:ringbuf"),
    ]);
    let probed = |feature: &str, available| {
        Frame::Probed(Probe {
            feature: feature.parse::<Feature>().unwrap(),
            available,
        })
    };
    let frames = [
        up(),
        vec![
            probed("helper:bpf_loop@xdp", Some(false)),
            probed("map:ringbuf", None),
            Frame::Program(load("loop_sum", rejected(), &[])),
            Frame::Program(load("ringbuf_out", rejected(), &[])),
            Frame::Done,
        ],
    ]
    .concat();
    insta::assert_snapshot!(replay(&suite, LABEL, None, frames, End::Clean(QUIET)));
}

#[test]
fn a_suite_run_cut_short() {
    let suite = suite_of(vec![xdp_pass(), program("counts")]);
    let frames = [
        up(),
        vec![Frame::Program(load("xdp_pass", Verdict::Loaded, &[]))],
    ]
    .concat();
    insta::assert_snapshot!(replay(&suite, LABEL, None, frames, End::Failed));
}

#[test]
fn an_exec_run_cut_short() {
    let suite = Suite::from_objects(Vec::new());
    let frames = [
        up(),
        vec![output(
            "\nrunning 2 tests\ntest maps::drops ... FAILED\ntest maps::counts ... ",
        )],
    ]
    .concat();
    insta::assert_snapshot!(replay(&suite, LABEL, Some(&exec(&[])), frames, End::Failed));
}

/// How an exec run of a program given `args` ends once it wrote `text`
/// (and ended, when `exit`).
fn exec_end(args: &[&str], text: &str, exit: bool) -> Result<(), JudgeError> {
    let suite = Suite::from_objects(Vec::new());
    let kernel = kernel(LABEL);
    let plan = suite.plan_for(&kernel, true);
    let exec = exec(args);
    let mut judge = KernelJudge::new(&suite, &kernel, &plan, Some(&exec));
    let frames = [output(text)]
        .into_iter()
        .chain(exit.then_some(Frame::Exit(ExitInfo::Code(0))))
        .chain([Frame::Done]);
    for frame in frames {
        judge.frame(frame);
    }
    judge.finish()
}

#[test]
fn an_exec_run_fails_its_kernel_when_its_program_never_ended() {
    let ran = "running 1 test\ntest a ... ok\n";
    assert_eq!(exec_end(&[], ran, false), Err(JudgeError::NoExit));
    assert_eq!(exec_end(&[], ran, true), Ok(()));
}

#[test]
fn an_exec_run_fails_its_kernel_when_no_test_asked_for_by_name_ran() {
    let none = "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed\n";
    assert_eq!(
        exec_end(&["--exact", "maps::counts"], none, true),
        Err(JudgeError::NoTestMatched("maps::counts".into()))
    );
    assert_eq!(
        exec_end(&["a", "--exact", "--test-threads", "1", "b"], none, true),
        Err(JudgeError::NoTestMatched("a or b".into()))
    );
    // Without `--exact` a filter may match nothing.
    assert_eq!(exec_end(&["maps::"], none, true), Ok(()));
    assert_eq!(
        exec_end(&["--exact", "a"], "running 1 test\ntest a ... ok\n", true),
        Ok(())
    );
}
