//! The run: every selected kernel fetched, imaged and booted, at most
//! `jobs` at a time, with every result reported as a [`RunEvent`] the moment
//! it arrives. The runner knows nothing of output formats; reporters fold
//! the events (see [`crate::report`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmatrix_protocol::{Frame, Hello, ProgramResult};
use tokio::sync::{mpsc, Semaphore};

use crate::image::{ImageError, ImageParts};
use crate::kernels::{FetchError, Fetcher, KernelEntry};
use crate::vm::{self, BootSpec, VmConfig, VmFailure};

/// How a run is carried out.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Kernels booted at once.
    pub jobs: usize,
    /// How each VM runs.
    pub vm: VmConfig,
}

/// Something that happened during a run, in the order it happened.
#[derive(Debug)]
pub enum RunEvent {
    /// A kernel's VM is starting.
    KernelStarted {
        /// The kernel's label.
        kernel: String,
    },
    /// A kernel booted and its agent said hello.
    KernelBooted {
        /// The kernel's label.
        kernel: String,
        /// What the agent said.
        hello: Hello,
    },
    /// One program's result.
    Program {
        /// The kernel's label.
        kernel: String,
        /// The result.
        result: ProgramResult,
    },
    /// The agent hit a problem outside any one program.
    AgentError {
        /// The kernel's label.
        kernel: String,
        /// What it said.
        message: String,
    },
    /// A kernel is done.
    KernelFinished {
        /// The kernel's label.
        kernel: String,
        /// How it ended.
        outcome: KernelOutcome,
    },
}

/// How a kernel's part of the run ended.
#[derive(Debug)]
pub enum KernelOutcome {
    /// The agent reported everything and the VM shut down cleanly.
    Completed {
        /// Time from QEMU's start to the agent's hello.
        boot: Duration,
        /// Time from the start of this kernel's work (fetch included).
        total: Duration,
    },
    /// The kernel could not be tested.
    Failed(KernelError),
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
}

impl KernelError {
    /// The end of the kernel's console, when it booted.
    pub fn console_tail(&self) -> Option<&str> {
        match self {
            KernelError::Vm(failure) => Some(&failure.console_tail),
            _ => None,
        }
    }
}

/// Runs `parts` on every kernel, calling `on_event` for everything that
/// happens. Returns when every kernel has finished.
pub async fn run(
    kernels: &[KernelEntry],
    parts: Arc<ImageParts>,
    fetcher: Arc<Fetcher>,
    config: &RunConfig,
    mut on_event: impl FnMut(RunEvent),
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(config.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for kernel in kernels {
        let kernel = kernel.clone();
        let (tx, slots, parts, fetcher) =
            (tx.clone(), slots.clone(), parts.clone(), fetcher.clone());
        let vm = config.vm.clone();
        tasks.spawn(async move {
            let label = kernel.label.clone();
            let start = Instant::now();
            let outcome = match run_kernel(&kernel, &parts, &fetcher, &slots, &vm, &tx).await {
                Ok(boot) => KernelOutcome::Completed {
                    boot,
                    total: start.elapsed(),
                },
                Err(err) => KernelOutcome::Failed(err),
            };
            let _ = tx.send(RunEvent::KernelFinished {
                kernel: label,
                outcome,
            });
        });
    }
    drop(tx);
    while let Some(event) = rx.recv().await {
        on_event(event);
    }
    while tasks.join_next().await.is_some() {}
}

async fn run_kernel(
    kernel: &KernelEntry,
    parts: &ImageParts,
    fetcher: &Fetcher,
    slots: &Semaphore,
    config: &VmConfig,
    tx: &mpsc::UnboundedSender<RunEvent>,
) -> Result<Duration, KernelError> {
    let label = &kernel.label;
    // Downloads overlap with other kernels' VMs; only VMs take a slot.
    let artifacts = fetcher.fetch(kernel).await?;
    let _slot = slots
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let _ = tx.send(RunEvent::KernelStarted {
        kernel: label.clone(),
    });
    let dir = tempfile::Builder::new()
        .prefix("kmatrix-vm-")
        .tempdir()
        .map_err(KernelError::RunDir)?;
    let initrd = dir.path().join("initrd.cpio");
    parts.write(&artifacts, &initrd)?;
    let spec = BootSpec {
        kernel: &artifacts.image,
        initrd: &initrd,
        dir: dir.path(),
    };
    let report = vm::run(
        config,
        spec,
        |hello| {
            let _ = tx.send(RunEvent::KernelBooted {
                kernel: label.clone(),
                hello: hello.clone(),
            });
        },
        |frame| {
            let event = match frame {
                Frame::Program(result) => RunEvent::Program {
                    kernel: label.clone(),
                    result,
                },
                Frame::AgentError(message) => RunEvent::AgentError {
                    kernel: label.clone(),
                    message,
                },
                Frame::Hello(_) | Frame::Done => return,
            };
            let _ = tx.send(event);
        },
    )
    .await?;
    Ok(report.boot)
}
