//! One QEMU VM: boot a kernel with an initramfs, stream the agent's frames
//! to the caller as they arrive, and make sure QEMU is gone afterwards.
//!
//! The host listens on two unix sockets in the VM's run directory before
//! QEMU starts: the results port (virtio-serial) and QMP, which QEMU joins
//! as a client. QMP stops the VM on a timeout and tells how it ended.

pub mod argv;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::StreamExt;
use kmatrix_protocol::{Frame, Hello, VERSION};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

pub use argv::Accel;

use crate::channel::{ResultStream, StreamError};

/// Environment variable naming the QEMU binary.
pub const QEMU_ENV: &str = "KMATRIX_QEMU";

/// Lines of the serial console kept for reports.
const CONSOLE_TAIL_LINES: usize = 40;

/// How a VM is run.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Time from QEMU's start to the agent's hello.
    pub boot_timeout: Duration,
    /// Time from the hello to the agent's last result.
    pub run_timeout: Duration,
}

/// Which accelerator to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM where hardware virtualisation is really there, else TCG.
    #[default]
    Auto,
    /// KVM.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl AccelChoice {
    /// Decides `auto`: KVM only if `/dev/kvm` opens and the CPU advertises
    /// `vmx` or `svm` (a paravirtual `/dev/kvm` without them cannot run an
    /// unmodified kernel well).
    pub fn resolve(self) -> Accel {
        match self {
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Auto => {
                let kvm_opens = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvm")
                    .is_ok();
                let hw = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
                    info.lines()
                        .filter(|l| l.starts_with("flags"))
                        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
                });
                if kvm_opens && hw {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                }
            }
        }
    }
}

impl VmConfig {
    /// The QEMU binary: [`QEMU_ENV`] or `qemu-system-x86_64` on the PATH.
    pub fn default_qemu() -> PathBuf {
        std::env::var_os(QEMU_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| "qemu-system-x86_64".into())
    }
}

/// What to boot.
pub struct BootSpec<'a> {
    /// The kernel image.
    pub kernel: &'a Path,
    /// The initramfs.
    pub initrd: &'a Path,
    /// A private directory for sockets and logs.
    pub dir: &'a Path,
}

/// A VM that ran to the end.
#[derive(Debug)]
pub struct VmReport {
    /// The agent's hello.
    pub hello: Hello,
    /// Time from QEMU's start to the hello.
    pub boot: Duration,
    /// Time from the hello to the agent's `Done`.
    pub run: Duration,
}

/// A VM that did not run to the end.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct VmFailure {
    /// What went wrong.
    #[source]
    pub kind: VmError,
    /// The last lines of the serial console.
    pub console_tail: String,
}

/// What went wrong in a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// QEMU could not be started.
    #[error("cannot start {}: {source}; install QEMU (apt-get install qemu-system-x86) or set {QEMU_ENV}", qemu.display())]
    Spawn {
        /// The binary.
        qemu: PathBuf,
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
    /// The agent speaks another protocol version.
    #[error("the guest agent speaks protocol version {guest}, this kmatrix speaks {VERSION}; rebuild kmatrix and its agent together")]
    Version {
        /// The guest's version.
        guest: u32,
    },
}

/// Boots `spec` and passes every frame after the hello to `on_frame` as it
/// arrives. QEMU is gone when this returns, whatever happened.
pub async fn run(
    config: &VmConfig,
    spec: BootSpec<'_>,
    on_hello: impl FnOnce(&Hello),
    mut on_frame: impl FnMut(Frame),
) -> Result<VmReport, VmFailure> {
    let console = spec.dir.join("console.log");
    let mut vm = None;
    let result = drive(config, &spec, &console, &mut vm, on_hello, &mut on_frame).await;
    let ended = match vm.take() {
        Some(vm) => vm.stop().await,
        None => None,
    };
    result.map_err(|kind| {
        let console_tail = console_tail(&console);
        let kind = match (kind, ended) {
            (VmError::Died(_), Some(how)) => VmError::Died(describe_end(&how, &console_tail)),
            (kind, _) => kind,
        };
        VmFailure { kind, console_tail }
    })
}

