//! `kmatrix bench fanout`: how much of the machine a run across several
//! kernels uses. The same `kmatrix test` runs once with `--jobs 1` (the
//! kernels one at a time) and once with `--jobs J`; the efficiency is the
//! one-at-a-time wall time over J times the parallel one (1.0: J kernels
//! at once cost no more than one). Cold (`--no-snapshot`) and warm (saved
//! VMs restored) runs are measured alike, all four alternating.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clap::ValueEnum;

use super::figures::{Document, Figure, Ratio};
use super::{ensure, io, Result};
use crate::cli::args::VmArgs;
use crate::error::{Error, Status};
use crate::kernels::Selection;
use crate::plan::{RunConfig, RunRequest, Tests};

/// `kmatrix bench fanout` arguments.
#[derive(clap::Args)]
pub struct FanoutArgs {
    /// The kernels run side by side (a `--kernels` selection, at least two).
    #[arg(long, default_value = "5.10,6.1,6.12,7.3")]
    kernels: String,
    /// Kernels at once in the parallel run [default: the number of CPUs].
    #[arg(long)]
    jobs: Option<usize>,
    /// Runs of each of the four; the medians are compared.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also write the figures, with every sample, to FILE as one JSON
    /// document.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
    /// The object `kmatrix test` loads (`.o` or `.c`).
    object: PathBuf,
}

/// One of the four runs measured.
#[derive(Clone, Copy)]
struct Side {
    cold: bool,
    parallel: bool,
}

