//! One kernel's frames, judged: [`KernelJudge`] turns each [`Frame`] the
//! guest sends into the [`RunEvent`]s it means, and says once the VM has
//! ended what only the end shows. It does no I/O: the runner feeds it
//! frames and the console's text, and sends what comes out.

use kmatrix_protocol::{splat, ExecPlan, Frame};

use super::libtest::Libtest;
use super::suite::KernelCheck;
use super::Outcome;
use crate::event::{JudgeError, RunEvent, SplatSource};
use crate::kernels::KernelEntry;
use crate::suite::{KernelPlan, Suite};

/// Judges one kernel's run of a suite, or of `kmatrix exec`'s program.
pub struct KernelJudge<'a> {
    suite: &'a Suite,
    kernel: &'a KernelEntry,
    plan: &'a KernelPlan,
    check: KernelCheck<'a>,
    /// Under `kmatrix exec`, its program's output, read as a test
    /// binary's (whatever the program is).
    libtest: Option<Libtest>,
    /// The tests a test binary was asked for by `--exact` name.
    exact: Option<Vec<String>>,
    /// Whether the executed program ended.
    exited: bool,
    /// The headlines of the splats the agent reported: the console shows
    /// them again.
    splats: Vec<String>,
}

impl<'a> KernelJudge<'a> {
    /// A judge for `kernel` running `plan`, and `exec`'s program after it
    /// under `kmatrix exec`.
    pub fn new(
        suite: &'a Suite,
        kernel: &'a KernelEntry,
        plan: &'a KernelPlan,
        exec: Option<&ExecPlan>,
    ) -> Self {
        Self {
            suite,
            kernel,
            plan,
            check: KernelCheck::new(suite, kernel, plan),
            libtest: exec.map(|_| Libtest::default()),
            // A runner that asks for tests by name (cargo-nextest: one
            // `--exact NAME` per call) must not see a run of none as a
            // pass.
            exact: exec.and_then(|exec| {
                crate::host_list::exact_names(exec.argv.get(1..).unwrap_or_default())
            }),
            exited: false,
            splats: Vec::new(),
        }
    }

    /// The outcomes decided on the host, before the VM runs: tests skipped
    /// on this kernel, and a loader's limitation known without asking.
    pub fn skipped(&self) -> Vec<RunEvent> {
        self.suite
            .narrow(self.plan.skipped.clone())
            .into_iter()
            .map(|(test, outcome)| self.outcome(self.name(test), outcome))
            .collect()
    }

    /// What one frame means, in the order it is to be reported.
    pub fn frame(&mut self, frame: Frame) -> Vec<RunEvent> {
        let kernel = self.kernel.label.clone();
        match frame {
            Frame::Program(result) => {
                self.seen(&result.kernel_log);
                let outcomes = self.check.program(&result);
                let mut events: Vec<RunEvent> = self
                    .suite
                    .narrow(outcomes)
                    .into_iter()
                    .map(|(test, outcome)| self.outcome(self.name(test), outcome))
                    .collect();
                let load_test = self.check.load_test(&result);
                if let Some(test) = load_test.filter(|&t| self.suite.asked(t)) {
                    if !result.stats.is_empty() {
                        events.push(RunEvent::Stats {
                            kernel,
                            test: self.name(test).to_owned(),
                            stats: result.stats,
                        });
                    }
                }
                events
            }
            Frame::Probed(probe) => {
                self.check.probed(&probe);
                vec![RunEvent::Probed { kernel, probe }]
            }
            Frame::Case(result) => {
                self.seen(&result.kernel_log);
                let outcomes = self.check.case(&result).into_iter().collect();
                self.suite
                    .narrow(outcomes)
                    .into_iter()
                    .map(|(test, outcome)| self.outcome(self.name(test), outcome))
                    .collect()
            }
            Frame::Splat(lines) => {
                self.seen(&lines);
                // A splat while a test of the binary runs fails that test.
                match self.libtest.as_mut().and_then(|l| l.splat(&lines)) {
                    Some(_) => Vec::new(),
                    None => vec![RunEvent::Splat {
                        kernel,
                        source: SplatSource::Kmsg,
                        lines,
                    }],
                }
            }
            Frame::AgentError(message) => vec![RunEvent::AgentError { kernel, message }],
            Frame::Output { stream, data } => {
                let outcomes = self.libtest.as_mut().map(|l| l.feed(stream, &data));
                let mut events = self.exec_outcomes(outcomes);
                events.push(RunEvent::Output {
                    kernel,
                    stream,
                    data,
                });
                events
            }
            Frame::Exit(info) => {
                self.exited = true;
                let outcomes = self.libtest.as_mut().map(Libtest::finish);
                let mut events = self.exec_outcomes(outcomes);
                events.push(RunEvent::Exited { kernel, info });
                events
            }
            Frame::Hello(_)
            | Frame::Done
            | Frame::Prepared
            | Frame::Started { .. }
            | Frame::Queue { .. }
            | Frame::Timings(_) => Vec::new(),
        }
    }

    /// The end of the kernel's console, once the VM has ended cleanly: the
    /// second source of splats, which holds those the agent could not
    /// report (printed as the kernel went down, or one that stopped the
    /// agent). Each of its splats the agent did not report is.
    pub fn console(&mut self, console: &str) -> Vec<RunEvent> {
        let lines: Vec<&str> = console.lines().collect();
        let mut events = Vec::new();
        for found in splat::find_all(&lines) {
            if self.splats.contains(&found.headline) {
                continue;
            }
            self.splats.push(found.headline);
            events.push(RunEvent::Splat {
                kernel: self.kernel.label.clone(),
                source: SplatSource::Console,
                lines: found.lines,
            });
        }
        events
    }

    /// Whether what ran fails the kernel though its VM ended cleanly: under
    /// `kmatrix exec`, a program that never ended, or a test binary asked
    /// for tests by `--exact` name that ran none.
    pub fn finish(self) -> Result<(), JudgeError> {
        if self.libtest.is_some() && !self.exited {
            return Err(JudgeError::NoExit);
        }
        if let (Some(names), Some(0)) = (self.exact, self.libtest.and_then(|l| l.running())) {
            return Err(JudgeError::NoTestMatched(names.join(" or ")));
        }
        Ok(())
    }

    /// Notes the splat in a stretch of the kernel's log, by headline.
    fn seen(&mut self, log: &[String]) {
        self.splats
            .extend(splat::find_all(log).into_iter().map(|s| s.headline));
    }

    fn name(&self, test: usize) -> &'a str {
        &self.suite.tests[test].name
    }

    fn outcome(&self, test: &str, outcome: Outcome) -> RunEvent {
        RunEvent::Outcome {
            kernel: self.kernel.label.clone(),
            test: test.to_owned(),
            outcome,
        }
    }

    fn exec_outcomes(&self, outcomes: Option<Vec<(String, Outcome)>>) -> Vec<RunEvent> {
        outcomes
            .into_iter()
            .flatten()
            .map(|(test, outcome)| self.outcome(&test, outcome))
            .collect()
    }
}
