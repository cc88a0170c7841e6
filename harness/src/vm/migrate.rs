//! QEMU's migration to and from a file, over QMP: saving a VM whose agent
//! is prepared, and letting a VM loaded from a saved state run.
//!
//! QEMU never sees the file's path: kmatrix opens it (any bytes, commas
//! and all) and QEMU's migration runs over a socket pair (`fd:` URIs),
//! whose other end a thread copies from or to the file.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use kmatrix_protocol::{Frame, Hello, Input};
use tokio::time::{timeout, timeout_at, Instant};

use super::error::{RestoreError, SaveError};
use super::qemu::Qemu;
use super::snapshot::Slot;
use super::VmError;
use crate::channel::{InputSink, ResultStream};

/// The name QEMU knows the saving stream's descriptor by.
const STATE_FD: &str = "kmatrix-state";

/// Bytes moved between the state file and QEMU at a time.
const CHUNK: usize = 1 << 20;

/// Opens the saved state at `state` and streams it to the returned socket
/// end, which QEMU inherits and loads from (`-incoming fd:N`). The thread
/// ends at the file's end or when QEMU goes away.
pub(super) fn incoming(state: &Path) -> Result<OwnedFd, RestoreError> {
    let file = std::fs::File::open(state).map_err(RestoreError::Open)?;
    let (ours, theirs) = UnixStream::pair().map_err(RestoreError::Socket)?;
    std::thread::spawn(move || feed(file, &ours));
    Ok(theirs.into())
}

/// Sends everything `from` holds to `socket` (a QEMU that went away is an
/// error, not a SIGPIPE).
fn feed(mut from: impl Read, socket: &UnixStream) -> std::io::Result<()> {
    let mut chunk = vec![0; CHUNK];
    loop {
        let n = from.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        let mut bytes = &chunk[..n];
        while !bytes.is_empty() {
            let sent = nix::sys::socket::send(
                socket.as_raw_fd(),
                bytes,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            )?;
            bytes = &bytes[sent..];
        }
    }
}

/// Writes everything read from `socket` until its end to `to`.
fn drain(mut socket: UnixStream, to: std::fs::File) -> std::io::Result<u64> {
    let mut to = std::io::BufWriter::with_capacity(CHUNK, to);
    let copied = std::io::copy(&mut socket, &mut to)?;
    to.flush()?;
    Ok(copied)
}

/// Time the agent has to prepare, and QEMU to save the VM.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Time the whole save may take, QMP commands included.
pub(super) const SAVE_LIMIT: Duration = Duration::from_secs(300);

