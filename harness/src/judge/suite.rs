//! Judging the guest's raw results against the suite's expectations: each
//! program's load verdict and each case's return value, output packet and
//! map values become [`Outcome`]s for the tests of [`Suite::tests`].

use kmatrix_protocol::report::Outcome;
use kmatrix_protocol::{
    CaseOutcome, CaseResult, Feature, Loader, Probe, ProgramResult, TestRunKind, Verdict,
};

use std::collections::HashMap;

use super::verifier;
use crate::kernels::KernelEntry;
use crate::suite::{not_loaded, Expectation, KernelPlan, Planned, ProgramSpec, Suite};
use kmatrix_protocol::splat;

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

/// Why a program need not load on a kernel.
enum Excuse<'a> {
    /// The kernel lacks these required features.
    Lacks(String),
    /// The suite's kernel constraint leaves this kernel out.
    Constraint(&'a Expectation),
}

/// One loader's verdict on a program and what the kernel logged during
/// it, waiting for the other loader's under `--loader both`.
type FirstVerdict = (Loader, Verdict, Vec<String>);

/// Turns one kernel's raw results into outcomes, as they arrive.
pub struct KernelCheck<'a> {
    suite: &'a Suite,
    kernel: &'a KernelEntry,
    /// Per object, each program planned with its own loader.
    programs: &'a [Vec<Planned>],
    /// What the guest's feature probes found.
    probed: HashMap<Feature, Option<bool>>,
    /// Under `--loader both`, the first verdict of each (object, program),
    /// until the other loader's arrives.
    first: HashMap<(u32, String), FirstVerdict>,
}

impl<'a> KernelCheck<'a> {
    /// A check for `kernel`, with the plan it runs.
    pub fn new(suite: &'a Suite, kernel: &'a KernelEntry, plan: &'a KernelPlan) -> Self {
        Self {
            suite,
            kernel,
            programs: &plan.programs,
            probed: HashMap::new(),
            first: HashMap::new(),
        }
    }

    /// Takes in a feature probe's answer (they come before any program's
    /// result).
    pub fn probed(&mut self, probe: &Probe) {
        self.probed.insert(probe.feature.clone(), probe.available);
    }

    /// The spec of the program a result is about, with its object.
    fn spec(&self, result: &ProgramResult) -> Option<(usize, &'a ProgramSpec)> {
        let object = result.object as usize;
        let spec = self
            .suite
            .programs
            .get(object)?
            .iter()
            .find(|s| s.name == result.program)?;
        Some((object, spec))
    }

    /// The load test a program's result is judged as: its loader's.
    pub fn load_test(&self, result: &ProgramResult) -> Option<usize> {
        let (object, spec) = self.spec(result)?;
        self.suite.load_test(object, spec, result.loader)
    }

