//! The top-level error of every command, and the one place where results
//! become exit codes ([`kmatrix_protocol::report::exit`]): a failed test
//! (or a kernel that failed running them) 1, bad input 2, the machinery
//! alone failed (a download, QEMU, an output file) 3, interrupted 130
//! (SIGTERM 143, SIGHUP 129).

use std::path::PathBuf;

use kmatrix_protocol::report::exit;

use crate::cache::CacheError;
use crate::kernels::{FetchError, UpdateError};
use crate::plan::PlanError;
use crate::report::json::MergeError;
use crate::report::ReportError;

/// How a command that ran to its end came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything passed.
    Passed,
    /// A test or kernel failed (the reports say which).
    Failed,
    /// Nothing failed but the machinery: kernels that could not be
    /// fetched or booted; every test that ran passed.
    Infrastructure,
    /// A signal stopped it (every VM stopped and run directory removed
    /// first).
    Interrupted(Interrupt),
}

impl Status {
    /// How a finished run came out.
    pub fn of_summary(summary: &crate::report::Summary) -> Self {
        if summary.passed() {
            Status::Passed
        } else if summary.only_infrastructure_failed() {
            Status::Infrastructure
        } else {
            Status::Failed
        }
    }

    /// `Passed` if `passed`, else `Failed`.
    pub fn of(passed: bool) -> Self {
        if passed {
            Status::Passed
        } else {
            Status::Failed
        }
    }
}

/// The signal that stopped a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// Ctrl-C.
    Int,
    /// SIGTERM.
    Term,
    /// SIGHUP.
    Hup,
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong (matrix, selection, suite, objects, program).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A kernel could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Several kernels could not be fetched (each said why).
    #[error("{failed} of {total} kernels could not be fetched")]
    FetchFailed {
        /// How many failed.
        failed: usize,
        /// How many were asked for.
        total: usize,
    },
    /// kernels.toml could not be rewritten.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// Shards' files do not make one run.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The `--json` file could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The cache is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An output file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--only-failed`'s file cannot be read as a run.
    #[error("--only-failed takes the --json file of an earlier `kmatrix test` run, complete")]
    OnlyFailed(#[source] MergeError),
    /// `--only-failed`'s file is of a `kmatrix exec` run.
    #[error(
        "{} is from a `kmatrix exec` run, which `kmatrix test --only-failed` does not run again; run what failed again with: {command}",
        path.display()
    )]
    OnlyFailedExec {
        /// The file.
        path: PathBuf,
        /// The `kmatrix exec` command line that runs again what failed.
        command: String,
    },
    /// A flag's value is out of range.
    #[error("{0}")]
    Usage(String),
    /// A benchmark's run failed.
    #[error("{0}")]
    Bench(String),
    /// A bisection could not answer.
    #[error(transparent)]
    Bisect(#[from] crate::bisect::BisectError),
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Bench(_) => exit::FAILED,
            Error::Bisect(err) if err.is_bad_input() => exit::BAD_INPUT,
            Error::Bisect(_) => exit::INFRASTRUCTURE,
            Error::Fetch(_)
            | Error::FetchFailed { .. }
            | Error::Report(_)
            | Error::Cache(_)
            | Error::Write { .. } => exit::INFRASTRUCTURE,
            Error::Plan(_)
            | Error::Update(_)
            | Error::Merge(_)
            | Error::OnlyFailed(_)
            | Error::OnlyFailedExec { .. }
            | Error::Usage(_) => exit::BAD_INPUT,
        }
    }
}

/// The exit code of a command's result.
pub fn exit_code(result: &Result<Status, Error>) -> u8 {
    match result {
        Ok(Status::Passed) => exit::PASSED,
        Ok(Status::Failed) => exit::FAILED,
        Ok(Status::Infrastructure) => exit::INFRASTRUCTURE,
        Ok(Status::Interrupted(Interrupt::Int)) => exit::INTERRUPTED,
        Ok(Status::Interrupted(Interrupt::Term)) => exit::TERMINATED,
        Ok(Status::Interrupted(Interrupt::Hup)) => exit::HUNG_UP,
        Err(err) => err.exit_code(),
    }
}

/// Prints `err` and its causes, one per line, as the CLI and `cargo test`
/// show them.
pub fn print(err: &dyn std::error::Error) {
    eprintln!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}
