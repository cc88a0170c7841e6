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

use super::qemu::{Qemu, Qmp};
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
pub(super) fn incoming(state: &Path) -> std::io::Result<OwnedFd> {
    let file = std::fs::File::open(state)?;
    let (ours, theirs) = UnixStream::pair()?;
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
pub(super) async fn resume_restored(qmp: &Qmp, deadline: Instant) -> Result<(), VmError> {
    use qapi::qmp::RunState;
    loop {
        let status = timeout_at(deadline, qmp.execute(qapi::qmp::query_status {}))
            .await
            .map_err(|_| VmError::Restore("QEMU did not load the saved state in time".into()))?
            .map_err(|e| VmError::Qmp(e.to_string()))?;
        match status.status {
            RunState::inmigrate => {
                if Instant::now() > deadline {
                    return Err(VmError::Restore(
                        "QEMU did not load the saved state in time".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            RunState::running => return Ok(()),
            RunState::paused | RunState::postmigrate | RunState::prelaunch => {
                timeout_at(deadline, qmp.execute(qapi::qmp::cont {}))
                    .await
                    .map_err(|_| VmError::Restore("QEMU did not resume the VM in time".into()))?
                    .map_err(|e| VmError::Qmp(e.to_string()))?;
                return Ok(());
            }
            other => {
                return Err(VmError::Restore(format!(
                    "QEMU is in state {other:?} after loading the saved state"
                )))
            }
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
) -> Result<(), String> {
    sink.send(&Input::Prepare)
        .await
        .map_err(|e| format!("asking the agent to prepare: {e}"))?;
    match timeout(SAVE_TIMEOUT, stream.next()).await {
        Ok(Ok(Some(Frame::Prepared))) => {}
        Ok(Ok(Some(other))) => return Err(format!("the agent answered {other:?}")),
        Ok(Ok(None)) => return Err("the guest closed its port".into()),
        Ok(Err(err)) => return Err(crate::error_chain::error_chain(&err)),
        Err(_) => return Err(format!("the agent did not prepare within {SAVE_TIMEOUT:?}")),
    }
    let pending = slot
        .pending()
        .map_err(|e| format!("a place for the state: {e}"))?;
    let file = std::fs::File::create(pending.state())
        .map_err(|e| format!("creating {}: {e}", pending.state().display()))?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("a socket for the state: {e}"))?;
    let qmp = qemu.qmp.as_ref().ok_or("QMP is not connected")?;
    let qmp_error = |what: &str| {
        let what = what.to_owned();
        move |e: qapi::ExecuteError| format!("QMP {what}: {e}")
    };
    qmp.execute(qapi::qmp::stop {})
        .await
        .map_err(qmp_error("stop"))?;
    let saved = async {
        qmp.execute(qapi::qmp::migrate_set_parameters(
            qapi::qmp::MigrateSetParameters {
                max_bandwidth: Some(u64::from(u32::MAX) << 8),
                ..Default::default()
            },
        ))
        .await
        .map_err(qmp_error("migrate-set-parameters"))?;
        qemu.pass_fd(STATE_FD, theirs.as_fd())
            .await
            .map_err(|e| e.to_string())?;
        // QEMU's copy is the only one left: the stream ends when it is done.
        drop(theirs);
        let drained = tokio::task::spawn_blocking(move || drain(ours, file));
        qmp.execute(qapi::qmp::migrate {
            uri: Some(format!("fd:{STATE_FD}")),
            channels: None,
            detach: None,
            resume: None,
        })
        .await
        .map_err(qmp_error("migrate"))?;
        let deadline = Instant::now() + SAVE_TIMEOUT;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let info = qmp
                .execute(qapi::qmp::query_migrate {})
                .await
                .map_err(qmp_error("query-migrate"))?;
            match info.status {
                Some(qapi::qmp::MigrationStatus::completed) => break,
                Some(
                    qapi::qmp::MigrationStatus::failed | qapi::qmp::MigrationStatus::cancelled,
                ) => {
                    return Err(format!(
                        "migration failed: {}",
                        info.error_desc.unwrap_or_default()
                    ))
                }
                _ if Instant::now() > deadline => {
                    return Err(format!("migration did not finish within {SAVE_TIMEOUT:?}"))
                }
                _ => {}
            }
        }
        timeout_at(deadline, drained)
            .await
            .map_err(|_| format!("the state was not written within {SAVE_TIMEOUT:?}"))?
            .map_err(|e| format!("writing the state: {e}"))?
            .map_err(|e| format!("writing {}: {e}", pending.state().display()))?;
        slot.commit(pending, hello)
            .map_err(|e| format!("storing the state: {e}"))
    }
    .await;
    // The VM goes on whether or not it was saved.
    let resumed = qmp
        .execute(qapi::qmp::cont {})
        .await
        .map_err(qmp_error("cont"));
    saved.and(resumed.map(|_| ()))
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
