//! The matrix, folded from [`Record`]s: the one fold both a live run (its
//! events become records) and `report merge` (records read back from
//! shards' files) go through.

use std::collections::HashMap;

use kmatrix_protocol::report::{Outcome, Record, Reproduce, EXIT_SUCCESS_STATUS};

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
    /// The loader could not express the program: the kernel was never
    /// asked.
    LoaderLimitation,
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
            Some(Cell::Done(Outcome::LoaderLimitation { .. })) => Mark::LoaderLimitation,
            Some(Cell::NotRun) => Mark::KernelError,
            None => Mark::Missing,
        }
    }
}

/// A kernel's column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Column {
    /// The kernel's label.
    pub label: String,
    /// Its architecture.
    pub arch: kmatrix_protocol::Arch,
    /// `uname -r`, once booted.
    pub release: Option<String>,
    /// Why the kernel failed, if it did.
    pub failure: Option<String>,
    /// The console's tail when the kernel failed after booting QEMU.
    pub console_tail: Option<String>,
    /// Whether it failed for the machinery's sake, not its tests'.
    pub infrastructure: bool,
    /// Problems the agent reported outside any test.
    pub agent_errors: Vec<String>,
    /// Splats the kernel printed outside any test: each one's reason
    /// (its headline) and lines.
    pub splats: Vec<(String, String)>,
    /// How `kmatrix exec`'s program ended there.
    pub exit: Option<String>,
    /// Whether the kernel finished (either way).
    pub finished: bool,
    /// What its feature probes found, by feature.
    pub probes: std::collections::BTreeMap<String, Option<bool>>,
}

/// The whole matrix.
#[derive(Debug, Default)]
pub struct Summary {
    /// Kernels, in matrix order.
    pub columns: Vec<Column>,
    /// Test names, in suite order (then in the order they appeared).
    pub rows: Vec<String>,
    /// What a command line reproducing a failure repeats (`kmatrix test`
    /// runs only).
    pub reproduce: Option<Reproduce>,
    /// Each row's index by its test's name: a suite may have 100,000.
    row_of: HashMap<String, usize>,
    cells: HashMap<(usize, usize), Cell>,
    stats: HashMap<(usize, usize), kmatrix_protocol::ProgramStats>,
}

impl Summary {
    /// An empty matrix with these columns (kernel labels) and rows (test
    /// names).
    pub fn with(kernels: Vec<String>, tests: Vec<String>) -> Self {
        let mut summary = Self::default();
        for kernel in &kernels {
            summary.add_column(kernel);
        }
        for test in &tests {
            summary.add_row(test);
        }
        summary
    }

