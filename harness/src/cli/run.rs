//! `kmatrix test` and `kmatrix exec`: a request resolved into a plan, run
//! through one [`Reporter`], then the matrix and the report files.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use kmatrix_protocol::report::Reproduce;
use kmatrix_protocol::Loader;

use super::args::{OutputArgs, RunArgs};
use super::noticed;
use crate::cargo_test::KERNELS_ENV;
use crate::error::{Error, Interrupt, Status};
use crate::event::{KernelOutcome, RunEvent};
use crate::exec::ExecError;
use crate::host_list::{self, HostList};
use crate::kernels::Selection;
use crate::partition::Shard;
use crate::plan::{RunConfig, RunPlan, RunRequest, Tests};
use crate::report::failure::Rerun;
use crate::report::printable::Printable;
use crate::report::progress;
use crate::report::{self, Reporter, Summary};
use tokio::signal::unix::SignalKind;

#[derive(Args)]
pub struct TestArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Use only cached kernels; fail if one is missing.
    #[arg(long)]
    offline: bool,
    /// Run the K-th of N shards of the selected kernels (round-robin in
    /// matrix order).
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Write every event as JSON lines here (the input of `report merge`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write where each completed kernel's time went here, for `kmatrix
    /// bench boot --phases`.
    #[arg(long, value_name = "FILE", hide = true)]
    timings: Option<PathBuf>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// The loader of objects whose suite entry names none: `aya` or
    /// `libbpf`; `both` loads every program with both loaders, each
    /// verdict its own test (`load[aya]`, `load[libbpf]`), and reports
    /// where they disagree (`loaders-agree`) [default: aya].
    #[arg(long, value_parser = parse_loader, value_name = "aya|libbpf|both")]
    loader: Option<LoaderArg>,
    /// Also print, per program and kernel, the instructions the verifier
    /// processed and their share of its complexity limit.
    #[arg(long)]
    stats: bool,
    /// Run only the test of this name, as reports name it
    /// (`PROGRAM::load`, `PROGRAM::CASE`; under `--loader both`
    /// `PROGRAM::load[aya]`, `PROGRAM::loaders-agree`); repeatable. A named
    /// case still loads its program; the load is reported only when
    /// named, and when it fails the case fails with it.
    #[arg(long, value_name = "TEST")]
    only: Vec<String>,
    /// Run again only what failed in this earlier `--json` file: its
    /// failed tests, on the kernels where anything failed (the whole suite
    /// where only the kernel failed), with the matrix, suite, objects,
    /// architecture and loader it was given unless given here. A run
    /// without failures runs nothing and passes.
    #[arg(long, value_name = "RUN.json", conflicts_with_all = ["only", "kernels"])]
    only_failed: Option<PathBuf>,
    /// The suite file [default, when no OBJECT is given: $KMATRIX_SUITE,
    /// else kmatrix-suite.toml here or in the nearest parent].
    #[arg(long, value_name = "FILE")]
    suite: Option<PathBuf>,
    /// eBPF objects (`.o`) or C sources (`.c`, built with clang), checked
    /// for loading only.
    #[arg(value_name = "OBJECT")]
    objects: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Also pack this file or directory, at the same absolute path.
    #[arg(long, value_name = "PATH")]
    file: Vec<PathBuf>,
    /// Also pass this environment variable through.
    #[arg(long, value_name = "NAME")]
    env: Vec<String>,
    /// Do not share the working directory with the guest (by default its
    /// files, without build output and version control, are there
    /// read-only, at the same path).
    #[arg(long)]
    no_share: bool,
    /// Write every event as JSON lines here (the input of `report merge`;
    /// libtest tests appear as outcomes as they run).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    outputs: OutputArgs,
    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    command: Vec<String>,
}

/// What `kmatrix test` asks for; `rerun`, what `--only-failed` found to
/// run again.
pub(super) fn test_request(
    matrix: Option<PathBuf>,
    args: &TestArgs,
    rerun: Option<Rerun>,
) -> RunRequest {
    let (kernels, only, earlier) = match rerun {
        Some(rerun) => (
            Selection::List(rerun.kernels),
            rerun.tests,
            rerun.run.unwrap_or_default(),
        ),
        None => (
            args.run.select.kernels.clone(),
            args.only.clone(),
            Reproduce::default(),
        ),
    };
    // What the earlier run was given, where this one gives nothing.
    let objects = match args.objects.is_empty() {
        true => earlier.objects.iter().map(PathBuf::from).collect(),
        false => args.objects.clone(),
    };
    let loader = args
        .loader
        .or_else(|| earlier.loader.as_deref().and_then(|l| parse_loader(l).ok()));
    RunRequest {
        matrix: matrix.or_else(|| earlier.matrix.map(PathBuf::from)),
        kernels,
        arch: args
            .run
            .select
            .arch
            .or_else(|| earlier.arch.as_deref().and_then(|a| a.parse().ok())),
        shard: args.shard,
        tests: Tests::Suite {
            suite: args
                .suite
                .clone()
                .or_else(|| earlier.suite.map(PathBuf::from)),
            objects,
            loader: match loader {
                Some(LoaderArg::One(loader)) => Some(loader),
                Some(LoaderArg::Both) | None => None,
            },
            compare_loaders: matches!(loader, Some(LoaderArg::Both)),
            only,
        },
        offline: args.offline,
        config: RunConfig {
            verifier_stats: args.shows_verifier_stats(),
            ..args.run.config()
        },
    }
}

