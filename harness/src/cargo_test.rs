//! `cargo test` integration through libtest-mimic.
//!
//! A project adds a test target with `harness = false` whose `main` is
//! [`main`]. Every (kernel, test) of its suite becomes a trial named
//! `<kernel>::<program>::<load|case>`. libtest-mimic's arguments work as
//! usual: `--list` boots and downloads nothing, a filter boots only the
//! kernels with a selected trial, `--test-threads` bounds the VMs, and
//! expected failures and skips show as ignored with their reason.
//!
//! Each selected kernel is booted once, in the background, and its trials
//! finish as their outcomes stream in.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::error::Error;
use crate::judge::Outcome;
use crate::kernels::Selection;
use crate::plan::{PlanError, RunConfig, RunRequest, Tests};
use crate::report::printable::clean;
use crate::report::{failure, Cell, Reporter};
use crate::vm::{AccelChoice, VmConfig};

/// Environment variable selecting kernels (`--kernels` syntax).
pub const KERNELS_ENV: &str = "KMATRIX_SELECT";

/// What to test; every field has a default found the way `kmatrix test`
/// finds it.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The kernel matrix [default: `$KMATRIX_KERNELS`, else `kernels.toml`
    /// here or in a parent directory].
    pub matrix: Option<PathBuf>,
    /// The suite [default: `$KMATRIX_SUITE`, else `kmatrix-suite.toml` here
    /// or in a parent directory].
    pub suite: Option<PathBuf>,
    /// The kernels [default: `$KMATRIX_SELECT`, else all].
    pub kernels: Option<Selection>,
}

/// The `main` of a `harness = false` test target: the suite on every
/// kernel, with the defaults of [`Config`].
pub fn main() -> ExitCode {
    run(Config::default())
}

/// Like [`main`], with explicit settings.
pub fn run(config: Config) -> ExitCode {
    let args = Arguments::from_args();
    match trials(config, &args) {
        Ok((trials, run)) => {
            let code = libtest_mimic::run(&args, trials).exit_code();
            // The selected trials are done: stop what still runs (other
            // tests of a booted kernel) and let it clean up.
            if let Some(run) = run {
                run.stop();
            }
            code
        }
        Err(err) => {
            crate::error::print(&err);
            ExitCode::from(err.exit_code())
        }
    }
}

