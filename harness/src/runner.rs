//! The run: every selected kernel fetched, imaged and booted, at most
//! `jobs` at a time, with every result reported as a [`RunEvent`] the moment
//! it arrives. The runner knows nothing of output formats; reporters fold
//! the events (see [`crate::report`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmatrix_protocol::{ExecPlan, ExitInfo, Frame, Hello, Stream};
use tokio::sync::{mpsc, Semaphore};

use crate::image::{ImageError, ImageParts};
use crate::kernels::{FetchError, Fetcher, KernelEntry};
use crate::suite::{KernelCheck, Outcome, Suite};
use crate::vm::{self, BootSpec, VmConfig, VmFailure, VmReport};

/// How a run is carried out.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Kernels booted at once.
    pub jobs: usize,
    /// How each VM runs.
    pub vm: VmConfig,
    /// Whether the guest reports each case (false only to measure what
    /// streaming costs).
    pub report_cases: bool,
    /// A program to run in each kernel after the suite (`kmatrix exec`).
    pub exec: Option<ExecPlan>,
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
    /// One test's outcome.
    Outcome {
        /// The kernel's label.
        kernel: String,
        /// The test's index in [`Suite::tests`].
        test: usize,
        /// What happened.
        outcome: Outcome,
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
        /// Time from the agent's hello to its last result.
        run: Duration,
        /// Time from taking a VM slot to the VM's end.
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

/// Runs `suite` (packed in `parts`) on every kernel, calling `on_event` for
/// everything that happens. Returns when every kernel has finished.
pub async fn run(
    kernels: &[KernelEntry],
    suite: Arc<Suite>,
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
        let (suite, config) = (suite.clone(), config.clone());
        tasks.spawn(async move {
            let label = kernel.label.clone();
            let work = Work {
                kernel: &kernel,
                suite: &suite,
                parts: &parts,
                fetcher: &fetcher,
                slots: &slots,
                config: &config,
            };
            let outcome = match work.run(&tx).await {
                Ok((report, total)) => KernelOutcome::Completed {
                    boot: report.boot,
                    run: report.run,
                    total,
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

/// One kernel's share of the run.
struct Work<'a> {
    kernel: &'a KernelEntry,
    suite: &'a Suite,
    parts: &'a ImageParts,
    fetcher: &'a Fetcher,
    slots: &'a Semaphore,
    config: &'a RunConfig,
}

impl Work<'_> {
    /// Returns the VM's report and the time from taking a slot to its end.
    async fn run(
        &self,
        tx: &mpsc::UnboundedSender<RunEvent>,
    ) -> Result<(VmReport, Duration), KernelError> {
        let label = &self.kernel.label;
        let send_outcome = |test, outcome| {
            let _ = tx.send(RunEvent::Outcome {
                kernel: label.clone(),
                test,
                outcome,
            });
        };
        // Downloads overlap with other kernels' VMs; only VMs take a slot.
        let artifacts = self.fetcher.fetch(self.kernel).await?;
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let start = Instant::now();
        let _ = tx.send(RunEvent::KernelStarted {
            kernel: label.clone(),
        });
        let mut plan = self.suite.plan_for(self.kernel, self.config.report_cases);
        plan.plan.exec = self.config.exec.clone();
        for (test, outcome) in &plan.skipped {
            send_outcome(*test, outcome.clone());
        }
        let check = KernelCheck::new(self.suite, self.kernel, &plan);

        let dir = tempfile::Builder::new()
            .prefix("kmatrix-vm-")
            .tempdir()
            .map_err(KernelError::RunDir)?;
        let initrd = dir.path().join("initrd.cpio");
        self.parts.write(&artifacts, &plan.plan, &initrd)?;
        let spec = BootSpec {
            kernel: &artifacts.image,
            initrd: &initrd,
            dir: dir.path(),
        };
        let report = vm::run(
            &self.config.vm,
            spec,
            |hello| {
                let _ = tx.send(RunEvent::KernelBooted {
                    kernel: label.clone(),
                    hello: hello.clone(),
                });
            },
            |frame| match frame {
                Frame::Program(result) => {
                    for (test, outcome) in check.program(&result) {
                        send_outcome(test, outcome);
                    }
                }
                Frame::Case(result) => {
                    if let Some((test, outcome)) = check.case(&result) {
                        send_outcome(test, outcome);
                    }
                }
                Frame::AgentError(message) => {
                    let _ = tx.send(RunEvent::AgentError {
                        kernel: label.clone(),
                        message,
                    });
                }
                Frame::Output { stream, data } => {
                    let _ = tx.send(RunEvent::Output {
                        kernel: label.clone(),
                        stream,
                        data,
                    });
                }
                Frame::Exit(info) => {
                    let _ = tx.send(RunEvent::Exited {
                        kernel: label.clone(),
                        info,
                    });
                }
                Frame::Hello(_) | Frame::Done => {}
            },
        )
        .await?;
        Ok((report, start.elapsed()))
    }
}
