//! What a run reports, in the order it happens: the vocabulary the
//! [runner](crate::runner) and the [judge](crate::judge) emit and the
//! [reporters](crate::report) fold. It imports neither of them.

use std::time::Duration;

use kmatrix_protocol::report::Outcome;
use kmatrix_protocol::{ExitInfo, Hello, ProgramStats, Stream};

use crate::image::ImageError;
use crate::kernels::FetchError;
use crate::vm::{Start, VmFailure, VmTimings};

/// Where a splat was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplatSource {
    /// The agent read it from `/dev/kmsg`.
    Kmsg,
    /// The host read it from the kernel's console.
    Console,
}

impl SplatSource {
    /// Its name in the `--json` file.
    pub fn name(self) -> &'static str {
        match self {
            SplatSource::Kmsg => "kmsg",
            SplatSource::Console => "console",
        }
    }
}

/// Something that happened during a run, in the order it happened.
#[derive(Debug)]
pub enum RunEvent {
    /// The first event: what the run covers.
    RunStarted {
        /// Every selected kernel, before sharding, in matrix order.
        matrix: Vec<String>,
        /// The kernels this run boots, in matrix order.
        kernels: Vec<String>,
        /// The suite's tests, in order (empty under `kmatrix exec`, whose
        /// tests are known only as they run).
        tests: Vec<String>,
        /// `K/N` when sharded.
        shard: Option<String>,
        /// What a command line reproducing a failure repeats (`kmatrix
        /// test` runs only).
        reproduce: Option<kmatrix_protocol::report::Reproduce>,
    },
    /// A kernel's VM is starting.
    KernelStarted {
        /// The kernel's label.
        kernel: String,
        /// Its architecture.
        arch: kmatrix_protocol::Arch,
    },
    /// A kernel booted and its agent said hello.
    KernelBooted {
        /// The kernel's label.
        kernel: String,
        /// How the VM came up.
        start: Start,
        /// What the agent said.
        hello: Hello,
    },
    /// One test's outcome.
    Outcome {
        /// The kernel's label.
        kernel: String,
        /// The test's name.
        test: String,
        /// What happened.
        outcome: Outcome,
    },
    /// What the kernel said about verifying a program: attached to its load
    /// test.
    Stats {
        /// The kernel's label.
        kernel: String,
        /// The program's load test.
        test: String,
        /// The statistics.
        stats: ProgramStats,
    },
    /// What a feature probe found on a kernel.
    Probed {
        /// The kernel's label.
        kernel: String,
        /// The answer.
        probe: kmatrix_protocol::Probe,
    },
    /// Bytes the executed program wrote.
    Output {
        /// The kernel's label.
        kernel: String,
        /// Which stream.
        stream: Stream,
        /// What it wrote.
        data: Vec<u8>,
    },
    /// The executed program ended.
    Exited {
        /// The kernel's label.
        kernel: String,
        /// How.
        info: ExitInfo,
    },
    /// The kernel printed a splat outside any test.
    Splat {
        /// The kernel's label.
        kernel: String,
        /// Where it was read.
        source: SplatSource,
        /// The splat's lines.
        lines: Vec<String>,
    },
    /// The agent hit a problem outside any one program.
    AgentError {
        /// The kernel's label.
        kernel: String,
        /// What it said.
        message: String,
    },
    /// Something about the kernel's VM worth a line (a saved VM that
    /// could not be restored or saved).
    Notice {
        /// The kernel's label.
        kernel: String,
        /// What happened.
        message: String,
    },
    /// A kernel is done.
    KernelFinished {
        /// The kernel's label.
        kernel: String,
        /// How it ended.
        outcome: KernelOutcome,
    },
    /// The last event: every kernel has finished.
    RunFinished,
}

/// How a kernel's part of the run ended.
#[derive(Debug)]
pub enum KernelOutcome {
    /// The agent reported everything and the VM shut down cleanly.
    Completed {
        /// Time from QEMU's start to the agent's hello.
        boot: Duration,
        /// Time from the agent's hello to its last result.
        run: Duration,
        /// Time from taking a VM slot to the VM's end.
        total: Duration,
        /// Where the time went, for `kmatrix bench boot --phases`.
        timings: Box<KernelTimings>,
    },
    /// The kernel could not be tested.
    Failed(KernelError),
}

/// A completed kernel's time on the host's side, from the start of its
/// share of the run (the fetch) to its end; its VM's own instants count
/// from QEMU's start.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelTimings {
    /// Fetching its artifacts (a check of the cache when they are there).
    pub fetch: Duration,
    /// Writing its initramfs.
    pub initramfs: Duration,
    /// When QEMU was about to be started.
    pub vm_begun: Duration,
    /// The VM's instants.
    pub vm: VmTimings,
    /// When its share of the run ended (its console judged).
    pub end: Duration,
}

/// Why a kernel could not be tested.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Its artifacts could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Its initramfs could not be written.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The run directory could not be made.
    #[error("cannot create a run directory: {0}")]
    RunDir(std::io::Error),
    /// The VM failed.
    #[error(transparent)]
    Vm(#[from] VmFailure),
    /// The VM ended cleanly, but what ran in it fails the kernel.
    #[error(transparent)]
    Judge(#[from] JudgeError),
}

/// Why the judge fails a kernel whose VM ended cleanly.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JudgeError {
    /// The agent finished without the executed program ending.
    #[error("the program never ended")]
    NoExit,
    /// A test binary asked for tests by `--exact` name ran none of them.
    #[error("no test named {0} ran on this kernel")]
    NoTestMatched(String),
}

impl KernelError {
    /// Whether the machinery failed rather than what the kernel ran: a
    /// download, the initramfs or run directory, QEMU itself, or a VM that
    /// broke down before its agent started the run. A kernel that panics,
    /// hangs or dies while running tests failed because of them.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            KernelError::Fetch(_) | KernelError::Image(_) | KernelError::RunDir(_) => true,
            KernelError::Vm(failure) => !failure.started(),
            KernelError::Judge(_) => false,
        }
    }

    /// The end of the kernel's console, when it booted.
    pub fn console_tail(&self) -> Option<&str> {
        match self {
            KernelError::Vm(failure) => Some(&failure.console_tail),
            _ => None,
        }
    }
}
