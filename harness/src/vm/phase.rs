//! The phases a VM goes through, and the decisions made from the phase a
//! restored VM failed in: whether to boot cold, and whether its saved
//! state is discarded ([`after_restore`], [`condemns`]). Pure: tested
//! without VMs.
//!
//! ```text
//!  Booting ──► Saving ──┐            (cold; saving only with a store)
//!                       ├──► Up ──► Running ──► Done
//!  Restoring ───────────┘
//! ```

use super::VmError;

/// Where a VM is in its life; a [`super::VmFailure`] names the one it
/// failed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// QEMU starting and the kernel booting, until the agent's hello.
    Booting,
    /// A booted VM's agent prepared and the VM saved; a failed save leaves
    /// the VM running, unsaved.
    Saving,
    /// QEMU loading a saved state and resuming its VM.
    Restoring,
    /// The agent up: its input going in, until it starts the run.
    Up,
    /// The agent's run, until its `Done` is acknowledged.
    Running,
    /// The run ended; QEMU powers off.
    Done,
}

impl Phase {
    /// Whether the agent had started the run: a failure before that is the
    /// machinery's, not anything the VM ran.
    pub fn started(self) -> bool {
        matches!(self, Phase::Running | Phase::Done)
    }
}

/// What follows a restored VM's failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fallback {
    /// The run had started: the failure is the kernel's result.
    GiveUp,
    /// Boot cold instead; `discard` the saved state first if it is to
    /// blame ([`condemns`]), so that the cold boot saves a new one.
    BootCold {
        /// Whether the saved state is discarded.
        discard: bool,
    },
}

/// What follows a restored VM failing with `kind` in `phase`.
pub(super) fn after_restore(phase: Phase, kind: &VmError) -> Fallback {
    if phase.started() {
        Fallback::GiveUp
    } else {
        Fallback::BootCold {
            discard: condemns(kind),
        }
    }
}

/// Whether a restore that failed before the run started condemns its
/// snapshot: QEMU could not load or resume it, the guest died, or it runs
/// another kernel. Running out of time once the VM resumed says nothing
/// against the state (a large input may take long to reach the guest).
pub(super) fn condemns(kind: &VmError) -> bool {
    !matches!(kind, VmError::RunTimeout(_) | VmError::Unresponsive(_))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::error::{Died, RestoreError};
    use super::*;

    fn run_timeout() -> VmError {
        VmError::RunTimeout(Duration::from_secs(300))
    }

    #[test]
    fn only_a_state_that_failed_condemns_its_snapshot() {
        assert!(condemns(&VmError::Restore(RestoreError::LoadTimeout)));
        assert!(condemns(&VmError::Died(Died::BeforeStart)));
        assert!(condemns(&VmError::WrongKernel {
            expected: "6.1.0".into(),
            found: "5.10.0".into(),
        }));
        assert!(!condemns(&run_timeout()));
        assert!(!condemns(&VmError::Unresponsive(Duration::from_secs(15))));
    }

    #[test]
    fn a_restore_that_failed_before_the_run_boots_cold() {
        let died = || VmError::Died(Died::BeforeStart);
        for phase in [Phase::Restoring, Phase::Up] {
            assert_eq!(
                after_restore(phase, &died()),
                Fallback::BootCold { discard: true },
                "{phase:?}"
            );
            assert_eq!(
                after_restore(phase, &run_timeout()),
                Fallback::BootCold { discard: false },
                "{phase:?}"
            );
        }
    }

    #[test]
    fn a_restored_vm_that_started_its_run_is_not_retried() {
        for phase in [Phase::Running, Phase::Done] {
            assert_eq!(after_restore(phase, &run_timeout()), Fallback::GiveUp);
            assert_eq!(
                after_restore(phase, &VmError::Died(Died::BeforeLastResult)),
                Fallback::GiveUp
            );
        }
    }

    #[test]
    fn only_a_started_run_counts_against_the_kernel() {
        let started: Vec<_> = [
            Phase::Booting,
            Phase::Saving,
            Phase::Restoring,
            Phase::Up,
            Phase::Running,
            Phase::Done,
        ]
        .into_iter()
        .filter(|p| p.started())
        .collect();
        assert_eq!(started, [Phase::Running, Phase::Done]);
    }
}
