//! `kmatrix bench`: figures for the two costs that matter.
//!
//! - `boot`: whole `kmatrix test` runs, cold (`--no-snapshot`) and warm (its
//!   saved VM restored), against the best bare boot of the same kernel: the
//!   same machine, uncompressed kernel and kernel arguments, with an init
//!   that only loads the virtio modules and powers off.
//! - `stream`: test-run cases per second with every result streamed to the
//!   host, against the same cases run with their results discarded in the
//!   guest.
//! - `fanout`: a run over several kernels with `--jobs J` against the same
//!   run one kernel at a time ([`fanout`]).
//!
//! Each alternates its two sides in one process, so a noisy machine slows
//! both alike, and prints the medians and their ratio; `--json FILE`
//! writes them with every sample ([`figures`]). `boot --phases` also
//! splits the cold runs into their phases ([`phases`]).

mod fanout;
mod figures;
mod phases;
mod stream;

pub use phases::write_timings;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use clap::{Args, Subcommand};

use super::args::VmArgs;
use super::noticed;
use crate::agent::Init;
use crate::error::{Error, Status};
use crate::error_chain::error_chain;
use crate::image::ImageParts;
use crate::kernels::Selection;
use crate::plan::{Prepared, RunConfig, RunRequest, Tests};
use crate::vm::argv;
use figures::{Document, Figure};

type Result<T> = std::result::Result<T, Error>;

/// Fails the benchmark with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(Error::Bench(message()))
    }
}

/// An I/O step of the benchmark that failed.
fn io(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Bench(format!("{what}: {e}"))
}

/// `kmatrix bench` subcommands.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// `kmatrix test` cold and warm against the best bare boot of the same
    /// kernel.
    Boot(BootArgs),
    /// Streamed against discarded test-run results.
    Stream(StreamArgs),
    /// Several kernels at once against the same kernels one at a time.
    Fanout(fanout::FanoutArgs),
}

/// What both benchmarks share.
#[derive(Args)]
pub struct Common {
    /// The kernel to measure on (a label or version).
    #[arg(long, default_value = "6.1")]
    kernel: String,
    /// Runs of each side; the medians are compared.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also write the figures, with every sample, to FILE as one JSON
    /// document.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
}

/// `kmatrix bench boot` arguments.
#[derive(Args)]
pub struct BootArgs {
    #[command(flatten)]
    common: Common,
    /// Also split the cold runs into their phases (host work, QEMU, the
    /// kernel's boot, the agent's steps, the run, power-off) and print
    /// each one's median beside the bare boot's total.
    #[arg(long)]
    phases: bool,
    /// The object `kmatrix test` loads (`.o` or `.c`).
    object: PathBuf,
}

/// `kmatrix bench stream` arguments.
#[derive(Args)]
pub struct StreamArgs {
    #[command(flatten)]
    common: Common,
    /// Test-run cases per run.
    #[arg(long, default_value_t = 10_000)]
    cases: usize,
    /// An object whose first XDP program runs the cases (`.o` or `.c`).
    object: PathBuf,
}

/// Runs a benchmark and prints its figures.
pub async fn run(matrix: Option<PathBuf>, command: BenchCommand) -> Result<Status> {
    match command {
        BenchCommand::Boot(args) => boot(matrix, args).await,
        BenchCommand::Stream(args) => stream::stream(matrix, args).await,
        BenchCommand::Fanout(args) => fanout::fanout(matrix, args).await,
    }
}

