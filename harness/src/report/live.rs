//! Live lines: one per outcome as it arrives, so a long matrix shows progress.

use std::io::Write;

use super::error_chain;
use crate::runner::{KernelOutcome, RunEvent};
use crate::suite::{Outcome, Suite};

/// Writes one line per event to `out`.
pub struct LiveReporter<'a, W> {
    out: W,
    suite: &'a Suite,
}

impl<'a, W: Write> LiveReporter<'a, W> {
    /// A reporter naming tests as `suite` does.
    pub fn new(out: W, suite: &'a Suite) -> Self {
        Self { out, suite }
    }

    /// Prints the line for `event`.
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
            RunEvent::Outcome {
                kernel,
                test,
                outcome,
            } => {
                let name = self.suite.tests.get(*test).map_or("?", |t| t.name.as_str());
                match outcome {
                    Outcome::Passed { detail } => {
                        writeln!(self.out, "{kernel:>8}  PASS  {name} ({detail})")
                    }
                    Outcome::Failed { reason, .. } => {
                        writeln!(self.out, "{kernel:>8}  FAIL  {name}: {reason}")
                    }
                    Outcome::ExpectedFailure { reason } => {
                        writeln!(self.out, "{kernel:>8}  XFAIL {name}: {reason}")
                    }
                    Outcome::Skipped { reason } => {
                        writeln!(self.out, "{kernel:>8}  SKIP  {name}: {reason}")
                    }
                }
            }
            RunEvent::AgentError { kernel, message } => {
                writeln!(self.out, "{kernel:>8}  ERROR agent: {message}")
            }
            RunEvent::Output { .. } => Ok(()),
            RunEvent::Exited { kernel, info } => {
                writeln!(
                    self.out,
                    "{kernel:>8}  EXIT  {}",
                    crate::report::exec::describe(info)
                )
            }
            RunEvent::KernelFinished { kernel, outcome } => match outcome {
                KernelOutcome::Completed { boot, total, .. } => writeln!(
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
