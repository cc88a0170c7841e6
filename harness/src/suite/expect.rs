//! Judging the guest's raw results against the suite's expectations.

use kmatrix_protocol::{CaseOutcome, CaseResult, ProgramResult, Verdict};

use super::file::RawNumber;
use super::{KernelPlan, Suite};
use crate::kernels::KernelEntry;
use crate::objects::TestRunKind;

/// The outcome of one test on one kernel. Its JSON form (`outcome` names
/// the variant) is part of the `--json` schema.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// It did what the suite expects.
    Passed {
        /// A short note (load time, return value and run time).
        detail: String,
    },
    /// It did not.
    Failed {
        /// Why: expected against actual.
        reason: String,
        /// The verifier's log, when the verifier was involved.
        verifier_log: Option<String>,
    },
    /// It failed where the suite says it must.
    ExpectedFailure {
        /// The suite's reason, and what happened.
        reason: String,
    },
    /// It was not run.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// Whether this outcome fails the run.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
}

const XDP: &[(&str, u32)] = &[
    ("XDP_ABORTED", 0),
    ("XDP_DROP", 1),
    ("XDP_PASS", 2),
    ("XDP_TX", 3),
    ("XDP_REDIRECT", 4),
];
const TC: &[(&str, u32)] = &[
    ("TC_ACT_UNSPEC", u32::MAX),
    ("TC_ACT_OK", 0),
    ("TC_ACT_RECLASSIFY", 1),
    ("TC_ACT_SHOT", 2),
    ("TC_ACT_PIPE", 3),
    ("TC_ACT_STOLEN", 4),
    ("TC_ACT_QUEUED", 5),
    ("TC_ACT_REPEAT", 6),
    ("TC_ACT_REDIRECT", 7),
];
const SK: &[(&str, u32)] = &[("SK_DROP", 0), ("SK_PASS", 1)];
const FLOW: &[(&str, u32)] = &[("BPF_OK", 0), ("BPF_DROP", 2)];

fn names(kind: TestRunKind) -> &'static [(&'static str, u32)] {
    match kind {
        TestRunKind::Xdp => XDP,
        TestRunKind::Tc => TC,
        TestRunKind::CgroupSkb => SK,
        TestRunKind::FlowDissector => FLOW,
        TestRunKind::SocketFilter
        | TestRunKind::RawTracepoint
        | TestRunKind::SkLookup
        | TestRunKind::Tracing => &[],
    }
}

/// A return value from the suite: a number, or a name the program's kind
/// uses.
pub(super) fn return_value(kind: TestRunKind, raw: &RawNumber) -> Result<u32, String> {
    match raw {
        RawNumber::Number(n) => u32::try_from(*n)
            .or_else(|_| i32::try_from(*n).map(|n| n as u32))
            .map_err(|_| format!("expect_return {n} is not a 32-bit value")),
        RawNumber::Name(name) => names(kind)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let known: Vec<_> = names(kind).iter().map(|(n, _)| *n).collect();
                if known.is_empty() {
                    format!(
                        "expect_return `{name}`: give this program kind's return value as a number"
                    )
                } else {
                    format!("expect_return `{name}` is not one of {}", known.join(", "))
                }
            }),
    }
}

/// A return value as the program's kind names it, e.g. `XDP_DROP (1)`.
fn show_return(kind: Option<TestRunKind>, value: u32) -> String {
    match kind.and_then(|k| names(k).iter().find(|(_, v)| *v == value)) {
        Some((name, _)) => format!("{name} ({value})"),
        None => value.to_string(),
    }
}

/// Bytes as a number when they fit in 8 (how counters are written), else hex.
fn show_bytes(bytes: &[u8]) -> String {
    if bytes.len() <= 8 {
        let mut buf = [0u8; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(buf).to_string()
    } else {
        hex::encode(bytes)
    }
}

/// Turns one kernel's raw results into outcomes.
pub struct KernelCheck<'a> {
    suite: &'a Suite,
    kernel: &'a KernelEntry,
    programs: Vec<Vec<usize>>,
}

impl<'a> KernelCheck<'a> {
    /// A check for `kernel`, with the plan it runs; returns the outcomes
    /// already decided (skips).
    pub fn new(suite: &'a Suite, kernel: &'a KernelEntry, plan: &KernelPlan) -> Self {
        Self {
            suite,
            kernel,
            programs: plan.programs.clone(),
        }
    }