/// Waits for QEMU to load a saved state, then lets the VM run (it was
/// saved paused, and a loaded VM stays as it was saved).
pub(super) async fn resume_restored(qemu: &Qemu, deadline: Instant) -> Result<(), VmError> {
    use qapi::qmp::RunState;
    loop {
        let status = timeout_at(deadline, qemu.execute(qapi::qmp::query_status {}))
            .await
            .map_err(|_| RestoreError::LoadTimeout)??;
        match status.status {
            RunState::inmigrate => {
                if Instant::now() > deadline {
                    return Err(RestoreError::LoadTimeout.into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            RunState::running => return Ok(()),
            RunState::paused | RunState::postmigrate | RunState::prelaunch => {
                timeout_at(deadline, qemu.execute(qapi::qmp::cont {}))
                    .await
                    .map_err(|_| RestoreError::ResumeTimeout)??;
                return Ok(());
            }
            other => return Err(RestoreError::State(other).into()),
        }
    }
}

/// Asks the agent to prepare, then pauses the VM, saves it to `slot` and
/// lets it go on. Returns why it could not be saved.
pub(super) async fn save_state(
    qemu: &Qemu,
    stream: &mut ResultStream,
    sink: &mut InputSink,
    slot: &Slot,
    hello: &Hello,
) -> Result<(), SaveError> {
    sink.send(&Input::Prepare).await.map_err(SaveError::Ask)?;
    match timeout(SAVE_TIMEOUT, stream.next()).await {
        Ok(Ok(Some(Frame::Prepared))) => {}
        Ok(Ok(Some(other))) => return Err(SaveError::Answered(Box::new(other))),
        Ok(Ok(None)) => return Err(SaveError::Closed),
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => return Err(SaveError::NotPrepared(SAVE_TIMEOUT)),
    }
    let pending = slot.pending().map_err(SaveError::Place)?;
    let file = std::fs::File::create(pending.state()).map_err(|source| SaveError::Create {
        path: pending.state(),
        source,
    })?;
    qemu.execute(qapi::qmp::stop {}).await?;
    let saved = async {
        migrate_to(qemu, file, &pending.state()).await?;
        slot.commit(pending, hello).map_err(SaveError::Commit)
    }
    .await;
    // The VM goes on whether or not it was saved.
    let resumed = qemu.execute(qapi::qmp::cont {}).await;
    saved.and(resumed.map(|_| ()).map_err(SaveError::from))
}

/// Migrates the stopped VM of `qemu` into `file`, at `path`, within
/// [`SAVE_TIMEOUT`].
async fn migrate_to(qemu: &Qemu, file: std::fs::File, path: &Path) -> Result<(), SaveError> {
    let (ours, theirs) = UnixStream::pair().map_err(SaveError::Socket)?;
    qemu.execute(qapi::qmp::migrate_set_parameters(
        qapi::qmp::MigrateSetParameters {
            max_bandwidth: Some(u64::from(u32::MAX) << 8),
            ..Default::default()
        },
    ))
    .await?;
    qemu.pass_fd(STATE_FD, theirs.as_fd()).await?;
    // QEMU's copy is the only one left: the stream ends when it is done.
    drop(theirs);
    let drained = tokio::task::spawn_blocking(move || drain(ours, file));
    qemu.execute(qapi::qmp::migrate {
        uri: Some(format!("fd:{STATE_FD}")),
        channels: None,
        detach: None,
        resume: None,
    })
    .await?;
    let deadline = Instant::now() + SAVE_TIMEOUT;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let info = qemu.execute(qapi::qmp::query_migrate {}).await?;
        match info.status {
            Some(qapi::qmp::MigrationStatus::completed) => break,
            Some(qapi::qmp::MigrationStatus::failed | qapi::qmp::MigrationStatus::cancelled) => {
                return Err(SaveError::Migration(info.error_desc.unwrap_or_default()))
            }
            _ if Instant::now() > deadline => {
                return Err(SaveError::MigrationTimeout(SAVE_TIMEOUT))
            }
            _ => {}
        }
    }
    timeout_at(deadline, drained)
        .await
        .map_err(|_| SaveError::WriteTimeout(SAVE_TIMEOUT))?
        .map_err(SaveError::Writer)?
        .map_err(|source| SaveError::Write {
            path: path.to_owned(),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_state_at_any_path_crosses_byte_for_byte() {
        let root = tempfile::tempdir().unwrap();
        let dir = root
            .path()
            .join(std::ffi::OsStr::from_bytes(b"c\xffche, 'x'"));
        std::fs::create_dir(&dir).unwrap();
        let state: Vec<u8> = (0..3 * CHUNK + 7).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.join("state"), &state).unwrap();

        // Restoring: QEMU's end of the socket reads the file.
        let mut loaded = Vec::new();
        UnixStream::from(incoming(&dir.join("state")).unwrap())
            .read_to_end(&mut loaded)
            .unwrap();
        assert!(loaded == state, "{} bytes of {}", loaded.len(), state.len());

        // Saving: what QEMU writes lands in the file.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let saved = dir.join("saved");
        let file = std::fs::File::create(&saved).unwrap();
        let writer = std::thread::spawn(move || theirs.write_all(&loaded));
        assert_eq!(drain(ours, file).unwrap(), state.len() as u64);
        writer.join().unwrap().unwrap();
        assert!(std::fs::read(&saved).unwrap() == state);
    }

    #[test]
    fn feeding_a_qemu_that_went_away_is_an_error() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        assert!(feed(&[0u8; 4096][..], &ours).is_err());
    }
}
