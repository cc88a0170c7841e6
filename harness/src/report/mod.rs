//! Reporters: sinks that fold [`RunEvent`]s into what a user reads.
//!
//! [`live`] prints a line per event as it happens and [`json`] writes one;
//! [`Summary`] collects the matrix, which decides the exit status and which
//! [`matrix`], [`junit`] and [`markdown`] render at the end. [`json::merge`]
//! rebuilds a `Summary` from shards' files.

pub mod exec;
pub mod json;
pub mod junit;
pub mod live;
pub mod markdown;
pub mod matrix;

use std::collections::HashMap;

use crate::kernels::KernelEntry;
use crate::runner::{KernelOutcome, RunEvent};
use crate::suite::{Outcome, Suite};

/// One cell of the matrix: a test on a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// The test's outcome.
    Done(Outcome),
    /// The kernel failed before this test ran (the reason is the kernel's).
    NotRun,
}

/// What a cell shows, before a renderer picks its symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Failed as expected.
    ExpectedFailure,
    /// Skipped.
    Skip,
    /// Not run: the kernel failed.
    KernelError,
    /// No result (yet).
    Missing,
}

impl Mark {
    /// The mark of a cell.
    pub fn of(cell: Option<&Cell>) -> Self {
        match cell {
            Some(Cell::Done(Outcome::Passed { .. })) => Mark::Pass,
            Some(Cell::Done(Outcome::Failed { .. })) => Mark::Fail,
            Some(Cell::Done(Outcome::ExpectedFailure { .. })) => Mark::ExpectedFailure,
            Some(Cell::Done(Outcome::Skipped { .. })) => Mark::Skip,
            Some(Cell::NotRun) => Mark::KernelError,
            None => Mark::Missing,
        }
    }
}

/// A kernel's column.
#[derive(Clone, Debug, Default)]
pub struct Column {
    /// The kernel's label.
    pub label: String,
    /// `uname -r`, once booted.
    pub release: Option<String>,
    /// Why the kernel failed, if it did.
    pub failure: Option<String>,
    /// The console's tail when the kernel failed after booting QEMU.
    pub console_tail: Option<String>,
    /// Problems the agent reported outside any test.
    pub agent_errors: Vec<String>,
    /// Whether the kernel finished (either way).
    pub finished: bool,
}

/// The whole matrix, folded from the run's events.
#[derive(Debug)]
pub struct Summary {
    /// Kernels, in matrix order.
    pub columns: Vec<Column>,
    /// Test names, in suite order.
    pub rows: Vec<String>,
    cells: HashMap<(usize, usize), Cell>,
}

impl Summary {
    /// An empty matrix for these kernels and this suite.
    pub fn new(kernels: &[&KernelEntry], suite: &Suite) -> Self {
        Self::with(
            kernels.iter().map(|k| k.label.clone()).collect(),
            suite.tests.iter().map(|t| t.name.clone()).collect(),
        )
    }

    /// An empty matrix with these columns (kernel labels) and rows (test
    /// names).
    pub fn with(kernels: Vec<String>, tests: Vec<String>) -> Self {
        Self {
            columns: kernels
                .into_iter()
                .map(|label| Column {
                    label,
                    ..Column::default()
                })
                .collect(),
            rows: tests,
            cells: HashMap::new(),
        }
    }

