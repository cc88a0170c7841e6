//! `--junit`: the matrix as JUnit XML, one testsuite per kernel and one
//! testcase per test, built once the run is over.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Cell, Summary};
use crate::suite::Outcome;

/// The JUnit report of a finished run.
pub fn report(summary: &Summary) -> Report {
    let mut report = Report::new("kmatrix");
    for (c, column) in summary.columns.iter().enumerate() {
        let mut suite = TestSuite::new(column.label.as_str());
        if let Some(tail) = &column.console_tail {
            suite.set_system_err(tail.as_str());
        }
        for (r, name) in summary.rows.iter().enumerate() {
            let status = match summary.cell(c, r) {
                Some(Cell::Done(Outcome::Passed { .. })) => TestCaseStatus::success(),
                Some(Cell::Done(Outcome::Failed {
                    reason,
                    verifier_log,
                })) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(reason.as_str());
                    let description = match verifier_log {
                        Some(log) => format!("{reason}\n\nverifier log:\n{log}"),
                        None => reason.clone(),
                    };
                    status.set_description(description);
                    status
                }
                Some(Cell::Done(Outcome::ExpectedFailure { reason })) => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(format!("expected failure: {reason}"));
                    status
                }
                Some(Cell::Done(Outcome::Skipped { reason })) => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(reason.as_str());
                    status
                }
                Some(Cell::NotRun) | None => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                    let failure = column.failure.as_deref().unwrap_or("no result");
                    status.set_message(format!("kernel {} failed: {failure}", column.label));
                    if let Some(tail) = &column.console_tail {
                        status.set_description(format!("console (last lines):\n{tail}"));
                    }
                    status
                }
            };
            let mut case = TestCase::new(name.as_str(), status);
            case.set_classname(format!("kmatrix.{}", column.label));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report
}
