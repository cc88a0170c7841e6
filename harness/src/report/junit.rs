//! `--junit`: the matrix as JUnit XML, one testsuite per kernel and one
//! testcase per test, built once the run is over.

use kmatrix_protocol::report::Outcome;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::failure::{self, Subject};
use super::{Cell, Summary};

/// The JUnit report of a finished run.
pub fn report(summary: &Summary) -> Report {
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
        report.add_test_suite(suite);
    }
    report
}
