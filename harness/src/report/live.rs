//! Live lines: one per outcome as it arrives, so a long matrix shows
//! progress; shown through [`Printable`], since most carry what a guest
//! sent.

use std::io::Write;

use kmatrix_protocol::report::Outcome;

use super::printable::Printable;
use super::record::exit_status;
use crate::error_chain::error_chain;
use crate::event::{KernelOutcome, RunEvent};
use crate::vm::Start;

/// How a kernel's live line says it was restored (what `kmatrix bench`
/// looks for in a run's output).
pub const RESTORED: &str = "restored from its saved VM";

/// Writes one line per event to `out`.
pub struct LiveReporter<W> {
    out: Printable<W>,
}

impl<W: Write> LiveReporter<W> {
    /// A reporter writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Printable::new(out),
        }
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
                    Start::Restored => RESTORED.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_guest_sent_is_shown_not_obeyed() {
        let mut out = Vec::new();
        let mut live = LiveReporter::new(&mut out);
        live.report(&RunEvent::Notice {
            kernel: "6.1".into(),
            message: "\u{9b}2J\u{1b}[H".into(),
        })
        .unwrap();
        live.report(&RunEvent::AgentError {
            kernel: "6.1".into(),
            message: "\u{9d}0;owned\u{9c}".into(),
        })
        .unwrap();
        live.report(&RunEvent::Outcome {
            kernel: "6.1".into(),
            test: "a::load".into(),
            outcome: Outcome::failed("verifier: \u{85}\u{1b}[2K"),
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "     6.1  NOTE  ?2J?[H\n     6.1  ERROR agent: ?0;owned?\n     6.1  FAIL  a::load: verifier: ??[2K\n"
        );
    }
}
