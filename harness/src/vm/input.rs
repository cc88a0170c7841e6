//! The input writer: the run's files and its start written while the first
//! frames are read, so that neither side waits for the other, then, for a
//! run with [`RunInput::later`], every message the front end sends until
//! the run ends. It moves messages, never knowing what they mean.

use kmatrix_protocol::Input;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

use super::error::Died;
use super::{RunInput, VmError};
use crate::channel::InputSink;

/// Messages a front end sends a running guest after its start, in order
/// (`kmatrix shell`'s keystrokes). Shared so that whichever attempt starts
/// the run (a restore, or the cold boot after it) takes them.
pub type LaterInput = std::sync::Arc<Mutex<mpsc::UnboundedReceiver<Input>>>;

/// The writer of one attempt: aborted if dropped before [`Writer::finish`]
/// (the VM failed first).
pub(super) struct Writer {
    task: Option<tokio::task::JoinHandle<std::io::Result<(InputSink, Instant)>>>,
    stop: Option<oneshot::Sender<()>>,
}

/// Starts writing `input` to `sink`.
pub(super) fn send(mut sink: InputSink, input: &RunInput<'_>) -> Writer {
    let files = input.files.clone();
    let later = input.later.clone();
    let begin = kmatrix_protocol::Start {
        plan: input.plan.clone(),
        unix_nanos: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        entropy: host_entropy(),
    };
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        sink.start(&files, begin).await?;
        let sent = Instant::now();
        if let Some(later) = later {
            let mut later = later.lock().await;
            loop {
                tokio::select! {
                    message = later.recv() => match message {
                        Some(message) => sink.send(&message).await?,
                        None => break,
                    },
                    _ = &mut stopped => break,
                }
            }
        }
        Ok((sink, sent))
    });
    Writer {
        task: Some(task),
        stop: Some(stop),
    }
}

impl Writer {
    /// Stops forwarding later input once what was written is through, and
    /// gives the sink back (for the acknowledgment) with when the run's
    /// input was all written.
    pub(super) async fn finish(mut self) -> Result<(InputSink, Instant), VmError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("finished once");
        Ok(task.await.map_err(|e| VmError::Died(Died::Input(e)))??)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Fresh randomness from the host for the guest's pool.
fn host_entropy() -> Vec<u8> {
    let mut bytes = vec![0; kmatrix_protocol::input::ENTROPY_LEN];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        Ok(()) => bytes,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use kmatrix_protocol::input::read_input;
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn later_input_follows_the_start_until_the_writer_finishes() {
        let (host, mut guest) = tokio::net::UnixStream::pair().unwrap();
        let (_, sink) = crate::channel::split(host);
        let (keys, later) = mpsc::unbounded_channel();
        let plan = kmatrix_protocol::Plan::default();
        let input = RunInput {
            files: Default::default(),
            plan: &plan,
            later: Some(std::sync::Arc::new(Mutex::new(later))),
        };
        let writer = send(sink, &input);
        keys.send(Input::Stdin(b"ls\r".to_vec())).unwrap();
        keys.send(Input::Hangup).unwrap();
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        let messages = loop {
            let n = guest.read(&mut buf).await.unwrap();
            assert!(n > 0);
            bytes.extend_from_slice(&buf[..n]);
            let mut reader = &bytes[..];
            let messages: Vec<Input> =
                std::iter::from_fn(|| read_input(&mut reader).ok()).collect();
            if messages.len() == 3 {
                break messages;
            }
        };
        assert!(matches!(messages[0], Input::Start(_)), "{messages:?}");
        assert_eq!(
            messages[1..],
            [Input::Stdin(b"ls\r".to_vec()), Input::Hangup]
        );
        // The sender stays open: finishing stops the forwarding anyway.
        let (mut sink, _) = writer.finish().await.unwrap();
        sink.ack().await.unwrap();
        let n = guest.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], [kmatrix_protocol::ACK]);
        drop(keys);
    }
}
