//! Reading the agent's result queue ([`kmatrix_protocol::queue`]) out of a
//! guest that stopped answering: the VM is paused, what is still on its
//! way over the port is read, then each page of the queue is saved with
//! QMP's `pmemsave` and what the host had not received is decoded.

use std::path::Path;
use std::time::Duration;

use kmatrix_protocol::queue::{self, QueueError};
use kmatrix_protocol::Frame;
use tokio::time::timeout;

use super::qemu::Qmp;
use crate::channel::{ResultStream, StreamError};

/// How long the port may stay quiet before what is on its way is taken to
/// have arrived.
const QUIET: Duration = Duration::from_millis(200);

/// Time each QMP command has.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the agent said its queue is.
#[derive(Clone, Debug)]
pub(super) struct Location {
    pub page_size: u32,
    pub pages: Vec<u64>,
    /// The stream's offset at the end of the `Queue` frame, from which the
    /// queue counts.
    pub origin: u64,
}

/// Why the queue could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecoverError {
    /// A QMP command failed or did not answer.
    #[error("QMP `{command}` failed: {message}")]
    Qmp {
        command: &'static str,
        message: String,
    },
    /// The page QEMU saved could not be read.
    #[error("reading the saved page failed")]
    Io(#[from] std::io::Error),
    /// What was read is no queue, or does not follow what arrived.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The stream broke while it was drained, or its recovered tail is not
    /// frames.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Pauses the guest and returns the frames it had sent but the host has
/// not received: those still on their way over the port, then those in its
/// queue.
pub(super) async fn recover(
    qmp: &Qmp,
    stream: &mut ResultStream,
    location: &Location,
    dir: &Path,
) -> Result<Vec<Frame>, RecoverError> {
    execute(qmp, "stop", qapi::qmp::stop {}).await?;
    let mut frames = Vec::new();
    while let Ok(next) = timeout(QUIET, stream.next()).await {
        match next? {
            Some(frame) => frames.push(frame),
            None => break,
        }
    }
    let area = read_pages(qmp, location, dir).await?;
    let tail = queue::unreceived(&area, stream.received() - location.origin)?;
    frames.extend(stream.decode(tail)?);
    Ok(frames)
}

/// The queue's bytes, page by page out of guest memory.
async fn read_pages(qmp: &Qmp, location: &Location, dir: &Path) -> Result<Vec<u8>, RecoverError> {
    let file = dir.join("queue-page");
    let mut area = Vec::with_capacity(queue::SIZE);
    for &page in &location.pages {
        let command = qapi::qmp::pmemsave {
            val: page,
            size: u64::from(location.page_size),
            filename: file.to_string_lossy().into_owned(),
        };
        execute(qmp, "pmemsave", command).await?;
        area.extend(std::fs::read(&file)?);
    }
    let _ = std::fs::remove_file(&file);
    area.truncate(queue::SIZE);
    Ok(area)
}

async fn execute<C: qapi::qmp::QmpCommand>(
    qmp: &Qmp,
    name: &'static str,
    command: C,
) -> Result<C::Ok, RecoverError> {
    match timeout(COMMAND_TIMEOUT, qmp.execute(command)).await {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err(err)) => Err(RecoverError::Qmp {
            command: name,
            message: err.to_string(),
        }),
        Err(_) => Err(RecoverError::Qmp {
            command: name,
            message: format!("no answer within {COMMAND_TIMEOUT:?}"),
        }),
    }
}