    /// Outcomes for a program's load result: its load test and, when it did
    /// not load, its cases.
    pub fn program(&self, result: &ProgramResult) -> Vec<(usize, Outcome)> {
        let object = result.object as usize;
        let Some(spec) = self
            .suite
            .programs
            .get(object)
            .and_then(|specs| specs.iter().find(|s| s.name == result.program))
        else {
            return Vec::new();
        };
        let must_load = spec
            .load_on
            .as_ref()
            .is_none_or(|e| e.kernels.matches(self.kernel));
        let loaded = matches!(result.verdict, Verdict::Loaded);
        let failure = || match &result.verdict {
            Verdict::Loaded => (String::new(), None),
            Verdict::Rejected {
                error,
                verifier_log,
            } => (
                match crate::report::verifier_reason(verifier_log) {
                    Some(line) => format!("verifier: {line} ({error})"),
                    None => format!("rejected ({error})"),
                },
                Some(verifier_log.clone()),
            ),
            Verdict::Failed { error } => (error.clone(), None),
        };
        let load = match (&spec.load_on, must_load, loaded) {
            (_, true, true) => Outcome::Passed {
                detail: format!("{}, {:.1} ms", result.section, result.load_us as f64 / 1000.0),
            },
            (_, true, false) => {
                let (reason, verifier_log) = failure();
                Outcome::Failed {
                    reason,
                    verifier_log,
                }
            }
            (Some(expectation), false, false) => Outcome::ExpectedFailure {
                reason: format!("{} ({})", expectation.reason, failure().0),
            },
            (Some(expectation), false, true) => Outcome::Failed {
                reason: format!(
                    "unexpectedly loaded: the suite expects it to load only on {} ({}); update the expectation",
                    expectation.kernels, expectation.reason
                ),
                verifier_log: None,
            },
            (None, false, _) => unreachable!("no expectation means it must load"),
        };
        let mut outcomes = vec![(spec.load_test, load)];
        if !loaded {
            let reason = "not run: the program did not load".to_owned();
            outcomes.extend(spec.cases.iter().map(|case| {
                (
                    case.test,
                    Outcome::Skipped {
                        reason: reason.clone(),
                    },
                )
            }));
        }
        outcomes
    }

    /// The outcome of one case.
    pub fn case(&self, result: &CaseResult) -> Option<(usize, Outcome)> {
        let object = result.object as usize;
        let program = *self.programs.get(object)?.get(result.program as usize)?;
        let spec = &self.suite.programs[object][program];
        let case = spec.cases.get(result.case as usize)?;
        let outcome = match &result.outcome {
            CaseOutcome::Error(error) => Outcome::Failed {
                reason: error.clone(),
                verifier_log: None,
            },
            CaseOutcome::Ran {
                retval,
                duration_ns,
                output,
                reads,
            } => {
                let mut wrong = Vec::new();
                if let Some(expected) = case.expect_return {
                    if expected != *retval {
                        wrong.push(format!(
                            "return value: expected {}, got {}",
                            show_return(spec.test_run, expected),
                            show_return(spec.test_run, *retval)
                        ));
                    }
                }
                if let Some(expected) = &case.expect_output {
                    if output.as_ref() != Some(expected) {
                        wrong.push(format!(
                            "output packet: expected {}, got {}",
                            hex::encode(expected),
                            output.as_deref().map_or_else(|| "none".into(), hex::encode)
                        ));
                    }
                }
                for ((read, expected), actual) in
                    case.plan.reads.iter().zip(&case.expect_maps).zip(reads)
                {
                    if actual.as_ref() != Some(expected) {
                        wrong.push(format!(
                            "map `{}`[{}]: expected {}, got {}",
                            read.map,
                            show_bytes(&read.key),
                            show_bytes(expected),
                            actual
                                .as_deref()
                                .map_or_else(|| "no entry".into(), show_bytes)
                        ));
                    }
                }
                if wrong.is_empty() {
                    Outcome::Passed {
                        detail: format!(
                            "{}, {duration_ns} ns",
                            show_return(spec.test_run, *retval)
                        ),
                    }
                } else {
                    Outcome::Failed {
                        reason: wrong.join("; "),
                        verifier_log: None,
                    }
                }
            }
        };
        Some((case.test, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_values_by_name_or_number() {
        let name = |s: &str| RawNumber::Name(s.into());
        assert_eq!(return_value(TestRunKind::Xdp, &name("XDP_DROP")), Ok(1));
        assert_eq!(return_value(TestRunKind::Tc, &name("TC_ACT_SHOT")), Ok(2));
        assert_eq!(
            return_value(TestRunKind::Tc, &RawNumber::Number(-1)),
            Ok(u32::MAX)
        );
        assert_eq!(
            return_value(TestRunKind::SocketFilter, &RawNumber::Number(64)),
            Ok(64)
        );
        let err = return_value(TestRunKind::Xdp, &name("TC_ACT_SHOT")).unwrap_err();
        assert!(err.contains("is not one of XDP_ABORTED, XDP_DROP"), "{err}");
        assert_eq!(show_return(Some(TestRunKind::Xdp), 2), "XDP_PASS (2)");
        assert_eq!(show_return(None, 7), "7");
        assert_eq!(show_bytes(&3u64.to_le_bytes()), "3");
    }
}