impl TestArgs {
    /// Whether a report of the run shows the verifier's figures (`--json`,
    /// `--junit`, `--html`, `--stats`): only then is a program aya loaded
    /// loaded once more by libbpf for them.
    fn shows_verifier_stats(&self) -> bool {
        self.json.is_some()
            || self.stats
            || self.outputs.junit.is_some()
            || self.outputs.html.is_some()
    }
}

pub async fn test(matrix: Option<PathBuf>, args: TestArgs) -> Result<Status, Error> {
    let rerun = match &args.only_failed {
        Some(path) => {
            let earlier = report::json::read_run(path).map_err(Error::OnlyFailed)?;
            match report::failure::rerun(&earlier) {
                Some(rerun) => match rerun.exec_command() {
                    Some(command) => {
                        return Err(Error::OnlyFailedExec {
                            path: path.clone(),
                            command,
                        })
                    }
                    None => Some(rerun),
                },
                None => {
                    eprintln!(
                        "kmatrix: nothing failed in {}: nothing to run again",
                        path.display()
                    );
                    return Ok(Status::Passed);
                }
            }
        }
        None => None,
    };
    let request = test_request(matrix, &args, rerun);
    let plan = noticed(request.resolve(progress::on_stderr()))?;
    let reporter = with_json(Reporter::new().live(std::io::stdout()), args.json.as_ref())?;
    let summary = match run_to_end(&plan, reporter, args.timings.as_deref()).await? {
        Ok(summary) => summary,
        Err(signal) => return Ok(Status::Interrupted(signal)),
    };
    let mut out = Printable::new(std::io::stdout().lock());
    let status = finish(&summary, &args.outputs, &mut out)?;
    if args.stats {
        let _ = report::matrix::render_stats(&summary, &mut out).and_then(|()| out.flush());
    }
    Ok(status)
}

/// What `kmatrix exec` asks for.
pub(super) fn exec_request(matrix: Option<PathBuf>, args: &ExecArgs) -> Result<RunRequest, Error> {
    // A runner line in .cargo/config.toml fixes `--kernels`; the variable
    // chooses others for one invocation.
    let kernels = match std::env::var(KERNELS_ENV) {
        Ok(text) if !text.trim().is_empty() => text
            .parse()
            .map_err(|e| Error::Usage(format!("{KERNELS_ENV}={text}: {e}")))?,
        _ => args.run.select.kernels.clone(),
    };
    Ok(RunRequest {
        matrix,
        kernels,
        arch: args.run.select.arch,
        shard: None,
        tests: Tests::Exec {
            command: args.command.clone(),
            files: args.file.clone(),
            env: args.env.clone(),
            share: !args.no_share,
            tty: None,
        },
        offline: false,
        config: args.run.config(),
    })
}

pub async fn exec(matrix: Option<PathBuf>, args: ExecArgs) -> Result<Status, Error> {
    // A libtest binary's list, and a filter that leaves no test, need no
    // kernel.
    match host_list::decide(&args.command) {
        HostList::ListOnHost(program) => {
            let status = std::process::Command::new(&program)
                .args(&args.command[1..])
                .status()
                .map_err(|source| {
                    Error::Plan(
                        ExecError::Read {
                            path: program.clone(),
                            source,
                        }
                        .into(),
                    )
                })?;
            return Ok(Status::of(status.success()));
        }
        HostList::NoTests { exact: Some(names) } => {
            eprintln!(
                "kmatrix: no test in {} is named {}: nothing was booted",
                args.command[0],
                names.join(" or ")
            );
            return Ok(Status::Failed);
        }
        HostList::NoTests { exact: None } => {
            print!("{}", host_list::ZERO_TESTS);
            return Ok(Status::Passed);
        }
        HostList::Boot | HostList::Tests(_) => {}
    }
    let plan = noticed(exec_request(matrix, &args)?.resolve(progress::on_stderr()))?;
    let reporter =
        Reporter::new().exec_echo(plan.kernels.len(), std::io::stdout(), std::io::stderr());
    let reporter = with_json(reporter, args.json.as_ref())?;
    let summary = match run_to_end(&plan, reporter, None).await? {
        Ok(summary) => summary,
        Err(signal) => return Ok(Status::Interrupted(signal)),
    };
    let mut err = Printable::new(std::io::stderr().lock());
    let _ = report::exec::statuses(&summary, &mut err);
    if summary.rows.is_empty() {
        // No test to show in a matrix: the lines above said how it ended;
        // the report files asked for are written all the same.
        write_files(&summary, &args.outputs)?;
        return Ok(Status::of_summary(&summary));
    }
    finish(&summary, &args.outputs, &mut err)
}

