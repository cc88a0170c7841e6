//! One QEMU VM: boot a kernel with an initramfs, stream the agent's frames
//! to the caller as they arrive, and make sure QEMU is gone afterwards.
//!
//! The host listens on two unix sockets in the VM's run directory before
//! QEMU starts: the results port (virtio-serial) and QMP, which QEMU joins
//! as a client. QMP stops the VM on a timeout and tells how it ended.

pub mod argv;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::StreamExt;
use kmatrix_protocol::{Frame, Hello, Input, VERSION};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

pub use argv::{Accel, Machine};

/// What a VM is sent after its hello.
pub struct RunInput<'a> {
    /// The run's files, encoded as [`Input::File`] messages with their
    /// bytes.
    pub files: &'a [u8],
    /// The kernel's plan.
    pub plan: &'a kmatrix_protocol::Plan,
}

use crate::channel::{self, ResultStream, StreamError};
use snapshot::{Meta, Slot};

/// Time a restored VM has to answer its input.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(15);

/// Time the agent has to prepare, and QEMU to save the VM.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// Whether VMs are saved once booted and restored in later runs.
    pub snapshots: bool,
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
    /// The host's TSC frequency for the kernel command line, under TCG
    /// (whose guest TSC is the host's); KVM guests calibrate well alone.
    pub fn tsc_khz(&self) -> Option<u64> {
        match self.accel {
            Accel::Tcg => host_tsc_khz(),
            Accel::Kvm => None,
        }
    }

    /// The QEMU binary: [`QEMU_ENV`] or `qemu-system-x86_64` on the PATH.
    pub fn default_qemu() -> PathBuf {
        std::env::var_os(QEMU_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| "qemu-system-x86_64".into())
    }
}

/// The host's TSC frequency in kHz, measured once against the monotonic
/// clock over 20 ms.
fn host_tsc_khz() -> Option<u64> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: RDTSC has no preconditions on x86_64.
            let rdtsc = || unsafe { std::arch::x86_64::_rdtsc() };
            let (t0, c0) = (std::time::Instant::now(), rdtsc());
            std::thread::sleep(Duration::from_millis(20));
            let (c1, elapsed) = (rdtsc(), t0.elapsed());
            let khz = (c1.wrapping_sub(c0) as f64 / elapsed.as_secs_f64() / 1000.0).round() as u64;
            // A few MHz to tens of GHz; anything else is a broken TSC.
            (1_000..100_000_000).contains(&khz).then_some(khz)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    })
}

/// What to boot.
pub struct BootSpec<'a> {
    /// The machine type.
    pub machine: Machine,
    /// The kernel image.
    pub kernel: &'a Path,
    /// The initramfs.
    pub initrd: &'a Path,
    /// A private directory for sockets and logs.
    pub dir: &'a Path,
    /// Where saved VMs are kept; `None` boots cold and saves nothing.
    pub snapshots: Option<&'a snapshot::Store>,
}

/// How a VM came up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Booted, nothing saved.
    Cold,
    /// Booted, and saved for later runs.
    Saved,
    /// Restored from a saved state.
    Restored,
}