pub(super) async fn fanout(matrix: Option<PathBuf>, args: FanoutArgs) -> Result<Status> {
    if args.runs == 0 {
        return Err(Error::Usage("--runs must be at least 1".into()));
    }
    if args.vm.no_snapshot {
        return Err(Error::Usage(
            "bench fanout measures warm runs too: leave out --no-snapshot (its cold runs use it)"
                .into(),
        ));
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs < 2 {
        return Err(Error::Usage(
            "--jobs must be at least 2 for a parallel run to compare".into(),
        ));
    }
    if let Some(path) = &args.json {
        std::fs::File::create(path).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    // The selection is checked, and every kernel fetched, before anything
    // is timed.
    let request = RunRequest {
        matrix: matrix.clone(),
        kernels: args
            .kernels
            .parse::<Selection>()
            .map_err(|e| Error::Usage(e.to_string()))?,
        arch: None,
        shard: None,
        tests: Tests::Suite {
            suite: None,
            objects: vec![args.object.clone()],
            loader: None,
            compare_loaders: false,
            only: Vec::new(),
        },
        offline: false,
        config: RunConfig::new(Some(jobs), args.vm.config()),
    };
    let prepared = super::noticed(request.prepare())?;
    let plan = super::noticed(prepared.plan(crate::report::progress::on_stderr()))?;
    ensure(plan.kernels.len() >= 2, || {
        format!(
            "`--kernels {}` selects {} kernel; fan-out needs at least two",
            args.kernels,
            plan.kernels.len()
        )
    })?;
    for kernel in &plan.kernels {
        plan.fetcher.fetch(kernel).await?;
    }
    let labels: Vec<&str> = plan.kernels.iter().map(|k| k.label.as_str()).collect();
    let kernels = labels.join(",");
    let dir = tempfile::Builder::new()
        .prefix("kmatrix-bench-")
        .tempdir()
        .map_err(io("creating a scratch directory"))?;
    // Built once, so that clang is not part of the measurement.
    let object = dir.path().join("object.o");
    std::fs::write(&object, &plan.suite.objects[0].data).map_err(io("writing the object"))?;

    // The VM settings given go to every run.
    let vm_args: Vec<String> = vec![
        "--accel".into(),
        args.vm
            .accel
            .to_possible_value()
            .expect("no accelerator is skipped")
            .get_name()
            .into(),
        "--boot-timeout".into(),
        args.vm.boot_timeout.to_string(),
        "--run-timeout".into(),
        args.vm.run_timeout.to_string(),
        "--memory".into(),
        args.vm.memory.to_string(),
    ];
    let exe = std::env::current_exe().map_err(io("finding kmatrix"))?;
    // `primed`: every kernel has its saved VM, so a warm run restores all.
    let run = |side: Side, primed: bool| {
        let mut command = tokio::process::Command::new(&exe);
        if let Some(path) = &matrix {
            command.arg("--matrix").arg(path);
        }
        let jobs = if side.parallel { jobs } else { 1 };
        command
            .args(["test", "--kernels", &kernels, "--jobs", &jobs.to_string()])
            .arg(&object)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if side.cold {
            command.arg("--no-snapshot");
        }
        command.args(&vm_args);
        let count = labels.len();
        async move {
            let (elapsed, text) = super::timed(command).await?;
            let restored = text.matches(crate::report::live::RESTORED).count();
            ensure(side.cold || !primed || restored == count, || {
                format!("the warm run restored {restored} of {count} kernels:\n{text}")
            })?;
            Ok::<_, Error>(elapsed)
        }
    };

    println!(
        "fanout: kernels {kernels}, --jobs {jobs} against --jobs 1, {} runs each",
        args.runs
    );
    // A first run saves each kernel's VM if no saved one is there yet.
    run(
        Side {
            cold: false,
            parallel: true,
        },
        false,
    )
    .await?;
    let sides = [(true, false), (true, true), (false, false), (false, true)]
        .map(|(cold, parallel)| Side { cold, parallel });
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for round in 1..=args.runs {
        let mut line = format!("run {round}:");
        for (side, samples) in sides.iter().zip(&mut samples) {
            let elapsed = run(*side, true).await?;
            samples.push(elapsed);
            line += &format!(
                " {} {} {:.2} s;",
                if side.cold { "cold" } else { "warm" },
                if side.parallel {
                    "parallel"
                } else {
                    "one at a time"
                },
                elapsed.as_secs_f64()
            );
        }
        println!("{}", line.trim_end_matches(';'));
    }
    let [cold_serial, cold_parallel, warm_serial, warm_parallel] = [
        ("cold-one-at-a-time", &samples[0]),
        ("cold-parallel", &samples[1]),
        ("warm-one-at-a-time", &samples[2]),
        ("warm-parallel", &samples[3]),
    ]
    .map(|(name, samples)| Figure::seconds(name, samples));
    let ratios = [
        efficiency(&cold_serial, &cold_parallel, jobs),
        efficiency(&warm_serial, &warm_parallel, jobs),
    ];
    for (kind, serial, parallel, ratio) in [
        ("cold", &cold_serial, &cold_parallel, &ratios[0]),
        ("warm", &warm_serial, &warm_parallel, &ratios[1]),
    ] {
        println!(
            "{kind}: one at a time median {:.2} s, {jobs} at a time {:.2} s: efficiency {:.0}%",
            serial.median,
            parallel.median,
            ratio.value * 100.0
        );
    }
    if let Some(path) = &args.json {
        let mut doc = Document::new("fanout", &kernels, args.runs);
        doc.settings
            .extend([("jobs", jobs.into()), ("kernels", labels.len().into())]);
        doc.figures = vec![cold_serial, cold_parallel, warm_serial, warm_parallel];
        doc.ratios = ratios.into();
        doc.write(path)?;
    }
    Ok(Status::Passed)
}

/// The one-at-a-time median over `jobs` times the parallel one.
fn efficiency(serial: &Figure, parallel: &Figure, jobs: usize) -> Ratio {
    Ratio {
        of: serial.name,
        to: parallel.name,
        value: serial.median / (parallel.median * jobs as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efficiency_is_the_serial_time_over_jobs_times_the_parallel_one() {
        let serial = Figure::new("cold-one-at-a-time", "s", vec![8.0, 7.0, 9.0]);
        let parallel = Figure::new("cold-parallel", "s", vec![5.0, 4.0, 4.5]);
        let ratio = efficiency(&serial, &parallel, 2);
        assert_eq!(
            (ratio.of, ratio.to),
            ("cold-one-at-a-time", "cold-parallel")
        );
        assert!((ratio.value - 8.0 / 9.0).abs() < 1e-9, "{}", ratio.value);
    }
}
