//! The run: every kernel of a [`RunPlan`] fetched, imaged and booted, at
//! most `jobs` at a time, each frame judged the moment it arrives and
//! reported as a [`RunEvent`]. The runner knows nothing of output formats;
//! the [`crate::report::Reporter`] folds the events.

mod event;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmatrix_protocol::Frame;
use tokio::sync::{mpsc, Semaphore};

pub use event::{KernelError, KernelOutcome, RunEvent, SplatSource};

use crate::judge::libtest::Libtest;
use crate::judge::suite::KernelCheck;
use crate::kernels::KernelEntry;
use crate::plan::RunPlan;
use crate::vm::{self, BootSpec, VmReport};

/// The runtime runs are driven on. Its worker threads, where VMs are
/// driven, block SIGPIPE: a write to a QEMU that exited (its QMP socket,
/// its port) fails with EPIPE there instead of ending the process, which
/// keeps SIGPIPE's default so that `kmatrix … | head` ends quietly.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| {
            let mut pipe = nix::sys::signal::SigSet::empty();
            pipe.add(nix::sys::signal::Signal::SIGPIPE);
            let _ = nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_BLOCK,
                Some(&pipe),
                None,
            );
        })
        .build()
}

/// Runs `plan`, calling `on_event` for everything that happens, from
/// [`RunEvent::RunStarted`] to [`RunEvent::RunFinished`]. An error from
/// `on_event` stops the run at once (every VM is killed) and is returned.
pub async fn run<E>(
    plan: &RunPlan,
    mut on_event: impl FnMut(RunEvent) -> Result<(), E>,
) -> Result<(), E> {
    on_event(RunEvent::RunStarted {
        matrix: plan.matrix.clone(),
        kernels: plan.kernels.iter().map(|k| k.label.clone()).collect(),
        tests: plan.suite.tests.iter().map(|t| t.name.clone()).collect(),
        shard: plan.shard.map(|s| s.to_string()),
    })?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(plan.config.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for kernel in &plan.kernels {
        let work = Work {
            kernel: kernel.clone(),
            plan: plan.shared(),
            slots: slots.clone(),
            tx: tx.clone(),
        };
        tasks.spawn(work.run());
    }
    drop(tx);
    // Dropping `tasks` on an early return aborts them, and with them their
    // VMs.
    while let Some(event) = rx.recv().await {
        on_event(event)?;
    }
    while tasks.join_next().await.is_some() {}
    on_event(RunEvent::RunFinished)
}

/// One kernel's share of the run.
struct Work {
    kernel: KernelEntry,
    plan: Arc<crate::plan::Shared>,
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<RunEvent>,
}

impl Work {
    async fn run(self) {
        let outcome = match self.boot().await {
            Ok((report, total)) => KernelOutcome::Completed {
                boot: report.boot,
                run: report.run,
                total,
            },
            Err(err) => KernelOutcome::Failed(err),
        };
        self.send(RunEvent::KernelFinished {
            kernel: self.kernel.label.clone(),
            outcome,
        });
    }

    fn send(&self, event: RunEvent) {
        let _ = self.tx.send(event);
    }

    fn outcome(&self, test: &str, outcome: crate::judge::Outcome) {
        self.send(RunEvent::Outcome {
            kernel: self.kernel.label.clone(),
            test: test.to_owned(),
            outcome,
        });
    }

    /// Returns the VM's report and the time from taking a slot to its end.
    async fn boot(&self) -> Result<(VmReport, Duration), KernelError> {
        let label = &self.kernel.label;
        let shared = &*self.plan;
        let suite = &shared.suite;
        let name = |test: usize| suite.tests[test].name.as_str();
        // Downloads overlap with other kernels' VMs; only VMs take a slot.
        let artifacts = shared.fetcher.fetch(&self.kernel).await?;
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let start = Instant::now();
        self.send(RunEvent::KernelStarted {
            kernel: label.clone(),
            arch: self.kernel.arch,
        });
        let mut plan = suite.plan_for(&self.kernel, shared.config.report_cases);
        plan.plan.exec = shared.exec.clone();
        plan.plan.probe_all = shared.probe_all;
        for feature in &shared.probes {
            if !plan.plan.probes.contains(feature) {
                plan.plan.probes.push(feature.clone());
            }
        }
        for (test, outcome) in &plan.skipped {
            self.outcome(name(*test), outcome.clone());
        }
        let check = KernelCheck::new(suite, &self.kernel, &plan);
        let mut libtest = shared.exec.as_ref().map(|_| Libtest::default());
        let mut exited = false;
        // Splats the agent reported, by headline: the console shows them
        // again.
        let mut splats: Vec<String> = Vec::new();
        let mut seen = |log: &[String]| {
            if let Some(splat) = kmatrix_protocol::splat::find(log) {
                splats.push(splat.headline);
            }
        };

        let dir = shared
            .fetcher
            .cache()
            .run_dir()
            .map_err(KernelError::RunDir)?;
        let initrd = dir.path().join("initrd.cpio");
        shared.parts.write(&artifacts, self.kernel.arch, &initrd)?;
        let snapshots = vm::snapshot::Store::in_cache(shared.fetcher.cache());
        let spec = BootSpec {
            machine: vm::Machine::for_kernel(self.kernel.arch, artifacts.virtio_mmio),
            kernel: &artifacts.boot_image,
            initrd: &initrd,
            dir: dir.path(),
            snapshots: shared.config.vm.snapshots.then_some(&snapshots),
        };
        let report = vm::run(
            &shared.config.vm,
            spec,
            vm::RunInput {
                files: shared.parts.files(),
                plan: &plan.plan,
            },
            |hello, start| {
                self.send(RunEvent::KernelBooted {
                    kernel: label.clone(),
                    hello: hello.clone(),
                    start,
                })
            },
            |message| {
                self.send(RunEvent::Notice {
                    kernel: label.clone(),
                    message,
                })
            },
            |frame| match frame {
                Frame::Program(result) => {
                    seen(&result.kernel_log);
                    for (test, outcome) in check.program(&result) {
                        self.outcome(name(test), outcome);
                    }
                    if let Some(test) = check.load_test(&result) {
                        if !result.stats.is_empty() {
                            self.send(RunEvent::Stats {
                                kernel: label.clone(),
                                test: name(test).to_owned(),
                                stats: result.stats,
                            });
                        }
                    }
                }
                Frame::Probed(probe) => {
                    check.probed(&probe);
                    self.send(RunEvent::Probed {
                        kernel: label.clone(),
                        probe,
                    });
                }
                Frame::Case(result) => {
                    seen(&result.kernel_log);
                    if let Some((test, outcome)) = check.case(&result) {
                        self.outcome(name(test), outcome);
                    }
                }
                Frame::Splat(lines) => {
                    seen(&lines);
                    let test = libtest.as_mut().and_then(|l| l.splat(&lines));
                    if test.is_none() {
                        self.send(RunEvent::Splat {
                            kernel: label.clone(),
                            source: SplatSource::Kmsg,
                            lines,
                        });
                    }
                }
                Frame::AgentError(message) => self.send(RunEvent::AgentError {
                    kernel: label.clone(),
                    message,
                }),
                Frame::Output { stream, data } => {
                    if let Some(libtest) = &mut libtest {
                        for (test, outcome) in libtest.feed(stream, &data) {
                            self.outcome(&test, outcome);
                        }
                    }
                    self.send(RunEvent::Output {
                        kernel: label.clone(),
                        stream,
                        data,
                    });
                }
                Frame::Exit(info) => {
                    exited = true;
                    if let Some(libtest) = &mut libtest {
                        for (test, outcome) in libtest.finish() {
                            self.outcome(&test, outcome);
                        }
                    }
                    self.send(RunEvent::Exited {
                        kernel: label.clone(),
                        info,
                    });
                }
                Frame::Hello(_) | Frame::Done | Frame::Prepared | Frame::Started { .. } => {}
            },
        )
        .await?;
        // The console is the second source: a splat the agent could not
        // report (it was printed as the kernel went down, or it stopped
        // the agent) is there.
        if let Some(splat) = console_splat(&dir.path().join("console.log")) {
            if !splats.contains(&splat.headline) {
                self.send(RunEvent::Splat {
                    kernel: label.clone(),
                    source: SplatSource::Console,
                    lines: splat.lines,
                });
            }
        }
        if shared.exec.is_some() && !exited {
            return Err(KernelError::NoExit);
        }
        // A runner that asked for tests by name (cargo-nextest: one
        // `--exact NAME` per call) must not see a run of none as a pass.
        let exact = shared
            .exec
            .as_ref()
            .and_then(|exec| crate::host_list::exact_names(exec.argv.get(1..).unwrap_or_default()));
        if let (Some(names), Some(0)) = (exact, libtest.as_ref().and_then(Libtest::running)) {
            return Err(KernelError::NoTestMatched(names.join(" or ")));
        }
        Ok((report, start.elapsed()))
    }
}

/// The first splat on a kernel's console (its last 1 MiB).
fn console_splat(path: &std::path::Path) -> Option<kmatrix_protocol::splat::Splat> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(1 << 20)))
        .ok()?;
    let mut text = Vec::new();
    file.read_to_end(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    kmatrix_protocol::splat::find(&lines)
}
