//! `--junit`: the matrix as JUnit XML, one testsuite per kernel and one
//! testcase per test, built once the run is over. Everything a guest or a
//! suite named is kept to the characters XML 1.0 allows.

use kmatrix_protocol::report::Outcome;
use quick_junit::{NonSuccessKind, Report, SerializeError, TestCase, TestCaseStatus, TestSuite};

use super::failure::{self, Subject};
use super::{Cell, Summary};

/// The JUnit XML of a finished run. quick-junit drops ANSI escapes and the
/// C0 controls XML 1.0 forbids, but not U+FFFE and U+FFFF; whatever XML 1.0
/// forbids becomes U+FFFD here, once for every name, message, log and
/// property (the markup itself is ASCII).
pub fn render(summary: &Summary) -> Result<String, SerializeError> {
    let xml = report(summary).to_string()?;
    Ok(xml.replace(|c| !is_xml_char(c), "\u{FFFD}"))
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The JUnit report of a finished run.
fn report(summary: &Summary) -> Report {
    let mut report = Report::new("kmatrix");
    for (c, column) in summary.columns.iter().enumerate() {
        let mut suite = TestSuite::new(column.label.as_str());
        suite.add_property(("arch", column.arch.name()));
        if let Some(release) = &column.release {
            suite.add_property(("release", release.as_str()));
        }
        if let Some(tail) = &column.console_tail {
            suite.set_system_err(tail.as_str());
        }
        for (r, name) in summary.rows.iter().enumerate() {
            let status = match (summary.cell(c, r), failure::of_cell(summary, c, r)) {
                (Some(Cell::Done(Outcome::Passed { .. })), _) => TestCaseStatus::success(),
                (Some(Cell::Done(Outcome::ExpectedFailure { reason })), _) => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(format!("expected failure: {reason}"));
                    status
                }
                (Some(Cell::Done(Outcome::Skipped { reason })), _) => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(reason.as_str());
                    status
                }
                (_, Some(failure)) => {
                    let kind = match failure.subject {
                        Subject::Test { .. } => NonSuccessKind::Failure,
                        _ => NonSuccessKind::Error,
                    };
                    let mut status = TestCaseStatus::non_success(kind);
                    status.set_message(match failure.subject {
                        Subject::Test { .. } => failure.reason.to_owned(),
                        Subject::LoaderLimitation { .. } => {
                            format!(
                                "loader limitation, not the kernel's verdict: {}",
                                failure.reason
                            )
                        }
                        _ => format!("{} failed: {}", failure.headline(), failure.reason),
                    });
                    status.set_description(failure.details());
                    status
                }
                (_, None) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                    status.set_message(format!("kernel {} failed: no result", column.label));
                    status
                }
            };
            let mut case = TestCase::new(name.as_str(), status);
            case.set_classname(format!("kmatrix.{}", column.label));
            if let Some(stats) = summary.stats(c, r) {
                for (key, value) in stats.figures() {
                    case.add_property((format!("verifier.{key}"), value));
                }
            }
            suite.add_test_case(case);
        }
        for case in kernel_cases(summary, c) {
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report
}

