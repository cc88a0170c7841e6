//! How a VM fails: [`VmError`] says what went wrong (with [`QmpError`],
//! [`RestoreError`] and [`Died`] for QMP, a saved state and a guest gone
//! early; [`SaveError`] for a save, which fails no VM), [`VmFailure`] adds
//! the [`Phase`] it failed in and the console's tail, and a guest that died
//! is explained from QMP's shutdown cause, the console and what QEMU
//! printed.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use kmatrix_protocol::{Frame, VERSION};

use super::config::QemuBinaries;
use super::Phase;
use crate::channel::StreamError;

/// Lines of the serial console kept for reports.
const CONSOLE_TAIL_LINES: usize = 40;

/// A VM that did not run to the end.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct VmFailure {
    /// What went wrong.
    #[source]
    pub kind: VmError,
    /// The last lines of the serial console.
    pub console_tail: String,
    /// The phase it failed in.
    pub phase: Phase,
}

impl VmFailure {
    /// Whether the agent had started the run: a VM that failed before
    /// that failed for the machinery's sake, not for anything it ran.
    pub fn started(&self) -> bool {
        self.phase.started()
    }
}

/// What went wrong in a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// QEMU could not be started.
    #[error("cannot start {}: {source}; install QEMU for {arch} guests (apt-get install {}) or set {}", qemu.display(), QemuBinaries::setting(*arch).1, QemuBinaries::setting(*arch).0)]
    Spawn {
        /// The binary.
        qemu: PathBuf,
        /// The guests' architecture.
        arch: kmatrix_protocol::Arch,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU exited before the guest started.
    #[error("QEMU exited ({status}) before the guest started: {stderr}")]
    EarlyExit {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed.
        stderr: String,
    },
    /// The run directory or its sockets failed.
    #[error("setting up the VM's sockets failed")]
    Io(#[from] std::io::Error),
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The agent did not say hello in time.
    #[error("the kernel did not start the agent within {0:?} (raise --boot-timeout if the machine is slow)")]
    BootTimeout(Duration),
    /// The agent did not finish in time.
    #[error("the agent did not finish within {0:?} (raise --run-timeout if the suite is long)")]
    RunTimeout(Duration),
    /// The guest went away before it finished.
    #[error("the guest stopped before finishing: {0}")]
    Died(Died),
    /// The stream was not the protocol.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The first frame was not a hello.
    #[error("the guest sent {0:?} before its hello")]
    NoHello(Box<Frame>),
    /// The agent ended the run without starting it: it could not take the
    /// input (its last error, if it sent one).
    #[error("the guest agent ended without starting the run{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NotStarted(Option<String>),
    /// A restored VM took none of its input and sent nothing for a while.
    #[error("the restored VM took none of its input and sent nothing for {0:?}")]
    Unresponsive(Duration),
    /// A saved state could not be brought back.
    #[error("restoring the saved VM failed")]
    Restore(#[from] RestoreError),
    /// A restored VM runs another kernel than the one saved.
    #[error("the VM runs kernel {found}, not {expected}")]
    WrongKernel {
        /// The release saved with the state.
        expected: String,
        /// The release the VM reports.
        found: String,
    },
    /// The agent speaks another protocol version.
    #[error("the guest agent speaks protocol version {guest}, this kmatrix speaks {VERSION}; rebuild kmatrix and its agent together")]
    Version {
        /// The guest's version.
        guest: u32,
    },
}

/// A QMP command (or QMP's greeting) that failed.
#[derive(Debug, thiserror::Error)]
#[error("QMP {command} failed")]
pub struct QmpError {
    /// The command, as QMP names it.
    pub command: &'static str,
    /// Why.
    #[source]
    pub source: qapi::ExecuteError,
}

/// Why a saved state could not be brought back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The state's file could not be opened.
    #[error("cannot open the saved state")]
    Open(#[source] std::io::Error),
    /// The socket pair the state crosses could not be made.
    #[error("a socket for the saved state")]
    Socket(#[source] std::io::Error),
    /// QEMU was still loading at the deadline.
    #[error("QEMU did not load the saved state in time")]
    LoadTimeout,
    /// QEMU did not answer `cont` by the deadline.
    #[error("QEMU did not resume the VM in time")]
    ResumeTimeout,
    /// QEMU ended up in a state a loaded VM is never in.
    #[error("QEMU is in state {0:?} after loading the saved state")]
    State(qapi::qmp::RunState),
}

/// When, and as far as is known how, a guest went away early.
#[derive(Debug, thiserror::Error)]
pub enum Died {
    /// Its port closed before the agent started the run.
    #[error("before the agent started")]
    BeforeStart,
    /// Its port closed before the agent's `Done`.
    #[error("before its last result")]
    BeforeLastResult,
    /// The task writing its input failed.
    #[error("sending the input failed: {0}")]
    Input(#[source] tokio::task::JoinError),
    /// How it ended, from QMP's shutdown cause and the console.
    #[error("{0}")]
    Ended(End),
    /// Its port closed (`when`), and QEMU's last line on stderr.
    #[error("{when}; QEMU said: {said}")]
    Said {
        /// When the port closed.
        when: Box<Died>,
        /// What QEMU printed last.
        said: String,
    },
    /// QMP broke because QEMU exited, saying `0` last.
    #[error("QEMU exited: {0}")]
    QemuExited(String),
}

/// How a guest ended, from QMP's shutdown cause and the console.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum End {
    /// The console holds a kernel panic (its line).
    #[error("the kernel panicked: {0}")]
    Panicked(String),
    /// The guest reset.
    #[error("the guest reset (a panic or reboot)")]
    Reset,
    /// The guest powered off.
    #[error("the guest powered off early")]
    PoweredOff,
    /// Another cause, as QMP names it.
    #[error("QEMU shut down ({0})")]
    Shutdown(String),
}

/// Why a cold VM could not be saved (it runs on unsaved).
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The `Prepare` message could not be sent.
    #[error("asking the agent to prepare")]
    Ask(#[source] std::io::Error),
    /// The agent answered something else.
    #[error("the agent answered {0:?}")]
    Answered(Box<Frame>),
    /// The guest closed its port.
    #[error("the guest closed its port")]
    Closed,
    /// The port broke.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The agent did not answer in time.
    #[error("the agent did not prepare within {0:?}")]
    NotPrepared(Duration),
    /// No place for the state in the store's `tmp/`.
    #[error("a place for the state")]
    Place(#[source] std::io::Error),
    /// The state's file could not be created.
    #[error("creating {}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The socket pair the state crosses could not be made.
    #[error("a socket for the state")]
    Socket(#[source] std::io::Error),
    /// A QMP command failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// QEMU's migration failed, with its description.
    #[error("migration failed: {0}")]
    Migration(String),
    /// QEMU's migration did not finish in time.
    #[error("migration did not finish within {0:?}")]
    MigrationTimeout(Duration),
    /// The state did not reach its file in time.
    #[error("the state was not written within {0:?}")]
    WriteTimeout(Duration),
    /// The thread writing the state failed.
    #[error("writing the state")]
    Writer(#[source] tokio::task::JoinError),
    /// The state's file could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The snapshot could not be moved into the store.
    #[error("storing the state")]
    Commit(#[source] std::io::Error),
    /// The whole save took too long.
    #[error("not done within {0:?}")]
    Timeout(Duration),
}

impl VmFailure {
    /// `kind` in `phase`, with the console's tail from `console`; a guest
    /// that died is described from QMP's shutdown cause (`ended`), the
    /// console, and the last line QEMU wrote to `stderr`.
    pub(super) fn explain(
        phase: Phase,
        kind: VmError,
        ended: Option<String>,
        console: &Path,
        stderr: &Path,
    ) -> Self {
        let console_tail = console_tail(console);
        let stderr = std::fs::read_to_string(stderr).unwrap_or_default();
        let said = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned());
        let kind = match (kind, ended, said) {
            (VmError::Died(_), Some(how), _) => {
                VmError::Died(Died::Ended(describe_end(&how, &console_tail)))
            }
            (VmError::Died(when), None, Some(said)) => VmError::Died(Died::Said {
                when: Box::new(when),
                said,
            }),
            // QMP breaks when QEMU exits: what it printed says why.
            (VmError::Qmp(_), None, Some(line)) => VmError::Died(Died::QemuExited(line)),
            (kind, _, _) => kind,
        };
        Self {
            kind,
            console_tail,
            phase,
        }
    }

    /// A failure before QEMU ran, or with nothing of it to explain.
    pub(super) fn bare(phase: Phase, kind: VmError) -> Self {
        Self {
            kind,
            console_tail: String::new(),
            phase,
        }
    }
}

/// How the guest ended, from QMP's shutdown cause and the console.
fn describe_end(cause: &str, console_tail: &str) -> End {
    let panic = console_tail
        .lines()
        .find(|l| l.contains("Kernel panic"))
        .map(|l| l.trim());
    match (cause, panic) {
        (_, Some(line)) => End::Panicked(
            line.trim_start_matches(|c: char| {
                c == '[' || c.is_ascii_digit() || c == '.' || c == ']' || c == ' '
            })
            .to_owned(),
        ),
        ("guest-reset", None) => End::Reset,
        ("guest-shutdown", None) => End::PoweredOff,
        (cause, None) => End::Shutdown(cause.to_owned()),
    }
}

/// The last lines of the console log.
fn console_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_named_from_the_console() {
        let console = "[    1.2] Run /init as init process\n[    1.3] Kernel panic - not syncing: No working init found.\n";
        assert_eq!(
            describe_end("guest-reset", console).to_string(),
            "the kernel panicked: Kernel panic - not syncing: No working init found."
        );
        assert_eq!(
            describe_end("guest-reset", "").to_string(),
            "the guest reset (a panic or reboot)"
        );
        assert_eq!(describe_end("guest-shutdown", ""), End::PoweredOff);
        assert_eq!(
            describe_end("host-qmp-quit", "").to_string(),
            "QEMU shut down (host-qmp-quit)"
        );
    }

    #[test]
    fn a_qmp_break_is_explained_by_what_qemu_said() {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("qemu.stderr");
        std::fs::write(
            &stderr,
            "qemu: load of migration failed: Input/output error\n\n",
        )
        .unwrap();
        let broken = QmpError {
            command: "query-status",
            source: std::io::Error::other("QAPI stream disconnected").into(),
        };
        let failure = VmFailure::explain(
            Phase::Restoring,
            broken.into(),
            None,
            &dir.path().join("console.log"),
            &stderr,
        );
        assert_eq!(
            failure.to_string(),
            "the guest stopped before finishing: QEMU exited: qemu: load of migration failed: Input/output error"
        );
        assert!(!failure.started());
    }

    #[test]
    fn a_closed_port_is_explained_by_what_qemu_said() {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("qemu.stderr");
        std::fs::write(&stderr, "qemu: terminating on signal 15\n").unwrap();
        let failure = VmFailure::explain(
            Phase::Running,
            VmError::Died(Died::BeforeLastResult),
            None,
            &dir.path().join("console.log"),
            &stderr,
        );
        assert_eq!(
            failure.to_string(),
            "the guest stopped before finishing: before its last result; QEMU said: qemu: terminating on signal 15"
        );
        assert!(failure.started());
    }
}
