//! `kmatrix exec`'s failures end with the command that reproduces them, in
//! every report: a libtest test alone (`NAME --exact`), the program as
//! given where it exited non-zero or the kernel printed a splat.

use kmatrix_protocol::report::{ExecReproduce, Outcome, Record, Reproduce};
use kmatrix_protocol::ExitInfo;

use super::super::{exec, html, junit, markdown, matrix, Reporter, Summary};
use crate::event::{RunEvent, SplatSource};

const PROBE: &str = "/w/target/debug/deps/probe-1a2b";
const TEST: &str = "kmatrix exec --kernels 6.1 -- /w/target/debug/deps/probe-1a2b --nocapture \
                    xdp::attaches --exact";
const PROGRAM_61: &str =
    "kmatrix exec --kernels 6.1 -- /w/target/debug/deps/probe-1a2b --nocapture xdp";
const PROGRAM_73: &str =
    "kmatrix exec --kernels 7.3 -- /w/target/debug/deps/probe-1a2b --nocapture xdp";

/// A libtest binary given a filter: on 6.1 one test fails and the binary
/// exits 101; on 7.3 every test passes but the kernel prints a splat.
fn run() -> (Summary, String) {
    let kernels = vec!["6.1".to_string(), "7.3".to_string()];
    let outcome = |kernel: &str, test: &str, outcome: Outcome| RunEvent::Outcome {
        kernel: kernel.into(),
        test: test.into(),
        outcome,
    };
    let passed = || Outcome::Passed {
        detail: String::new(),
    };
    let events = [
        RunEvent::RunStarted {
            matrix: kernels.clone(),
            kernels,
            tests: Vec::new(),
            shard: None,
            reproduce: Some(Reproduce {
                exec: Some(ExecReproduce {
                    command: vec![PROBE.into(), "--nocapture".into(), "xdp".into()],
                    ..ExecReproduce::default()
                }),
                ..Reproduce::default()
            }),
        },
        outcome("6.1", "xdp::loads", passed()),
        outcome(
            "6.1",
            "xdp::attaches",
            Outcome::failed("panicked at src/lib.rs:9: attach: EINVAL"),
        ),
        RunEvent::Exited {
            kernel: "6.1".into(),
            info: ExitInfo::Code(101),
        },
        outcome("7.3", "xdp::loads", passed()),
        outcome("7.3", "xdp::attaches", passed()),
        RunEvent::Splat {
            kernel: "7.3".into(),
            source: SplatSource::Kmsg,
            lines: vec!["BUG: kernel NULL pointer dereference, address: 0".into()],
        },
        RunEvent::Exited {
            kernel: "7.3".into(),
            info: ExitInfo::Code(0),
        },
    ];
    let mut lines = Vec::new();
    let mut reporter = Reporter::new().json(&mut lines);
    for event in &events {
        reporter.report(event).unwrap();
    }
    let summary = reporter.into_summary();
    (summary, String::from_utf8(lines).unwrap())
}

#[test]
fn every_report_ends_an_exec_failure_with_its_command() {
    let (summary, json) = run();

    // The failed outcome in --json: the test alone, the filter replaced.
    let reproduce: Vec<(String, Option<String>)> = json
        .lines()
        .filter_map(|line| match serde_json::from_str(line).unwrap() {
            Record::Outcome {
                kernel,
                test,
                reproduce,
                ..
            } => Some((format!("{test} on {kernel}"), reproduce)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reproduce,
        [
            ("xdp::loads on 6.1".into(), None),
            ("xdp::attaches on 6.1".into(), Some(TEST.into())),
            ("xdp::loads on 7.3".into(), None),
            ("xdp::attaches on 7.3".into(), None),
        ]
    );

    // The terminal: the failure list, then how the program ended.
    let mut text = Vec::new();
    matrix::render(&summary, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("reproduce: "))
        .collect();
    assert_eq!(lines, [PROGRAM_61, TEST, PROGRAM_73], "{text}");
    let mut statuses = Vec::new();
    exec::statuses(&summary, &mut statuses).unwrap();
    let statuses = String::from_utf8(statuses).unwrap();
    assert_eq!(
        statuses
            .lines()
            .filter(|l| l.contains("reproduce"))
            .collect::<Vec<_>>(),
        [
            format!("kmatrix: 6.1: reproduce: {PROGRAM_61}"),
            format!("kmatrix: 7.3: reproduce: {PROGRAM_73}"),
        ],
        "{statuses}"
    );

    // Markdown, JUnit and HTML name each command, quoted as they quote.
    let markdown = markdown::render(&summary);
    let junit = junit::render(&summary).unwrap();
    let html = html::render(&summary);
    for command in [TEST, PROGRAM_61, PROGRAM_73] {
        assert!(markdown.contains(command), "{command}:\n{markdown}");
        let escaped = command.replace('>', "&gt;");
        assert!(junit.contains(&escaped), "{command}:\n{junit}");
        assert!(html.contains(&escaped), "{command}:\n{html}");
    }
}

#[test]
fn a_plain_program_that_failed_runs_again_as_given() {
    let mut summary = Summary::default();
    summary.apply(&Record::RunStarted {
        schema: kmatrix_protocol::report::SCHEMA,
        kmatrix: String::new(),
        matrix: vec!["5.10".into()],
        kernels: vec!["5.10".into()],
        tests: Vec::new(),
        shard: None,
        reproduce: Some(Reproduce {
            matrix: Some("ci/kernels.toml".into()),
            exec: Some(ExecReproduce {
                command: vec!["./check.sh".into(), "two words".into()],
                files: vec!["/opt/data".into()],
                ..ExecReproduce::default()
            }),
            ..Reproduce::default()
        }),
    });
    summary.apply(&Record::Exited {
        kernel: "5.10".into(),
        status: "exit code 3".into(),
    });
    let mut statuses = Vec::new();
    exec::statuses(&summary, &mut statuses).unwrap();
    assert_eq!(
        String::from_utf8(statuses).unwrap(),
        "kmatrix: 5.10: FAILED: exit code 3\nkmatrix: 5.10: reproduce: kmatrix --matrix \
         ci/kernels.toml exec --kernels 5.10 --file /opt/data -- ./check.sh 'two words'\n"
    );
    let failures = super::super::failure::all(&summary);
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].reproduce.as_deref(),
        Some(
            "kmatrix --matrix ci/kernels.toml exec --kernels 5.10 --file /opt/data -- \
             ./check.sh 'two words'"
        )
    );
}
