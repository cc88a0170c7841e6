//! The arguments commands share, and what they become: a [`Selection`], a
//! [`RunConfig`], a [`VmConfig`]. The library below never sees clap types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kmatrix_protocol::Arch;

use crate::kernels::Selection;
use crate::plan::RunConfig;
use crate::vm::{AccelChoice, VmConfig};

/// `--kernels` and `--arch`.
#[derive(Args, Clone)]
pub struct SelectArgs {
    /// Kernels to use: `all`, a range (`5.4..6.8`, `6.1..`, `..6.1`) or a
    /// list (`6.1,6.12`).
    #[arg(long, default_value = "all", value_parser = parse_selection)]
    pub kernels: Selection,
    /// Only kernels of this architecture (`amd64` or `arm64`) [default:
    /// both].
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
}

fn parse_arch(text: &str) -> Result<Arch, String> {
    text.parse()
}

fn parse_selection(text: &str) -> Result<Selection, String> {
    text.parse()
        .map_err(|e: crate::kernels::SelectError| e.to_string())
}

/// Which kernels, and how their VMs run.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Kernels booted at once [default: number of CPUs].
    #[arg(short, long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub vm: VmArgs,
}

impl RunArgs {
    /// The run configuration these arguments describe.
    pub fn config(&self) -> RunConfig {
        RunConfig::new(self.jobs, self.vm.config())
    }
}

/// `--accel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    /// KVM where hardware virtualisation is really there, else TCG.
    Auto,
    /// KVM.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl From<AccelArg> for AccelChoice {
    fn from(arg: AccelArg) -> Self {
        match arg {
            AccelArg::Auto => AccelChoice::Auto,
            AccelArg::Kvm => AccelChoice::Kvm,
            AccelArg::Tcg => AccelChoice::Tcg,
        }
    }
}

/// How VMs run.
#[derive(Args, Clone)]
pub struct VmArgs {
    /// Accelerator: KVM only where hardware virtualisation is there.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Seconds for a kernel to boot and start the agent.
    #[arg(long, default_value_t = VmConfig::DEFAULT_BOOT_TIMEOUT.as_secs(), value_name = "SECS")]
    pub boot_timeout: u64,
    /// Seconds for the agent to report every result once up.
    #[arg(long, default_value_t = VmConfig::DEFAULT_RUN_TIMEOUT.as_secs(), value_name = "SECS")]
    pub run_timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = VmConfig::DEFAULT_MEMORY_MIB, value_name = "MIB")]
    pub memory: u32,
    /// Boot every kernel cold: neither restore a saved VM nor save one.
    #[arg(long)]
    pub no_snapshot: bool,
}

impl VmArgs {
    /// The VM configuration these arguments describe.
    pub fn config(&self) -> VmConfig {
        VmConfig {
            memory_mib: self.memory,
            boot_timeout: Duration::from_secs(self.boot_timeout),
            run_timeout: Duration::from_secs(self.run_timeout),
            snapshots: !self.no_snapshot,
            ..VmConfig::new(self.accel.into())
        }
    }
}

/// Report files.
#[derive(Args, Clone)]
pub struct OutputArgs {
    /// Write JUnit XML here (one testsuite per kernel).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report here (the matrix, failures with
    /// their verifier logs folded, a chart per program of the instructions
    /// the verifier processed on each kernel).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the Markdown summary here [default: append to
    /// $GITHUB_STEP_SUMMARY when set].
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
}
