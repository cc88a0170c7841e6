//! `--only`: the tests a run was asked for by name, and what each kernel
//! then needs. A program's cases need it loaded, so a named case still
//! loads its program; the load test itself is reported only when it is
//! named (its failure fails the named cases instead, see
//! [`Suite::narrow`]). Under `--loader both`, the other loader loads a
//! program only for its named `load[…]` or `loaders-agree` test.

use kmatrix_protocol::report::Outcome;

use super::{ProgramSpec, Suite, SuiteError, Test};

/// How many near names an unknown name's error lists.
const NEAR: usize = 5;

impl Suite {
    /// Runs only the tests named in `names` (exactly as reports name them);
    /// none: every test. A name that matches no test is an error naming
    /// the tests nearest to it.
    pub fn select(&mut self, names: &[String]) -> Result<(), SuiteError> {
        if names.is_empty() {
            self.only = None;
            return Ok(());
        }
        // The first test of a name, as a scan would find it.
        let mut index = std::collections::HashMap::new();
        for (i, test) in self.tests.iter().enumerate() {
            index.entry(test.name.as_str()).or_insert(i);
        }
        let mut asked = vec![false; self.tests.len()];
        for name in names {
            match index.get(name.as_str()) {
                Some(&index) => asked[index] = true,
                None => {
                    return Err(SuiteError::NoSuchTest {
                        name: name.clone(),
                        near: near(name, self.tests.iter().map(|t| t.name.as_str())),
                    })
                }
            }
        }
        self.only = Some(asked);
        Ok(())
    }

    /// Whether test `test` was asked for: every test is, without `--only`.
    pub fn asked(&self, test: usize) -> bool {
        self.only.as_ref().is_none_or(|asked| asked[test])
    }

    /// The tests the run reports, in order.
    pub fn reported(&self) -> impl Iterator<Item = &Test> + '_ {
        self.tests
            .iter()
            .enumerate()
            .filter(|(index, _)| self.asked(*index))
            .map(|(_, test)| test)
    }

    /// Whether `spec` is loaded at all: one of its tests was asked for.
    pub(super) fn wanted(&self, spec: &ProgramSpec) -> bool {
        spec.tests().any(|test| self.asked(test))
    }

    /// Whether the other loader loads `spec` (under `--loader both`): its
    /// load test by that loader, or the comparison, was asked for.
    pub(super) fn other_loader_wanted(&self, spec: &ProgramSpec) -> bool {
        [spec.other_load_test, spec.agree_test]
            .into_iter()
            .flatten()
            .any(|test| self.asked(test))
    }

    /// One program's outcomes, as the run reports them: those of the
    /// tests asked for. A load test not asked for is left out; when it
    /// failed, the named cases it kept from running fail with its reason
    /// (rather than being skipped: the run must not pass).
    pub fn narrow(&self, outcomes: Vec<(usize, Outcome)>) -> Vec<(usize, Outcome)> {
        if self.only.is_none() {
            return outcomes;
        }
        let unasked_failure = outcomes.iter().find_map(|(test, outcome)| {
            let load = self.tests[*test].case.is_none();
            (load && !self.asked(*test) && outcome.is_failure()).then_some(outcome)
        });
        let failed_load = unasked_failure.map(|outcome| match outcome {
            Outcome::Failed {
                reason,
                verifier_log,
                kernel_log,
            } => Outcome::Failed {
                reason: format!("not run: the program did not load: {reason}"),
                verifier_log: verifier_log.clone(),
                kernel_log: kernel_log.clone(),
            },
            Outcome::LoaderLimitation { reason } => Outcome::LoaderLimitation {
                reason: format!("not run: {reason}"),
            },
            other => other.clone(),
        });
        outcomes
            .iter()
            .filter(|(test, _)| self.asked(*test))
            .map(
                |(test, outcome)| match (&failed_load, self.tests[*test].case) {
                    (Some(failed), Some(_)) if matches!(outcome, Outcome::Skipped { .. }) => {
                        (*test, failed.clone())
                    }
                    _ => (*test, outcome.clone()),
                },
            )
            .collect()
    }
}

