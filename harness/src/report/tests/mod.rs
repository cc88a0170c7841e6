//! The renderers on a fixed run, without VMs: every kind of cell and
//! failure, checked against snapshot files (`snapshots/`).

use std::process::Command;
use std::time::Duration;

use kmatrix_protocol::report::{Outcome, Record};
use kmatrix_protocol::{ExitInfo, Hello};

use super::{html, junit, live, markdown, matrix, record, Reporter, Summary};
use crate::event::{JudgeError, KernelError, KernelOutcome, RunEvent};

const LOG: &str = "0: (61) r2 = *(u32 *)(r1 +0)\n1: (71) r1 = *(u8 *)(r2 +20)\ninvalid access to packet, off=20 size=1, R2(id=0,off=20,r=0)\nR2 offset is outside of the packet\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";

fn outcome(kernel: &str, test: &str, outcome: Outcome) -> RunEvent {
    RunEvent::Outcome {
        kernel: kernel.into(),
        test: test.into(),
        outcome,
    }
}

/// A run on three kernels: one passes but for a rejected program, one
/// fails to boot, one has an agent error and an expected failure.
fn events() -> Vec<RunEvent> {
    let booted = |kernel: &str, release: &str| RunEvent::KernelBooted {
        kernel: kernel.into(),
        hello: Hello {
            version: kmatrix_protocol::VERSION,
            kernel_release: release.into(),
            btf: true,
            boot_ms: 812,
        },
        start: if kernel == "6.1" {
            crate::vm::Start::Restored
        } else {
            crate::vm::Start::Cold
        },
    };
    let done = |kernel: &str| RunEvent::KernelFinished {
        kernel: kernel.into(),
        outcome: KernelOutcome::Completed {
            boot: Duration::from_millis(1500),
            run: Duration::from_millis(300),
            total: Duration::from_millis(1900),
            timings: Box::default(),
        },
    };
    let pass = |detail: &str| Outcome::Passed {
        detail: detail.into(),
    };
    vec![
        RunEvent::RunStarted {
            matrix: vec!["5.10".into(), "6.1".into(), "7.3".into()],
            kernels: vec!["5.10".into(), "6.1".into(), "7.3".into()],
            tests: vec![
                "xdp_pass::load".into(),
                "unchecked_read::load".into(),
                "xdp_loop_sum::load".into(),
                "xdp_filter::drops_ssh".into(),
            ],
            shard: None,
            reproduce: Some(kmatrix_protocol::report::Reproduce {
                suite: Some("tests/my suite.toml".into()),
                loader: Some("libbpf".into()),
                ..Default::default()
            }),
        },
        RunEvent::KernelStarted {
            kernel: "5.10".into(),
            arch: kmatrix_protocol::Arch::Amd64,
        },
        booted("5.10", "5.10.0-35-cloud-amd64"),
        outcome("5.10", "xdp_pass::load", pass("xdp, 0.8 ms")),
        outcome(
            "5.10",
            "unchecked_read::load",
            Outcome::Failed {
                reason: "verifier: R2 offset is outside of the packet (Permission denied)".into(),
                verifier_log: Some(LOG.into()),
                kernel_log: None,
            },
        ),
        outcome(
            "5.10",
            "xdp_loop_sum::load",
            Outcome::ExpectedFailure {
                reason: "bpf_loop() arrived in Linux 5.17 (unknown func bpf_loop#181)".into(),
            },
        ),
        outcome(
            "5.10",
            "xdp_filter::drops_ssh",
            Outcome::Skipped {
                reason: "not run: the program did not load".into(),
            },
        ),
        done("5.10"),
        RunEvent::KernelStarted {
            kernel: "6.1".into(),
            arch: kmatrix_protocol::Arch::Amd64,
        },
        RunEvent::KernelFinished {
            kernel: "6.1".into(),
            outcome: KernelOutcome::Failed(KernelError::Judge(JudgeError::NoExit)),
        },
        RunEvent::KernelStarted {
            kernel: "7.3".into(),
            arch: kmatrix_protocol::Arch::Amd64,
        },
        RunEvent::Notice {
            kernel: "7.3".into(),
            message: "the saved VM could not be restored (restoring the saved VM failed: the VM did not answer within 15s); booting cold and saving it again".into(),
        },
        booted("7.3", "7.3.1+bpo-cloud-amd64"),
        RunEvent::AgentError {
            kernel: "7.3".into(),
            message: "module virtio_console: EEXIST".into(),
        },
        outcome("7.3", "xdp_pass::load", pass("xdp, 0.6 ms")),
        RunEvent::Stats {
            kernel: "7.3".into(),
            test: "xdp_pass::load".into(),
            stats: kmatrix_protocol::ProgramStats {
                insns_processed: Some(2),
                xlated_insns: Some(2),
                jited_bytes: Some(21),
                ..Default::default()
            },
        },
        outcome("7.3", "unchecked_read::load", pass("xdp, 0.7 ms")),
        outcome(
            "7.3",
            "xdp_loop_sum::load",
            Outcome::LoaderLimitation {
                reason: "aya cannot load it: error parsing BPF object: invalid program section `tc`; try `loader = \"libbpf\"` for this object in the suite (or --loader libbpf)".into(),
            },
        ),
        outcome(
            "7.3",
            "xdp_filter::drops_ssh",
            Outcome::Failed {
                reason: "the kernel printed a splat: WARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2".into(),
                verifier_log: None,
                kernel_log: Some("------------[ cut here ]------------\nWARNING: CPU: 0 PID: 1 at kernel/bpf/core.c:1 bpf_prog_run+0x1/0x2\nCall Trace:\n ---[ end trace 0000000000000000 ]---".into()),
            },
        ),
        RunEvent::Splat {
            kernel: "7.3".into(),
            source: crate::event::SplatSource::Kmsg,
            lines: vec![
                "INFO: task kworker/0:1:12 blocked for more than 120 seconds.".into(),
                "      Not tainted 7.3.1+bpo-cloud-amd64 #1".into(),
            ],
        },
        RunEvent::Exited {
            kernel: "7.3".into(),
            info: ExitInfo::Code(0),
        },
        done("7.3"),
        RunEvent::RunFinished,
    ]
}

