//! A QEMU process and its QMP connection: started with its sockets
//! accepted and QMP negotiated, and made sure to be gone at the end (a
//! [`Qemu`] exists only once joined; one that could not be is stopped
//! where it started).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use super::error::QmpError;
use super::VmError;

/// A started QEMU, joined to its sockets, with QMP negotiated. It exists
/// only connected ([`start`] stops a QEMU that could not be), and is
/// killed on drop; [`Qemu::stop`] is the orderly end.
pub(super) struct Qemu {
    child: Child,
    qmp: Qmp,
    /// QMP's socket, for passing descriptors beside the commands.
    qmp_socket: OwnedFd,
    shutdown: watch::Receiver<Option<String>>,
    /// When it had joined both sockets (QMP not yet negotiated).
    pub(super) joined: Instant,
}

type Qmp =
    qapi::futures::QapiService<qapi::futures::QmpStreamTokio<tokio::io::WriteHalf<UnixStream>>>;

impl Qemu {
    /// Runs a QMP command.
    pub(super) async fn execute<C: qapi::qmp::QmpCommand>(
        &self,
        command: C,
    ) -> Result<C::Ok, QmpError> {
        self.qmp.execute(command).await.map_err(|source| QmpError {
            command: C::NAME,
            source,
        })
    }

    /// Holds the cause once QMP reported that the guest shut down (its VM
    /// then stays paused: `-action shutdown=pause`).
    pub(super) fn shutdown_signal(&self) -> watch::Receiver<Option<String>> {
        self.shutdown.clone()
    }

