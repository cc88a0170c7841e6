//! The `kmatrix` command line: clap arguments turned into a
//! [`crate::plan`] request, run, and reported. Each command returns a
//! [`Status`] or a typed [`Error`]; [`crate::error::exit_code`] alone
//! decides the exit code.

mod args;
mod bench;
mod init;
mod kernels;
mod probe;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{self, Error, Status};

#[derive(Parser)]
#[command(
    name = "kmatrix",
    version,
    about = "Test eBPF programs against a matrix of Linux kernels"
)]
struct Cli {
    /// The kernel matrix [default: $KMATRIX_KERNELS, else kernels.toml in
    /// this directory or the nearest parent, else the built-in one].
    #[arg(long, global = true, value_name = "FILE")]
    matrix: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load eBPF objects on every selected kernel and report the matrix.
    Test(run::TestArgs),
    /// Run a program (e.g. a test binary) inside every selected kernel.
    Exec(run::ExecArgs),
    /// Write the built-in kernels.toml and a starter suite here.
    Init(init::InitArgs),
    /// Inspect and fetch the kernels of the matrix.
    #[command(subcommand)]
    Kernels(kernels::KernelsCommand),
    /// Which program, map and attach types, helpers and kfuncs each kernel
    /// has (probed in its VM, cached per kernel build).
    Probe(probe::ProbeArgs),
    /// Print the CI job matrix (JSON for `strategy.matrix`) of a sharded run.
    Matrix(report::MatrixArgs),
    /// Combine reports.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Measure a run against a bare boot, or streamed against discarded
    /// results.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`kmatrix kernels list | head`) instead of panicking on the write.
    // SAFETY: restoring the default disposition of a signal has no
    // preconditions; nothing else in the process handles SIGPIPE.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = Cli::parse();
    let runtime = crate::runner::runtime().expect("the tokio runtime starts");
    let result = runtime.block_on(run(cli));
    if let Err(err) = &result {
        error::print(err);
    }
    ExitCode::from(error::exit_code(&result))
}

async fn run(cli: Cli) -> Result<Status, Error> {
    let matrix = cli.matrix;
    match cli.command {
        Command::Test(args) => run::test(matrix, args).await,
        Command::Exec(args) => run::exec(matrix, args).await,
        Command::Init(args) => init::run(args),
        Command::Kernels(command) => kernels::run(matrix, command).await,
        Command::Probe(args) => probe::run(matrix, args).await,
        Command::Matrix(args) => report::job_matrix(matrix, &args),
        Command::Report(report::ReportCommand::Merge { outputs, files }) => {
            report::merge(&files, &outputs)
        }
        Command::Report(report::ReportCommand::Diff(args)) => report::diff(&args),
        Command::Bench(command) => bench::run(matrix, command).await,
    }
}
