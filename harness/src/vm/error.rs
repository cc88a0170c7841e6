//! How a VM fails: [`VmError`] says what went wrong, [`VmFailure`] adds
//! the console's tail, and a guest that died is explained from QMP's
//! shutdown cause, the console and what QEMU printed.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use kmatrix_protocol::VERSION;

use super::config::QemuBinaries;
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
    /// Whether the agent had started the run: a VM that failed before
    /// that failed for the machinery's sake, not for anything it ran.
    pub started: bool,
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
    #[error("QMP failed: {0}")]
    Qmp(String),
    /// The agent did not say hello in time.
    #[error("the kernel did not start the agent within {0:?} (raise --boot-timeout if the machine is slow)")]
    BootTimeout(Duration),
    /// The agent did not finish in time.
    #[error("the agent did not finish within {0:?} (raise --run-timeout if the suite is long)")]
    RunTimeout(Duration),
    /// The guest went away before it finished.
    #[error("the guest stopped before finishing: {0}")]
    Died(String),
    /// The stream was not the protocol.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The first frame was not a hello.
    #[error("the guest sent {0} before its hello")]
    NoHello(String),
    /// A restored VM took none of its input and sent nothing for a while.
    #[error("the restored VM took none of its input and sent nothing for {0:?}")]
    Unresponsive(Duration),
    /// A saved state could not be brought back.
    #[error("restoring the saved VM failed: {0}")]
    Restore(String),
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

impl VmFailure {
    /// `kind`, with the console's tail from `console`; a guest that died is
    /// described from QMP's shutdown cause (`ended`), the console, and the
    /// last line QEMU wrote to `stderr`.
    pub(super) fn explain(
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
            (VmError::Died(_), Some(how), _) => VmError::Died(describe_end(&how, &console_tail)),
            (VmError::Died(when), None, Some(line)) => {
                VmError::Died(format!("{when}; QEMU said: {line}"))
            }
            // QMP breaks when QEMU exits: what it printed says why.
            (VmError::Qmp(_), None, Some(line)) => VmError::Died(format!("QEMU exited: {line}")),
            (kind, _, _) => kind,
        };
        Self {
            kind,
            console_tail,
            started: false,
        }
    }
}

/// A sentence on how the guest ended, from QMP's shutdown cause and the
/// console.
fn describe_end(cause: &str, console_tail: &str) -> String {
    let panic = console_tail
        .lines()
        .find(|l| l.contains("Kernel panic"))
        .map(|l| l.trim());
    match (cause, panic) {
        (_, Some(line)) => format!(
            "the kernel panicked: {}",
            line.trim_start_matches(|c: char| c == '['
                || c.is_ascii_digit()
                || c == '.'
                || c == ']'
                || c == ' ')
        ),
        ("guest-reset", None) => "the guest reset (a panic or reboot)".into(),
        ("guest-shutdown", None) => "the guest powered off early".into(),
        (cause, None) => format!("QEMU shut down ({cause})"),
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
            describe_end("guest-reset", console),
            "the kernel panicked: Kernel panic - not syncing: No working init found."
        );
        assert_eq!(
            describe_end("guest-reset", ""),
            "the guest reset (a panic or reboot)"
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
        let failure = VmFailure::explain(
            VmError::Qmp("QAPI stream disconnected".into()),
            None,
            &dir.path().join("console.log"),
            &stderr,
        );
        assert_eq!(
            failure.to_string(),
            "the guest stopped before finishing: QEMU exited: qemu: load of migration failed: Input/output error"
        );
    }
}