/// A VM that ran to the end.
#[derive(Debug)]
pub struct VmReport {
    /// The agent's hello.
    pub hello: Hello,
    /// Time from QEMU's start to the agent's start of the run.
    pub boot: Duration,
    /// Time from the agent's start to its `Done`.
    pub run: Duration,
    /// How it came up.
    pub start: Start,
    /// Why it could not be saved, if saving failed.
    pub save_error: Option<String>,
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

/// Boots `spec` (restored from its saved state when there is a good one),
/// sends it `input`, and passes every frame after its start to `on_frame`
/// as it arrives. `on_up` hears the hello once the agent has started the
/// run, `on_note` a line on anything worth knowing about the snapshot.
/// QEMU is gone when this returns, whatever happened.
pub async fn run(
    config: &VmConfig,
    spec: BootSpec<'_>,
    input: RunInput<'_>,
    on_up: impl FnOnce(&Hello, Start),
    mut on_note: impl FnMut(String),
    mut on_frame: impl FnMut(Frame),
) -> Result<VmReport, VmFailure> {
    let mut on_up = Some(on_up);
    // A snapshot's kernel command line holds the TSC frequency: the same
    // host must give the same figure from run to run.
    let tsc_khz = config.tsc_khz().map(|khz| {
        spec.snapshots
            .map_or(khz, |store| store.stable_tsc_khz(khz))
    });
    let slot = match spec.snapshots {
        Some(store) => {
            let initrd = std::fs::read(spec.initrd).map_err(|e| VmFailure {
                kind: VmError::Io(e),
                console_tail: String::new(),
            })?;
            // The run's own paths are left out: the initramfs is keyed by
            // its bytes.
            let placeholder = BootSpec {
                initrd: "@initrd".as_ref(),
                dir: "@".as_ref(),
                snapshots: None,
                ..spec
            };
            let key_args = qemu_args(config, &placeholder, "@".as_ref(), tsc_khz);
            Some(store.slot(&snapshot::key(
                &config.qemu,
                &key_args,
                spec.kernel,
                &initrd,
            )))
        }
        None => None,
    };
    if let Some((state, meta)) = slot.as_ref().and_then(Slot::load) {
        let dir = spec.dir.join("restored");
        std::fs::create_dir(&dir).map_err(|e| VmFailure {
            kind: VmError::Io(e),
            console_tail: String::new(),
        })?;
        let mut started = false;
        let how = How::Restore { state, meta };
        match attempt(
            config,
            &spec,
            &dir,
            tsc_khz,
            how,
            &input,
            &mut started,
            &mut on_up,
            &mut on_frame,
        )
        .await
        {
            Ok(report) => return Ok(report),
            Err(failure) if started => return Err(failure),
            Err(failure) => {
                on_note(format!(
                    "the saved VM could not be restored ({}); booting cold and saving it again",
                    crate::error_chain::error_chain(&failure)
                ));
                if let Some(slot) = &slot {
                    slot.discard();
                }
            }
        }
    }
    let how = How::Cold {
        save: slot.as_ref(),
    };
    let mut started = false;
    let report = attempt(
        config,
        &spec,
        spec.dir,
        tsc_khz,
        how,
        &input,
        &mut started,
        &mut on_up,
        &mut on_frame,
    )
    .await?;
    if let Some(err) = &report.save_error {
        on_note(format!(
            "saving the booted VM failed ({err}); the next run boots cold again"
        ));
    }
    Ok(report)
}

/// How an attempt starts its VM.
enum How<'a> {
    /// Boot the kernel, and save the VM once its agent is prepared if a
    /// slot is given.
    Cold { save: Option<&'a Slot> },
    /// Load a saved state.
    Restore { state: PathBuf, meta: Meta },
}

/// QEMU's arguments for `spec`, with the run's files in `dir`.
fn qemu_args(
    config: &VmConfig,
    spec: &BootSpec<'_>,
    dir: &Path,
    tsc_khz: Option<u64>,
) -> Vec<std::ffi::OsString> {
    let mut args = argv::base_args(spec.machine, config.memory_mib);
    args.extend(argv::accel_args(config.accel));
    args.extend(argv::kernel_args(
        spec.kernel,
        spec.initrd,
        &argv::kernel_cmdline(tsc_khz),
    ));
    args.extend(argv::console_args(&dir.join("console.log")));
    args.extend(argv::results_port_args(
        spec.machine,
        &dir.join("results.sock"),
    ));
    args.extend(argv::qmp_args(&dir.join("qmp.sock")));
    args
}

/// One VM from start to end, in `dir`; `started` is set once the agent has
/// started the run (a failure before that may be retried cold).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    config: &VmConfig,
    spec: &BootSpec<'_>,
    dir: &Path,
    tsc_khz: Option<u64>,
    how: How<'_>,
    input: &RunInput<'_>,
    started: &mut bool,
    on_up: &mut Option<impl FnOnce(&Hello, Start)>,
    on_frame: &mut impl FnMut(Frame),
) -> Result<VmReport, VmFailure> {
    let console = dir.join("console.log");
    let mut vm = None;
    let result = drive(
        config, spec, dir, tsc_khz, how, input, &mut vm, started, on_up, on_frame,
    )
    .await;
    let ended = match vm.take() {
        Some(vm) => vm.stop().await,
        None => None,
    };
    result.map_err(|kind| {
        let console_tail = console_tail(&console);
        let stderr = std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
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
        VmFailure { kind, console_tail }
    })
}

/// A started QEMU and its QMP connection.
struct Qemu {
    child: Child,
    qmp: Option<Qmp>,
    shutdown: watch::Receiver<Option<String>>,
}

type Qmp =
    qapi::futures::QapiService<qapi::futures::QmpStreamTokio<tokio::io::WriteHalf<UnixStream>>>;

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

