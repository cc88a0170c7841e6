//! One attempt at a VM, cold or restored, as the phases of [`Phase`]:
//! QEMU started with its arguments (and the saved state to load); the
//! hello read and the VM saved ([`Vm::boot_cold`]) or the restored one
//! resumed ([`Vm::restore`]), which gives an [`Up`] VM; then
//! [`Up::run`]: the input sent while the first frames are read,
//! [`Waiting`] for the agent's `Started` (with a silence limit for a
//! restored VM), every frame to `Done`. [`Attempt::run`] owns the QEMU
//! and stops it whatever happened.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kmatrix_protocol::{AgentTimings, Frame, Hello, VERSION};
use tokio::net::UnixStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::error::{Died, SaveError};
use super::snapshot::Slot;
use super::{input, queue};
use super::{
    migrate, qemu, BootSpec, Phase, RunInput, Start, VmConfig, VmError, VmFailure, VmReport,
    VmTimings,
};
use crate::channel::{self, InputSink, ResultStream};

/// Time QEMU has to load a saved state and resume it; then, until its
/// run starts, the time a restored VM may go without taking any of its
/// input or saying anything (however large the input).
pub(super) const RESTORE_TIMEOUT: Duration = Duration::from_secs(15);

/// How an attempt starts its VM.
pub(super) enum How<'a> {
    /// Boot the kernel, and save the VM once its agent is prepared if a
    /// slot is given.
    Cold { save: Option<&'a Slot> },
    /// Load a saved state, whose VM said `hello`.
    Restore { state: PathBuf, hello: Hello },
}

/// What one attempt at a VM is made of: how it boots, in which directory,
/// with which TSC figure, and what it is sent.
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    /// The VM settings.
    pub config: &'a VmConfig,
    /// What to boot.
    pub spec: &'a BootSpec<'a>,
    /// The attempt's own directory: sockets, console, QEMU's stderr.
    pub dir: &'a Path,
    /// The TSC figure on the kernel's command line.
    pub tsc_khz: Option<u64>,
    /// What the VM is sent.
    pub input: &'a RunInput<'a>,
}

/// What the caller hears from a VM: `on_up` the hello and how it came up,
/// once the agent started the run; `on_frame` every frame from then on
/// (and problems writing files before).
pub(super) struct Hooks<U, F> {
    /// Taken when the run starts.
    pub on_up: Option<U>,
    /// Called with each frame.
    pub on_frame: F,
}

impl Attempt<'_> {
    /// One VM from QEMU's start to its end. QEMU is stopped, and its end
    /// awaited, whatever happened; a failure names the phase it happened in.
    pub(super) async fn run(
        &self,
        how: How<'_>,
        hooks: &mut Hooks<impl FnOnce(&Hello, Start), impl FnMut(Frame)>,
    ) -> Result<VmReport, VmFailure> {
        let phase = match how {
            How::Cold { .. } => Phase::Booting,
            How::Restore { .. } => Phase::Restoring,
        };
        let begun = Instant::now();
        let (qemu, port) = match self.start_qemu(&how).await {
            Ok(started) => started,
            Err(kind) => return Err(self.explain(phase, kind, None)),
        };
        let timings = VmTimings {
            joined: qemu.joined - begun,
            qmp_ready: begun.elapsed(),
            ..VmTimings::default()
        };
        let mut vm = Vm {
            qemu,
            phase,
            begun,
            timings,
        };
        let result = vm.drive(self, how, port, hooks).await;
        let phase = vm.phase;
        let ended = vm.qemu.stop().await;
        let exited = begun.elapsed();
        result
            .map(|mut report| {
                report.timings.exited = exited;
                report
            })
            .map_err(|kind| self.explain(phase, kind, ended))
    }

    /// Starts QEMU for `how` (a restore loads its state from a socket
    /// QEMU inherits); gives it with the results port.
    async fn start_qemu(&self, how: &How<'_>) -> Result<(qemu::Qemu, UnixStream), VmError> {
        let hardware = self.config.hardware(self.spec.machine);
        let mut args = hardware.args(self.spec.kernel, self.spec.initrd, self.tsc_khz, self.dir);
        if let Some(port) = self.config.gdb_port {
            args.extend(super::argv::gdb_args(port));
        }
        let incoming = match how {
            How::Restore { state, .. } => {
                let fd = migrate::incoming(state)?;
                args.push("-incoming".into());
                args.push(format!("fd:{}", fd.as_raw_fd()).into());
                Some(fd)
            }
            How::Cold { .. } => None,
        };
        let paths = qemu::Paths {
            results: &self.dir.join("results.sock"),
            qmp: &self.dir.join("qmp.sock"),
            stderr: &self.dir.join("qemu.stderr"),
        };
        let arch = self.spec.machine.arch;
        qemu::start(self.config.qemu.get(arch), arch, &args, paths, incoming).await
    }

    /// `kind` in `phase`, explained from the attempt's files and QMP's
    /// shutdown cause (`ended`).
    fn explain(&self, phase: Phase, kind: VmError, ended: Option<String>) -> VmFailure {
        VmFailure::explain(
            phase,
            kind,
            ended,
            &self.dir.join("console.log"),
            &self.dir.join("qemu.stderr"),
        )
    }
}

