//! Each kernel's share of a suite: the guest's plan, and the tests decided
//! on the host (skips, and libbpf's verdict on a static program).

use kmatrix_protocol::input::{encode_input, ENTROPY_LEN, MAX_INPUT_LEN};
use kmatrix_protocol::report::Outcome;
use kmatrix_protocol::{Feature, Input, Loader, ObjectPlan, ProgramPlan, Start, HEADER_LEN};

use super::{ProgramSpec, Skip, Suite, SuiteError};
use crate::kernels::KernelEntry;

/// What a kernel is to do with a suite, and what it skips.
pub struct KernelPlan {
    /// The guest's plan.
    pub plan: kmatrix_protocol::Plan,
    /// Tests decided on the host: skipped on this kernel, or a loader's
    /// limitation it knows without asking the guest.
    pub skipped: Vec<(usize, Outcome)>,
    /// Per object, each program planned with its own loader, in plan
    /// order.
    pub programs: Vec<Vec<Planned>>,
}

/// A program the guest loads with its object's loader, and runs cases of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Its index among its object's suite programs.
    pub program: usize,
    /// The index in its spec of each case planned, in plan order (the
    /// guest numbers them in this order).
    pub cases: Vec<usize>,
}

impl Suite {
    /// The plan for `kernel`: every program not skipped on it, with its
    /// cases, by its object's loader; under `--loader both` each object
    /// again, after every object, by the other loader with load checks
    /// only. Under `--only`, only the programs and cases of the tests
    /// asked for (see [`Suite::select`]). `report_cases` false only to
    /// measure streaming.
    pub fn plan_for(&self, kernel: &KernelEntry, report_cases: bool) -> KernelPlan {
        self.plan_skipping(|skip| skip.kernels.matches(kernel), report_cases)
    }

    /// Fails when the guest's plan on a kernel that skips nothing, the
    /// longest any kernel is given, is longer than the agent reads in one
    /// message.
    pub fn check_plan_len(&self, path: &std::path::Path) -> Result<(), SuiteError> {
        let start = Start {
            plan: self.plan_skipping(|_| false, true).plan,
            // The longest clock and entropy the host sends.
            unix_nanos: u64::MAX,
            entropy: vec![0; ENTROPY_LEN],
        };
        let mut bytes = Vec::new();
        encode_input(&Input::Start(start), &mut bytes);
        let len = bytes.len() - HEADER_LEN;
        if len > MAX_INPUT_LEN as usize {
            return Err(SuiteError::PlanTooLong {
                path: path.to_owned(),
                len,
            });
        }
        Ok(())
    }