    /// The column of the kernel labelled `label`.
    pub fn column(&self, label: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.label == label)
    }

    /// The row of the test named `name`.
    pub fn row(&self, name: &str) -> Option<usize> {
        self.row_of.get(name).copied()
    }

    /// The cell of `row` on `column`, once known.
    pub fn cell(&self, column: usize, row: usize) -> Option<&Cell> {
        self.cells.get(&(column, row))
    }

    /// The verification statistics of the load test in `row` on `column`.
    pub fn stats(&self, column: usize, row: usize) -> Option<&kmatrix_protocol::ProgramStats> {
        self.stats.get(&(column, row))
    }

    /// The command line that runs `tests` (none: the whole suite) on
    /// `kernel` as this run did, for a `kmatrix test` run.
    pub fn reproduce(&self, kernel: &str, tests: &[&str]) -> Option<String> {
        let run = self.reproduce.as_ref()?;
        Some(super::reproduce::command(run, kernel, tests))
    }

    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::RunStarted {
                kernels,
                tests,
                reproduce,
                ..
            } => {
                if self.reproduce.is_none() {
                    self.reproduce.clone_from(reproduce);
                }
                for kernel in kernels {
                    self.add_column(kernel);
                }
                for test in tests {
                    self.add_row(test);
                }
            }
            Record::KernelStarted { kernel, arch } => {
                let c = self.add_column(kernel);
                self.columns[c].arch = *arch;
            }
            Record::Probed {
                kernel,
                feature,
                available,
            } => {
                let c = self.add_column(kernel);
                self.columns[c].probes.insert(feature.clone(), *available);
            }
            Record::Output { .. } | Record::Notice { .. } | Record::RunFinished { .. } => {}
            Record::KernelBooted {
                kernel, release, ..
            } => {
                let c = self.add_column(kernel);
                self.columns[c].release = Some(release.clone());
            }
            Record::Outcome {
                kernel,
                test,
                result,
                ..
            } => {
                let (c, r) = (self.add_column(kernel), self.add_row(test));
                self.cells.insert((c, r), Cell::Done(result.clone()));
            }
            Record::Stats {
                kernel,
                test,
                stats,
            } => {
                let (c, r) = (self.add_column(kernel), self.add_row(test));
                self.stats.insert((c, r), stats.clone());
            }
            Record::AgentError { kernel, message } => {
                let c = self.add_column(kernel);
                self.columns[c].agent_errors.push(message.clone());
            }
            Record::Splat { kernel, lines, .. } => {
                let c = self.add_column(kernel);
                let headline = kmatrix_protocol::splat::headline_of(lines);
                self.columns[c].splats.push((
                    format!("the kernel printed a splat outside any test: {headline}"),
                    lines.join("\n"),
                ));
            }
            Record::Exited { kernel, status } => {
                let c = self.add_column(kernel);
                self.columns[c].exit = Some(status.clone());
            }
            Record::KernelFinished {
                kernel,
                error,
                console_tail,
                infrastructure,
            } => {
                let c = self.add_column(kernel);
                let column = &mut self.columns[c];
                column.finished = true;
                column.failure = error.clone();
                column.console_tail = console_tail.clone();
                column.infrastructure = *infrastructure;
                for r in 0..self.rows.len() {
                    self.fill(c, r);
                }
            }
        }
    }

    /// Whether the run passed: every kernel finished cleanly (and its
    /// program, if any, exited 0) and no test failed; expected failures and
    /// skips do not fail a run.
    pub fn passed(&self) -> bool {
        self.columns.iter().all(|c| {
            c.finished
                && c.failure.is_none()
                && c.agent_errors.is_empty()
                && c.splats.is_empty()
                && c.exit.as_deref().is_none_or(|s| s == EXIT_SUCCESS_STATUS)
        }) && (0..self.columns.len()).all(|c| {
            (0..self.rows.len()).all(|r| match self.cell(c, r) {
                Some(Cell::Done(outcome)) => !outcome.is_failure(),
                Some(Cell::NotRun) | None => false,
            })
        })
    }

    /// Whether everything that failed is the machinery's (see
    /// [`Column::infrastructure`]): no test failed on a kernel that ran
    /// its tests. `false` for a run that passed.
    pub fn only_infrastructure_failed(&self) -> bool {
        let test_failed = self.columns.iter().enumerate().any(|(c, column)| {
            if column.infrastructure {
                // What it reported before the machinery failed still counts.
                return (0..self.rows.len()).any(|r| {
                    matches!(self.cell(c, r), Some(Cell::Done(outcome)) if outcome.is_failure())
                });
            }
            !column.finished
                || column.failure.is_some()
                || !column.agent_errors.is_empty()
                || !column.splats.is_empty()
                || column
                    .exit
                    .as_deref()
                    .is_some_and(|s| s != EXIT_SUCCESS_STATUS)
                || (0..self.rows.len()).any(|r| match self.cell(c, r) {
                    Some(Cell::Done(outcome)) => outcome.is_failure(),
                    Some(Cell::NotRun) | None => true,
                })
        });
        !test_failed && self.columns.iter().any(|c| c.infrastructure)
    }

    fn add_column(&mut self, label: &str) -> usize {
        self.column(label).unwrap_or_else(|| {
            self.columns.push(Column {
                label: label.to_owned(),
                ..Column::default()
            });
            self.columns.len() - 1
        })
    }

    /// The row of `name`, added if new; a finished kernel has no result for
    /// a new row, and gets its missing cell at once.
    fn add_row(&mut self, name: &str) -> usize {
        if let Some(r) = self.row(name) {
            return r;
        }
        let r = self.rows.len();
        self.rows.push(name.to_owned());
        self.row_of.insert(name.to_owned(), r);
        for c in 0..self.columns.len() {
            if self.columns[c].finished {
                self.fill(c, r);
            }
        }
        r
    }

    /// Gives a finished kernel's test without a result its cell: not run
    /// when the kernel failed, else failed for want of a result.
    fn fill(&mut self, c: usize, r: usize) {
        let column = &self.columns[c];
        let missing = match (&column.failure, &column.exit) {
            (Some(_), _) => Cell::NotRun,
            (None, Some(status)) => Cell::Done(Outcome::failed(format!("did not run: {status}"))),
            (None, None) => Cell::Done(Outcome::failed("the agent sent no result for it")),
        };
        self.cells.entry((c, r)).or_insert(missing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    fn outcome(kernel: &str, test: &str, result: Outcome) -> Record {
        Record::Outcome {
            kernel: kernel.into(),
            test: test.into(),
            reproduce: None,
            result,
        }
    }

    fn finished(kernel: &str, error: Option<&str>) -> Record {
        Record::KernelFinished {
            kernel: kernel.into(),
            error: error.map(str::to_owned),
            console_tail: None,
            infrastructure: false,
        }
    }

    /// A suite of 100,000 cases, every one failed: a scan of the rows per
    /// result (or of the failures per row) takes minutes at this size,
    /// and held the host back from the stream.
    #[test]
    fn a_hundred_thousand_results_are_summed_up_without_a_scan_per_result() {
        let tests: Vec<String> = (0..100_000).map(|i| format!("p::case{i}")).collect();
        let begun = std::time::Instant::now();
        let mut summary = Summary::with(vec!["6.1".into()], Vec::new());
        for (i, test) in tests.iter().enumerate() {
            // Half of them fail alike, the rest each in its own way.
            let reason = match i % 2 {
                0 => "returned XDP_PASS, expected XDP_DROP".to_owned(),
                _ => format!("returned {i}, expected 1"),
            };
            summary.apply(&outcome("6.1", test, Outcome::failed(reason)));
        }
        summary.apply(&finished("6.1", None));
        let rerun = crate::report::failure::rerun(&summary).expect("everything failed");
        let took = begun.elapsed();
        assert_eq!(summary.rows, tests);
        assert_eq!(summary.row("p::case99999"), Some(99_999));
        assert_eq!(rerun.tests, tests);
        let failures = crate::report::failure::all(&summary);
        assert_eq!(failures.len(), 1 + tests.len() / 2);
        assert_eq!(failures[0].also.len(), tests.len() / 2 - 1);
        assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    }

    #[test]
    fn missing_results_fail_and_a_failed_kernel_runs_nothing() {
        let mut summary = Summary::with(
            vec!["5.10".into(), "6.1".into()],
            vec!["a".into(), "b".into()],
        );
        let pass = Outcome::Passed {
            detail: String::new(),
        };
        summary.apply(&outcome("5.10", "a", pass.clone()));
        summary.apply(&finished("5.10", None));
        summary.apply(&finished("6.1", Some("boot timeout")));
        assert_eq!(Mark::of(summary.cell(0, 0)), Mark::Pass);
        assert_eq!(Mark::of(summary.cell(0, 1)), Mark::Fail);
        assert_eq!(Mark::of(summary.cell(1, 0)), Mark::KernelError);
        assert!(!summary.passed());
    }

    #[test]
    fn a_run_where_only_the_machinery_failed_says_so() {
        let pass = Outcome::Passed {
            detail: String::new(),
        };
        let broken = |kernel: &str| Record::KernelFinished {
            kernel: kernel.into(),
            error: Some("the mirror timed out".into()),
            console_tail: None,
            infrastructure: true,
        };
        let mut summary = Summary::with(vec!["5.10".into(), "6.1".into()], vec!["a".into()]);
        summary.apply(&outcome("5.10", "a", pass.clone()));
        summary.apply(&finished("5.10", None));
        summary.apply(&broken("6.1"));
        assert!(!summary.passed());
        assert!(summary.only_infrastructure_failed());
        assert_eq!(Status::of_summary(&summary), Status::Infrastructure);

        // A test that failed elsewhere is what the run is about.
        let mut summary = Summary::with(vec!["5.10".into(), "6.1".into()], vec!["a".into()]);
        summary.apply(&outcome("5.10", "a", Outcome::failed("wrong")));
        summary.apply(&finished("5.10", None));
        summary.apply(&broken("6.1"));
        assert_eq!(Status::of_summary(&summary), Status::Failed);

        // So is a kernel that failed while running its tests.
        let mut summary = Summary::with(vec!["6.1".into()], vec!["a".into()]);
        summary.apply(&finished("6.1", Some("the guest stopped before finishing")));
        assert_eq!(Status::of_summary(&summary), Status::Failed);
    }

    #[test]
    fn tests_found_late_fill_kernels_that_already_finished() {
        let mut summary = Summary::with(vec!["6.1".into(), "7.3".into()], Vec::new());
        summary.apply(&Record::Exited {
            kernel: "6.1".into(),
            status: "exit code 101".into(),
        });
        summary.apply(&finished("6.1", None));
        let pass = Outcome::Passed {
            detail: String::new(),
        };
        summary.apply(&outcome("7.3", "t::late", pass));
        summary.apply(&Record::Exited {
            kernel: "7.3".into(),
            status: EXIT_SUCCESS_STATUS.into(),
        });
        summary.apply(&finished("7.3", None));
        assert_eq!(
            summary.cell(0, 0),
            Some(&Cell::Done(Outcome::failed("did not run: exit code 101")))
        );
        assert_eq!(Mark::of(summary.cell(1, 0)), Mark::Pass);
        assert!(!summary.passed());
    }
}
