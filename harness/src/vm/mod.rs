//! One VM: booted cold (and saved, [`snapshot`]) or restored from a saved
//! state, sent its input, its frames streamed to the caller as they arrive,
//! and QEMU gone afterwards, whatever happened.
//!
//! This file owns the public types and [`run`], which restores a saved VM
//! when there is a good one and falls back to a cold boot, and [`condemns`],
//! which decides whether a failed restore discards its snapshot;
//! [`attempt`] runs one VM from QEMU's start to the end of the run.
//!
//! [`qemu`] starts QEMU, which joins the results port's and QMP's unix
//! sockets the host listens on; [`migrate`] saves and loads VMs through
//! QMP; [`argv`] builds the command line from [`config`]. QMP stops the VM
//! on a timeout and tells how it ended.

pub mod argv;
mod attempt;
mod config;
mod error;
mod migrate;
mod qemu;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmatrix_protocol::{Frame, Hello};

pub use argv::{Accel, Machine};
pub use config::{AccelChoice, QemuBinaries, VmConfig, QEMU_ENV};
pub use error::{VmError, VmFailure};

use attempt::{attempt, How};
use snapshot::Slot;

/// What a VM is sent after its hello.
pub struct RunInput<'a> {
    /// The run's files, encoded as [`kmatrix_protocol::Input::File`]
    /// messages with their bytes (shared by every VM of the run).
    pub files: std::sync::Arc<Vec<u8>>,
    /// The kernel's plan.
    pub plan: &'a kmatrix_protocol::Plan,
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
    /// Its console's file (the restored VM's own, when it was restored).
    pub console: PathBuf,
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
    let hardware = config.hardware(spec.machine);
    // A snapshot's kernel command line holds the TSC figure: the same host
    // must give the same figure from run to run.
    let tsc_khz = match spec.snapshots {
        Some(store) => store.tsc_khz(hardware),
        None => config.tsc_khz(spec.machine.arch),
    };
    let slot = match spec.snapshots {
        Some(store) => {
            let initrd = std::fs::read(spec.initrd).map_err(|e| VmFailure {
                kind: VmError::Io(e),
                console_tail: String::new(),
                started: false,
            })?;
            let arch = spec.machine.arch;
            Some(store.slot(snapshot::Inputs::new(
                config.qemu.get(arch),
                hardware,
                spec.kernel,
                &initrd,
                tsc_khz,
                store.agent(arch),
            )))
        }
        None => None,
    };
    if let Some((state, meta)) = slot.as_ref().and_then(Slot::load) {
        let dir = spec.dir.join("restored");
        std::fs::create_dir(&dir).map_err(|e| VmFailure {
            kind: VmError::Io(e),
            console_tail: String::new(),
            started: false,
        })?;
        let mut started = false;
        let how = How::Restore {
            state,
            hello: meta.hello(),
        };
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
            Err(failure) if condemns(&failure.kind) => {
                on_note(format!(
                    "the saved VM could not be restored ({}); booting cold and saving it again",
                    crate::error_chain::error_chain(&failure)
                ));
                if let Some(slot) = &slot {
                    slot.discard();
                }
            }
            Err(failure) => on_note(format!(
                "the restored VM did not start its run ({}); booting cold, the saved VM is kept",
                crate::error_chain::error_chain(&failure)
            )),
        }
    }
    // Saved unless a good snapshot is kept (a restore that ran out of time).
    let how = How::Cold {
        save: slot.as_ref().filter(|slot| slot.load().is_none()),
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

/// Whether a restore that failed before the run started condemns its
/// snapshot: QEMU could not load or resume it, the guest died, or it runs
/// another kernel. Running out of time once the VM resumed says nothing
/// against the state (a large input may take long to reach the guest).
fn condemns(kind: &VmError) -> bool {
    !matches!(kind, VmError::RunTimeout(_) | VmError::Unresponsive(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use attempt::RESTORE_TIMEOUT;

    #[test]
    fn only_a_state_that_failed_condemns_its_snapshot() {
        assert!(condemns(&VmError::Restore("load failed".into())));
        assert!(condemns(&VmError::Died("before the agent started".into())));
        assert!(condemns(&VmError::WrongKernel {
            expected: "6.1.0".into(),
            found: "5.10.0".into(),
        }));
        assert!(!condemns(&VmError::RunTimeout(Duration::from_secs(300))));
        assert!(!condemns(&VmError::Unresponsive(RESTORE_TIMEOUT)));
    }
}