    /// The plan, leaving out each program with a skip `skips` picks.
    fn plan_skipping(&self, skips: impl Fn(&Skip) -> bool, report_cases: bool) -> KernelPlan {
        let mut plan = kmatrix_protocol::Plan {
            objects: Vec::new(),
            report_cases,
            verifier_stats: true,
            exec: None,
            probes: Vec::new(),
            probe_all: false,
        };
        let mut others = Vec::new();
        let mut skipped = Vec::new();
        let mut programs = Vec::new();
        for (index, specs) in self.programs.iter().enumerate() {
            let settings = &self.settings[index];
            let object_plan = |loader| ObjectPlan {
                index: index as u32,
                loader,
                maps: settings.maps.clone(),
                globals: settings.globals.clone(),
                programs: Vec::new(),
            };
            let mut object = object_plan(self.loader_of(index));
            let mut other = object_plan(object.loader.other());
            let mut planned = Vec::new();
            for (p, spec) in specs.iter().enumerate() {
                if !self.wanted(spec) {
                    continue;
                }
                if let Some(skip) = spec.skips.iter().find(|s| skips(s)) {
                    let outcome = Outcome::Skipped {
                        reason: skip.reason.clone(),
                    };
                    skipped.extend(spec.tests().map(|test| (test, outcome.clone())));
                    continue;
                }
                // libbpf is never asked about a static program.
                let refused =
                    |loader| loader == Loader::Libbpf && self.is_static(index, &spec.name);
                if let Some(test) = spec
                    .other_load_test
                    .filter(|_| self.other_loader_wanted(spec))
                {
                    if refused(other.loader) {
                        skipped.push((test, static_under_libbpf()));
                    } else {
                        add_probes(&mut plan.probes, spec);
                        other.programs.push(ProgramPlan {
                            name: spec.name.clone(),
                            test_run: None,
                            cases: Vec::new(),
                        });
                    }
                }
                // Without libbpf's verdict there is nothing to compare.
                if let Some(agree) = spec.agree_test.filter(|_| refused(Loader::Libbpf)) {
                    skipped.push((agree, static_under_libbpf()));
                }
                if refused(object.loader) {
                    skipped.push((spec.load_test, static_under_libbpf()));
                    skipped.extend(spec.cases.iter().map(|c| (c.test, not_loaded())));
                    continue;
                }
                add_probes(&mut plan.probes, spec);
                let cases: Vec<usize> = (0..spec.cases.len())
                    .filter(|&c| self.asked(spec.cases[c].test))
                    .collect();
                object.programs.push(ProgramPlan {
                    name: spec.name.clone(),
                    test_run: spec.test_run,
                    cases: cases.iter().map(|&c| spec.cases[c].plan.clone()).collect(),
                });
                planned.push(Planned { program: p, cases });
            }
            plan.objects.push(object);
            programs.push(planned);
            if self.differential {
                others.push(other);
            }
        }
        plan.objects.extend(others);
        KernelPlan {
            plan,
            skipped,
            programs,
        }
    }

    /// Whether program `name` of object `index` is `static`.
    pub fn is_static(&self, index: usize, name: &str) -> bool {
        self.objects[index]
            .program(name)
            .is_some_and(|p| p.is_static)
    }
}

/// Adds the features `spec` requires to the kernel's probes.
fn add_probes(probes: &mut Vec<Feature>, spec: &ProgramSpec) {
    for feature in &spec.requires {
        if !probes.contains(feature) {
            probes.push(feature.clone());
        }
    }
}

/// libbpf's verdict on a `static` entry program, decided on the host: it
/// refuses to open such an object ("program ... is static and not
/// supported"), so the kernel is never asked through it.
pub fn static_under_libbpf() -> Outcome {
    Outcome::LoaderLimitation {
        reason: "libbpf cannot load it: it is a static program (libbpf refuses `static` entry programs; declare it without `static`, or judge it with `loader = \"aya\"`)".into(),
    }
}

/// A case's outcome when its program did not load.
pub fn not_loaded() -> Outcome {
    Outcome::Skipped {
        reason: "not run: the program did not load".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::suite::tests::{object, with_case};

    #[test]
    fn a_plan_longer_than_the_agent_reads_is_refused_before_any_kernel_boots() {
        let mut suite = Suite::from_objects(vec![object("xdp.o", &["xdp_pass"])]);
        for name in ["first", "second"] {
            with_case(&mut suite, 0, 0, name);
        }
        let cases = &mut suite.programs[0][0].cases;
        cases[0].plan.data = vec![0xab; MAX_INPUT_LEN as usize / 2];
        cases[1].plan.data = vec![0xcd; MAX_INPUT_LEN as usize / 2];
        let path = Path::new("/suites/big.toml");
        let err = suite.check_plan_len(path).unwrap_err();
        assert!(
            matches!(&err, SuiteError::PlanTooLong { len, .. } if *len > MAX_INPUT_LEN as usize),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/suites/big.toml: the guest's plan of this suite would take 17 MiB, over the 16 MiB the guest agent reads: split its cases over more than one suite file"
        );
        // Either half alone fits.
        suite.select(&["xdp_pass::second".into()]).unwrap();
        suite.check_plan_len(path).unwrap();
    }
}