    /// The column of the kernel labelled `label`.
    pub fn column(&self, label: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.label == label)
    }

    /// The row of the test named `name`.
    pub fn row(&self, name: &str) -> Option<usize> {
        self.rows.iter().position(|r| r == name)
    }

    /// Folds one event in.
    pub fn record(&mut self, event: &RunEvent) {
        let column = |kernel: &str| self.column(kernel);
        match event {
            RunEvent::KernelStarted { .. } | RunEvent::Output { .. } | RunEvent::Exited { .. } => {}
            RunEvent::KernelBooted { kernel, hello } => {
                if let Some(c) = column(kernel) {
                    self.columns[c].release = Some(hello.kernel_release.clone());
                }
            }
            RunEvent::Outcome {
                kernel,
                test,
                outcome,
            } => {
                if let Some(c) = column(kernel) {
                    self.set(c, *test, outcome.clone());
                }
            }
            RunEvent::AgentError { kernel, message } => {
                if let Some(c) = column(kernel) {
                    self.columns[c].agent_errors.push(message.clone());
                }
            }
            RunEvent::KernelFinished { kernel, outcome } => {
                if let Some(c) = column(kernel) {
                    let failure = match outcome {
                        KernelOutcome::Completed { .. } => None,
                        KernelOutcome::Failed(err) => {
                            Some((error_chain(err), err.console_tail().map(str::to_owned)))
                        }
                    };
                    self.finish(c, failure);
                }
            }
        }
    }

    /// Records the outcome of `row` on `column`.
    pub fn set(&mut self, column: usize, row: usize, outcome: Outcome) {
        self.cells.insert((column, row), Cell::Done(outcome));
    }

    /// Marks a kernel finished, failed with a reason and console tail or
    /// not; tests without an outcome are then not run (failed kernel) or
    /// failed for want of a result.
    pub fn finish(&mut self, column: usize, failure: Option<(String, Option<String>)>) {
        let kernel = &mut self.columns[column];
        kernel.finished = true;
        let missing = match failure {
            None => Cell::Done(Outcome::Failed {
                reason: "the agent sent no result for it".into(),
                verifier_log: None,
            }),
            Some((reason, console_tail)) => {
                kernel.failure = Some(reason);
                kernel.console_tail = console_tail;
                Cell::NotRun
            }
        };
        for r in 0..self.rows.len() {
            self.cells
                .entry((column, r))
                .or_insert_with(|| missing.clone());
        }
    }

    /// The cell of `row` on `column`, once known.
    pub fn cell(&self, column: usize, row: usize) -> Option<&Cell> {
        self.cells.get(&(column, row))
    }

    /// Whether the run passed: every kernel finished cleanly and no test
    /// failed (expected failures and skips do not fail a run).
    pub fn passed(&self) -> bool {
        self.columns
            .iter()
            .all(|c| c.finished && c.failure.is_none() && c.agent_errors.is_empty())
            && (0..self.columns.len()).all(|c| {
                (0..self.rows.len()).all(|r| match self.cell(c, r) {
                    Some(Cell::Done(outcome)) => !outcome.is_failure(),
                    Some(Cell::NotRun) | None => false,
                })
            })
    }
}

/// The verifier's reason: the last line of its first paragraph that is not
/// a statistics line. (Newer kernels follow it with an explanation after a
/// blank line.)
pub fn verifier_reason(log: &str) -> Option<&str> {
    log.lines()
        .map(str::trim_end)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .filter(|l| {
            ![
                "processed ",
                "verification time",
                "stack depth",
                "subprog ",
                "-- END PROG LOAD LOG --",
            ]
            .iter()
            .any(|prefix| l.starts_with(prefix))
        })
        .last()
}

/// An error and its causes on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        let next = err.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_verifier_reason() {
        let log = "0: (b7) r0 = 0\n1: (61) r2 = *(u32 *)(r1 +0)\ninvalid bpf_context access off=0 size=4\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        assert_eq!(
            verifier_reason(log),
            Some("invalid bpf_context access off=0 size=4")
        );
        assert_eq!(verifier_reason("\n"), None);
        // Linux 7.x explains the failure after a blank line.
        let log = "1: (71) r1 = *(u8 *)(r1 +20)\nR1 min value is outside of the allowed memory range\n\nVerification failed: Memory Safety\n\nverification time 2181 usec\nsubprog 0 (f) main insns_self 2\n";
        assert_eq!(
            verifier_reason(log),
            Some("R1 min value is outside of the allowed memory range")
        );
    }
}
