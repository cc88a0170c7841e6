//! `kmatrix bench`: how much a kmatrix run costs over the floor, a bare QEMU
//! boot of the same kernel whose init only loads the virtio modules and
//! powers off. Both are measured in one process, alternating, so a noisy
//! machine slows both alike.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

use crate::agent::Init;
use crate::image::ImageParts;
use crate::kernels::{Matrix, Selection};
use crate::vm::argv;

/// `kmatrix bench` arguments.
#[derive(Args)]
pub struct BenchArgs {
    /// The kernel to measure on (a label or version).
    #[arg(long, default_value = "6.1")]
    kernel: String,
    /// Runs of each side; the medians are compared.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(flatten)]
    vm: crate::cli::VmArgs,
    /// The object `kmatrix test` loads (`.o` or `.c`).
    object: PathBuf,
}

/// Runs the benchmark and prints both medians and their ratio.
pub async fn run(matrix_path: &Path, args: BenchArgs) -> Result<ExitCode> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let matrix = Matrix::load(matrix_path)?;
    let selection = Selection::List(vec![args.kernel.clone()]);
    let kernel = selection.apply(&matrix.kernels)?[0].clone();
    let fetcher = crate::cli::fetcher(&matrix, false)?;
    let artifacts = fetcher.fetch(&kernel).await?;
    let config = args.vm.config();

    let dir = tempfile::Builder::new()
        .prefix("kmatrix-bench-")
        .tempdir()?;
    // Build the object once so that clang is not part of the measurement.
    let objects = crate::objects::load(std::slice::from_ref(&args.object), dir.path())?;
    let object = dir.path().join("object.o");
    std::fs::write(&object, &objects[0].data)?;
    let floor_initrd = dir.path().join("floor.cpio");
    ImageParts::new(Init::Floor, &[])?.write(&artifacts, &floor_initrd)?;

    let mut floor_args = argv::base_args(config.memory_mib);
    floor_args.extend(argv::accel_args(config.accel));
    floor_args.extend(argv::kernel_args(
        &artifacts.image,
        &floor_initrd,
        argv::KERNEL_CMDLINE,
    ));
    floor_args.extend(argv::console_args(&dir.path().join("floor-console.log")));
    floor_args.extend(["-device".into(), "virtio-serial-pci".into()]);

    let exe = std::env::current_exe()?;
    println!(
        "kernel {} ({}), {:?}, {} runs each",
        kernel.label, artifacts.release, config.accel, args.runs
    );
    let (mut floor, mut full) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let start = Instant::now();
        let status = tokio::process::Command::new(&config.qemu)
            .args(&floor_args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .with_context(|| format!("starting {}", config.qemu.display()))?;
        ensure!(status.success(), "the floor VM failed ({status})");
        floor.push(start.elapsed());

        let start = Instant::now();
        let output = tokio::process::Command::new(&exe)
            .arg("--matrix")
            .arg(matrix_path)
            .args(["test", "--kernels", &kernel.label, "--accel"])
            .arg(match config.accel {
                argv::Accel::Kvm => "kvm",
                argv::Accel::Tcg => "tcg",
            })
            .arg(&object)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "kmatrix test failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout)
            );
        }
        full.push(start.elapsed());
        println!(
            "run {run}: floor {:.2} s, kmatrix test {:.2} s",
            floor[run - 1].as_secs_f64(),
            full[run - 1].as_secs_f64()
        );
    }
    let (floor, full) = (median(&mut floor), median(&mut full));
    println!(
        "floor (bare QEMU boot, modules, power off): median {:.2} s",
        floor.as_secs_f64()
    );
    println!(
        "kmatrix test (process start to exit):       median {:.2} s",
        full.as_secs_f64()
    );
    println!("ratio: {:.2}", full.as_secs_f64() / floor.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
