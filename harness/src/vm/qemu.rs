//! A QEMU process and its QMP connection: started with its sockets
//! accepted and QMP negotiated, and made sure to be gone at the end.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::timeout;

use super::VmError;

/// A started QEMU and its QMP connection.
pub(super) struct Qemu {
    child: Child,
    pub(super) qmp: Option<Qmp>,
    shutdown: watch::Receiver<Option<String>>,
}

pub(super) type Qmp =
    qapi::futures::QapiService<qapi::futures::QmpStreamTokio<tokio::io::WriteHalf<UnixStream>>>;

impl Qemu {
    /// Makes sure the process is gone: a graceful QMP `quit`, then a kill.
    /// Returns the shutdown cause QMP reported, if any.
    pub(super) async fn stop(mut self) -> Option<String> {
        let exited = timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_ok();
        if !exited {
            if let Some(qmp) = &self.qmp {
                let _ = timeout(Duration::from_secs(2), qmp.execute(qapi::qmp::quit {})).await;
            }
            if timeout(Duration::from_secs(3), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
        let cause = self.shutdown.borrow().clone();
        cause
    }
}

/// Starts `qemu` with `args`, its stderr to `stderr`, and waits until it
/// has joined the QMP and results sockets (`qmp_path`, `results_path`, on
/// which the host listens). QMP is negotiated and its events are watched
/// for the shutdown cause. The QEMU goes into `slot` as soon as it runs,
/// so that the caller stops it whatever happens next.
pub(super) async fn start(
    qemu: &Path,
    arch: kmatrix_protocol::Arch,
    args: &[OsString],
    paths: Paths<'_>,
    slot: &mut Option<Qemu>,
) -> Result<UnixStream, VmError> {
    let results_listener = UnixListener::bind(paths.results)?;
    let qmp_listener = UnixListener::bind(paths.qmp)?;
    let mut command = Command::new(qemu);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(paths.stderr)?)
        .kill_on_drop(true);
    // If kmatrix itself is killed, QEMU goes with it.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let child = command.spawn().map_err(|source| VmError::Spawn {
        qemu: qemu.to_owned(),
        arch,
        source,
    })?;
    let (shutdown_tx, shutdown) = watch::channel(None);
    let started = slot.insert(Qemu {
        child,
        qmp: None,
        shutdown,
    });

    // QEMU joins both sockets while it starts, before the guest runs.
    let accepted = tokio::select! {
        sockets = async { tokio::try_join!(qmp_listener.accept(), results_listener.accept()) } => sockets?,
        status = started.child.wait() => {
            let status = status?;
            let stderr = std::fs::read_to_string(paths.stderr).unwrap_or_default();
            return Err(VmError::EarlyExit { status, stderr: stderr.trim().to_owned() });
        }
    };
    let ((qmp_socket, _), (results_socket, _)) = accepted;

    let negotiation = qapi::futures::QmpStreamTokio::open(qmp_socket)
        .await
        .map_err(|e| VmError::Qmp(e.to_string()))?;
    let stream = negotiation
        .negotiate()
        .await
        .map_err(|e| VmError::Qmp(e.to_string()))?;
    let (service, mut events) = stream.into_parts();
    started.qmp = Some(service);
    // The event stream also delivers command responses: it must be polled
    // for as long as the VM lives.
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let qapi::qmp::Event::SHUTDOWN { data, .. } = event {
                // `guest_reset` -> `guest-reset`, as QMP spells it.
                let cause = format!("{:?}", data.reason).replace('_', "-");
                let _ = shutdown_tx.send(Some(cause));
            }
        }
    });
    Ok(results_socket)
}

/// Where a QEMU's sockets and stderr go.
pub(super) struct Paths<'a> {
    /// The results port's socket.
    pub results: &'a Path,
    /// The QMP socket.
    pub qmp: &'a Path,
    /// QEMU's stderr.
    pub stderr: &'a Path,
}
