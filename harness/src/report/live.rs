//! Live lines: one per result as it arrives, so a long matrix shows progress.

use std::io::Write;

use kmatrix_protocol::Verdict;

use super::{error_chain, verifier_reason};
use crate::objects::TestObject;
use crate::runner::{KernelOutcome, RunEvent};

/// Writes one line per event to `out`.
pub struct LiveReporter<'a, W> {
    out: W,
    objects: &'a [TestObject],
}

impl<'a, W: Write> LiveReporter<'a, W> {
    /// A reporter naming objects as `objects` does.
    pub fn new(out: W, objects: &'a [TestObject]) -> Self {
        Self { out, objects }
    }

    /// Prints the line for `event`, if it has one.
    pub fn report(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match event {
            RunEvent::KernelStarted { kernel } => {
                writeln!(self.out, "{kernel:>8}  BOOT  starting VM")
            }
            RunEvent::KernelBooted { kernel, hello } => writeln!(
                self.out,
                "{kernel:>8}  UP    {} ({}BTF), agent up {} ms after kernel start",
                hello.kernel_release,
                if hello.btf { "" } else { "no " },
                hello.boot_ms
            ),
            RunEvent::Program { kernel, result } => {
                let object = self
                    .objects
                    .get(result.object as usize)
                    .map_or("?", |o| o.name.as_str());
                let name = format!("{object}:{}", result.program);
                let ms = result.load_us as f64 / 1000.0;
                match &result.verdict {
                    Verdict::Loaded => writeln!(
                        self.out,
                        "{kernel:>8}  PASS  {name} ({}, {ms:.1} ms)",
                        result.section
                    ),
                    Verdict::Rejected {
                        error,
                        verifier_log,
                    } => writeln!(
                        self.out,
                        "{kernel:>8}  FAIL  {name} ({}): verifier: {} ({error})",
                        result.section,
                        verifier_reason(verifier_log).unwrap_or("rejected")
                    ),
                    Verdict::Failed { error } => writeln!(
                        self.out,
                        "{kernel:>8}  FAIL  {name} ({}): {error}",
                        result.section
                    ),
                }
            }
            RunEvent::AgentError { kernel, message } => {
                writeln!(self.out, "{kernel:>8}  ERROR agent: {message}")
            }
            RunEvent::KernelFinished { kernel, outcome } => match outcome {
                KernelOutcome::Completed { boot, total } => writeln!(
                    self.out,
                    "{kernel:>8}  DONE  in {:.1} s (boot {:.1} s)",
                    total.as_secs_f64(),
                    boot.as_secs_f64()
                ),
                KernelOutcome::Failed(err) => {
                    writeln!(self.out, "{kernel:>8}  ERROR {}", error_chain(err))
                }
            },
        }
    }
}