/// What a benchmark asks for: `tests` on the kernel it measures on, one
/// VM at a time.
fn request(
    matrix: Option<PathBuf>,
    common: &Common,
    tests: Tests,
    report_cases: bool,
) -> Result<RunRequest> {
    if common.runs == 0 {
        return Err(Error::Usage("--runs must be at least 1".into()));
    }
    // Found unwritable before the runs, not after.
    if let Some(path) = &common.json {
        std::fs::File::create(path).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(RunRequest {
        matrix,
        kernels: Selection::List(vec![common.kernel.clone()]),
        arch: None,
        shard: None,
        tests,
        offline: false,
        config: RunConfig {
            report_cases,
            ..RunConfig::new(Some(1), common.vm.config())
        },
    })
}

/// `request` prepared for the one kernel it measures on: the first
/// `--kernel` picks.
fn prepare(request: RunRequest) -> Result<Prepared> {
    let mut prepared = noticed(request.prepare())?;
    prepared.set.kernels.truncate(1);
    Ok(prepared)
}

/// Runs a `kmatrix test` `command` to its end: its wall time and stdout,
/// once it passed.
async fn timed(mut command: tokio::process::Command) -> Result<(std::time::Duration, String)> {
    let start = Instant::now();
    let output = command
        .output()
        .await
        .map_err(io("starting kmatrix test"))?;
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure(output.status.success(), || {
        format!("kmatrix test failed ({}):\n{text}", output.status)
    })?;
    Ok((elapsed, text))
}

fn scratch() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("kmatrix-bench-")
        .tempdir()
        .map_err(io("creating a scratch directory"))
}