/// A started QEMU and its QMP connection.
struct Qemu {
    child: Child,
    qmp: Option<
        qapi::futures::QapiService<qapi::futures::QmpStreamTokio<tokio::io::WriteHalf<UnixStream>>>,
    >,
    shutdown: watch::Receiver<Option<String>>,
}

impl Qemu {
    /// Makes sure the process is gone: a graceful QMP `quit`, then a kill.
    /// Returns the shutdown cause QMP reported, if any.
    async fn stop(mut self) -> Option<String> {
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

async fn drive(
    config: &VmConfig,
    spec: &BootSpec<'_>,
    console: &Path,
    vm: &mut Option<Qemu>,
    on_hello: impl FnOnce(&Hello),
    on_frame: &mut impl FnMut(Frame),
) -> Result<VmReport, VmError> {
    let started = Instant::now();
    let results_path = spec.dir.join("results.sock");
    let qmp_path = spec.dir.join("qmp.sock");
    let stderr_path = spec.dir.join("qemu.stderr");
    let results_listener = UnixListener::bind(&results_path)?;
    let qmp_listener = UnixListener::bind(&qmp_path)?;

    let mut args = argv::base_args(config.memory_mib);
    args.extend(argv::accel_args(config.accel));
    args.extend(argv::kernel_args(
        spec.kernel,
        spec.initrd,
        argv::KERNEL_CMDLINE,
    ));
    args.extend(argv::console_args(console));
    args.extend(argv::results_port_args(&results_path));
    args.extend(argv::qmp_args(&qmp_path));

    let mut command = Command::new(&config.qemu);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path)?)
        .kill_on_drop(true);
    // If kmatrix itself is killed, QEMU goes with it.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let child = command.spawn().map_err(|source| VmError::Spawn {
        qemu: config.qemu.clone(),
        source,
    })?;
    let (shutdown_tx, shutdown) = watch::channel(None);
    let qemu = vm.insert(Qemu {
        child,
        qmp: None,
        shutdown,
    });

    // QEMU joins both sockets while it starts, before the guest runs.
    let accepted = tokio::select! {
        sockets = async { tokio::try_join!(qmp_listener.accept(), results_listener.accept()) } => sockets?,
        status = qemu.child.wait() => {
            let status = status?;
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
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
    qemu.qmp = Some(service);
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

    let mut stream = ResultStream::new(results_socket);
    let hello = match timeout(config.boot_timeout, stream.next()).await {
        Err(_) => return Err(VmError::BootTimeout(config.boot_timeout)),
        Ok(Ok(Some(Frame::Hello(hello)))) => hello,
        Ok(Ok(Some(other))) => return Err(VmError::NoHello(format!("{other:?}"))),
        Ok(Ok(None)) => return Err(VmError::Died("before the agent started".into())),
        Ok(Err(err)) => return Err(err.into()),
    };
    if hello.version != VERSION {
        return Err(VmError::Version {
            guest: hello.version,
        });
    }
    let boot = started.elapsed();
    on_hello(&hello);
    let hello_at = Instant::now();

    let deadline = Instant::now() + config.run_timeout;
    loop {
        match timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(VmError::RunTimeout(config.run_timeout)),
            Ok(Ok(Some(Frame::Done))) => break,
            Ok(Ok(Some(frame))) => on_frame(frame),
            Ok(Ok(None)) => return Err(VmError::Died("before its last result".into())),
            Ok(Err(err)) => return Err(err.into()),
        }
    }
    // The agent powers off once it has the acknowledgment.
    let run = hello_at.elapsed();
    stream.ack().await?;
    Ok(VmReport { hello, boot, run })
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
    fn auto_never_picks_kvm_without_hardware_virtualisation() {
        let hw = std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|i| i.contains(" vmx") || i.contains(" svm"));
        if !hw {
            assert_eq!(AccelChoice::Auto.resolve(), Accel::Tcg);
        }
        assert_eq!(AccelChoice::Tcg.resolve(), Accel::Tcg);
    }
}