    /// Outcomes for a program's load result: its loader's load test, under
    /// `--loader both` its loaders-agree test once both verdicts are in,
    /// and, when its object's loader did not load it, its cases.
    pub fn program(&mut self, result: &ProgramResult) -> Vec<(usize, Outcome)> {
        let Some((object, spec)) = self.spec(result) else {
            return Vec::new();
        };
        let Some(load_test) = self.suite.load_test(object, spec, result.loader) else {
            return Vec::new();
        };
        // Only the object's own loader runs the cases.
        let own = result.loader == self.suite.loader_of(object);
        let mut outcomes = Vec::new();
        if let Some(test) = spec.agree_test {
            let key = (result.object, result.program.clone());
            match self.first.remove(&key) {
                Some((loader, verdict, mut log)) => {
                    log.extend(result.kernel_log.iter().cloned());
                    let agreed = agreement((loader, &verdict), (result.loader, &result.verdict));
                    outcomes.push((test, self.with_kernel_log(agreed, &log, spec)));
                }
                None => {
                    self.first.insert(
                        key,
                        (
                            result.loader,
                            result.verdict.clone(),
                            result.kernel_log.clone(),
                        ),
                    );
                }
            }
        }
        // Why the program may not load here: a feature the kernel lacks
        // (by the guest's probe), else the suite's kernel constraint.
        let lacking: Vec<String> = spec
            .requires
            .iter()
            .filter(|f| self.probed.get(*f) == Some(&Some(false)))
            .map(|f| f.any_prog().to_string())
            .collect();
        let excuse = if !lacking.is_empty() {
            Some(Excuse::Lacks(lacking.join(", ")))
        } else {
            spec.load_on
                .as_ref()
                .filter(|e| !e.must_load(self.kernel))
                .map(Excuse::Constraint)
        };
        let loaded = matches!(result.verdict, Verdict::Loaded);
        if let Verdict::Unsupported { loader, error } = &result.verdict {
            // The kernel was never asked: whatever the suite expects of
            // this kernel, this says nothing about it.
            outcomes.push((
                load_test,
                self.with_kernel_log(limitation(*loader, error), &result.kernel_log, spec),
            ));
            if own {
                outcomes.extend(spec.cases.iter().map(|case| (case.test, not_loaded())));
            }
            return outcomes;
        }
        let failure = || match &result.verdict {
            Verdict::Loaded => (String::new(), None),
            Verdict::Rejected {
                error,
                verifier_log,
            } => (
                match verifier::headline(verifier_log) {
                    Some(line) => format!("verifier: {line} ({error})"),
                    None => format!("rejected ({error})"),
                },
                Some(verifier_log.clone()),
            ),
            Verdict::Failed { error } => (error.clone(), None),
            Verdict::Unsupported { .. } => unreachable!("judged above"),
        };
        let load = match (excuse, loaded) {
            (None, true) => Outcome::Passed {
                detail: format!("{}, {:.1} ms", result.section, result.load_us as f64 / 1000.0),
            },
            (None, false) => {
                let (reason, verifier_log) = failure();
                Outcome::Failed {
                    reason,
                    verifier_log,
                    kernel_log: None,
                }
            }
            (Some(Excuse::Lacks(features)), false) => Outcome::ExpectedFailure {
                reason: format!("the kernel lacks {features} ({})", failure().0),
            },
            (Some(Excuse::Constraint(expectation)), false) => Outcome::ExpectedFailure {
                reason: format!("{} ({})", expectation.reason, failure().0),
            },
            (Some(Excuse::Lacks(features)), true) => Outcome::Failed {
                reason: format!(
                    "unexpectedly loaded: the suite requires {features}, which this kernel's probe says it lacks; fix `requires`"
                ),
                verifier_log: None,
                kernel_log: None,
            },
            (Some(Excuse::Constraint(expectation)), true) => Outcome::Failed {
                reason: format!(
                    "unexpectedly loaded: the suite expects it to load only on {}{} ({}); update the expectation",
                    expectation.arch.map(|a| format!("{a} kernels ")).unwrap_or_default(),
                    expectation.kernels,
                    expectation.reason
                ),
                verifier_log: None,
                kernel_log: None,
            },
        };
        outcomes.push((
            load_test,
            self.with_kernel_log(load, &result.kernel_log, spec),
        ));
        if own && !loaded {
            outcomes.extend(spec.cases.iter().map(|case| (case.test, not_loaded())));
        }
        outcomes
    }