async fn boot(matrix: Option<PathBuf>, args: BootArgs) -> Result<Status> {
    // The object is built once, here, so that clang is not part of the
    // measurement.
    let tests = Tests::Suite {
        suite: None,
        objects: vec![args.object.clone()],
        loader: None,
        compare_loaders: false,
        only: Vec::new(),
    };
    let prepared = prepare(request(matrix, &args.common, tests, true)?)?;
    let matrix_path = (!prepared.set.matrix.built_in).then(|| prepared.set.matrix.path.clone());
    let plan = noticed(prepared.plan(crate::report::progress::on_stderr()))?;
    let kernel = plan.kernels[0].clone();
    let artifacts = plan.fetcher.fetch(&kernel).await?;
    let config = &plan.config.vm;

    let dir = scratch()?;
    let object = dir.path().join("object.o");
    std::fs::write(&object, &plan.suite.objects[0].data).map_err(io("writing the object"))?;
    let floor_initrd = dir.path().join("floor.cpio");
    let arch = kernel.arch;
    ImageParts::new(Init::Floor, &[arch], &[])
        .map_err(io("building the floor's initramfs"))?
        .write(&artifacts, arch, &floor_initrd)
        .map_err(|e| Error::Bench(error_chain(&e)))?;

    let machine = argv::Machine::for_kernel(arch, artifacts.virtio_mmio);
    let accel = config.accel_for(arch);
    let mut floor_args = argv::base_args(machine, config.memory_mib);
    floor_args.extend(argv::accel_args(accel, arch));
    floor_args.extend(argv::kernel_args(
        &artifacts.boot_image,
        &floor_initrd,
        &argv::kernel_cmdline(arch, config.tsc_khz(arch)),
    ));
    let floor_console = dir.path().join("floor-console.log");
    floor_args.extend(argv::console_args(&floor_console));
    floor_args.extend(["-device".into(), argv::serial_controller(machine).into()]);

    let exe = std::env::current_exe().map_err(io("finding kmatrix"))?;
    let accel_name = match accel {
        argv::Accel::Kvm => "kvm",
        argv::Accel::Tcg => "tcg",
    };
    let kmatrix_test = |cold: bool, timings: Option<PathBuf>| {
        let mut command = tokio::process::Command::new(&exe);
        if let Some(path) = &matrix_path {
            command.arg("--matrix").arg(path);
        }
        command
            .args(["test", "--kernels", &kernel.label, "--accel", accel_name])
            .arg(&object)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if cold {
            command.arg("--no-snapshot");
        }
        if let Some(path) = &timings {
            command.arg("--timings").arg(path);
        }
        timed(command)
    };
    println!(
        "boot: kernel {} ({}), {:?}, {}, {} runs each",
        kernel.label,
        artifacts.release,
        accel,
        machine.name(),
        args.common.runs
    );
    // A first run saves the kernel's VM if no saved one is there yet.
    kmatrix_test(false, None).await?;
    let (mut floor, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    let (mut timed, mut floor_lines) = (Vec::new(), Vec::new());
    for run in 1..=args.common.runs {
        let start = Instant::now();
        let status = tokio::process::Command::new(config.qemu.get(arch))
            .args(&floor_args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(io("starting QEMU"))?;
        ensure(status.success(), || {
            format!("the floor VM failed ({status})")
        })?;
        floor.push(start.elapsed());
        let console = std::fs::read_to_string(&floor_console).unwrap_or_default();
        floor_lines.push(kmatrix_protocol::floor::parse(&console));
        let timings = args
            .phases
            .then(|| dir.path().join(format!("timings-{run}.json")));
        let wall = kmatrix_test(true, timings.clone()).await?.0;
        cold.push(wall);
        if let Some(path) = &timings {
            timed.push((phases::read_timings(path, &kernel.label)?, wall));
        }
        let (elapsed, text) = kmatrix_test(false, None).await?;
        ensure(text.contains(crate::report::live::RESTORED), || {
            format!("the warm run did not restore the saved VM:\n{text}")
        })?;
        warm.push(elapsed);
        println!(
            "run {run}: best bare boot {:.2} s, kmatrix test cold {:.2} s, warm {:.2} s",
            floor[run - 1].as_secs_f64(),
            cold[run - 1].as_secs_f64(),
            warm[run - 1].as_secs_f64()
        );
    }
    let own = phases::own_time(&timed, &floor, &floor_lines);
    let (floor, cold, warm) = (
        Figure::seconds("bare-boot", &floor),
        Figure::seconds("cold", &cold),
        Figure::seconds("warm", &warm),
    );
    println!(
        "best bare boot ({}, {}, raw initramfs, kmatrix's kernel arguments; init loads the modules and powers off): median {:.2} s",
        machine.name(),
        match (arch, artifacts.boot_image == artifacts.image) {
            (kmatrix_protocol::Arch::Amd64, true) => "bzImage",
            (kmatrix_protocol::Arch::Amd64, false) => "vmlinux via PVH",
            (kmatrix_protocol::Arch::Arm64, _) => "uncompressed Image",
        },
        floor.median
    );
    let (cold_ratio, warm_ratio) = (cold.ratio_to(&floor), warm.ratio_to(&floor));
    println!(
        "kmatrix test --no-snapshot (process start to exit):  median {:.2} s, {:.2}x the bare boot",
        cold.median, cold_ratio.value
    );
    println!(
        "kmatrix test, restored (process start to exit):      median {:.2} s, {:.2}x the bare boot",
        warm.median, warm_ratio.value
    );
    let mut phases = phases::figures(&timed);
    let floor_phases = phases::floor_figures(&floor_lines);
    if args.phases {
        println!();
        phases::render(
            &phases,
            &cold,
            &floor,
            &floor_phases,
            &own,
            &mut std::io::stdout().lock(),
        )
        .map_err(io("printing the phases"))?;
    }
    if let Some(path) = &args.common.json {
        let mut doc = Document::new("boot", &kernel.label, args.common.runs);
        doc.settings.extend([
            ("release", artifacts.release.clone().into()),
            ("arch", arch.name().into()),
            ("accel", accel_name.into()),
            ("machine", machine.name().into()),
            ("memory_mib", config.memory_mib.into()),
        ]);
        doc.figures = vec![floor, cold, warm];
        doc.ratios = vec![cold_ratio, warm_ratio];
        if args.phases {
            phases.extend(floor_phases);
            phases.push(own);
            doc.phases = phases;
        }
        doc.write(path)?;
    }
    Ok(Status::Passed)
}
