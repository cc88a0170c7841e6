//! What `kmatrix exec` shows: the program's output as it arrives (prefixed
//! by the kernel when more than one runs), how it ended on each kernel, and,
//! when it is a libtest test binary, each test's outcome per kernel.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use kmatrix_protocol::{ExitInfo, Stream};

use super::{error_chain, Summary};
use crate::runner::{KernelOutcome, RunEvent};
use crate::suite::Outcome;

/// How a program ended, in words.
pub fn describe(info: &ExitInfo) -> String {
    match info {
        ExitInfo::Code(code) => format!("exit code {code}"),
        ExitInfo::Signal {
            signal,
            core_dumped,
        } => {
            let name = nix::sys::signal::Signal::try_from(*signal)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| "unknown".into());
            let core = if *core_dumped { ", core dumped" } else { "" };
            format!("killed by signal {signal} ({name}){core}")
        }
        ExitInfo::SpawnFailed(reason) => format!("could not start: {reason}"),
    }
}

/// A libtest result line: `test NAME ... ok|FAILED|ignored[, reason]`.
fn libtest_line(line: &str) -> Option<(&str, Outcome)> {
    let rest = line.strip_prefix("test ")?;
    let (name, verdict) = rest.rsplit_once(" ... ")?;
    let outcome = match verdict.trim_end() {
        "ok" => Outcome::Passed {
            detail: String::new(),
        },
        "FAILED" => Outcome::Failed {
            reason: "the test failed; its output is above".into(),
            verifier_log: None,
        },
        ignored if ignored.starts_with("ignored") => Outcome::Skipped {
            reason: ignored
                .strip_prefix("ignored, ")
                .unwrap_or("ignored")
                .to_owned(),
        },
        _ => return None,
    };
    Some((name.trim(), outcome))
}

/// Folds `kmatrix exec` events, echoing the program's output to `out` and
/// `err`.
pub struct ExecReporter<O, E> {
    out: O,
    err: E,
    kernels: Vec<String>,
    prefix: bool,
    partial: HashMap<(String, bool), Vec<u8>>,
    exits: BTreeMap<String, ExitInfo>,
    failures: BTreeMap<String, (String, Option<String>)>,
    tests: Vec<String>,
    outcomes: HashMap<(String, String), Outcome>,
    /// The test whose `---- NAME stdout ----` block is being read, per
    /// kernel, and what it printed.
    capturing: HashMap<String, String>,
    printed: HashMap<(String, String), String>,
}

impl<O: Write, E: Write> ExecReporter<O, E> {
    /// A reporter for a run on `kernels`.
    pub fn new(kernels: Vec<String>, out: O, err: E) -> Self {
        Self {
            out,
            err,
            prefix: kernels.len() > 1,
            kernels,
            partial: HashMap::new(),
            exits: BTreeMap::new(),
            failures: BTreeMap::new(),
            tests: Vec::new(),
            outcomes: HashMap::new(),
            capturing: HashMap::new(),
            printed: HashMap::new(),
        }
    }

