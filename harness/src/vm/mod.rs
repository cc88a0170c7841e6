//! One VM: booted cold (and saved, [`snapshot`]) or restored from a saved
//! state, sent its input, its frames streamed to the caller as they arrive,
//! and QEMU gone afterwards, whatever happened.
//!
//! This file owns the public types and [`run`], which restores a saved VM
//! when there is a good one and falls back to a cold boot; [`phase`] has
//! the [`Phase`]s a VM goes through and decides, from the phase a restore
//! failed in, whether to boot cold and whether its snapshot goes;
//! [`attempt`] runs one VM from QEMU's start to the end of the run, and
//! stops QEMU whatever happened.
//!
//! [`qemu`] starts QEMU, which joins the results port's and QMP's unix
//! sockets the host listens on; [`migrate`] saves and loads VMs through
//! QMP; [`argv`] builds the command line from [`config`]. QMP stops the VM
//! on a timeout and tells how it ended.

pub mod argv;
mod attempt;
mod config;
mod error;
mod input;
mod migrate;
mod phase;
mod qemu;
mod queue;
pub mod snapshot;

/// The subdirectory of a run's directory that a restore runs in (a cold
/// boot after a failed restore takes the run's directory itself).
const RESTORED: &str = "restored";

/// Bytes a VM puts below its run's directory in a unix socket's path, at
/// the most (a restore's results port): `Cache::run_dir` leaves room for
/// them.
pub const SOCKET_ROOM: usize = RESTORED.len() + 1 + attempt::RESULTS_SOCKET.len();

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmatrix_protocol::{Frame, Hello};

pub use argv::{Accel, Machine};
pub use config::{AccelChoice, QemuBinaries, VmConfig, QEMU_ENV};
pub use error::{Died, End, QmpError, RestoreError, SaveError, VmError, VmFailure};
pub use input::LaterInput;
pub use phase::Phase;

use crate::error_chain::error_chain;
use attempt::{Attempt, Hooks, How};
use phase::{after_restore, Fallback};
use snapshot::Slot;

/// What a VM is sent after its hello.
pub struct RunInput<'a> {
    /// The run's files, encoded as [`kmatrix_protocol::Input::File`]
    /// messages with their bytes (shared by every VM of the run).
    pub files: std::sync::Arc<Vec<u8>>,
    /// The kernel's plan.
    pub plan: &'a kmatrix_protocol::Plan,
    /// Messages to send after the start, as the front end gives them,
    /// until the run ends.
    pub later: Option<LaterInput>,
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
    pub save_error: Option<SaveError>,
    /// Its console's file (the restored VM's own, when it was restored).
    pub console: PathBuf,
    /// When each of its phases was reached.
    pub timings: VmTimings,
}

/// The instants of one VM's attempt, as time since QEMU was started (its
/// sockets bound, its process spawned), and the agent's own. Recorded for
/// `kmatrix bench boot --phases`; nothing here judges them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VmTimings {
    /// QEMU had joined its QMP and results sockets.
    pub joined: Duration,
    /// QMP was negotiated (its greeting and `qmp_capabilities`).
    pub qmp_ready: Duration,
    /// The agent's hello arrived (for a restored VM: QEMU resumed it).
    pub hello: Duration,
    /// A cold VM was saved (from the hello to here); `None` when not.
    pub saved: Option<Duration>,
    /// Every byte of the input was written to the port.
    pub input_sent: Option<Duration>,
    /// The agent's `Started` arrived.
    pub started: Duration,
    /// Its `Done` arrived.
    pub done: Duration,
    /// The acknowledgment was written.
    pub acked: Duration,
    /// QEMU had exited (the guest powered off), or was stopped.
    pub exited: Duration,
    /// The agent's own timings, when it sent them.
    pub agent: Option<kmatrix_protocol::AgentTimings>,
}

/// Boots `spec` (restored from its saved state when there is a good one),
/// sends it `input`, and passes every frame after its start to `on_frame`
/// as it arrives. `on_up` hears the hello once the agent has started the
/// run, `on_note` a line on anything worth knowing about the snapshot.
/// QEMU is gone when this returns, whatever happened.
///
/// A restore that fails before its run started ([`Phase::started`]) is
/// followed by a cold boot, which discards the saved VM first when the
/// failure blames it.
pub async fn run(
    config: &VmConfig,
    spec: BootSpec<'_>,
    input: RunInput<'_>,
    on_up: impl FnOnce(&Hello, Start),
    mut on_note: impl FnMut(String),
    on_frame: impl FnMut(Frame),
) -> Result<VmReport, VmFailure> {
    let mut hooks = Hooks {
        on_up: Some(on_up),
        on_frame,
    };
    let (tsc_khz, slot) = snapshot_slot(config, &spec)?;
    let attempt = Attempt {
        config,
        spec: &spec,
        dir: spec.dir,
        tsc_khz,
        input: &input,
    };
    if let (Some(slot), Some((state, meta))) = (&slot, slot.as_ref().and_then(Slot::load)) {
        let dir = spec.dir.join(RESTORED);
        std::fs::create_dir(&dir).map_err(|e| VmFailure::bare(Phase::Restoring, e.into()))?;
        let how = How::Restore {
            state,
            hello: meta.hello(),
        };
        let restored = Attempt {
            dir: &dir,
            ..attempt
        };
        match restored.run(how, &mut hooks).await {
            Ok(report) => return Ok(report),
            Err(failure) => match after_restore(failure.phase, &failure.kind) {
                Fallback::GiveUp => return Err(failure),
                Fallback::BootCold { discard } => {
                    on_note(cold_note(&failure, discard));
                    if discard {
                        slot.discard();
                    }
                }
            },
        }
    }
    // Saved unless a good snapshot is kept (a restore that ran out of time).
    let save = slot.as_ref().filter(|slot| slot.load().is_none());
    let report = attempt.run(How::Cold { save }, &mut hooks).await?;
    if let Some(err) = &report.save_error {
        on_note(format!(
            "saving the booted VM failed ({}); the next run boots cold again",
            error_chain(err)
        ));
    }
    Ok(report)
}

/// The TSC figure `spec`'s VM boots with and, with a store, its slot in it.
fn snapshot_slot(
    config: &VmConfig,
    spec: &BootSpec<'_>,
) -> Result<(Option<u64>, Option<Slot>), VmFailure> {
    let hardware = config.hardware(spec.machine);
    let arch = spec.machine.arch;
    let Some(store) = spec.snapshots else {
        return Ok((config.tsc_khz(arch), None));
    };
    // A snapshot's kernel command line holds the TSC figure: the same host
    // must give the same figure from run to run.
    let tsc_khz = store.tsc_khz(hardware);
    let initrd =
        std::fs::read(spec.initrd).map_err(|e| VmFailure::bare(Phase::Booting, e.into()))?;
    let slot = store.slot(snapshot::Inputs::new(
        config.qemu.get(arch),
        hardware,
        spec.kernel,
        &initrd,
        tsc_khz,
        store.agent(arch),
    ));
    Ok((tsc_khz, Some(slot)))
}

/// The notice of a cold boot after a restore that failed; `discard`ed says
/// whether its saved VM goes.
fn cold_note(failure: &VmFailure, discarded: bool) -> String {
    let why = error_chain(failure);
    if discarded {
        format!("the saved VM could not be restored ({why}); booting cold and saving it again")
    } else {
        format!("the restored VM did not start its run ({why}); booting cold, the saved VM is kept")
    }
}
