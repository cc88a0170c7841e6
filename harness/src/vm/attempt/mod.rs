//! One attempt at a VM, cold or restored, as the phases of [`Phase`]:
//! QEMU started with its arguments (and the saved state to load); the
//! hello read and the VM saved ([`Vm::boot_cold`]) or the restored one
//! resumed ([`Vm::restore`]), which gives an [`Up`] VM (`up.rs`); then
//! [`Up::run`] (`run.rs`): the input sent while the first frames are
//! read, [`Waiting`] for the agent's `Started` (with a silence limit for a
//! restored VM), every frame to `Done` ([`frames::results`]).
//! [`Attempt::run`] owns the QEMU and stops it whatever happened.
//!
//! [`Waiting`]: frames::Waiting
//! [`Up`]: up::Up
//! [`Up::run`]: up::Up::run

mod frames;
mod run;
mod up;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use kmatrix_protocol::{Frame, Hello};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::snapshot::Slot;
use super::{
    migrate, qemu, BootSpec, Phase, RunInput, Start, VmConfig, VmError, VmFailure, VmReport,
    VmTimings,
};
use crate::channel;
pub(super) use run::Hooks;
use up::Vm;

/// The results port's socket, in the attempt's directory.
pub(super) const RESULTS_SOCKET: &str = "results.sock";
/// QMP's socket, in the attempt's directory (no longer than the results').
const QMP_SOCKET: &str = "qmp.sock";

/// How an attempt starts its VM.
pub(super) enum How<'a> {
    /// Boot the kernel, and save the VM once its agent is prepared if a
    /// slot is given.
    Cold { save: Option<&'a Slot> },
    /// Load a saved state, whose VM said `hello`.
    Restore { state: PathBuf, hello: Hello },
}

/// What one attempt at a VM is made of: how it boots, in which directory,
/// with which TSC figure, and what it is sent.
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    /// The VM settings.
    pub config: &'a VmConfig,
    /// What to boot.
    pub spec: &'a BootSpec<'a>,
    /// The attempt's own directory: sockets, console, QEMU's stderr.
    pub dir: &'a Path,
    /// The TSC figure on the kernel's command line.
    pub tsc_khz: Option<u64>,
    /// What the VM is sent.
    pub input: &'a RunInput<'a>,
}

impl Attempt<'_> {
    /// One VM from QEMU's start to its end. QEMU is stopped, and its end
    /// awaited, whatever happened; a failure names the phase it happened in.
    pub(super) async fn run(
        &self,
        how: How<'_>,
        hooks: &mut Hooks<impl FnOnce(&Hello, Start), impl FnMut(Frame)>,
    ) -> Result<VmReport, VmFailure> {
        let phase = match how {
            How::Cold { .. } => Phase::Booting,
            How::Restore { .. } => Phase::Restoring,
        };
        let begun = Instant::now();
        let (qemu, port) = match self.start_qemu(&how).await {
            Ok(started) => started,
            Err(kind) => return Err(self.explain(phase, kind, None)),
        };
        let timings = VmTimings {
            joined: qemu.joined - begun,
            qmp_ready: begun.elapsed(),
            ..VmTimings::default()
        };
        let mut vm = Vm {
            qemu,
            phase,
            begun,
            timings,
        };
        let result = self.drive(&mut vm, how, port, hooks).await;
        let phase = vm.phase;
        let ended = vm.qemu.stop().await;
        let exited = begun.elapsed();
        result
            .map(|mut report| {
                report.timings.exited = exited;
                report
            })
            .map_err(|kind| self.explain(phase, kind, ended))
    }

    /// Starts QEMU for `how` (a restore loads its state from a socket
    /// QEMU inherits); gives it with the results port.
    async fn start_qemu(&self, how: &How<'_>) -> Result<(qemu::Qemu, UnixStream), VmError> {
        let hardware = self.config.hardware(self.spec.machine);
        let mut args = hardware.args(self.spec.kernel, self.spec.initrd, self.tsc_khz, self.dir);
        if let Some(port) = self.config.gdb_port {
            args.extend(super::argv::gdb_args(port));
        }
        let incoming = match how {
            How::Restore { state, .. } => {
                let fd = migrate::incoming(state)?;
                args.push("-incoming".into());
                args.push(format!("fd:{}", fd.as_raw_fd()).into());
                Some(fd)
            }
            How::Cold { .. } => None,
        };
        let paths = qemu::Paths {
            results: &self.dir.join(RESULTS_SOCKET),
            qmp: &self.dir.join(QMP_SOCKET),
            stderr: &self.dir.join("qemu.stderr"),
        };
        let arch = self.spec.machine.arch;
        qemu::start(self.config.qemu.get(arch), arch, &args, paths, incoming).await
    }

    /// Brings `vm` up as `how` says, on `port`, and runs it to `Done`.
    async fn drive(
        &self,
        vm: &mut Vm,
        how: How<'_>,
        port: UnixStream,
        hooks: &mut Hooks<impl FnOnce(&Hello, Start), impl FnMut(Frame)>,
    ) -> Result<VmReport, VmError> {
        let (mut stream, sink) = channel::split(port);
        stream.end_on(vm.qemu.shutdown_signal());
        let boot_timeout = self.config.boot_timeout;
        let up = match how {
            How::Cold { save } => vm.boot_cold(boot_timeout, stream, sink, save).await?,
            How::Restore { hello, .. } => vm.restore(boot_timeout, stream, sink, hello).await?,
        };
        let run_timeout = self.config.run_timeout;
        up.run(self.input, self.dir, run_timeout, hooks).await
    }

    /// `kind` in `phase`, explained from the attempt's files and QMP's
    /// shutdown cause (`ended`).
    fn explain(&self, phase: Phase, kind: VmError, ended: Option<String>) -> VmFailure {
        VmFailure::explain(
            phase,
            kind,
            ended,
            &self.dir.join("console.log"),
            &self.dir.join("qemu.stderr"),
        )
    }
}
