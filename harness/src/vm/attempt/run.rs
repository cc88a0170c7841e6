//! An [`Up`] VM's run: its input sent, the agent's `Started` waited for
//! (then the caller told, through its [`Hooks`]), every frame passed on to
//! `Done`, and `Done` acknowledged.

use std::path::Path;
use std::time::Duration;

use kmatrix_protocol::{Frame, Hello};
use tokio::time::Instant;

use super::frames::{results, Waiting};
use super::up::Up;
use crate::vm::{input, Phase, RunInput, Start, VmError, VmReport};

/// What the caller hears from a VM: `on_up` the hello and how it came up,
/// once the agent started the run; `on_frame` every frame from then on
/// (and problems writing files before).
pub(in crate::vm) struct Hooks<U, F> {
    /// Taken when the run starts.
    pub on_up: Option<U>,
    /// Called with each frame.
    pub on_frame: F,
}

impl Up<'_> {
    /// Sends `input`, waits for the run to start (then tells `hooks`),
    /// and passes every frame to `Done` within `run_timeout`, which is
    /// acknowledged; `dir` is the attempt's.
    pub(super) async fn run(
        mut self,
        input: &RunInput<'_>,
        dir: &Path,
        run_timeout: Duration,
        hooks: &mut Hooks<impl FnOnce(&Hello, Start), impl FnMut(Frame)>,
    ) -> Result<VmReport, VmError> {
        self.vm.phase = Phase::Up;
        let sent = self.sink.sent();
        let writer = input::send(self.sink, input);
        let waiting = Waiting {
            expected: &self.hello.kernel_release,
            run_timeout,
            silence: self.silence,
        };
        let on_frame = &mut hooks.on_frame;
        waiting.started(&mut self.stream, &sent, on_frame).await?;
        self.vm.phase = Phase::Running;
        let boot = self.vm.begun.elapsed();
        self.vm.timings.started = boot;
        if let Some(on_up) = hooks.on_up.take() {
            on_up(&self.hello, self.start);
        }
        let hello_at = Instant::now();
        let qemu = &self.vm.qemu;
        let mut agent = None;
        let stream = &mut self.stream;
        results(qemu, stream, dir, run_timeout, &mut agent, on_frame).await?;
        let run = hello_at.elapsed();
        let begun = self.vm.begun;
        let timings = &mut self.vm.timings;
        timings.done = begun.elapsed();
        timings.agent = agent;
        // The agent powers off once it has the acknowledgment.
        let (mut sink, sent_at) = writer.finish().await?;
        timings.input_sent = Some(sent_at - begun);
        sink.ack().await?;
        timings.acked = begun.elapsed();
        self.vm.phase = Phase::Done;
        Ok(VmReport {
            hello: self.hello,
            boot,
            run,
            start: self.start,
            save_error: self.save_error,
            console: dir.join("console.log"),
            timings: self.vm.timings.clone(),
        })
    }
}
