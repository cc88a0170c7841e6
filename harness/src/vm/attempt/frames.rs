//! Reading a VM's frames: [`Waiting`] for the agent's `Started` (with a
//! restored VM's silence limit), then [`results`], every frame to `Done`
//! (and, of a guest that hung or shut down first, what its queue held).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kmatrix_protocol::{AgentTimings, Frame};
use tokio::time::{timeout_at, Instant};

use crate::channel::ResultStream;
use crate::vm::error::Died;
use crate::vm::{qemu, queue, VmError};

/// Passes every frame up to `Done` to `on_frame`, but the agent's
/// timings, which go to `agent`. Of a guest that hangs
/// (the deadline passes) or shuts down first, the agent's queue is read
/// from `qemu` (which keeps a guest that shut down paused) and what the
/// host had not received passed on too.
pub(super) async fn results(
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
pub(super) struct Waiting<'a> {
    pub expected: &'a str,
    pub run_timeout: Duration,
    pub silence: Option<Duration>,
}

impl Waiting<'_> {
    /// Reads frames until `Started`, handing earlier ones (problems writing
    /// files) to `on_frame`; `sent` counts the input written so far.
    pub(super) async fn started(
        &self,
        stream: &mut ResultStream,
        sent: &AtomicU64,
        on_frame: &mut impl FnMut(Frame),
    ) -> Result<(), VmError> {
        let deadline = Instant::now() + self.run_timeout;
        let mut alive = (sent.load(Ordering::Relaxed), Instant::now());
        let mut last_error = None;
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
                // Problems writing files come before the start, and why
                // the agent could not read the input.
                Ok(Ok(Some(Frame::AgentError(error)))) => {
                    last_error = Some(error.clone());
                    on_frame(Frame::AgentError(error));
                    alive.1 = Instant::now();
                }
                // An agent that cannot take the input ends the run there.
                Ok(Ok(Some(Frame::Timings(_) | Frame::Done))) => {
                    return Err(VmError::NotStarted(last_error))
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
    fn guest_answering(delay: Duration) -> ResultStream {
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
        ResultStream::new(host)
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
        assert!(!crate::vm::phase::condemns(&err));
    }

    #[tokio::test]
    async fn an_agent_that_cannot_take_the_input_ends_the_wait_with_its_error() {
        let (host, mut guest) = tokio::net::UnixStream::pair().unwrap();
        let mut bytes = Vec::new();
        let error = "reading the host's input: input message of 18600100 bytes exceeds 16777216";
        for frame in [
            Frame::AgentError(error.into()),
            Frame::Timings(Default::default()),
            Frame::Done,
        ] {
            kmatrix_protocol::encode(&frame, &mut bytes).unwrap();
        }
        guest.write_all(&bytes).await.unwrap();
        let mut stream = ResultStream::new(host);
        let mut heard = Vec::new();
        let err = restored()
            .started(&mut stream, &AtomicU64::new(0), &mut |f| heard.push(f))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, VmError::NotStarted(Some(e)) if e == error),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("the guest agent ended without starting the run: {error}")
        );
        assert_eq!(heard, [Frame::AgentError(error.into())]);
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
