//! The run: every kernel of a [`RunPlan`] fetched, imaged and booted, at
//! most `jobs` at a time. Each frame goes to the kernel's
//! [`KernelJudge`] the moment it arrives, and what it means is sent on as
//! [`RunEvent`]s: the runner moves bytes and keeps time, the judge decides.
//! It knows nothing of output formats; the [`crate::report::Reporter`]
//! folds the events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use crate::event::{KernelError, KernelOutcome, KernelTimings, RunEvent};
use crate::judge::kernel::KernelJudge;
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
        tests: plan.suite.reported().map(|t| t.name.clone()).collect(),
        shard: plan.shard.map(|s| s.to_string()),
        reproduce: plan.reproduce.clone(),
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
            Ok((report, total, timings)) => KernelOutcome::Completed {
                boot: report.boot,
                run: report.run,
                total,
                timings: Box::new(timings),
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

    fn send_all(&self, events: impl IntoIterator<Item = RunEvent>) {
        for event in events {
            self.send(event);
        }
    }

    /// Returns the VM's report, the time from taking a slot to its end,
    /// and where the time went.
    async fn boot(&self) -> Result<(VmReport, Duration, KernelTimings), KernelError> {
        let label = &self.kernel.label;
        let shared = &*self.plan;
        let suite = &shared.suite;
        let begun = Instant::now();
        // Downloads overlap with other kernels' VMs; only VMs take a slot.
        let artifacts = shared.fetcher.fetch(&self.kernel).await?;
        let fetch = begun.elapsed();
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
        plan.plan.verifier_stats = shared.config.verifier_stats;
        plan.plan.probe_all = shared.probe_all;
        for feature in &shared.probes {
            if !plan.plan.probes.contains(feature) {
                plan.plan.probes.push(feature.clone());
            }
        }
        let mut judge = KernelJudge::new(suite, &self.kernel, &plan, shared.exec.as_ref());
        self.send_all(judge.skipped());

        let dir = shared
            .fetcher
            .cache()
            .run_dir(vm::SOCKET_ROOM)
            .map_err(KernelError::RunDir)?;
        let initrd = dir.path().join("initrd.cpio");
        let imaging = Instant::now();
        shared.parts.write(&artifacts, self.kernel.arch, &initrd)?;
        let initramfs = imaging.elapsed();
        let snapshots = vm::snapshot::Store::in_cache(shared.fetcher.cache());
        let spec = BootSpec {
            machine: vm::Machine::for_kernel(self.kernel.arch, artifacts.virtio_mmio),
            kernel: &artifacts.boot_image,
            initrd: &initrd,
            dir: dir.path(),
            snapshots: shared.config.vm.snapshots.then_some(&snapshots),
        };
        let vm_begun = begun.elapsed();
        let report = vm::run(
            &shared.config.vm,
            spec,
            vm::RunInput {
                files: shared.parts.files(),
                plan: &plan.plan,
                later: shared.config.later_input.clone(),
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
            |frame| self.send_all(judge.frame(frame)),
        )
        .await?;
        if let Some(console) = console_tail(&report.console) {
            self.send_all(judge.console(&console));
        }
        judge.finish()?;
        let timings = KernelTimings {
            fetch,
            initramfs,
            vm_begun,
            vm: report.timings.clone(),
            end: begun.elapsed(),
        };
        Ok((report, start.elapsed(), timings))
    }
}

/// The end of a kernel's console (its last 1 MiB), when it can be read.
fn console_tail(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(1 << 20)))
        .ok()?;
    let mut text = Vec::new();
    file.read_to_end(&mut text).ok()?;
    Some(String::from_utf8_lossy(&text).into_owned())
}