/// `path` quoted for the shell QEMU's `exec:` migration runs.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    config: &VmConfig,
    spec: &BootSpec<'_>,
    dir: &Path,
    tsc_khz: Option<u64>,
    how: How<'_>,
    input: &RunInput<'_>,
    vm: &mut Option<Qemu>,
    started: &mut bool,
    on_up: &mut Option<impl FnOnce(&Hello, Start)>,
    on_frame: &mut impl FnMut(Frame),
) -> Result<VmReport, VmError> {
    let begun = Instant::now();
    let results_path = dir.join("results.sock");
    let qmp_path = dir.join("qmp.sock");
    let stderr_path = dir.join("qemu.stderr");
    let results_listener = UnixListener::bind(&results_path)?;
    let qmp_listener = UnixListener::bind(&qmp_path)?;

    let mut args = qemu_args(config, spec, dir, tsc_khz);
    if let How::Restore { state, .. } = &how {
        args.push("-incoming".into());
        args.push(format!("exec:cat {}", shell_quote(state)).into());
    }
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

    let (mut stream, mut sink) = channel::split(results_socket);
    let (hello, mut start, mut save_error, start_deadline) = match how {
        How::Cold { save } => {
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
            let mut start = Start::Cold;
            let mut save_error = None;
            if let Some(slot) = save {
                let qmp = qemu.qmp.as_ref().expect("connected above");
                match save_state(
                    qmp,
                    &mut stream,
                    &mut sink,
                    slot,
                    &hello,
                    spec.kernel,
                    &config.qemu,
                )
                .await
                {
                    Ok(()) => start = Start::Saved,
                    Err(err) => save_error = Some(err),
                }
            }
            let deadline = Instant::now() + config.run_timeout;
            (hello, start, save_error, deadline)
        }
        How::Restore { meta, .. } => {
            let allowance = RESTORE_TIMEOUT + Duration::from_secs(input.files.len() as u64 >> 24);
            let deadline = begun + allowance.min(config.boot_timeout);
            let qmp = qemu.qmp.as_ref().expect("connected above");
            resume_restored(qmp, deadline).await?;
            (meta.hello(), Start::Restored, None, deadline)
        }
    };

    // The input is written while the first frames are read, so that
    // neither side waits for the other.
    let files = input.files.to_vec();
    let begin = kmatrix_protocol::Start {
        plan: input.plan.clone(),
        unix_nanos: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        entropy: host_entropy(),
    };
    let writer = tokio::spawn(async move {
        sink.start(&files, begin).await?;
        Ok::<_, std::io::Error>(sink)
    });
    let mut writer = AbortOnDrop(Some(writer));

    let expected = hello.kernel_release.clone();
    loop {
        match timeout_at(start_deadline, stream.next()).await {
            Err(_) if matches!(start, Start::Restored) => {
                return Err(VmError::Restore(format!(
                    "the VM did not answer within {:?}",
                    start_deadline - begun
                )))
            }
            Err(_) => return Err(VmError::RunTimeout(config.run_timeout)),
            Ok(Ok(Some(Frame::Started { kernel_release }))) => {
                if kernel_release != expected {
                    return Err(VmError::WrongKernel {
                        expected,
                        found: kernel_release,
                    });
                }
                break;
            }
            // Problems writing files come before the start.
            Ok(Ok(Some(frame @ Frame::AgentError(_)))) => on_frame(frame),
            Ok(Ok(Some(other))) => return Err(VmError::NoHello(format!("{other:?}"))),
            Ok(Ok(None)) => return Err(VmError::Died("before the agent started".into())),
            Ok(Err(err)) => return Err(err.into()),
        }
    }
    *started = true;
    let boot = begun.elapsed();
    if let Some(on_up) = on_up.take() {
        on_up(&hello, start);
    }
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
    let handle = writer.0.take().expect("taken once");
    let mut sink = handle
        .await
        .map_err(|e| VmError::Died(format!("sending the input failed: {e}")))??;
    sink.ack().await?;
    start = match (start, &save_error) {
        (Start::Saved, Some(_)) => Start::Cold,
        (start, _) => start,
    };
    Ok(VmReport {
        hello,
        boot,
        run,
        start,
        save_error: save_error.take(),
    })
}

/// Waits for QEMU to load a saved state, then lets the VM run (it was
/// saved paused, and a loaded VM stays as it was saved).
async fn resume_restored(qmp: &Qmp, deadline: Instant) -> Result<(), VmError> {
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
                qmp.execute(qapi::qmp::cont {})
                    .await
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

/// Aborts the input writer if the VM fails first.
struct AbortOnDrop(Option<tokio::task::JoinHandle<std::io::Result<channel::InputSink>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Fresh randomness from the host for the guest's pool.
fn host_entropy() -> Vec<u8> {
    let mut bytes = vec![0; 64];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        Ok(()) => bytes,
        Err(_) => Vec::new(),
    }
}

/// Asks the agent to prepare, then pauses the VM, saves it to `slot` and
/// lets it go on. Returns why it could not be saved.
async fn save_state(
    qmp: &Qmp,
    stream: &mut ResultStream,
    sink: &mut channel::InputSink,
    slot: &Slot,
    hello: &Hello,
    kernel: &Path,
    qemu_binary: &Path,
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
        let meta = Meta {
            kernel_release: hello.kernel_release.clone(),
            btf: hello.btf,
            boot_ms: hello.boot_ms,
            kernel: kernel.to_owned(),
            agent: slot.agent.clone(),
            qemu: snapshot::qemu_identity(qemu_binary),
            host: snapshot::host_identity(),
        };
        slot.commit(pending, &meta)
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
