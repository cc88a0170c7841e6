//! A kernel the run could not pin is reported as a kernel that could not be
//! fetched: not run in every report, never green, the run's status the
//! machinery's unless a test failed.

use kmatrix_protocol::report::{exit, Outcome, Record};

use super::super::{junit, markdown, matrix, Mark, Reporter, Summary};
use crate::error::{exit_code, Status};
use crate::event::{KernelError, KernelOutcome, RunEvent};
use crate::kernels::FetchError;

const PIN: &str = "kmatrix kernels update --kernels 5.4";

/// 6.1 runs `a::load` with `result`; 5.4 is not pinned.
fn events(result: Outcome) -> Vec<RunEvent> {
    vec![
        RunEvent::RunStarted {
            matrix: vec!["5.4".into(), "6.1".into()],
            kernels: vec!["5.4".into(), "6.1".into()],
            tests: vec!["a::load".into()],
            shard: None,
            reproduce: None,
        },
        RunEvent::KernelFinished {
            kernel: "5.4".into(),
            outcome: KernelOutcome::Failed(KernelError::Fetch(FetchError::NotPinned {
                label: "5.4".into(),
            })),
        },
        RunEvent::KernelStarted {
            kernel: "6.1".into(),
            arch: kmatrix_protocol::Arch::Amd64,
        },
        RunEvent::Outcome {
            kernel: "6.1".into(),
            test: "a::load".into(),
            outcome: result,
        },
        RunEvent::KernelFinished {
            kernel: "6.1".into(),
            outcome: KernelOutcome::Completed {
                boot: std::time::Duration::from_millis(900),
                run: std::time::Duration::from_millis(100),
                total: std::time::Duration::from_millis(1000),
                timings: Box::default(),
            },
        },
        RunEvent::RunFinished,
    ]
}

/// The summary, the `--json` lines and the live lines of a run.
fn run(result: Outcome) -> (Summary, Vec<Record>, String) {
    let (mut lines, mut out) = (Vec::new(), Vec::new());
    let mut reporter = Reporter::new().json(&mut lines).live(&mut out);
    for event in events(result) {
        reporter.report(&event).unwrap();
    }
    let summary = reporter.into_summary();
    let records = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (summary, records, String::from_utf8(out).unwrap())
}

#[test]
fn an_unpinned_kernel_is_not_run_in_every_report_and_fails_as_the_machinery() {
    let (summary, records, live) = run(Outcome::Passed {
        detail: "xdp".into(),
    });
    let (unpinned, pinned) = (
        summary.column("5.4").unwrap(),
        summary.column("6.1").unwrap(),
    );
    assert_eq!(Mark::of(summary.cell(pinned, 0)), Mark::Pass);
    assert_eq!(Mark::of(summary.cell(unpinned, 0)), Mark::KernelError);
    let column = &summary.columns[unpinned];
    assert!(column.infrastructure);
    assert!(
        column.failure.as_deref().unwrap().contains(PIN),
        "{column:?}"
    );

    // Nothing but the machinery failed: exit 3, not green.
    assert!(!summary.passed());
    let status = Status::of_summary(&summary);
    assert_eq!(status, Status::Infrastructure);
    assert_eq!(exit_code(&Ok(status)), exit::INFRASTRUCTURE);

    assert!(
        live.contains(&format!(
            "     5.4  ERROR kernel `5.4` is not pinned, so it is not fetched or run: `{PIN}` pins it\n"
        )),
        "{live}"
    );
    let finished = records
        .iter()
        .find_map(|r| match r {
            Record::KernelFinished {
                kernel,
                error,
                infrastructure,
                ..
            } if kernel == "5.4" => Some((error.clone(), *infrastructure)),
            _ => None,
        })
        .unwrap();
    assert!(finished.0.unwrap().contains(PIN));
    assert!(finished.1, "the record says the machinery failed");
    assert_eq!(records.last(), Some(&Record::RunFinished { passed: false }));

    let mut text = Vec::new();
    matrix::render(&summary, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["a::load", "ERR", "pass"])),
        "{text}"
    );
    assert!(text.contains(PIN), "{text}");

    let md = markdown::render(&summary);
    assert!(md.starts_with("## kmatrix: failed"), "{md}");
    assert!(md.contains("| `a::load` | 💥 | ✅ |"), "{md}");
    assert!(md.contains("kernels update --kernels 5.4"), "{md}");

    let xml = junit::render(&summary).unwrap();
    let suites = junit_parser::from_reader(xml.as_bytes()).unwrap();
    let status = |name: &str| {
        let suite = suites.suites.iter().find(|s| s.name == name).unwrap();
        suite.cases[0].status.clone()
    };
    assert!(matches!(status("6.1"), junit_parser::TestStatus::Success));
    let junit_parser::TestStatus::Error(error) = status("5.4") else {
        panic!("{xml}");
    };
    assert!(error.message.contains(PIN), "{xml}");
}

#[test]
fn a_failed_test_beside_an_unpinned_kernel_fails_the_run() {
    let (summary, _, _) = run(Outcome::failed("verifier: no"));
    let status = Status::of_summary(&summary);
    assert_eq!(status, Status::Failed);
    assert_eq!(exit_code(&Ok(status)), exit::FAILED);
}