fn summary() -> Summary {
    let mut reporter = Reporter::new();
    for event in events() {
        reporter.report(&event).unwrap();
    }
    reporter.into_summary()
}

#[test]
fn matrix_render() {
    let mut out = Vec::new();
    matrix::render(&summary(), &mut out).unwrap();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

#[test]
fn stats_render() {
    let mut out = Vec::new();
    matrix::render_stats(&summary(), &mut out).unwrap();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

#[test]
fn markdown_render() {
    insta::assert_snapshot!(markdown::render(&summary()));
}

#[test]
fn html_render() {
    insta::assert_snapshot!(html::render(&summary()));
}

#[test]
fn junit_render() {
    let xml = junit::render(&summary()).unwrap();
    insta::assert_snapshot!(xml);
}

#[test]
fn live_lines() {
    let mut out = Vec::new();
    let mut live = live::LiveReporter::new(&mut out);
    for event in events() {
        live.report(&event).unwrap();
    }
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

#[test]
fn json_lines_fold_back_into_the_same_matrix() {
    let mut lines = Vec::new();
    let mut reporter = Reporter::new().json(&mut lines);
    for event in events() {
        reporter.report(&event).unwrap();
    }
    let live = reporter.into_summary();
    let records: Vec<Record> = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.last(), Some(&Record::RunFinished { passed: false }));
    // A failed outcome carries the command that reproduces it; others none.
    let reproduce: Vec<(&str, Option<&str>)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Outcome {
                test,
                kernel,
                reproduce,
                ..
            } if kernel == "5.10" => Some((test.as_str(), reproduce.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        reproduce,
        [
            ("xdp_pass::load", None),
            (
                "unchecked_read::load",
                Some("kmatrix test --kernels 5.10 --suite 'tests/my suite.toml' --loader libbpf --only unchecked_read::load")
            ),
            ("xdp_loop_sum::load", None),
            ("xdp_filter::drops_ssh", None),
        ]
    );
    let mut replayed = Summary::default();
    for record in &records {
        replayed.apply(record);
    }
    assert_eq!(replayed.columns, live.columns);
    assert_eq!(replayed.rows, live.rows);
    let mut a = Vec::new();
    let mut b = Vec::new();
    matrix::render(&live, &mut a).unwrap();
    matrix::render(&replayed, &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        record::of(&RunEvent::RunFinished, || true),
        Record::RunFinished { passed: true }
    );
}

#[test]
fn one_cause_for_several_tests_is_reported_once() {
    let map = "map error: failed to create map `events`: Invalid argument (map `events` is declared with max_entries 0)";
    let mut summary = Summary::with(
        vec!["6.1".into()],
        vec!["a::load".into(), "b::load".into(), "c::load".into()],
    );
    for (test, reason) in [("a::load", map), ("b::load", map), ("c::load", "other")] {
        summary.apply(&Record::Outcome {
            kernel: "6.1".into(),
            test: test.into(),
            reproduce: None,
            result: Outcome::failed(reason),
        });
    }
    let failures = super::failure::all(&summary);
    assert_eq!(failures.len(), 2);
    assert_eq!(
        failures[0].headline(),
        "a::load on 6.1 (and, for the same reason, b::load)"
    );
}

#[test]
fn many_tests_failing_alike_are_counted_past_the_first_ten_and_rerun_as_a_suite() {
    let tests: Vec<String> = (0..25).map(|i| format!("p::case{i}")).collect();
    // A summary of a suite run on 6.1 where `failed` failed alike.
    let summary_of = |failed: &[String]| {
        let mut summary = Summary::with(vec!["6.1".into()], Vec::new());
        summary.reproduce = Some(kmatrix_protocol::report::Reproduce {
            suite: Some("kmatrix-suite.toml".into()),
            ..Default::default()
        });
        for test in failed {
            summary.apply(&Record::Outcome {
                kernel: "6.1".into(),
                test: test.clone(),
                reproduce: None,
                result: Outcome::failed("returned XDP_PASS, expected XDP_DROP"),
            });
        }
        summary
    };
    let summary = summary_of(&tests);
    let failures = super::failure::all(&summary);
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].headline(),
        format!(
            "p::case0 on 6.1 (and, for the same reason, {} and 14 more)",
            tests[1..11].join(", ")
        )
    );
    assert_eq!(
        failures[0].reproduce.as_deref(),
        Some("kmatrix test --kernels 6.1 --suite kmatrix-suite.toml")
    );
    let md = markdown::render(&summary);
    let line = md.lines().find(|l| l.starts_with("- `p::case0`")).unwrap();
    assert!(line.ends_with("`p::case10` and 14 more)"), "{line}");
    assert!(!line.contains("p::case11`"), "{line}");
    // Ten others alike are all named, and rerun by name.
    let summary = summary_of(&tests[..11]);
    let failures = super::failure::all(&summary);
    assert!(failures[0].headline().ends_with("p::case10)"));
    let command = failures[0].reproduce.as_deref().unwrap();
    assert!(
        command.ends_with("--only p::case9 --only p::case10"),
        "{command}"
    );
}

mod exec;
pub(super) mod github;
mod loaders;
mod unpinned;