    /// The outcome of one case.
    pub fn case(&self, result: &CaseResult) -> Option<(usize, Outcome)> {
        let object = result.object as usize;
        let planned = self.programs.get(object)?.get(result.program as usize)?;
        let spec = &self.suite.programs[object][planned.program];
        let case = &spec.cases[*planned.cases.get(result.case as usize)?];
        let outcome = match &result.outcome {
            CaseOutcome::Error(error) => Outcome::failed(error.clone()),
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
                    Outcome::failed(wrong.join("; "))
                }
            }
        };
        Some((
            case.test,
            self.with_kernel_log(outcome, &result.kernel_log, spec),
        ))
    }

    /// A test's outcome once what the kernel logged during it is known: a
    /// splat fails it (where the suite allows that splat on this kernel, a
    /// test that otherwise passed is an expected failure), and a failed
    /// test carries the kernel's lines.
    fn with_kernel_log(&self, outcome: Outcome, log: &[String], spec: &ProgramSpec) -> Outcome {
        if log.is_empty() {
            return outcome;
        }
        let text = log.join("\n");
        let splats = splat::find_all(log);
        let Some(first) = splats.first() else {
            return match outcome {
                Outcome::Failed {
                    reason,
                    verifier_log,
                    ..
                } => Outcome::Failed {
                    reason,
                    verifier_log,
                    kernel_log: Some(text),
                },
                other => other,
            };
        };
        // Allowed only when the suite allows every splat of the test.
        let allowed: Option<Vec<_>> = splats
            .iter()
            .map(|s| {
                spec.allowed_splats
                    .iter()
                    .find(|a| a.allows(self.kernel, &s.headline))
                    .map(|a| (a, &s.headline))
            })
            .collect();
        let unallowed = splats
            .iter()
            .find(|s| {
                !spec
                    .allowed_splats
                    .iter()
                    .any(|a| a.allows(self.kernel, &s.headline))
            })
            .unwrap_or(first);
        match (outcome, allowed) {
            (outcome @ Outcome::Failed { .. }, _) => outcome.with_splat(&first.headline, text),
            (Outcome::Passed { .. }, Some(allowed)) => Outcome::ExpectedFailure {
                reason: allowed
                    .iter()
                    .map(|(a, headline)| {
                        format!(
                            "the kernel printed a splat the suite allows here: {} ({headline})",
                            a.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            (other, Some(_)) => other,
            (other, None) => other.with_splat(&unallowed.headline, text),
        }
    }
}

/// Whether two loaders' verdicts on one program agree: both loaded, or the
/// kernel refused it under both. One loader unable to express it is its
/// limitation; anything else is a finding about a loader.
fn agreement(a: (Loader, &Verdict), b: (Loader, &Verdict)) -> Outcome {
    let said = |(loader, verdict): (Loader, &Verdict)| {
        let what = match verdict {
            Verdict::Loaded => "loaded it".to_owned(),
            Verdict::Rejected {
                error,
                verifier_log,
            } => match verifier::headline(verifier_log) {
                Some(line) => format!("the verifier rejected it: {line} ({error})"),
                None => format!("the kernel rejected it ({error})"),
            },
            Verdict::Failed { error } => format!("failed: {error}"),
            Verdict::Unsupported { error, .. } => format!("cannot load it: {error}"),
        };
        format!("{}: {what}", loader.name())
    };
    let refused = |v: &Verdict| matches!(v, Verdict::Rejected { .. } | Verdict::Failed { .. });
    match (a.1, b.1) {
        (Verdict::Loaded, Verdict::Loaded) => Outcome::Passed {
            detail: "both loaded it".into(),
        },
        (x, y) if refused(x) && refused(y) => Outcome::Passed {
            detail: "the kernel refused it under both".into(),
        },
        (Verdict::Unsupported { .. }, _) | (_, Verdict::Unsupported { .. }) => {
            Outcome::LoaderLimitation {
                reason: format!("{}; {}", said(a), said(b)),
            }
        }
        _ => Outcome::failed(format!("the loaders disagree: {}; {}", said(a), said(b))),
    }
}

/// A loader's limitation, named, with the other loader to try.
fn limitation(loader: Loader, error: &str) -> Outcome {
    let other = loader.other();
    Outcome::LoaderLimitation {
        reason: format!(
            "{} cannot load it: {error}; try `loader = \"{}\"` for this object in the suite (or --loader {})",
            loader.name(),
            other.name(),
            other.name()
        ),
    }
}

/// A return value as the program's kind names it, e.g. `XDP_DROP (1)`.
fn show_return(kind: Option<TestRunKind>, value: u32) -> String {
    kind.map_or_else(|| value.to_string(), |k| k.show_return(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaders_agree_when_the_kernel_says_the_same_to_both() {
        let rejected = Verdict::Rejected {
            error: "Permission denied".into(),
            verifier_log: "0: (71) r1 = *(u8 *)(r1 +20)\nR1 offset is outside of the packet\n"
                .into(),
        };
        let failed = Verdict::Failed {
            error: "map creation: Invalid argument".into(),
        };
        let unsupported = Verdict::Unsupported {
            loader: Loader::Aya,
            error: "invalid program section `tc`".into(),
        };
        let (aya, libbpf) = (Loader::Aya, Loader::Libbpf);
        let agree = |a, b| agreement((aya, a), (libbpf, b));
        assert!(matches!(
            agree(&Verdict::Loaded, &Verdict::Loaded),
            Outcome::Passed { .. }
        ));
        assert!(matches!(agree(&rejected, &failed), Outcome::Passed { .. }));
        assert_eq!(
            agree(&Verdict::Loaded, &rejected),
            Outcome::failed("the loaders disagree: aya: loaded it; libbpf: the verifier rejected it: R1 offset is outside of the packet (Permission denied)")
        );
        assert!(matches!(
            agree(&unsupported, &Verdict::Loaded),
            Outcome::LoaderLimitation { .. }
        ));
    }

    #[test]
    fn shows_values_as_the_kind_names_them() {
        assert_eq!(show_return(Some(TestRunKind::Xdp), 2), "XDP_PASS (2)");
        assert_eq!(show_return(None, 7), "7");
        assert_eq!(show_bytes(&3u64.to_le_bytes()), "3");
        assert_eq!(show_bytes(&[1; 9]), "010101010101010101");
    }
}