/// An attempt's QEMU and the phase its VM is in.
struct Vm {
    qemu: qemu::Qemu,
    phase: Phase,
    /// When QEMU was started.
    begun: Instant,
    /// The instants reached so far.
    timings: VmTimings,
}

/// A VM whose agent is up and waits for its input: the port's two ends,
/// its hello, how it came up. Its QEMU stays the attempt's.
struct Up<'vm> {
    vm: &'vm mut Vm,
    stream: ResultStream,
    sink: InputSink,
    hello: Hello,
    start: Start,
    save_error: Option<SaveError>,
    /// A restored VM's silence limit until its run starts.
    silence: Option<Duration>,
}

impl Vm {
    /// Brings the VM up as `how` says, on `port`, and runs it to `Done`.
    async fn drive(
        &mut self,
        attempt: &Attempt<'_>,
        how: How<'_>,
        port: UnixStream,
        hooks: &mut Hooks<impl FnOnce(&Hello, Start), impl FnMut(Frame)>,
    ) -> Result<VmReport, VmError> {
        let (mut stream, sink) = channel::split(port);
        stream.end_on(self.qemu.shutdown_signal());
        let up = match how {
            How::Cold { save } => self.boot_cold(attempt, stream, sink, save).await?,
            How::Restore { hello, .. } => self.restore(attempt, stream, sink, hello).await?,
        };
        up.run(attempt, hooks).await
    }

    /// Waits for a booting kernel's agent to say hello, and saves the VM
    /// into `save` (a save that fails leaves it running, unsaved).
    async fn boot_cold<'vm>(
        &'vm mut self,
        attempt: &Attempt<'_>,
        mut stream: ResultStream,
        mut sink: InputSink,
        save: Option<&Slot>,
    ) -> Result<Up<'vm>, VmError> {
        let boot_timeout = attempt.config.boot_timeout;
        let hello = match timeout(boot_timeout, stream.next()).await {
            Err(_) => return Err(VmError::BootTimeout(boot_timeout)),
            Ok(Ok(Some(Frame::Hello(hello)))) => hello,
            Ok(Ok(Some(other))) => return Err(VmError::NoHello(Box::new(other))),
            Ok(Ok(None)) => return Err(VmError::Died(Died::BeforeStart)),
            Ok(Err(err)) => return Err(err.into()),
        };
        if hello.version != VERSION {
            return Err(VmError::Version {
                guest: hello.version,
            });
        }
        self.timings.hello = self.begun.elapsed();
        let (start, save_error) = match save {
            None => (Start::Cold, None),
            Some(slot) => {
                self.phase = Phase::Saving;
                let saved = migrate::save_state(&self.qemu, &mut stream, &mut sink, slot, &hello);
                match timeout(migrate::SAVE_LIMIT, saved).await {
                    Ok(Ok(())) => (Start::Saved, None),
                    Ok(Err(err)) => (Start::Cold, Some(err)),
                    Err(_) => (Start::Cold, Some(SaveError::Timeout(migrate::SAVE_LIMIT))),
                }
            }
        };
        if save.is_some() {
            self.timings.saved = Some(self.begun.elapsed());
        }
        Ok(Up {
            vm: self,
            stream,
            sink,
            hello,
            start,
            save_error,
            silence: None,
        })
    }

    /// Waits for QEMU to load the saved state and resumes its VM, whose
    /// agent said `hello` before it was saved.
    async fn restore<'vm>(
        &'vm mut self,
        attempt: &Attempt<'_>,
        stream: ResultStream,
        sink: InputSink,
        hello: Hello,
    ) -> Result<Up<'vm>, VmError> {
        let deadline = self.begun + RESTORE_TIMEOUT.min(attempt.config.boot_timeout);
        migrate::resume_restored(&self.qemu, deadline).await?;
        self.timings.hello = self.begun.elapsed();
        Ok(Up {
            vm: self,
            stream,
            sink,
            hello,
            start: Start::Restored,
            save_error: None,
            silence: Some(RESTORE_TIMEOUT),
        })
    }
}

