//! The `kmatrix` command line: clap arguments turned into library calls.
//! This is the binary's edge: errors become `anyhow` here and exit codes
//! are decided here.
//!
//! Exit codes: 0 everything passed, 1 a program or kernel failed,
//! 2 the run could not start (bad input), 130 interrupted.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod progress;

use crate::agent::Init;
use crate::cache::Cache;
use crate::image::ImageParts;
use crate::kernels::{Fetcher, KernelEntry, Matrix, Selection, Source};
use crate::partition::Shard;
use crate::report::{self, json::JsonReporter, live::LiveReporter, Summary};
use crate::runner::{self, RunConfig};
use crate::suite::Suite;
use crate::vm::{AccelChoice, VmConfig};

/// Environment variable naming the kernel matrix file.
pub const MATRIX_ENV: &str = "KMATRIX_KERNELS";

/// Exit code: something failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the run could not start.
pub const EXIT_ERROR: u8 = 2;
/// Exit code: interrupted.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "kmatrix",
    version,
    about = "Test eBPF programs against a matrix of Linux kernels"
)]
struct Cli {
    /// The kernel matrix [default: $KMATRIX_KERNELS, else kernels.toml in
    /// this directory or the nearest parent].
    #[arg(long, global = true, value_name = "FILE")]
    matrix: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load eBPF objects on every selected kernel and report the matrix.
    Test(TestArgs),
    /// Run a program (e.g. a test binary) inside every selected kernel.
    Exec(ExecArgs),
    /// Inspect and fetch the kernels of the matrix.
    #[command(subcommand)]
    Kernels(KernelsCommand),
    /// Print the CI job matrix (JSON for `strategy.matrix`) of a sharded run.
    Matrix(MatrixArgs),
    /// Combine reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Measure a run against a bare boot, or streamed against discarded
    /// results.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Subcommand)]
enum KernelsCommand {
    /// List the matrix: label, version, source, cached or not.
    List,
    /// Download and extract kernels into the cache.
    Fetch {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Move pins to the newest package of each kernel's series, rewriting
    /// kernels.toml in place.
    Update {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Print the cache directory (for CI cache steps).
    CacheDir,
    /// Remove cache entries no kernels.toml entry uses (a dry run unless
    /// --delete).
    Gc {
        /// Remove them, rather than only listing them.
        #[arg(long)]
        delete: bool,
    },
}

/// Which kernels, and how their VMs run.
#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Kernels booted at once [default: number of CPUs].
    #[arg(short, long)]
    jobs: Option<usize>,
    #[command(flatten)]
    vm: VmArgs,
}

impl RunArgs {
    fn config(&self, exec: Option<kmatrix_protocol::ExecPlan>) -> RunConfig {
        RunConfig {
            jobs: self.jobs.unwrap_or_else(num_cpus),
            vm: self.vm.config(),
            report_cases: true,
            exec,
        }
    }
}

#[derive(Args)]
struct ExecArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Also pack this file or directory, at the same absolute path.
    #[arg(long, value_name = "PATH")]
    file: Vec<PathBuf>,
    /// Also pass this environment variable through.
    #[arg(long, value_name = "NAME")]
    env: Vec<String>,
    /// Write every event as JSON lines here, and the libtest outcomes at
    /// the end (`tests` in `run-started` is empty: they are not known
    /// before the program runs).
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

#[derive(Args)]
struct MatrixArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Shards (CI jobs); at most one per kernel [default: one per kernel].
    #[arg(long)]
    shards: Option<usize>,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Merge the --json files of a sharded run into one matrix; fails if a
    /// shard failed, or its file is missing or cut short.
    Merge {
        #[command(flatten)]
        outputs: OutputArgs,
        /// The shards' --json files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Report files.
#[derive(Args, Clone)]
struct OutputArgs {
    /// Write JUnit XML here (one testsuite per kernel).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write the Markdown summary here [default: append to
    /// $GITHUB_STEP_SUMMARY when set].
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

/// `--kernels`.
#[derive(Args, Clone)]
pub struct SelectArgs {
    /// Kernels to use: `all`, a range (`5.4..6.8`, `6.1..`, `..6.1`) or a
    /// list (`6.1,6.12`).
    #[arg(long, default_value = "all", value_parser = parse_selection)]
    pub kernels: Selection,
}

fn parse_selection(text: &str) -> Result<Selection, String> {
    text.parse()
        .map_err(|e: crate::kernels::SelectError| e.to_string())
}

/// How VMs run.
#[derive(Args, Clone)]
pub struct VmArgs {
    /// Accelerator: KVM only where hardware virtualisation is there.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Seconds for a kernel to boot and start the agent.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub boot_timeout: u64,
    /// Seconds for the agent to report every result once up.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub run_timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub memory: u32,
}

impl VmArgs {
    /// The VM configuration these arguments describe.
    pub fn config(&self) -> VmConfig {
        VmConfig {
            qemu: VmConfig::default_qemu(),
            accel: self.accel.resolve(),
            memory_mib: self.memory,
            boot_timeout: Duration::from_secs(self.boot_timeout),
            run_timeout: Duration::from_secs(self.run_timeout),
        }
    }
}

#[derive(Args)]
struct TestArgs {
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
    #[command(flatten)]
    outputs: OutputArgs,
    /// The suite file [default, when no OBJECT is given: $KMATRIX_SUITE,
    /// else kmatrix-suite.toml here or in the nearest parent].
    #[arg(long, value_name = "FILE")]
    suite: Option<PathBuf>,
    /// eBPF objects (`.o`) or C sources (`.c`, built with clang), checked
    /// for loading only.
    #[arg(value_name = "OBJECT")]
    objects: Vec<PathBuf>,
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
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let matrix_path = find_matrix(cli.matrix)?;
    match cli.command {
        Command::Test(args) => test(&matrix_path, args).await,
        Command::Exec(args) => exec(&matrix_path, args).await,
        Command::Kernels(KernelsCommand::List) => list(&matrix_path),
        Command::Kernels(KernelsCommand::Fetch { select }) => fetch(&matrix_path, &select).await,
        Command::Kernels(KernelsCommand::Update { select }) => update(&matrix_path, &select).await,
        Command::Kernels(KernelsCommand::Gc { delete }) => gc(&matrix_path, delete),
        Command::Kernels(KernelsCommand::CacheDir) => {
            println!("{}", Cache::from_env()?.root().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => crate::bench::run(&matrix_path, args).await,
        Command::Matrix(args) => job_matrix(&matrix_path, &args),
        Command::Report(ReportCommand::Merge { outputs, files }) => merge(&files, &outputs),
    }
}

/// `--matrix`, then [`MATRIX_ENV`], then `kernels.toml` here or above.
pub fn find_matrix(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given.or_else(|| std::env::var_os(MATRIX_ENV).map(PathBuf::from)) {
        return Ok(path);
    }
    let cwd = std::env::current_dir()?;
    cwd.ancestors()
        .map(|dir| dir.join("kernels.toml"))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "no kernels.toml in {} or its parents; pass --matrix FILE or set {MATRIX_ENV}",
                cwd.display()
            )
        })
}

/// A fetcher reporting its progress on stderr: bars on a terminal, plain
/// lines otherwise.
pub fn fetcher(matrix: &Matrix, offline: bool) -> Result<Fetcher> {
    let cache = Cache::from_env()?;
    let progress = progress::FetchProgress::new();
    Ok(Fetcher::new(cache, matrix, offline, move |event| {
        progress.report(event)
    }))
}

async fn test(matrix_path: &Path, args: TestArgs) -> Result<ExitCode> {
    let matrix = Matrix::load(matrix_path)?;
    let selected = args.run.select.kernels.apply(&matrix.kernels)?;
    let labels: Vec<String> = selected.iter().map(|k| k.label.clone()).collect();
    let kernels = match args.shard {
        Some(shard) => shard.apply(&selected)?,
        None => selected,
    };
    let kernels = pinned(kernels)?;
    let scratch = tempfile::Builder::new()
        .prefix("kmatrix-objects-")
        .tempdir()?;
    let suite = Arc::new(load_suite(
        args.suite.as_deref(),
        &args.objects,
        scratch.path(),
    )?);
    let parts =
        Arc::new(ImageParts::new(Init::Agent, &suite.objects).context("building the initramfs")?);
    let fetcher = Arc::new(fetcher(&matrix, args.offline)?);
    let config = args.run.config(None);
    let to_run: Vec<KernelEntry> = kernels.iter().map(|k| (*k).clone()).collect();

    let mut summary = Summary::new(&kernels, &suite);
    let mut live = LiveReporter::new(std::io::stdout(), &suite);
    let ours: Vec<String> = kernels.iter().map(|k| k.label.clone()).collect();
    let shard = args.shard.map(|s| s.to_string());
    let mut json = json_reporter(args.json.as_deref(), &suite, &labels, &ours, shard)?;
    let mut json_error = None;
    let run = runner::run(&to_run, suite.clone(), parts, fetcher, &config, |event| {
        // A closed stdout must not stop the run: the matrix decides the exit.
        let _ = live.report(&event);
        if let Some(json) = &mut json {
            if let Err(err) = json.report(&event) {
                json_error.get_or_insert(err);
            }
        }
        summary.record(&event);
    });
    if interrupted(run).await {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if let Some(err) = json_error {
        return Err(err).context("writing the --json file");
    }
    if let Some(json) = json {
        json.finish(summary.passed())
            .context("writing the --json file")?;
    }
    finish(&summary, &args.outputs)
}

/// The `--json` writer, when a file is asked for.
fn json_reporter<'a>(
    path: Option<&Path>,
    suite: &'a Suite,
    matrix: &[String],
    kernels: &[String],
    shard: Option<String>,
) -> Result<Option<JsonReporter<'a, std::io::BufWriter<std::fs::File>>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let out = std::io::BufWriter::new(file);
    Ok(Some(JsonReporter::start(
        out, suite, matrix, kernels, shard,
    )?))
}

/// Runs `run` to its end, or until Ctrl-C, which drops it (and with it
/// every VM). Returns whether it was interrupted.
async fn interrupted(run: impl std::future::Future<Output = ()>) -> bool {
    tokio::select! {
        () = run => false,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: stopping every VM");
            true
        }
    }
}

/// Prints the matrix, writes the report files, and decides the exit code.
fn finish(summary: &Summary, outputs: &OutputArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    report::matrix::render(summary, &mut out)?;
    out.flush()?;
    drop(out);
    write_files(summary, outputs)?;
    Ok(if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// Writes the JUnit file and the Markdown summary.
fn write_files(summary: &Summary, outputs: &OutputArgs) -> Result<()> {
    if let Some(path) = &outputs.junit {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        report::junit::report(summary)
            .serialize(std::io::BufWriter::new(file))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let markdown = report::markdown::render(summary);
    if let Some(path) = &outputs.summary {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    } else if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening $GITHUB_STEP_SUMMARY ({})", path.display()))?;
        file.write_all(markdown.as_bytes())?;
    }
    Ok(())
}

async fn exec(matrix_path: &Path, args: ExecArgs) -> Result<ExitCode> {
    let matrix = Matrix::load(matrix_path)?;
    let kernels = pinned(args.run.select.kernels.apply(&matrix.kernels)?)?;
    let prepared = crate::exec::prepare(&args.command, &args.file, &args.env)?;
    let suite = Arc::new(Suite::from_objects(Vec::new()));
    let mut parts = ImageParts::new(Init::Agent, &[]).context("building the initramfs")?;
    parts
        .add_files(&prepared.files)
        .context("packing the program")?;
    let fetcher = Arc::new(fetcher(&matrix, false)?);
    let config = args.run.config(Some(prepared.plan));
    let labels: Vec<String> = kernels.iter().map(|k| k.label.clone()).collect();
    let to_run: Vec<KernelEntry> = kernels.iter().map(|k| (*k).clone()).collect();
    let mut json = json_reporter(args.json.as_deref(), &suite, &labels, &labels, None)?;
    let mut reporter =
        report::exec::ExecReporter::new(labels, std::io::stdout(), std::io::stderr());
    let mut json_error = None;
    let run = runner::run(
        &to_run,
        suite.clone(),
        Arc::new(parts),
        fetcher,
        &config,
        |event| {
            let _ = reporter.report(&event);
            if let Some(json) = &mut json {
                if let Err(err) = json.report(&event) {
                    json_error.get_or_insert(err);
                }
            }
        },
    );
    if interrupted(run).await {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if let Some(err) = json_error {
        return Err(err).context("writing the --json file");
    }
    let mut err = std::io::stderr().lock();
    reporter.statuses(&mut err)?;
    let summary = reporter.summary();
    if let Some(summary) = &summary {
        report::matrix::render(summary, &mut err)?;
        drop(err);
        write_files(summary, &args.outputs)?;
    }
    if let Some(mut json) = json {
        for (c, kernel) in reporter.kernels().iter().enumerate() {
            for (r, test) in summary.iter().flat_map(|s| s.rows.iter().enumerate()) {
                if let Some(report::Cell::Done(outcome)) =
                    summary.as_ref().and_then(|s| s.cell(c, r))
                {
                    json.write(&report::json::Record::Outcome {
                        kernel: kernel.clone(),
                        test: test.clone(),
                        result: outcome.clone(),
                    })?;
                }
            }
        }
        json.finish(reporter.passed())
            .context("writing the --json file")?;
    }
    Ok(if reporter.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// `kmatrix matrix`: one entry per shard, with its `kmatrix test` arguments.
fn job_matrix(matrix_path: &Path, args: &MatrixArgs) -> Result<ExitCode> {
    let matrix = Matrix::load(matrix_path)?;
    let selected = args.select.kernels.apply(&matrix.kernels)?;
    let total = args.shards.unwrap_or(selected.len());
    anyhow::ensure!(total > 0, "--shards must be at least 1");
    let selection = args.select.kernels.to_string();
    let mut include = Vec::new();
    for index in 1..=total {
        let shard = Shard { index, total };
        let kernels: Vec<_> = shard
            .apply(&selected)?
            .iter()
            .map(|k| k.label.clone())
            .collect();
        include.push(serde_json::json!({
            "shard": shard.to_string(),
            "name": format!("{shard}: {}", kernels.join(", ")),
            "kernels": kernels,
            "args": format!("--kernels {selection} --shard {shard}"),
        }));
    }
    println!("{}", serde_json::json!({ "include": include }));
    Ok(ExitCode::SUCCESS)
}

/// `kmatrix report merge`.
fn merge(files: &[PathBuf], outputs: &OutputArgs) -> Result<ExitCode> {
    let summary = report::json::merge(files)?;
    finish(&summary, outputs)
}

/// The suite to run: `--suite` (with any bare objects added), else the
/// bare objects alone, else the suite [`crate::suite::find`] finds.
pub fn load_suite(suite: Option<&Path>, objects: &[PathBuf], scratch: &Path) -> Result<Suite> {
    Ok(match (suite, objects.is_empty()) {
        (Some(path), _) => Suite::load(path, objects, scratch)?,
        (None, false) => Suite::from_objects(crate::objects::load(objects, scratch)?),
        (None, true) => Suite::load(&crate::suite::find(None)?, &[], scratch)?,
    })
}

fn list(matrix_path: &Path) -> Result<ExitCode> {
    let matrix = Matrix::load(matrix_path)?;
    let fetcher = fetcher(&matrix, true)?;
    println!(
        "{:<8} {:<10} {:<7} {:>8}  {:<14} SOURCE",
        "LABEL", "VERSION", "CACHED", "SIZE", "PIN"
    );
    for kernel in &matrix.kernels {
        let cached = fetcher.cached(kernel);
        let size = cached.as_ref().map_or_else(
            || "-".to_owned(),
            |a| format!("{:.1} MB", crate::cache::size(&a.dir) as f64 / 1e6),
        );
        let pin = match kernel.sha256.values().next() {
            Some(pin) if kernel.sha256.len() == 1 => hex::encode(&pin[..6]),
            Some(pin) => format!("{}+{}", hex::encode(&pin[..4]), kernel.sha256.len() - 1),
            None => "(none)".to_owned(),
        };
        println!(
            "{:<8} {:<10} {:<7} {:>8}  {:<14} {}",
            kernel.label,
            kernel.version.to_string(),
            if cached.is_some() { "yes" } else { "no" },
            size,
            pin,
            kernel.source
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(matrix_path: &Path, delete: bool) -> Result<ExitCode> {
    let matrix = Matrix::load(matrix_path)?;
    let fetcher = fetcher(&matrix, true)?;
    let mut keep = std::collections::HashSet::new();
    for kernel in &matrix.kernels {
        let (dir, blobs) = fetcher.references(kernel);
        keep.insert(dir);
        keep.extend(
            blobs
                .iter()
                .map(|b| fetcher.cache().root().join("blobs/sha256").join(b)),
        );
    }
    let unused = fetcher.cache().unreferenced(&keep);
    let total: u64 = unused.iter().map(|e| e.bytes).sum();
    for entry in &unused {
        println!(
            "{:>9.1} MB  {}",
            entry.bytes as f64 / 1e6,
            entry.path.display()
        );
        if delete {
            let removed = if entry.path.is_dir() {
                std::fs::remove_dir_all(&entry.path)
            } else {
                std::fs::remove_file(&entry.path)
            };
            removed.with_context(|| format!("removing {}", entry.path.display()))?;
        }
    }
    let verb = if delete {
        "removed"
    } else {
        "would remove (pass --delete)"
    };
    println!(
        "{verb}: {} entries, {:.1} MB, that no entry of {} uses",
        unused.len(),
        total as f64 / 1e6,
        matrix.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn fetch(matrix_path: &Path, select: &SelectArgs) -> Result<ExitCode> {
    let matrix = Matrix::load(matrix_path)?;
    let kernels = pinned(select.kernels.apply(&matrix.kernels)?)?;
    let fetcher = Arc::new(fetcher(&matrix, false)?);
    let mut tasks = tokio::task::JoinSet::new();
    for kernel in kernels {
        let (fetcher, kernel) = (fetcher.clone(), kernel.clone());
        tasks.spawn(async move { (kernel.label.clone(), fetcher.fetch(&kernel).await) });
    }
    let mut failed = false;
    while let Some(joined) = tasks.join_next().await {
        let (label, result) = joined?;
        match result {
            Ok(artifacts) => println!(
                "{label:>8}  cached {} at {}",
                artifacts.release,
                artifacts.dir.display()
            ),
            Err(err) => {
                failed = true;
                eprintln!("{label:>8}  error: {}", report::error_chain(&err));
            }
        }
    }
    if failed {
        bail!("some kernels could not be fetched");
    }
    Ok(ExitCode::SUCCESS)
}

/// The selected kernels, if every one is pinned: runs use only pinned
/// artifacts.
fn pinned(kernels: Vec<&KernelEntry>) -> Result<Vec<&KernelEntry>> {
    for kernel in &kernels {
        kernel.check_pinned().map_err(anyhow::Error::msg)?;
    }
    Ok(kernels)
}

async fn update(matrix_path: &Path, select: &SelectArgs) -> Result<ExitCode> {
    let matrix = Matrix::load(matrix_path)?;
    let kernels = select.kernels.apply(&matrix.kernels)?;
    let fetcher = fetcher(&matrix, false)?;
    let mut pinnings = Vec::new();
    for kernel in kernels {
        let Some(pinning) = fetcher.newest_pinning(kernel).await? else {
            println!(
                "{:>8}  pinned by content ({}): nothing to update",
                kernel.label, kernel.source
            );
            continue;
        };
        let pins: BTreeMap<_, _> = kernel
            .sha256
            .iter()
            .map(|(name, pin)| (name.clone(), hex::encode(pin)))
            .collect();
        let (from, to) = match (&kernel.source, &pinning.package) {
            (Source::Debian { package, .. }, Some(newest)) => (package.clone(), newest.clone()),
            _ => (kernel.source.to_string(), kernel.source.to_string()),
        };
        if from == to && pins == pinning.sha256 {
            println!("{:>8}  up to date: {from}", kernel.label);
            continue;
        }
        println!("{:>8}  {from} -> {to}", kernel.label);
        for (name, digest) in &pinning.sha256 {
            println!("{:>8}    {name} = {digest}", "");
        }
        pinnings.push(pinning);
    }
    if !pinnings.is_empty() {
        let text = std::fs::read_to_string(matrix_path)?;
        let updated = crate::kernels::rewrite(&text, &pinnings)?;
        let dir = matrix_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(updated.as_bytes())?;
        file.persist(matrix_path)?;
        println!("updated {}", matrix_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The number of CPUs, the default for `--jobs`.
pub fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
