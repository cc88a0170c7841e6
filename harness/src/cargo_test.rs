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

use crate::agent::Init;
use crate::image::ImageParts;
use crate::kernels::{KernelEntry, Matrix, Selection};
use crate::report::{Cell, Summary};
use crate::runner::{self, RunConfig};
use crate::suite::{self, Outcome, Suite};
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
        Ok(trials) => libtest_mimic::run(&args, trials).exit_code(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(crate::cli::EXIT_ERROR)
        }
    }
}

/// Outcomes as they arrive, shared between the run and the trials.
struct Results {
    summary: Mutex<Summary>,
    arrived: Condvar,
}

impl Results {
    /// Waits for the cell of `row` on `column`.
    fn wait(&self, column: usize, row: usize) -> Result<Completion, Failed> {
        let mut summary = self.summary.lock().expect("results lock");
        loop {
            match summary.cell(column, row) {
                Some(Cell::Done(outcome)) => return completion(outcome),
                Some(Cell::NotRun) => {
                    let kernel = &summary.columns[column];
                    let mut message = format!(
                        "kernel {} failed: {}",
                        kernel.label,
                        kernel.failure.as_deref().unwrap_or("unknown")
                    );
                    if let Some(tail) = kernel.console_tail.as_deref().filter(|t| !t.is_empty()) {
                        message += &format!("\nconsole (last lines):\n{tail}");
                    }
                    return Err(message.into());
                }
                None => summary = self.arrived.wait(summary).expect("results lock"),
            }
        }
    }
}

fn completion(outcome: &Outcome) -> Result<Completion, Failed> {
    match outcome {
        Outcome::Passed { .. } => Ok(Completion::Completed),
        Outcome::Failed {
            reason,
            verifier_log,
        } => Err(match verifier_log {
            Some(log) => format!("{reason}\nverifier log:\n{log}"),
            None => reason.clone(),
        }
        .into()),
        Outcome::ExpectedFailure { reason } => Ok(Completion::ignored_with(format!(
            "expected failure: {reason}"
        ))),
        Outcome::Skipped { reason } => Ok(Completion::ignored_with(reason)),
    }
}

fn trials(config: Config, args: &Arguments) -> anyhow::Result<Vec<Trial>> {
    let matrix_path = crate::cli::find_matrix(config.matrix)?;
    let matrix = Matrix::load(&matrix_path)?;
    let selection = match config.kernels {
        Some(selection) => selection,
        None => match std::env::var(KERNELS_ENV) {
            Ok(text) => text.parse()?,
            Err(_) => Selection::All,
        },
    };
    let kernels: Vec<KernelEntry> = selection
        .apply(&matrix.kernels)?
        .into_iter()
        .cloned()
        .collect();
    let suite_path = suite::find(config.suite)?;
    let scratch = tempfile::Builder::new()
        .prefix("kmatrix-objects-")
        .tempdir()?;
    let suite = Arc::new(Suite::load(&suite_path, &[], scratch.path())?);

    // Name every trial; the run only needs the kernels that keep one.
    let slots: Vec<(usize, usize, String)> = kernels
        .iter()
        .enumerate()
        .flat_map(|(k, kernel)| {
            suite
                .tests
                .iter()
                .enumerate()
                .map(move |(t, test)| (k, t, format!("{}::{}", kernel.label, test.name)))
        })
        .collect();
    let selected: Vec<bool> = kernels
        .iter()
        .enumerate()
        .map(|(k, _)| {
            !args.list
                && slots
                    .iter()
                    .filter(|(kernel, ..)| *kernel == k)
                    .any(|(.., name)| !args.is_filtered_out(&Trial::test(name.clone(), || Ok(()))))
        })
        .collect();
    let booted: Vec<&KernelEntry> = kernels
        .iter()
        .zip(&selected)
        .filter_map(|(k, &s)| s.then_some(k))
        .collect();
    for kernel in &booted {
        kernel.check_pinned().map_err(anyhow::Error::msg)?;
    }
    let results = Arc::new(Results {
        summary: Mutex::new(Summary::new(&booted, &suite)),
        arrived: Condvar::new(),
    });
    let columns: Vec<Option<usize>> = {
        let mut next = 0;
        selected
            .iter()
            .map(|&s| {
                s.then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect()
    };

    if !booted.is_empty() {
        let booted: Vec<KernelEntry> = booted.into_iter().cloned().collect();
        let jobs = args.test_threads.unwrap_or_else(crate::cli::num_cpus);
        let fetcher = Arc::new(crate::cli::fetcher(&matrix, false)?);
        let parts = Arc::new(ImageParts::new(Init::Agent, &suite.objects)?);
        let config = RunConfig {
            jobs,
            vm: VmConfig {
                qemu: VmConfig::default_qemu(),
                accel: AccelChoice::Auto.resolve(),
                memory_mib: 512,
                boot_timeout: std::time::Duration::from_secs(120),
                run_timeout: std::time::Duration::from_secs(600),
            },
            report_cases: true,
            exec: None,
        };
        let (suite, results) = (suite.clone(), results.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
            runtime.block_on(runner::run(
                &booted,
                suite,
                parts,
                fetcher,
                &config,
                |event| {
                    results.summary.lock().expect("results lock").record(&event);
                    results.arrived.notify_all();
                },
            ));
        });
    }

    Ok(slots
        .into_iter()
        .map(|(k, t, name)| {
            let (results, column) = (results.clone(), columns[k]);
            Trial::ignorable_test(name, move || match column {
                Some(column) => results.wait(column, t),
                None => Err("this kernel was not selected when the run started".into()),
            })
        })
        .collect())
}
