//! The `kmatrix` command line: clap arguments turned into a
//! [`crate::plan`] request, run, and reported. Each command returns a
//! [`Status`] or a typed [`Error`]; [`crate::error::exit_code`] alone
//! decides the exit code.

mod args;
mod bench;
mod bisect;
mod init;
mod kernels;
mod probe;
mod report;
mod run;
mod shell;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{self, Error, Status};
use crate::plan::{PlanError, Resolved};

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
    /// A shell on a terminal inside one kernel (`--kernel 6.1`), with the
    /// working directory shared read-only and host tools (`ip`, `bpftool`,
    /// …) sent along; Ctrl-] leaves.
    Shell(shell::ShellArgs),
    /// Write the built-in kernels.toml and a starter suite here.
    Init(init::InitArgs),
    /// Find the first release whose verdict differs between a good and a
    /// bad kernel of a source that lists its releases (mainline, OCI tags,
    /// Debian's snapshot archive: `--good mainline:6.6.60 --bad
    /// mainline:6.6.69`), booting about log2(N) of the N releases between
    /// them.
    Bisect(bisect::BisectArgs),
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

/// A plan stage's result, its notices printed first on stderr (whether it
/// succeeded or not).
fn noticed<T>(resolved: Resolved<T>) -> Result<T, PlanError> {
    for notice in &resolved.notices {
        eprintln!("kmatrix: {notice}");
    }
    resolved.result
}