/// Adds the `--json` sink, when a file is asked for.
fn with_json<'a>(reporter: Reporter<'a>, path: Option<&PathBuf>) -> Result<Reporter<'a>, Error> {
    let Some(path) = path else {
        return Ok(reporter);
    };
    let file = std::fs::File::create(path).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(reporter.json(std::io::BufWriter::new(file)))
}

/// Runs `plan` to its end, or until Ctrl-C, SIGTERM or SIGHUP, which drop
/// it (and with it every VM and run directory): the signal then. With
/// `timings`, where each completed kernel's time went is written there.
pub(super) async fn run_to_end(
    plan: &RunPlan,
    mut reporter: Reporter<'_>,
    timings: Option<&Path>,
) -> Result<Result<Summary, Interrupt>, Error> {
    // Registered before anything starts, so that no signal can find the
    // default disposition while VMs run.
    let handler = |kind| tokio::signal::unix::signal(kind).ok();
    let (mut int, mut term, mut hup) = (
        handler(SignalKind::interrupt()),
        handler(SignalKind::terminate()),
        handler(SignalKind::hangup()),
    );
    let mut kernels = Vec::new();
    let run = crate::runner::run(plan, |event| {
        if let RunEvent::KernelFinished {
            kernel,
            outcome: KernelOutcome::Completed { timings, .. },
        } = &event
        {
            kernels.push((kernel.clone(), (**timings).clone()));
        }
        reporter.report(&event)
    });
    let interrupt = tokio::select! {
        result = run => {
            result?;
            if let Some(path) = timings {
                super::bench::write_timings(path, &kernels)?;
            }
            return Ok(Ok(reporter.into_summary()));
        }
        _ = received(&mut int) => Interrupt::Int,
        _ = received(&mut term) => Interrupt::Term,
        _ = received(&mut hup) => Interrupt::Hup,
    };
    eprintln!("interrupted: stopping every VM");
    Ok(Err(interrupt))
}

/// Prints the matrix to `out`, writes the report files, and says whether
/// the run passed.
pub fn finish(
    summary: &Summary,
    outputs: &OutputArgs,
    out: &mut impl Write,
) -> Result<Status, Error> {
    let _ = report::matrix::render(summary, out).and_then(|()| out.flush());
    write_files(summary, outputs)?;
    Ok(Status::of_summary(summary))
}

/// Writes the JUnit file, the HTML page and the Markdown summary.
fn write_files(summary: &Summary, outputs: &OutputArgs) -> Result<(), Error> {
    let failed = |path: &PathBuf| {
        let path = path.clone();
        move |source| Error::Write { path, source }
    };
    if let Some(path) = &outputs.junit {
        let xml = report::junit::render(summary).map_err(|e| Error::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(path, xml).map_err(failed(path))?;
    }
    if let Some(path) = &outputs.html {
        std::fs::write(path, report::html::render(summary)).map_err(failed(path))?;
    }
    let markdown = report::markdown::render(summary);
    if let Some(path) = &outputs.summary {
        std::fs::write(path, &markdown).map_err(failed(path))?;
    } else if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut file| file.write_all(markdown.as_bytes()))
            .map_err(failed(&path))?;
    }
    Ok(())
}

/// `--loader`.
#[derive(Clone, Copy, Debug)]
enum LoaderArg {
    One(Loader),
    Both,
}

fn parse_loader(name: &str) -> Result<LoaderArg, String> {
    match name {
        "both" => Ok(LoaderArg::Both),
        _ => Loader::from_name(name)
            .map(LoaderArg::One)
            .ok_or_else(|| format!("unknown loader `{name}`; use aya, libbpf or both")),
    }
}

/// Waits for `signal`; forever when its handler could not be installed.
async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
