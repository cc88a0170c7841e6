//! Bringing an attempt's VM up: [`Vm::boot_cold`] reads the hello and
//! saves the VM, [`Vm::restore`] resumes a loaded one; either gives an
//! [`Up`] VM, whose agent waits for its input.

use std::time::Duration;

use kmatrix_protocol::{Frame, Hello, VERSION};
use tokio::time::{timeout, Instant};

use crate::channel::{InputSink, ResultStream};
use crate::vm::error::{Died, SaveError};
use crate::vm::snapshot::Slot;
use crate::vm::{migrate, qemu, Phase, Start, VmError, VmTimings};

/// Time QEMU has to load a saved state and resume it; then, until its
/// run starts, the time a restored VM may go without taking any of its
/// input or saying anything (however large the input).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(15);

/// An attempt's QEMU and the phase its VM is in.
pub(super) struct Vm {
    pub qemu: qemu::Qemu,
    pub phase: Phase,
    /// When QEMU was started.
    pub begun: Instant,
    /// The instants reached so far.
    pub timings: VmTimings,
}

/// A VM whose agent is up and waits for its input: the port's two ends,
/// its hello, how it came up. Its QEMU stays the attempt's.
pub(super) struct Up<'vm> {
    pub vm: &'vm mut Vm,
    pub stream: ResultStream,
    pub sink: InputSink,
    pub hello: Hello,
    pub start: Start,
    pub save_error: Option<SaveError>,
    /// A restored VM's silence limit until its run starts.
    pub silence: Option<Duration>,
}

impl Vm {
    /// Waits for a booting kernel's agent to say hello within
    /// `boot_timeout`, and saves the VM into `save` (a save that fails
    /// leaves it running, unsaved).
    pub(super) async fn boot_cold(
        &mut self,
        boot_timeout: Duration,
        mut stream: ResultStream,
        mut sink: InputSink,
        save: Option<&Slot>,
    ) -> Result<Up<'_>, VmError> {
        let hello = match timeout(boot_timeout, stream.next()).await {
            Err(_) => return Err(VmError::BootTimeout(boot_timeout)),
            Ok(Ok(Some(Frame::Hello(hello)))) => hello,
            Ok(Ok(Some(other))) => return Err(VmError::NoHello(Box::new(other))),
            Ok(Ok(None)) => return Err(VmError::Died(Died::BeforeStart)),
            Ok(Err(err)) => return Err(err.into()),
        };
        if hello.version != VERSION {
            return Err(VmError::Version {
                guest: hello.version,
            });
        }
        self.timings.hello = self.begun.elapsed();
        let (start, save_error) = match save {
            None => (Start::Cold, None),
            Some(slot) => {
                self.phase = Phase::Saving;
                let saved = migrate::save_state(&self.qemu, &mut stream, &mut sink, slot, &hello);
                match timeout(migrate::SAVE_LIMIT, saved).await {
                    Ok(Ok(())) => (Start::Saved, None),
                    Ok(Err(err)) => (Start::Cold, Some(err)),
                    Err(_) => (Start::Cold, Some(SaveError::Timeout(migrate::SAVE_LIMIT))),
                }
            }
        };
        if save.is_some() {
            self.timings.saved = Some(self.begun.elapsed());
        }
        Ok(Up {
            vm: self,
            stream,
            sink,
            hello,
            start,
            save_error,
            silence: None,
        })
    }

    /// Waits for QEMU to load the saved state and resumes its VM, whose
    /// agent said `hello` before it was saved (within `boot_timeout` at
    /// the most).
    pub(super) async fn restore(
        &mut self,
        boot_timeout: Duration,
        stream: ResultStream,
        sink: InputSink,
        hello: Hello,
    ) -> Result<Up<'_>, VmError> {
        let deadline = self.begun + RESTORE_TIMEOUT.min(boot_timeout);
        migrate::resume_restored(&self.qemu, deadline).await?;
        self.timings.hello = self.begun.elapsed();
        Ok(Up {
            vm: self,
            stream,
            sink,
            hello,
            start: Start::Restored,
            save_error: None,
            silence: Some(RESTORE_TIMEOUT),
        })
    }
}
