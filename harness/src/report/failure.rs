//! Every failure of a finished run, found in one walk of the [`Summary`]
//! and written out in one place; the renderers only lay them out.

use kmatrix_protocol::report::Outcome;

use super::{Cell, Summary};

/// What failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A kernel could not be tested.
    Kernel {
        /// Its label.
        kernel: &'a str,
    },
    /// The kernel printed a splat outside any test.
    Splat {
        /// The kernel's label.
        kernel: &'a str,
    },
    /// The agent reported a problem outside any test.
    Agent {
        /// The kernel's label.
        kernel: &'a str,
    },
    /// `kmatrix exec`'s program did not exit 0.
    Program {
        /// The kernel's label.
        kernel: &'a str,
    },
    /// The loader could not express a test's program.
    LoaderLimitation {
        /// The test's name.
        test: &'a str,
        /// The kernel's label.
        kernel: &'a str,
    },
    /// A test failed.
    Test {
        /// The test's name.
        test: &'a str,
        /// The kernel's label.
        kernel: &'a str,
    },
}

impl<'a> Subject<'a> {
    /// The kernel it failed on.
    pub fn kernel(&self) -> &'a str {
        match *self {
            Subject::Kernel { kernel }
            | Subject::Splat { kernel }
            | Subject::Agent { kernel }
            | Subject::Program { kernel }
            | Subject::LoaderLimitation { kernel, .. }
            | Subject::Test { kernel, .. } => kernel,
        }
    }
}

/// One failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure<'a> {
    /// What failed.
    pub subject: Subject<'a>,
    /// Why.
    pub reason: &'a str,
    /// The verifier's log, when the verifier was involved.
    pub verifier_log: Option<&'a str>,
    /// What the kernel logged during the test (a splat's lines).
    pub kernel_log: Option<&'a str>,
    /// The end of the kernel's console, when the kernel failed.
    pub console_tail: Option<&'a str>,
    /// Other tests on the same kernel that failed for the very same reason
    /// (an object-level failure, such as a map no program of the object can
    /// be loaded without), reported once with this one.
    pub also: Vec<&'a str>,
    /// The command line that reproduces it locally: its tests alone on
    /// its kernel, or the whole suite (or program) there when the kernel
    /// itself failed or more than [`NAMED`] others failed alike.
    pub reproduce: Option<String>,
}

/// How many of the other tests that failed alike a failure names; the rest
/// are counted, and its command reruns the whole suite on its kernel.
pub const NAMED: usize = 10;

impl Failure<'_> {
    /// The subject in words: `kernel 6.1`, `xdp::load on 6.1`.
    pub fn headline(&self) -> String {
        let subject = self.subject();
        if self.also.is_empty() {
            subject
        } else {
            let (named, more) = self.also_named();
            format!(
                "{subject} (and, for the same reason, {}{})",
                named.join(", "),
                more_text(more)
            )
        }
    }

    /// The other tests that failed alike as a report lists them: the
    /// first [`NAMED`], and how many more.
    pub fn also_named(&self) -> (&[&str], usize) {
        let named = self.also.len().min(NAMED);
        (&self.also[..named], self.also.len() - named)
    }

    fn subject(&self) -> String {
        match self.subject {
            Subject::Kernel { kernel } => format!("kernel {kernel}"),
            Subject::Agent { kernel } => format!("kernel {kernel}: agent"),
            Subject::Splat { kernel } => format!("kernel {kernel}"),
            Subject::Program { kernel } => format!("kernel {kernel}: the program"),
            Subject::Test { test, kernel } => format!("{test} on {kernel}"),
            Subject::LoaderLimitation { test, kernel } => {
                format!("{test} on {kernel}: loader limitation, not the kernel's verdict")
            }
        }
    }

    /// The reason's first line, and what a report folds below it: the
    /// reason's other lines, the console's tail, the verifier log (titled).
    pub fn folded(&self) -> (&str, Vec<(&'static str, &str)>) {
        let (first, rest) = self.reason.split_once('\n').unwrap_or((self.reason, ""));
        let sections = [
            ("details", (!rest.is_empty()).then_some(rest)),
            ("console", self.console_tail),
            ("kernel log", self.kernel_log),
            ("verifier log", self.verifier_log),
        ];
        let sections = sections
            .into_iter()
            .filter_map(|(title, text)| Some((title, text?)))
            .collect();
        (first, sections)
    }

    /// The reason followed by the whole verifier log or console tail, and
    /// the command that reproduces it.
    pub fn details(&self) -> String {
        let mut text = self.reason.to_owned();
        if let Some(log) = self.kernel_log {
            text += &format!("\nkernel log:\n{log}");
        }
        if let Some(log) = self.verifier_log {
            text += &format!("\nverifier log:\n{log}");
        }
        if let Some(tail) = self.console_tail {
            text += &format!("\nconsole (last lines):\n{tail}");
        }
        if let Some(command) = &self.reproduce {
            text += &format!("\nreproduce: {command}");
        }
        text
    }
}

