//! One attempt at a VM, cold or restored: QEMU started with its
//! arguments (and the saved state to load), the hello read and the VM
//! saved or the restored one resumed, the input sent while the first
//! frames are read, [`Waiting`] for the agent's `Started` (with a silence
//! limit for a restored VM), then every frame to `Done`; QEMU is stopped
//! whatever happened.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kmatrix_protocol::{Frame, Hello, VERSION};
use tokio::time::{timeout, timeout_at, Instant};

use super::snapshot::Slot;
use super::{migrate, qemu, BootSpec, RunInput, Start, VmConfig, VmError, VmFailure, VmReport};
use crate::channel;

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

/// QEMU's arguments for `spec`, with the run's files in `dir`.
fn qemu_args(
    config: &VmConfig,
    spec: &BootSpec<'_>,
    dir: &Path,
    tsc_khz: Option<u64>,
) -> Vec<std::ffi::OsString> {
    config
        .hardware(spec.machine)
        .args(spec.kernel, spec.initrd, tsc_khz, dir)
}

/// One VM from start to end, in `dir`; `started` is set once the agent has
/// started the run (a failure before that may be retried cold).
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    config: &VmConfig,
    spec: &BootSpec<'_>,
    dir: &Path,
    tsc_khz: Option<u64>,
    how: How<'_>,
    input: &RunInput<'_>,
    started: &mut bool,
    on_up: &mut Option<impl FnOnce(&Hello, Start)>,
    on_frame: &mut impl FnMut(Frame),
) -> Result<VmReport, VmFailure> {
    let console = dir.join("console.log");
    let mut vm = None;
    let result = drive(
        config, spec, dir, tsc_khz, how, input, &mut vm, started, on_up, on_frame,
    )
    .await;
    let ended = match vm.take() {
        Some(vm) => vm.stop().await,
        None => None,
    };
    result.map_err(|kind| VmFailure {
        started: *started,
        ..VmFailure::explain(kind, ended, &console, &dir.join("qemu.stderr"))
    })
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    config: &VmConfig,
    spec: &BootSpec<'_>,
    dir: &Path,
    tsc_khz: Option<u64>,
    how: How<'_>,
    input: &RunInput<'_>,
    vm: &mut Option<qemu::Qemu>,
    started: &mut bool,
    on_up: &mut Option<impl FnOnce(&Hello, Start)>,
    on_frame: &mut impl FnMut(Frame),
) -> Result<VmReport, VmError> {
    let begun = Instant::now();
    let mut args = qemu_args(config, spec, dir, tsc_khz);
    let incoming = match &how {
        How::Restore { state, .. } => {
            let fd = migrate::incoming(state)?;
            args.push("-incoming".into());
            args.push(format!("fd:{}", fd.as_raw_fd()).into());
            Some(fd)
        }
        How::Cold { .. } => None,
    };
    let paths = qemu::Paths {
        results: &dir.join("results.sock"),
        qmp: &dir.join("qmp.sock"),
        stderr: &dir.join("qemu.stderr"),
    };
    let arch = spec.machine.arch;
    let results_socket =
        qemu::start(config.qemu.get(arch), arch, &args, paths, incoming, vm).await?;
    let qemu = vm.as_ref().expect("started above");
    let (mut stream, mut sink) = channel::split(results_socket);
    let (hello, mut start, mut save_error, silence) = match how {
        How::Cold { save } => {
            let hello = match timeout(config.boot_timeout, stream.next()).await {
                Err(_) => return Err(VmError::BootTimeout(config.boot_timeout)),
                Ok(Ok(Some(Frame::Hello(hello)))) => hello,
                Ok(Ok(Some(other))) => return Err(VmError::NoHello(format!("{other:?}"))),
                Ok(Ok(None)) => return Err(VmError::Died("before the agent started".into())),
                Ok(Err(err)) => return Err(err.into()),
            };
            if hello.version != VERSION {
                return Err(VmError::Version {
                    guest: hello.version,
                });
            }
            let mut start = Start::Cold;
            let mut save_error = None;
            if let Some(slot) = save {
                let saved = migrate::save_state(qemu, &mut stream, &mut sink, slot, &hello);
                match timeout(migrate::SAVE_LIMIT, saved).await {
                    Ok(Ok(())) => start = Start::Saved,
                    Ok(Err(err)) => save_error = Some(err),
                    Err(_) => {
                        save_error = Some(format!("not done within {:?}", migrate::SAVE_LIMIT))
                    }
                }
            }
            (hello, start, save_error, None)
        }
        How::Restore { hello, .. } => {
            let deadline = begun + RESTORE_TIMEOUT.min(config.boot_timeout);
            let qmp = qemu.qmp.as_ref().expect("connected above");
            migrate::resume_restored(qmp, deadline).await?;
            (hello, Start::Restored, None, Some(RESTORE_TIMEOUT))
        }
    };

    // The input is written while the first frames are read, so that
    // neither side waits for the other.
    let files = input.files.clone();
    let begin = kmatrix_protocol::Start {
        plan: input.plan.clone(),
        unix_nanos: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        entropy: host_entropy(),
    };
    let sent = sink.sent();
    let writer = tokio::spawn(async move {
        sink.start(&files, begin).await?;
        Ok::<_, std::io::Error>(sink)
    });
    let mut writer = AbortOnDrop(Some(writer));

    let waiting = Waiting {
        expected: &hello.kernel_release,
        run_timeout: config.run_timeout,
        silence,
    };
    waiting.started(&mut stream, &sent, on_frame).await?;
    *started = true;
    let boot = begun.elapsed();
    if let Some(on_up) = on_up.take() {
        on_up(&hello, start);
    }
    let hello_at = Instant::now();

    let deadline = Instant::now() + config.run_timeout;
    let mut queue = None;
    loop {
        match timeout_at(deadline, stream.next()).await {
            Err(_) => {
                if let (Some(location), Some(qmp)) = (&queue, &qemu.qmp) {
                    match super::queue::recover(qmp, &mut stream, location, dir).await {
                        Ok(frames) => frames
                            .into_iter()
                            .filter(|frame| !matches!(frame, Frame::Done | Frame::Queue { .. }))
                            .for_each(&mut *on_frame),
                        Err(err) => on_frame(Frame::AgentError(format!(
                            "the results the hung guest had queued could not be read: {}",
                            crate::error_chain::error_chain(&err)
                        ))),
                    }
                }
                return Err(VmError::RunTimeout(config.run_timeout));
            }
            Ok(Ok(Some(Frame::Queue { page_size, pages }))) => {
                queue = Some(super::queue::Location {
                    page_size,
                    pages,
                    origin: stream.consumed(),
                })
            }
            Ok(Ok(Some(Frame::Done))) => break,
            Ok(Ok(Some(frame))) => on_frame(frame),
            Ok(Ok(None)) => return Err(VmError::Died("before its last result".into())),
            Ok(Err(err)) => return Err(err.into()),
        }
    }
    // The agent powers off once it has the acknowledgment.
    let run = hello_at.elapsed();
    let handle = writer.0.take().expect("taken once");
    let mut sink = handle
        .await
        .map_err(|e| VmError::Died(format!("sending the input failed: {e}")))??;
    sink.ack().await?;
    start = match (start, &save_error) {
        (Start::Saved, Some(_)) => Start::Cold,
        (start, _) => start,
    };
    Ok(VmReport {
        hello,
        boot,
        run,
        start,
        save_error: save_error.take(),
        console: dir.join("console.log"),
    })
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
        stream: &mut channel::ResultStream,
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
                Ok(Ok(Some(other))) => return Err(VmError::NoHello(format!("{other:?}"))),
                Ok(Ok(None)) => return Err(VmError::Died("before the agent started".into())),
                Ok(Err(err)) => return Err(err.into()),
            }
        }
    }
}

/// Aborts the input writer if the VM fails first.
struct AbortOnDrop(Option<tokio::task::JoinHandle<std::io::Result<channel::InputSink>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Fresh randomness from the host for the guest's pool.
fn host_entropy() -> Vec<u8> {
    let mut bytes = vec![0; 64];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        Ok(()) => bytes,
        Err(_) => Vec::new(),
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
        assert!(!super::super::condemns(&err));
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
