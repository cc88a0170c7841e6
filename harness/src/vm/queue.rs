//! Reading the agent's result queue ([`kmatrix_protocol::queue`]) out of a
//! guest that stopped answering: the VM is paused, what is still on its
//! way over the port is read, then each page of the queue is saved with
//! QMP's `pmemsave` and what the host had not received is decoded.

use std::path::Path;
use std::time::Duration;

use kmatrix_protocol::queue::{self, QueueError};
use kmatrix_protocol::Frame;
use tokio::time::timeout;

use super::error::QmpError;
use super::qemu::Qemu;
use crate::channel::{ResultStream, StreamError, QUIET};

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
    /// A QMP command failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// A QMP command did not answer.
    #[error("QMP {command} did not answer within {COMMAND_TIMEOUT:?}")]
    NoAnswer { command: &'static str },
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
    qemu: &Qemu,
    stream: &mut ResultStream,
    location: &Location,
    dir: &Path,
) -> Result<Vec<Frame>, RecoverError> {
    execute(qemu, qapi::qmp::stop {}).await?;
    let mut frames = Vec::new();
    while let Ok(next) = timeout(QUIET, stream.next()).await {
        match next? {
            Some(frame) => frames.push(frame),
            None => break,
        }
    }
    let area = read_pages(qemu, location, dir).await?;
    let tail = queue::unreceived(&area, stream.received() - location.origin)?;
    frames.extend(stream.decode(tail)?);
    Ok(frames)
}

/// Recovers what a hung guest had sent and passes it to `on_frame`; what
/// could not be read is said in a frame of its own.
pub(super) async fn deliver(
    qemu: &Qemu,
    stream: &mut ResultStream,
    location: &Location,
    dir: &Path,
    on_frame: &mut impl FnMut(Frame),
) {
    match recover(qemu, stream, location, dir).await {
        Ok(frames) => frames
            .into_iter()
            .filter(|frame| !matches!(frame, Frame::Done | Frame::Queue { .. }))
            .for_each(on_frame),
        Err(err) => on_frame(Frame::AgentError(format!(
            "kmatrix could not read the results the hung guest had queued: {}",
            crate::error_chain::error_chain(&err)
        ))),
    }
}

/// The queue's bytes, page by page out of guest memory.
async fn read_pages(qemu: &Qemu, location: &Location, dir: &Path) -> Result<Vec<u8>, RecoverError> {
    let file = dir.join("queue-page");
    let mut area = Vec::with_capacity(queue::SIZE);
    for &page in &location.pages {
        let command = qapi::qmp::pmemsave {
            val: page,
            size: u64::from(location.page_size),
            filename: file.to_string_lossy().into_owned(),
        };
        execute(qemu, command).await?;
        area.extend(std::fs::read(&file)?);
    }
    let _ = std::fs::remove_file(&file);
    area.truncate(queue::SIZE);
    Ok(area)
}

async fn execute<C: qapi::qmp::QmpCommand>(qemu: &Qemu, command: C) -> Result<C::Ok, RecoverError> {
    match timeout(COMMAND_TIMEOUT, qemu.execute(command)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(RecoverError::NoAnswer { command: C::NAME }),
    }
}