/// A test's failure, when its cell is one: its outcome's reason, or its
/// kernel's.
pub fn of_cell<'a>(summary: &'a Summary, column: usize, row: usize) -> Option<Failure<'a>> {
    let mut failure = found_in_cell(summary, column, row)?;
    failure.reproduce = reproduce(summary, &failure);
    Some(failure)
}

/// ` and N more`, after a list of names, when `more` is not 0.
pub fn more_text(more: usize) -> String {
    match more {
        0 => String::new(),
        more => format!(" and {more} more"),
    }
}

/// The command line that reproduces `failure`: its tests on its kernel.
fn reproduce(summary: &Summary, failure: &Failure) -> Option<String> {
    let tests: Vec<&str> = match failure.subject {
        Subject::Test { .. } | Subject::LoaderLimitation { .. } if failure.also.len() > NAMED => {
            Vec::new()
        }
        Subject::Test { test, .. } | Subject::LoaderLimitation { test, .. } => {
            std::iter::once(test)
                .chain(failure.also.iter().copied())
                .collect()
        }
        _ => Vec::new(),
    };
    summary.reproduce(failure.subject.kernel(), &tests)
}

fn found_in_cell<'a>(summary: &'a Summary, column: usize, row: usize) -> Option<Failure<'a>> {
    let kernel = &summary.columns[column];
    match summary.cell(column, row)? {
        Cell::Done(Outcome::Failed {
            reason,
            verifier_log,
            kernel_log,
        }) => Some(Failure {
            subject: Subject::Test {
                test: &summary.rows[row],
                kernel: &kernel.label,
            },
            reason,
            verifier_log: verifier_log.as_deref(),
            kernel_log: kernel_log.as_deref(),
            console_tail: None,
            also: Vec::new(),
            reproduce: None,
        }),
        Cell::NotRun => Some(Failure {
            subject: Subject::Kernel {
                kernel: &kernel.label,
            },
            reason: kernel.failure.as_deref().unwrap_or("no result"),
            verifier_log: None,
            kernel_log: None,
            console_tail: kernel.console_tail.as_deref().filter(|t| !t.is_empty()),
            also: Vec::new(),
            reproduce: None,
        }),
        Cell::Done(Outcome::LoaderLimitation { reason }) => Some(Failure {
            subject: Subject::LoaderLimitation {
                test: &summary.rows[row],
                kernel: &kernel.label,
            },
            reason,
            verifier_log: None,
            kernel_log: None,
            console_tail: None,
            also: Vec::new(),
            reproduce: None,
        }),
        Cell::Done(_) => None,
    }
}