/// The failures of the kernel in `column` that no test's cell shows (a
/// splat outside any test, the agent's problem, `kmatrix exec`'s program
/// exiting non-zero, the kernel's own failure after every test had its
/// result), each as a testcase of its own in error.
fn kernel_cases(summary: &Summary, column: usize) -> Vec<TestCase> {
    let label = summary.columns[column].label.as_str();
    let not_run = (0..summary.rows.len())
        .any(|r| matches!(summary.cell(column, r), Some(Cell::NotRun) | None));
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    failure::all(summary)
        .into_iter()
        .filter(|f| f.subject.kernel() == label)
        .filter_map(|failure| {
            let name = match failure.subject {
                Subject::Kernel { .. } if !not_run => "the kernel",
                // Every test not run shows the kernel's failure in its cell.
                Subject::Kernel { .. } => return None,
                Subject::Splat { .. } => "a splat outside any test",
                Subject::Agent { .. } => "the agent",
                Subject::Program { .. } => "the program",
                // A test's own cell shows these.
                Subject::LoaderLimitation { .. } | Subject::Test { .. } => return None,
            };
            // Consumers merge testcases of one name: a second splat is
            // "a splat outside any test (2)".
            let count = seen.entry(name).or_default();
            *count += 1;
            let name = match *count {
                1 => name.to_owned(),
                n => format!("{name} ({n})"),
            };
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(format!("{} failed: {}", failure.headline(), failure.reason));
            status.set_description(failure.details());
            let mut case = TestCase::new(name, status);
            case.set_classname(format!("kmatrix.{label}"));
            Some(case)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kmatrix_protocol::report::Record;

    use super::*;

    #[test]
    fn the_xml_keeps_to_xml_1_0() {
        let kernel = "6.1\u{FFFF}";
        let test = "a::load\u{FFFE}\u{1}";
        let mut summary = Summary::with(vec![kernel.into()], vec![test.into()]);
        for record in [
            Record::KernelBooted {
                kernel: kernel.into(),
                release: "6.1.0\u{FFFE}\u{1b}[31m".into(),
                btf: true,
                restored: false,
            },
            Record::Outcome {
                kernel: kernel.into(),
                test: test.into(),
                reproduce: None,
                result: Outcome::Failed {
                    reason: "verifier: \u{FFFF}\u{0}".into(),
                    verifier_log: Some("0: \u{FFFE}\u{8}\n\u{FFFF}".into()),
                    kernel_log: Some("WARNING: \u{FFFE}".into()),
                },
            },
            Record::KernelFinished {
                kernel: kernel.into(),
                error: None,
                console_tail: Some("panic \u{FFFF}".into()),
                infrastructure: false,
            },
        ] {
            summary.apply(&record);
        }
        let xml = render(&summary).unwrap();
        let forbidden = |c: char| matches!(c, '\0'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}');
        assert!(!xml.contains(forbidden), "{xml:?}");
        let suites = junit_parser::from_reader(xml.as_bytes()).unwrap();
        let suite = &suites.suites[0];
        assert_eq!(suite.name, "6.1\u{FFFD}");
        assert_eq!(suite.system_err.as_deref(), Some("panic \u{FFFD}"));
        assert_eq!(suite.cases[0].name, "kmatrix.6.1\u{FFFD}::a::load\u{FFFD}");
        let junit_parser::TestStatus::Failure(failure) = &suite.cases[0].status else {
            panic!("{xml}");
        };
        assert_eq!(failure.message, "verifier: \u{FFFD}");
        assert!(failure.text.ends_with("0: \u{FFFD}\n\u{FFFD}"), "{xml}");
    }

    #[test]
    fn each_splat_outside_any_test_is_a_testcase_of_its_own_name() {
        let mut summary = Summary::with(vec!["6.1".into()], vec!["a::load".into()]);
        let splat = |headline: &str| Record::Splat {
            kernel: "6.1".into(),
            source: "kmsg".into(),
            lines: vec![headline.into(), "Call Trace:".into()],
        };
        for record in [
            Record::KernelBooted {
                kernel: "6.1".into(),
                release: "6.1.0".into(),
                btf: true,
                restored: false,
            },
            Record::Outcome {
                kernel: "6.1".into(),
                test: "a::load".into(),
                reproduce: None,
                result: Outcome::Passed {
                    detail: "xdp, 1 ms".into(),
                },
            },
            splat("WARNING: CPU: 0 PID: 1 at kernel/bpf/verifier.c:1 f"),
            splat("BUG: kernel NULL pointer dereference, address: 0000000000000008"),
            Record::KernelFinished {
                kernel: "6.1".into(),
                error: None,
                console_tail: None,
                infrastructure: false,
            },
        ] {
            summary.apply(&record);
        }
        let xml = render(&summary).unwrap();
        let suites = junit_parser::from_reader(xml.as_bytes()).unwrap();
        let names: Vec<&str> = suites.suites[0]
            .cases
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "kmatrix.6.1::a::load",
                "kmatrix.6.1::a splat outside any test",
                "kmatrix.6.1::a splat outside any test (2)"
            ],
            "{xml}"
        );
    }
}