    /// Hands QEMU `fd` under `name` (QMP's `getfd`), for a command to use.
    pub(super) async fn pass_fd(&self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        // The socket is non-blocking; QEMU reads QMP at once.
        let mut waited = Duration::ZERO;
        loop {
            match send_fd(self.qmp_socket.as_fd(), fd) {
                Ok(()) => break,
                Err(err)
                    if err.kind() == std::io::ErrorKind::WouldBlock && waited.as_secs() < 5 =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    waited += Duration::from_millis(10);
                }
                Err(err) => {
                    return Err(QmpError {
                        command: "getfd",
                        source: err.into(),
                    })
                }
            }
        }
        self.execute(qapi::qmp::getfd {
            fdname: name.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Makes sure the process is gone: a graceful QMP `quit`, then a kill.
    /// Returns the shutdown cause QMP reported, if any.
    pub(super) async fn stop(mut self) -> Option<String> {
        // A guest that shut down stays paused (`-action shutdown=pause`):
        // once QMP said so, QEMU is told to quit at once.
        let mut shutdown = self.shutdown.clone();
        let exited = tokio::select! {
            status = self.child.wait() => status.is_ok(),
            _ = timeout(EXIT_WAIT, shutdown.wait_for(Option::is_some)) => false,
        };
        if !exited {
            quit(&mut self.child, Some(&self.qmp)).await;
        }
        let cause = self.shutdown.borrow().clone();
        cause
    }
}

/// How long a QEMU that is not known to be done is given to exit by itself.
const EXIT_WAIT: Duration = Duration::from_secs(3);

/// Waits a moment for `child` to exit, then [`quit`]s it.
async fn end(child: &mut Child, qmp: Option<&Qmp>) {
    if timeout(EXIT_WAIT, child.wait()).await.is_ok() {
        return;
    }
    quit(child, qmp).await;
}

/// Asks `child` to `quit` over `qmp` if there is one, and kills it if it
/// still runs.
async fn quit(child: &mut Child, qmp: Option<&Qmp>) {
    if let Some(qmp) = qmp {
        let _ = timeout(Duration::from_secs(2), qmp.execute(qapi::qmp::quit {})).await;
    }
    if timeout(Duration::from_secs(3), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// QMP takes a descriptor sent beside its commands (`SCM_RIGHTS`): `fd`
/// goes with a blank, which QMP's parser skips, ahead of the command that
/// names it.
fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let fds = [fd.as_raw_fd()];
    sendmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &[std::io::IoSlice::new(b" ")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Starts `qemu` with `args`, its stderr to `stderr`, and waits until it
/// has joined the QMP and results sockets (`qmp_path`, `results_path`, on
/// which the host listens). QMP is negotiated and its events are watched
/// for the shutdown cause. QEMU inherits `inherit`, under its number in
/// the parent (which `args` name). A QEMU that started but could not be
/// joined is stopped before this returns.
pub(super) async fn start(
    qemu: &Path,
    arch: kmatrix_protocol::Arch,
    args: &[OsString],
    paths: Paths<'_>,
    inherit: Option<OwnedFd>,
) -> Result<(Qemu, UnixStream), VmError> {
    let listeners = Listeners {
        results: UnixListener::bind(paths.results)?,
        qmp: UnixListener::bind(paths.qmp)?,
    };
    let mut command = Command::new(qemu);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(paths.stderr)?)
        .kill_on_drop(true);
    let inherited = inherit.as_ref().map(|fd| fd.as_raw_fd());
    // If kmatrix itself is killed, QEMU goes with it. The inherited
    // descriptor stays open across exec.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if let Some(fd) = inherited {
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )?;
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| VmError::Spawn {
        qemu: qemu.to_owned(),
        arch,
        source,
    })?;
    // QEMU has its own copy now.
    drop(inherit);
    match listeners.join(&mut child, paths.stderr).await {
        Ok((qmp_socket, results_socket)) => {
            let joined = Instant::now();
            let qemu = connect(child, qmp_socket, joined).await?;
            Ok((qemu, results_socket))
        }
        Err(err) => {
            end(&mut child, None).await;
            Err(err)
        }
    }
}

/// The sockets the host listens on for one QEMU.
struct Listeners {
    results: UnixListener,
    qmp: UnixListener,
}

impl Listeners {
    /// Waits for `child` to join both sockets, which QEMU does while it
    /// starts, before the guest runs; returns QMP's and the port's.
    async fn join(
        self,
        child: &mut Child,
        stderr: &Path,
    ) -> Result<(UnixStream, UnixStream), VmError> {
        tokio::select! {
            sockets = async { tokio::try_join!(self.qmp.accept(), self.results.accept()) } => {
                let ((qmp, _), (results, _)) = sockets?;
                Ok((qmp, results))
            }
            status = child.wait() => {
                let status = status?;
                let stderr = std::fs::read_to_string(stderr).unwrap_or_default();
                Err(VmError::EarlyExit { status, stderr: stderr.trim().to_owned() })
            }
        }
    }
}

/// Negotiates QMP on `socket` with `child`, and watches its events for
/// the shutdown cause; `child` is stopped if that fails.
async fn connect(mut child: Child, socket: UnixStream, joined: Instant) -> Result<Qemu, VmError> {
    let negotiated = async {
        let qmp_socket = socket.as_fd().try_clone_to_owned()?;
        let negotiation = qapi::futures::QmpStreamTokio::open(socket)
            .await
            .map_err(|e| QmpError {
                command: "greeting",
                source: e.into(),
            })?;
        let stream = negotiation.negotiate().await.map_err(|e| QmpError {
            command: "qmp_capabilities",
            source: e.into(),
        })?;
        Ok::<_, VmError>((qmp_socket, stream.into_parts()))
    };
    let (qmp_socket, (qmp, mut events)) = match negotiated.await {
        Ok(parts) => parts,
        Err(err) => {
            end(&mut child, None).await;
            return Err(err);
        }
    };
    let (shutdown_tx, shutdown) = watch::channel(None);
    // The event stream also delivers command responses: it must be polled
    // for as long as the VM lives.
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let qapi::qmp::Event::SHUTDOWN { data, .. } = event {
                // `guest_reset` -> `guest-reset`, as QMP spells it.
                let cause = format!("{:?}", data.reason).replace('_', "-");
                // The first cause is the guest's; a paused guest's QEMU
                // reports its own `quit` after it.
                shutdown_tx.send_if_modified(|held| {
                    if held.is_some() {
                        return false;
                    }
                    *held = Some(cause);
                    true
                });
            }
        }
    });
    Ok(Qemu {
        child,
        qmp,
        qmp_socket,
        shutdown,
        joined,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_goes_beside_a_blank() {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
        use std::io::{Read, Write};
        let (host, qmp) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        send_fd(host.as_fd(), theirs.as_fd()).unwrap();
        drop(theirs);

        let mut byte = [0u8; 1];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let message = recvmsg::<UnixAddr>(
            qmp.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fds: Vec<_> = message
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(byte, *b" ");
        assert_eq!(fds.len(), 1);
        // SAFETY: the descriptor was just received and is owned by no one.
        let mut received = std::os::unix::net::UnixStream::from(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0])
        });
        received.write_all(b"state").unwrap();
        drop(received);
        let mut read = String::new();
        ours.read_to_string(&mut read).unwrap();
        assert_eq!(read, "state");
    }
}
