//! QEMU's migration to and from a file, over QMP: saving a VM whose agent
//! is prepared, and letting a VM loaded from a saved state run.

use std::path::Path;
use std::time::Duration;

use kmatrix_protocol::{Frame, Hello, Input};
use tokio::time::{timeout, timeout_at, Instant};

use super::qemu::Qmp;
use super::snapshot::Slot;
use super::VmError;
use crate::channel::{InputSink, ResultStream};

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
    qmp: &Qmp,
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
        qmp.execute(qapi::qmp::migrate {
            uri: Some(format!("exec:cat > {}", shell_quote(&pending.state()))),
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

/// `path` quoted for the shell QEMU's `exec:` migration runs.
pub(super) fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}