/// The names in `names` nearest to `name`, nearest first: those holding
/// it (or holding its program) before the rest, each by edit distance.
fn near<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let program = name.split("::").next().unwrap_or(name);
    let mut ranked: Vec<(bool, usize, &str)> = names
        .map(|candidate| {
            let related = candidate.contains(name)
                || (!program.is_empty() && candidate.starts_with(&format!("{program}::")));
            (!related, distance(name, candidate), candidate)
        })
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(NEAR)
        .map(|(_, _, n)| n.to_owned())
        .collect()
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::tests::{object, with_case};

    fn suite() -> Suite {
        let mut suite = Suite::from_objects(vec![
            object("xdp_filter.o", &["xdp_filter", "xdp_pass"]),
            object("tc.o", &["tc_drop"]),
        ]);
        with_case(&mut suite, 0, 0, "drops_ssh");
        with_case(&mut suite, 0, 0, "passes_http");
        suite
    }

    fn reported(suite: &Suite) -> Vec<&str> {
        suite.reported().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn names_select_exactly_those_tests() {
        let mut suite = suite();
        suite
            .select(&["xdp_filter::drops_ssh".into(), "tc_drop::load".into()])
            .unwrap();
        assert_eq!(reported(&suite), ["xdp_filter::drops_ssh", "tc_drop::load"]);
        // Its program still loads for the case; the other program does not.
        let wanted: Vec<bool> = suite.programs[0].iter().map(|s| suite.wanted(s)).collect();
        assert_eq!(wanted, [true, false]);

        suite.select(&[]).unwrap();
        assert_eq!(reported(&suite).len(), suite.tests.len());
    }

    /// `--only-failed` of a run where 100,000 cases failed names them all.
    #[test]
    fn a_hundred_thousand_names_are_found_without_a_scan_per_name() {
        let mut suite = suite();
        let spec = &mut suite.programs[0][0];
        let case = spec.cases[0].clone();
        spec.cases = (0..100_000)
            .map(|i| crate::suite::CaseSpec {
                name: format!("c{i}"),
                ..case.clone()
            })
            .collect();
        suite.name_tests();
        let names: Vec<String> = (0..100_000).map(|i| format!("xdp_filter::c{i}")).collect();
        let begun = std::time::Instant::now();
        suite.select(&names).unwrap();
        let took = begun.elapsed();
        assert_eq!(reported(&suite).len(), 100_000);
        assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    }

    #[test]
    fn a_name_two_tests_share_selects_the_first() {
        let mut suite = suite();
        with_case(&mut suite, 0, 1, "load");
        let shared: Vec<usize> = (0..suite.tests.len())
            .filter(|&t| suite.tests[t].name == "xdp_pass::load")
            .collect();
        assert_eq!(shared.len(), 2);
        suite.select(&["xdp_pass::load".into()]).unwrap();
        let asked: Vec<bool> = shared.iter().map(|&t| suite.asked(t)).collect();
        assert_eq!(asked, [true, false]);
    }

    #[test]
    fn an_unknown_name_lists_the_near_ones() {
        let mut suite = suite();
        let err = suite.select(&["xdp_filter::drop_ssh".into()]).unwrap_err();
        let SuiteError::NoSuchTest { name, near } = &err else {
            panic!("{err}");
        };
        assert_eq!(name, "xdp_filter::drop_ssh");
        assert_eq!(near[0], "xdp_filter::drops_ssh");
        assert!(near.len() <= NEAR);
        let text = err.to_string();
        assert!(text.contains("`xdp_filter::drop_ssh`"), "{text}");
        assert!(text.contains("xdp_filter::drops_ssh"), "{text}");
        // A program's name alone points at its tests.
        let err = suite.select(&["tc_drop".into()]).unwrap_err();
        assert!(
            matches!(&err, SuiteError::NoSuchTest { near, .. } if near[0] == "tc_drop::load"),
            "{err}"
        );
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("p::load", "p::load"), 0);
    }

    #[test]
    fn a_load_not_asked_for_fails_the_named_cases_it_kept_from_running() {
        let mut suite = suite();
        suite.select(&["xdp_filter::drops_ssh".into()]).unwrap();
        let spec = &suite.programs[0][0];
        let rejected = Outcome::Failed {
            reason: "verifier: R1 invalid mem access".into(),
            verifier_log: Some("log".into()),
            kernel_log: None,
        };
        let mut outcomes = vec![(spec.load_test, rejected)];
        outcomes.extend(
            spec.cases
                .iter()
                .map(|c| (c.test, crate::suite::not_loaded())),
        );
        let narrowed = suite.narrow(outcomes);
        assert_eq!(narrowed.len(), 1);
        assert_eq!(narrowed[0].0, spec.cases[0].test);
        assert!(
            matches!(&narrowed[0].1, Outcome::Failed { reason, verifier_log: Some(_), .. }
                if reason == "not run: the program did not load: verifier: R1 invalid mem access"),
            "{:?}",
            narrowed[0].1
        );

        // Loaded: the load's pass is not reported.
        let passed = Outcome::Passed {
            detail: "xdp".into(),
        };
        assert!(suite.narrow(vec![(spec.load_test, passed)]).is_empty());
    }
}
