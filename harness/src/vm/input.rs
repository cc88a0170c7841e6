//! The input writer: the run's files and its start written while the first
//! frames are read, so that neither side waits for the other, then, for a
//! run with [`RunInput::later`], every message the front end sends until
//! the run ends. It moves messages, never knowing what they mean.

use kmatrix_protocol::Input;
use tokio::sync::{mpsc, oneshot, Mutex};

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
    task: Option<tokio::task::JoinHandle<std::io::Result<InputSink>>>,
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
        Ok(sink)
    });
    Writer {
        task: Some(task),
        stop: Some(stop),
    }
}

impl Writer {
    /// Stops forwarding later input once what was written is through, and
    /// gives the sink back (for the acknowledgment).
    pub(super) async fn finish(mut self) -> Result<InputSink, VmError> {
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
    let mut bytes = vec![0; 64];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        Ok(()) => bytes,
        Err(_) => Vec::new(),
    }
}