/// Every failure, kernel by kernel: the kernel's own, the agent's, the
/// program's, then each failed test's.
pub fn all(summary: &Summary) -> Vec<Failure<'_>> {
    let mut failures = Vec::new();
    for (c, column) in summary.columns.iter().enumerate() {
        let kernel = column.label.as_str();
        if let Some(reason) = &column.failure {
            failures.push(Failure {
                subject: Subject::Kernel { kernel },
                reason,
                verifier_log: None,
                kernel_log: None,
                console_tail: column.console_tail.as_deref().filter(|t| !t.is_empty()),
                also: Vec::new(),
                reproduce: None,
            });
        }
        for (reason, lines) in &column.splats {
            failures.push(Failure {
                subject: Subject::Splat { kernel },
                reason,
                verifier_log: None,
                kernel_log: Some(lines),
                console_tail: None,
                also: Vec::new(),
                reproduce: None,
            });
        }
        for message in &column.agent_errors {
            failures.push(Failure {
                subject: Subject::Agent { kernel },
                reason: message,
                verifier_log: None,
                kernel_log: None,
                console_tail: None,
                also: Vec::new(),
                reproduce: None,
            });
        }
        if let Some(status) = column
            .exit
            .as_deref()
            .filter(|s| *s != kmatrix_protocol::report::EXIT_SUCCESS_STATUS)
        {
            failures.push(Failure {
                subject: Subject::Program { kernel },
                reason: status,
                verifier_log: None,
                kernel_log: None,
                console_tail: None,
                also: Vec::new(),
                reproduce: None,
            });
        }
        // This kernel's first failure of each reason with no log of its
        // own, which later ones of that reason join.
        let mut first_of: std::collections::HashMap<&str, usize> = Default::default();
        for r in 0..summary.rows.len() {
            if let Some(Cell::Done(Outcome::Failed { .. } | Outcome::LoaderLimitation { .. })) =
                summary.cell(c, r)
            {
                let Some(failure) = found_in_cell(summary, c, r) else {
                    continue;
                };
                let plain = failure.verifier_log.is_none() && failure.kernel_log.is_none();
                match (first_of.get(failure.reason), failure.subject) {
                    (
                        Some(&earlier),
                        Subject::Test { test, .. } | Subject::LoaderLimitation { test, .. },
                    ) if plain => failures[earlier].also.push(test),
                    _ => {
                        if plain {
                            first_of.entry(failure.reason).or_insert(failures.len());
                        }
                        failures.push(failure);
                    }
                }
            }
        }
    }
    for failure in &mut failures {
        failure.reproduce = reproduce(summary, failure);
    }
    failures
}

/// What `--only-failed` runs again: the failed tests, on the kernels where
/// anything failed, as the earlier run was given them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rerun {
    /// The kernels, in matrix order.
    pub kernels: Vec<String>,
    /// The failed tests, in suite order; empty when only kernels failed
    /// (their whole suite runs again).
    pub tests: Vec<String>,
    /// What the earlier run was given (its matrix, suite, objects, …), when
    /// its file says.
    pub run: Option<kmatrix_protocol::report::Reproduce>,
}

impl Rerun {
    /// When the earlier run was `kmatrix exec`'s, the command line that
    /// runs again what failed, as `--only-failed` would: the program on the
    /// kernels where anything failed, with only its failed libtest tests
    /// when any failed.
    pub fn exec_command(&self) -> Option<String> {
        let run = self.run.as_ref().filter(|r| r.exec.is_some())?;
        let tests: Vec<&str> = self.tests.iter().map(String::as_str).collect();
        Some(super::reproduce::command(
            run,
            &self.kernels.join(","),
            &tests,
        ))
    }
}

/// What to run again of a finished run; `None` when nothing failed.
pub fn rerun(summary: &Summary) -> Option<Rerun> {
    let failures = all(summary);
    if failures.is_empty() {
        return None;
    }
    let failed_tests: std::collections::HashSet<&str> = failures
        .iter()
        .flat_map(|f| match f.subject {
            Subject::Test { test, .. } | Subject::LoaderLimitation { test, .. } => {
                std::iter::once(test)
                    .chain(f.also.iter().copied())
                    .collect()
            }
            _ => Vec::new(),
        })
        .collect();
    Some(Rerun {
        run: summary.reproduce.clone(),
        kernels: summary
            .columns
            .iter()
            .map(|c| c.label.clone())
            .filter(|label| failures.iter().any(|f| f.subject.kernel() == label))
            .collect(),
        tests: summary
            .rows
            .iter()
            .filter(|row| failed_tests.contains(row.as_str()))
            .cloned()
            .collect(),
    })
}

/// Expected failures and skips, with their reasons: `(kind, test, kernel,
/// reason)`.
pub fn notes(summary: &Summary) -> Vec<(&'static str, &str, &str, &str)> {
    let mut notes = Vec::new();
    for (c, column) in summary.columns.iter().enumerate() {
        for (r, name) in summary.rows.iter().enumerate() {
            match summary.cell(c, r) {
                Some(Cell::Done(Outcome::ExpectedFailure { reason })) => notes.push((
                    "xfail",
                    name.as_str(),
                    column.label.as_str(),
                    reason.as_str(),
                )),
                Some(Cell::Done(Outcome::Skipped { reason })) => notes.push((
                    "skip",
                    name.as_str(),
                    column.label.as_str(),
                    reason.as_str(),
                )),
                _ => {}
            }
        }
    }
    notes
}