impl Up<'_> {
    /// Sends the input, waits for the run to start (then tells `hooks`),
    /// and passes every frame to `Done`, which is acknowledged.
    async fn run(
        mut self,
        attempt: &Attempt<'_>,
        hooks: &mut Hooks<impl FnOnce(&Hello, Start), impl FnMut(Frame)>,
    ) -> Result<VmReport, VmError> {
        self.vm.phase = Phase::Up;
        let sent = self.sink.sent();
        let writer = input::send(self.sink, attempt.input);
        let run_timeout = attempt.config.run_timeout;
        let waiting = Waiting {
            expected: &self.hello.kernel_release,
            run_timeout,
            silence: self.silence,
        };
        let on_frame = &mut hooks.on_frame;
        waiting.started(&mut self.stream, &sent, on_frame).await?;
        self.vm.phase = Phase::Running;
        let boot = self.vm.begun.elapsed();
        self.vm.timings.started = boot;
        if let Some(on_up) = hooks.on_up.take() {
            on_up(&self.hello, self.start);
        }
        let hello_at = Instant::now();
        let (qemu, dir) = (&self.vm.qemu, attempt.dir);
        let mut agent = None;
        let stream = &mut self.stream;
        results(qemu, stream, dir, run_timeout, &mut agent, on_frame).await?;
        let run = hello_at.elapsed();
        let begun = self.vm.begun;
        let timings = &mut self.vm.timings;
        timings.done = begun.elapsed();
        timings.agent = agent;
        // The agent powers off once it has the acknowledgment.
        let (mut sink, sent_at) = writer.finish().await?;
        timings.input_sent = Some(sent_at - begun);
        sink.ack().await?;
        timings.acked = begun.elapsed();
        self.vm.phase = Phase::Done;
        Ok(VmReport {
            hello: self.hello,
            boot,
            run,
            start: self.start,
            save_error: self.save_error,
            console: attempt.dir.join("console.log"),
            timings: self.vm.timings.clone(),
        })
    }
}

/// Passes every frame up to `Done` to `on_frame`, but the agent's
/// timings, which go to `agent`. Of a guest that hangs
/// (the deadline passes) or shuts down first, the agent's queue is read
/// from `qemu` (which keeps a guest that shut down paused) and what the
/// host had not received passed on too.
async fn results(
    qemu: &qemu::Qemu,
    stream: &mut ResultStream,
    dir: &Path,
    run_timeout: Duration,
    agent: &mut Option<AgentTimings>,
    on_frame: &mut impl FnMut(Frame),
) -> Result<(), VmError> {
    let deadline = Instant::now() + run_timeout;
    let mut queue_at = None;
    let failure = loop {
        match timeout_at(deadline, stream.next()).await {
            Err(_) => break VmError::RunTimeout(run_timeout),
            Ok(Ok(Some(Frame::Queue { page_size, pages }))) => {
                queue_at = Some(queue::Location {
                    page_size,
                    pages,
                    origin: stream.consumed(),
                })
            }
            Ok(Ok(Some(Frame::Done))) => return Ok(()),
            Ok(Ok(Some(Frame::Timings(timings)))) => *agent = Some(timings),
            Ok(Ok(Some(frame))) => on_frame(frame),
            Ok(Ok(None)) => break VmError::Died(Died::BeforeLastResult),
            Ok(Err(err)) => return Err(err.into()),
        }
    };
    if let Some(location) = &queue_at {
        queue::deliver(qemu, stream, location, dir, on_frame).await;
    }
    Err(failure)
}

