//! Live lines: one per outcome as it arrives, so a long matrix shows progress.

use std::io::Write;

use kmatrix_protocol::report::Outcome;

use super::record::exit_status;
use crate::error_chain::error_chain;
use crate::runner::{KernelOutcome, RunEvent};
use crate::vm::Start;

/// Writes one line per event to `out`.
pub struct LiveReporter<W> {
    out: W,
}

impl<W: Write> LiveReporter<W> {
    /// A reporter writing to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Prints the line for `event`.
    pub fn report(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match event {
            RunEvent::KernelStarted { kernel, .. } => {
                writeln!(self.out, "{kernel:>8}  BOOT  starting VM")
            }
            RunEvent::KernelBooted {
                kernel,
                hello,
                start,
            } => writeln!(
                self.out,
                "{kernel:>8}  UP    {} ({}BTF), {}",
                hello.kernel_release,
                if hello.btf { "" } else { "no " },
                match start {
                    Start::Restored => "restored from its saved VM".to_owned(),
                    Start::Saved => format!(
                        "agent up {} ms after kernel start; VM saved for later runs",
                        hello.boot_ms
                    ),
                    Start::Cold => format!("agent up {} ms after kernel start", hello.boot_ms),
                }
            ),
            RunEvent::Notice { kernel, message } => {
                writeln!(self.out, "{kernel:>8}  NOTE  {message}")
            }
            RunEvent::Outcome {
                kernel,
                test: name,
                outcome,
            } => match outcome {
                Outcome::Passed { detail } => {
                    writeln!(self.out, "{kernel:>8}  PASS  {name} ({detail})")
                }
                Outcome::Failed { reason, .. } => {
                    writeln!(self.out, "{kernel:>8}  FAIL  {name}: {reason}")
                }
                Outcome::ExpectedFailure { reason } => {
                    writeln!(self.out, "{kernel:>8}  XFAIL {name}: {reason}")
                }
                Outcome::LoaderLimitation { reason } => {
                    writeln!(self.out, "{kernel:>8}  LIMIT {name}: {reason}")
                }
                Outcome::Skipped { reason } => {
                    writeln!(self.out, "{kernel:>8}  SKIP  {name}: {reason}")
                }
            },
            RunEvent::AgentError { kernel, message } => {
                writeln!(self.out, "{kernel:>8}  ERROR agent: {message}")
            }
            RunEvent::Splat {
                kernel,
                source,
                lines,
            } => {
                writeln!(
                    self.out,
                    "{kernel:>8}  SPLAT outside any test (from the {}):",
                    source.name()
                )?;
                for line in lines {
                    writeln!(self.out, "{kernel:>8}        {line}")?;
                }
                Ok(())
            }
            RunEvent::RunStarted { .. }
            | RunEvent::RunFinished
            | RunEvent::Output { .. }
            | RunEvent::Stats { .. }
            | RunEvent::Probed { .. } => Ok(()),
            RunEvent::Exited { kernel, info } => {
                writeln!(self.out, "{kernel:>8}  EXIT  {}", exit_status(info))
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