/// The run in the background.
struct Background {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Background {
    /// Stops the run (every VM killed, every run directory removed) and
    /// waits for it.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Outcomes as they arrive, shared between the run and the trials.
struct Results {
    reporter: Mutex<Reporter<'static>>,
    arrived: Condvar,
}

impl Results {
    /// Waits for the cell of `test` on `kernel`.
    fn wait(&self, kernel: &str, test: &str) -> Result<Completion, Failed> {
        let mut reporter = self.reporter.lock().expect("results lock");
        loop {
            let summary = reporter.summary();
            if let (Some(c), Some(r)) = (summary.column(kernel), summary.row(test)) {
                match summary.cell(c, r) {
                    Some(Cell::Done(outcome)) => return completion(outcome),
                    Some(Cell::NotRun) => {
                        let failure = failure::of_cell(summary, c, r).expect("a kernel failure");
                        let details = clean(&failure.details());
                        return Err(format!("kernel {kernel} failed: {details}").into());
                    }
                    None => {}
                }
            }
            reporter = self.arrived.wait(reporter).expect("results lock");
        }
    }
}

/// A test's result as libtest-mimic prints it: what a guest sent, shown
/// through [`clean`].
fn completion(outcome: &Outcome) -> Result<Completion, Failed> {
    match outcome {
        Outcome::Passed { .. } => Ok(Completion::Completed),
        Outcome::Failed {
            reason,
            verifier_log,
            kernel_log,
        } => {
            let mut text = reason.clone();
            if let Some(log) = kernel_log {
                text += &format!("\nkernel log:\n{log}");
            }
            if let Some(log) = verifier_log {
                text += &format!("\nverifier log:\n{log}");
            }
            Err(clean(&text).into())
        }
        Outcome::ExpectedFailure { reason } => Ok(Completion::ignored_with(clean(&format!(
            "expected failure: {reason}"
        )))),
        Outcome::Skipped { reason } => Ok(Completion::ignored_with(clean(reason))),
        Outcome::LoaderLimitation { reason } => Err(clean(&format!(
            "loader limitation (not the kernel's verdict): {reason}"
        ))
        .into()),
    }
}

/// What `cargo test` asks for: the suite on every selected kernel, with
/// `kmatrix test`'s defaults and `test_threads` VMs at a time.
pub(crate) fn request(
    config: Config,
    test_threads: Option<usize>,
) -> Result<RunRequest, PlanError> {
    let kernels = match config.kernels {
        Some(selection) => selection,
        None => match std::env::var(KERNELS_ENV) {
            Ok(text) => text.parse()?,
            Err(_) => Selection::All,
        },
    };
    Ok(RunRequest {
        matrix: config.matrix,
        kernels,
        arch: None,
        shard: None,
        tests: Tests::Suite {
            suite: config.suite,
            objects: Vec::new(),
            loader: None,
            compare_loaders: false,
            only: Vec::new(),
        },
        offline: false,
        config: RunConfig::new(test_threads, VmConfig::new(AccelChoice::Auto)),
    })
}

fn trials(config: Config, args: &Arguments) -> Result<(Vec<Trial>, Option<Background>), Error> {
    let prepared = request(config, args.test_threads)?.prepare();
    for notice in &prepared.notices {
        eprintln!("kmatrix: {notice}");
    }
    let mut prepared = prepared.result?;

    // Name every trial; the run only needs the kernels that keep one.
    let names: Vec<String> = prepared
        .tests
        .suite
        .tests
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let trials: Vec<(String, String)> = prepared
        .set
        .kernels
        .iter()
        .flat_map(|kernel| {
            names
                .iter()
                .map(|test| (kernel.label.clone(), test.clone()))
        })
        .collect();
    let trial_name = |(kernel, test): &(String, String)| format!("{kernel}::{test}");
    prepared.set.kernels.retain(|kernel| {
        !args.list
            && trials
                .iter()
                .filter(|(k, _)| *k == kernel.label)
                .any(|t| !args.is_filtered_out(&Trial::test(trial_name(t), || Ok(()))))
    });
    let booted: Vec<String> = prepared
        .set
        .kernels
        .iter()
        .map(|k| k.label.clone())
        .collect();
    let results = Arc::new(Results {
        reporter: Mutex::new(Reporter::new()),
        arrived: Condvar::new(),
    });

    let mut background = None;
    if !booted.is_empty() {
        let plan = prepared.plan(crate::report::progress::on_stderr());
        for notice in &plan.notices {
            eprintln!("kmatrix: {notice}");
        }
        let plan = plan.result?;
        let results = results.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = crate::runner::runtime().expect("the tokio runtime starts");
            let run = crate::runner::run(&plan, |event| {
                let reported = results
                    .reporter
                    .lock()
                    .expect("results lock")
                    .report(&event);
                results.arrived.notify_all();
                reported
            });
            runtime.block_on(async {
                tokio::select! {
                    result = run => {
                        if let Err(err) = result {
                            crate::error::print(&err);
                        }
                    }
                    _ = stopped => {}
                }
            });
        });
        background = Some(Background { stop, thread });
    }

    let trials = trials
        .into_iter()
        .map(|trial| {
            let name = trial_name(&trial);
            let (kernel, test) = trial;
            let results = results.clone();
            let selected = booted.contains(&kernel);
            Trial::ignorable_test(name, move || {
                if selected {
                    results.wait(&kernel, &test)
                } else {
                    Err("this kernel was not selected when the run started".into())
                }
            })
        })
        .collect();
    Ok((trials, background))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_guest_sent_is_shown_not_obeyed() {
        let Err(failed) = completion(&Outcome::Failed {
            reason: "verifier: \u{9b}2J".into(),
            verifier_log: Some("\u{1b}]0;owned\u{7}\n0: r0 = 0".into()),
            kernel_log: None,
        }) else {
            panic!("a failure completed");
        };
        assert_eq!(
            failed.message(),
            Some("verifier: ?2J\nverifier log:\n?]0;owned?\n0: r0 = 0")
        );
    }
}