/// What the host waits for once the input is on its way: the agent's
/// `Started` from the kernel `expected`, within the run's time; with
/// `silence`, a restored VM also gives up once it went that long without
/// taking any input or sending a frame.
struct Waiting<'a> {
    expected: &'a str,
    run_timeout: Duration,
    silence: Option<Duration>,
}

impl Waiting<'_> {
    /// Reads frames until `Started`, handing earlier ones (problems writing
    /// files) to `on_frame`; `sent` counts the input written so far.
    async fn started(
        &self,
        stream: &mut ResultStream,
        sent: &AtomicU64,
        on_frame: &mut impl FnMut(Frame),
    ) -> Result<(), VmError> {
        let deadline = Instant::now() + self.run_timeout;
        let mut alive = (sent.load(Ordering::Relaxed), Instant::now());
        loop {
            let wake = match self.silence {
                Some(silence) => deadline.min(alive.1 + silence),
                None => deadline,
            };
            match timeout_at(wake, stream.next()).await {
                Err(_) => match self.silence {
                    Some(silence) if wake < deadline => {
                        let now = sent.load(Ordering::Relaxed);
                        if now == alive.0 {
                            return Err(VmError::Unresponsive(silence));
                        }
                        alive = (now, Instant::now());
                    }
                    _ => return Err(VmError::RunTimeout(self.run_timeout)),
                },
                Ok(Ok(Some(Frame::Started { kernel_release }))) => {
                    if kernel_release != self.expected {
                        return Err(VmError::WrongKernel {
                            expected: self.expected.to_owned(),
                            found: kernel_release,
                        });
                    }
                    return Ok(());
                }
                // Problems writing files come before the start.
                Ok(Ok(Some(frame @ Frame::AgentError(_)))) => {
                    on_frame(frame);
                    alive.1 = Instant::now();
                }
                Ok(Ok(Some(other))) => return Err(VmError::NoHello(Box::new(other))),
                Ok(Ok(None)) => return Err(VmError::Died(Died::BeforeStart)),
                Ok(Err(err)) => return Err(err.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A guest whose agent answers `Started` after `delay`.
    fn guest_answering(delay: Duration) -> channel::ResultStream {
        let (host, mut guest) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut bytes = Vec::new();
            let started = Frame::Started {
                kernel_release: "6.1.0".into(),
            };
            kmatrix_protocol::encode(&started, &mut bytes).unwrap();
            guest.write_all(&bytes).await.unwrap();
            // Held open until the test ends.
            std::future::pending::<()>().await;
        });
        channel::ResultStream::new(host)
    }

    fn restored() -> Waiting<'static> {
        Waiting {
            expected: "6.1.0",
            run_timeout: Duration::from_secs(10),
            silence: Some(Duration::from_millis(100)),
        }
    }

    #[tokio::test]
    async fn a_restored_vm_taking_a_large_input_slowly_is_waited_for() {
        // The input takes five times the silence to go in, steadily.
        let mut stream = guest_answering(Duration::from_millis(500));
        let sent = std::sync::Arc::new(AtomicU64::new(0));
        let writer = sent.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                writer.fetch_add(1 << 20, Ordering::Relaxed);
            }
        });
        restored()
            .started(&mut stream, &sent, &mut |_| {})
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_restored_vm_that_takes_nothing_is_given_up_and_its_snapshot_kept() {
        let mut stream = guest_answering(Duration::from_secs(60));
        let begun = Instant::now();
        let err = restored()
            .started(&mut stream, &AtomicU64::new(0), &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, VmError::Unresponsive(_)), "{err}");
        assert!(begun.elapsed() < Duration::from_secs(2));
        assert!(!super::super::phase::condemns(&err));
    }

    #[tokio::test]
    async fn a_cold_vm_has_the_run_timeout_and_no_silence_limit() {
        let mut stream = guest_answering(Duration::from_millis(300));
        let cold = Waiting {
            silence: None,
            ..restored()
        };
        cold.started(&mut stream, &AtomicU64::new(0), &mut |_| {})
            .await
            .unwrap();
        let mut stream = guest_answering(Duration::from_secs(60));
        let short = Waiting {
            run_timeout: Duration::from_millis(200),
            silence: None,
            ..restored()
        };
        let err = short
            .started(&mut stream, &AtomicU64::new(0), &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, VmError::RunTimeout(_)), "{err}");
    }
}