    /// Shows one event.
    pub fn report(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match event {
            RunEvent::Output {
                kernel,
                stream,
                data,
            } => {
                let is_err = *stream == Stream::Stderr;
                if !self.prefix {
                    self.write_raw(is_err, data)?;
                }
                let buffer = self.partial.entry((kernel.clone(), is_err)).or_default();
                buffer.extend_from_slice(data);
                let mut lines = Vec::new();
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    lines.push(buffer.drain(..=end).collect::<Vec<u8>>());
                }
                for line in lines {
                    self.line(kernel, is_err, &line)?;
                }
                Ok(())
            }
            RunEvent::Exited { kernel, info } => {
                self.flush_partial(kernel)?;
                self.exits.insert(kernel.clone(), info.clone());
                Ok(())
            }
            RunEvent::KernelFinished {
                kernel,
                outcome: KernelOutcome::Failed(err),
            } => {
                self.flush_partial(kernel)?;
                let tail = err.console_tail().map(str::to_owned);
                self.failures
                    .insert(kernel.clone(), (error_chain(err), tail));
                Ok(())
            }
            RunEvent::AgentError { kernel, message } => {
                writeln!(self.err, "[{kernel}] kmatrix: agent: {message}")
            }
            RunEvent::KernelStarted { .. }
            | RunEvent::KernelBooted { .. }
            | RunEvent::Outcome { .. }
            | RunEvent::KernelFinished { .. } => Ok(()),
        }
    }

    fn line(&mut self, kernel: &str, is_err: bool, line: &[u8]) -> std::io::Result<()> {
        if self.prefix {
            let mut prefixed = format!("[{kernel}] ").into_bytes();
            prefixed.extend_from_slice(line);
            self.write_raw(is_err, &prefixed)?;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        // libtest prints a failed test's output as `---- NAME stdout ----`
        // blocks after the results; they become the failure's detail.
        if let Some(name) = text
            .strip_prefix("---- ")
            .and_then(|t| t.strip_suffix(" stdout ----"))
        {
            self.capturing.insert(kernel.to_owned(), name.to_owned());
            return Ok(());
        }
        if text == "failures:" || text.starts_with("test result:") {
            self.capturing.remove(kernel);
        }
        if let Some(name) = self.capturing.get(kernel) {
            let printed = self
                .printed
                .entry((kernel.to_owned(), name.clone()))
                .or_default();
            printed.push_str(text);
            printed.push('\n');
            return Ok(());
        }
        if let Some((name, outcome)) = libtest_line(text) {
            if !self.tests.iter().any(|t| t == name) {
                self.tests.push(name.to_owned());
            }
            self.outcomes
                .insert((kernel.to_owned(), name.to_owned()), outcome);
        }
        Ok(())
    }

    fn flush_partial(&mut self, kernel: &str) -> std::io::Result<()> {
        for is_err in [false, true] {
            if let Some(rest) = self.partial.remove(&(kernel.to_owned(), is_err)) {
                if !rest.is_empty() {
                    let mut rest = rest;
                    rest.push(b'\n');
                    self.line(kernel, is_err, &rest)?;
                }
            }
        }
        Ok(())
    }

    fn write_raw(&mut self, is_err: bool, data: &[u8]) -> std::io::Result<()> {
        let stream: &mut dyn Write = if is_err { &mut self.err } else { &mut self.out };
        stream.write_all(data)?;
        stream.flush()
    }

    /// Whether the program ran and exited 0 on every kernel.
    pub fn passed(&self) -> bool {
        self.kernels.iter().all(|k| {
            matches!(self.exits.get(k), Some(ExitInfo::Code(0))) && !self.failures.contains_key(k)
        })
    }

    /// One line per kernel: how the program ended there, and why a kernel
    /// failed (with its console's tail).
    pub fn statuses(&self, out: &mut impl Write) -> std::io::Result<()> {
        for kernel in &self.kernels {
            match (self.failures.get(kernel), self.exits.get(kernel)) {
                (Some((reason, tail)), _) => {
                    writeln!(out, "kmatrix: {kernel}: FAILED: {reason}")?;
                    if let Some(tail) = tail.as_deref().filter(|t| !t.is_empty()) {
                        writeln!(out, "kmatrix: {kernel}: console (last lines):\n{tail}")?;
                    }
                }
                (None, Some(ExitInfo::Code(0))) => {
                    writeln!(out, "kmatrix: {kernel}: ok (exit code 0)")?
                }
                (None, Some(info)) => {
                    writeln!(out, "kmatrix: {kernel}: FAILED: {}", describe(info))?
                }
                (None, None) => {
                    writeln!(out, "kmatrix: {kernel}: FAILED: the program never ended")?
                }
            }
        }
        Ok(())
    }

    /// The kernel labels, in order.
    pub fn kernels(&self) -> &[String] {
        &self.kernels
    }

    /// The per-test matrix, when the program printed libtest results.
    pub fn summary(&self) -> Option<Summary> {
        if self.tests.is_empty() {
            return None;
        }
        let mut summary = Summary::with(self.kernels.clone(), self.tests.clone());
        for (c, kernel) in self.kernels.iter().enumerate() {
            for (r, test) in self.tests.iter().enumerate() {
                let key = (kernel.clone(), test.clone());
                if let Some(outcome) = self.outcomes.get(&key) {
                    let outcome = match (outcome, self.printed.get(&key)) {
                        (Outcome::Failed { .. }, Some(printed)) => Outcome::Failed {
                            reason: format!("the test failed:\n{}", printed.trim_end()),
                            verifier_log: None,
                        },
                        (outcome, _) => outcome.clone(),
                    };
                    summary.set(c, r, outcome);
                }
            }
            let ended = self.exits.get(kernel).map(describe);
            for r in 0..self.tests.len() {
                if summary.cell(c, r).is_none() {
                    let reason = format!(
                        "did not run: {}",
                        ended.as_deref().unwrap_or("the kernel failed")
                    );
                    summary.set(
                        c,
                        r,
                        Outcome::Failed {
                            reason,
                            verifier_log: None,
                        },
                    );
                }
            }
            summary.finish(c, self.failures.get(kernel).cloned());
        }
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_lines() {
        assert!(matches!(
            libtest_line("test maps::counts ... ok"),
            Some(("maps::counts", Outcome::Passed { .. }))
        ));
        assert!(matches!(
            libtest_line("test a ... FAILED"),
            Some(("a", Outcome::Failed { .. }))
        ));
        match libtest_line("test slow ... ignored, needs 6.6") {
            Some(("slow", Outcome::Skipped { reason })) => assert_eq!(reason, "needs 6.6"),
            other => panic!("{other:?}"),
        }
        assert!(libtest_line("test result: ok. 1 passed").is_none());
        assert!(libtest_line("running 2 tests").is_none());
    }

    #[test]
    fn a_failed_tests_output_becomes_its_reason() {
        let mut reporter =
            ExecReporter::new(vec!["6.1".into(), "7.3".into()], Vec::new(), Vec::new());
        for line in [
            "test maps::counts ... FAILED\n",
            "\n",
            "failures:\n",
            "\n",
            "---- maps::counts stdout ----\n",
            "assertion failed: dropped >= 1\n",
            "\n",
            "failures:\n",
            "    maps::counts\n",
            "test result: FAILED. 0 passed; 1 failed\n",
        ] {
            let event = RunEvent::Output {
                kernel: "6.1".into(),
                stream: Stream::Stdout,
                data: line.as_bytes().to_vec(),
            };
            reporter.report(&event).unwrap();
        }
        let summary = reporter.summary().unwrap();
        assert_eq!(summary.rows, ["maps::counts"]);
        let echoed = String::from_utf8(reporter.out.clone()).unwrap();
        assert!(
            echoed.starts_with("[6.1] test maps::counts ... FAILED\n"),
            "{echoed}"
        );
        match summary.cell(0, 0) {
            Some(super::super::Cell::Done(Outcome::Failed { reason, .. })) => {
                assert_eq!(reason, "the test failed:\nassertion failed: dropped >= 1")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn describes_how_programs_end() {
        assert_eq!(describe(&ExitInfo::Code(3)), "exit code 3");
        assert_eq!(
            describe(&ExitInfo::Signal {
                signal: 11,
                core_dumped: true
            }),
            "killed by signal 11 (SIGSEGV), core dumped"
        );
    }
}