async fn run(cli: Cli) -> Result<Status, Error> {
    let matrix = cli.matrix;
    match cli.command {
        Command::Test(args) => run::test(matrix, args).await,
        Command::Bisect(args) => bisect::bisect(matrix, args).await,
        Command::Exec(args) => run::exec(matrix, args).await,
        Command::Shell(args) => shell::shell(matrix, args).await,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cargo_test::{self, Config};
    use crate::kernels::Selection;
    use crate::plan::{RunRequest, Tests};
    use crate::vm::VmConfig;

    /// The request the command line `args` makes.
    fn request(args: &[&str]) -> RunRequest {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Test(args) => run::test_request(cli.matrix, &args, None),
            Command::Exec(args) => run::exec_request(cli.matrix, &args).unwrap(),
            Command::Probe(args) => probe::request(cli.matrix, &args),
            _ => panic!("{args:?} boots nothing"),
        }
    }

    #[test]
    fn the_verifiers_figures_are_asked_for_only_where_a_report_shows_them() {
        let stats = |extra: &[&str]| {
            let mut args = vec!["kmatrix", "test"];
            args.extend(extra);
            request(&args).config.verifier_stats
        };
        assert!(!stats(&[]), "a plain run shows none");
        for shown in [
            &["--json", "run.json"][..],
            &["--junit", "junit.xml"],
            &["--html", "report.html"],
            &["--stats"],
        ] {
            assert!(stats(shown), "{shown:?} shows them");
        }
        assert!(
            !stats(&["--summary", "summary.md"]),
            "the summary shows none"
        );
    }

    /// `cargo test`'s request for `config`.
    fn cargo_test(config: Config) -> RunRequest {
        cargo_test::request(config, None).unwrap()
    }

    #[test]
    fn every_front_end_starts_from_the_same_defaults() {
        let matrix = "/nowhere/kernels.toml";
        let cargo = cargo_test(Config {
            matrix: Some(matrix.into()),
            suite: None,
            kernels: Some(Selection::All),
        });
        let vm = &cargo.config.vm;
        assert_eq!(vm.boot_timeout, VmConfig::DEFAULT_BOOT_TIMEOUT);
        assert_eq!(vm.run_timeout, VmConfig::DEFAULT_RUN_TIMEOUT);
        assert_eq!(vm.memory_mib, VmConfig::DEFAULT_MEMORY_MIB);
        for args in [
            &["kmatrix", "--matrix", matrix, "test"][..],
            &["kmatrix", "--matrix", matrix, "exec", "true"],
            &["kmatrix", "--matrix", matrix, "probe"],
        ] {
            let request = request(args);
            let (ours, theirs) = (&request.config, &cargo.config);
            assert_eq!(request.matrix, cargo.matrix, "{args:?}");
            assert_eq!(
                (request.arch, request.shard, request.offline),
                (cargo.arch, cargo.shard, cargo.offline),
                "{args:?}"
            );
            assert_eq!(
                (ours.jobs, ours.report_cases),
                (theirs.jobs, theirs.report_cases),
                "{args:?}"
            );
            assert_eq!(
                (ours.vm.accel, ours.vm.memory_mib, ours.vm.snapshots),
                (theirs.vm.accel, theirs.vm.memory_mib, theirs.vm.snapshots),
                "{args:?}"
            );
            assert_eq!(
                (ours.vm.boot_timeout, ours.vm.run_timeout),
                (theirs.vm.boot_timeout, theirs.vm.run_timeout),
                "{args:?}"
            );
            assert_eq!(
                (&ours.vm.qemu.amd64, &ours.vm.qemu.arm64),
                (&theirs.vm.qemu.amd64, &theirs.vm.qemu.arm64),
                "{args:?}"
            );
        }
        let test = request(&["kmatrix", "--matrix", matrix, "test"]);
        assert_eq!(test.kernels, cargo.kernels);
        assert!(matches!(
            (&test.tests, &cargo.tests),
            (
                Tests::Suite {
                    suite: None,
                    objects: ours,
                    loader: None,
                    compare_loaders: false,
                    ..
                },
                Tests::Suite {
                    suite: None,
                    objects: theirs,
                    loader: None,
                    compare_loaders: false,
                    ..
                },
            ) if ours.is_empty() && theirs.is_empty()
        ));
    }

    #[test]
    fn only_failed_takes_the_kernels_and_tests_it_found() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|_| ());
        assert!(parse(&[
            "kmatrix",
            "test",
            "--only-failed",
            "r.json",
            "--kernels",
            "6.1"
        ])
        .is_err());
        assert!(parse(&[
            "kmatrix",
            "test",
            "--only-failed",
            "r.json",
            "--only",
            "p::load"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["kmatrix", "test", "--only-failed", "r.json"]).unwrap();
        let Command::Test(args) = cli.command else {
            panic!("kmatrix test");
        };
        let earlier = kmatrix_protocol::report::Reproduce {
            matrix: Some("ci/kernels.toml".into()),
            suite: Some("s.toml".into()),
            arch: Some("arm64".into()),
            loader: Some("both".into()),
            objects: vec!["a.o".into()],
            exec: None,
        };
        let rerun = crate::report::failure::Rerun {
            kernels: vec!["5.10".into(), "6.12".into()],
            tests: vec!["p::c".into()],
            run: Some(earlier.clone()),
        };
        // The file gives the kernels, the tests and what the run was given.
        let rerun_request = run::test_request(None, &args, Some(rerun.clone()));
        assert_eq!(rerun_request.kernels, "5.10,6.12".parse().unwrap());
        assert_eq!(rerun_request.matrix, Some("ci/kernels.toml".into()));
        assert_eq!(rerun_request.arch, Some(kmatrix_protocol::Arch::Arm64));
        assert_eq!(rerun_request.reproduce(), Some(earlier));
        assert!(
            matches!(&rerun_request.tests, Tests::Suite { only, .. } if only == &["p::c"]),
            "{:?}",
            rerun_request.tests
        );
        // What is given on the command line wins.
        let cli = Cli::try_parse_from([
            "kmatrix",
            "--matrix",
            "m.toml",
            "test",
            "--only-failed",
            "r.json",
            "--suite",
            "t.toml",
            "--loader",
            "aya",
            "--arch",
            "amd64",
            "b.o",
        ])
        .unwrap();
        let Command::Test(args) = cli.command else {
            panic!("kmatrix test");
        };
        let overridden = run::test_request(cli.matrix.clone(), &args, Some(rerun));
        let given = overridden.reproduce().unwrap();
        assert_eq!(
            (
                given.matrix,
                given.suite,
                given.arch,
                given.loader,
                given.objects
            ),
            (
                Some("m.toml".into()),
                Some("t.toml".into()),
                Some("amd64".into()),
                Some("aya".into()),
                vec!["b.o".into()]
            )
        );
        let request = request(&["kmatrix", "test", "--only", "a::load", "--only", "b::c"]);
        assert!(
            matches!(&request.tests, Tests::Suite { only, .. } if only == &["a::load", "b::c"])
        );
    }

    #[test]
    fn an_unknown_test_name_is_bad_input_before_anything_is_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let matrix = crate::plan::tests::matrix_file(dir.path());
        let suite = dir.path().join("kmatrix-suite.toml");
        std::fs::write(&suite, "").unwrap();
        let (matrix, suite) = (matrix.to_str().unwrap(), suite.to_str().unwrap());
        let args = [
            "kmatrix",
            "--matrix",
            matrix,
            "test",
            "--suite",
            suite,
            "--only",
            "nope::load",
        ];
        let err = match request(&args).prepare().result {
            Err(err) => Error::Plan(err),
            Ok(_) => panic!("no test is named nope::load"),
        };
        assert!(
            err.to_string().contains("no test is named `nope::load`"),
            "{err}"
        );
        assert_eq!(error::exit_code(&Err(err)), 2);
    }

    #[test]
    fn kmatrix_test_and_cargo_test_prepare_the_same_plan() {
        let dir = tempfile::tempdir().unwrap();
        let matrix = crate::plan::tests::matrix_file(dir.path());
        let suite = dir.path().join("kmatrix-suite.toml");
        std::fs::write(&suite, "").unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let (matrix_arg, suite_arg) = (path(&matrix), path(&suite));
        let cli = request(&[
            "kmatrix",
            "--matrix",
            &matrix_arg,
            "test",
            "--kernels",
            "5.4..6.1",
            "--suite",
            &suite_arg,
        ])
        .prepare();
        let cargo = cargo_test(Config {
            matrix: Some(matrix),
            suite: Some(suite),
            kernels: Some("5.4..6.1".parse().unwrap()),
        })
        .prepare();
        assert_eq!(cli.notices, cargo.notices);
        assert_eq!(cli.notices.len(), 1, "{:?}", cli.notices);
        let (cli, cargo) = (cli.result.unwrap(), cargo.result.unwrap());
        let labels = |kernels: &[crate::kernels::KernelEntry]| -> Vec<String> {
            kernels.iter().map(|k| k.label.clone()).collect()
        };
        assert_eq!(cli.set.selected, cargo.set.selected);
        assert_eq!(labels(&cli.set.kernels), labels(&cargo.set.kernels));
        assert_eq!(labels(&cli.set.kernels), ["5.10", "6.1"]);
        assert_eq!(cli.set.shard, cargo.set.shard);
        let names = |p: &crate::plan::Prepared| -> Vec<String> {
            p.tests.suite.tests.iter().map(|t| t.name.clone()).collect()
        };
        assert_eq!(names(&cli), names(&cargo));
    }
}
