//! Each kernel's share of a suite: the guest's plan, and the tests decided
//! on the host (skips).

use kmatrix_protocol::report::Outcome;
use kmatrix_protocol::Loader;

use super::Suite;
use crate::kernels::KernelEntry;

/// What a kernel is to do with a suite, and what it skips.
pub struct KernelPlan {
    /// The guest's plan.
    pub plan: kmatrix_protocol::Plan,
    /// Tests decided on the host: skipped on this kernel.
    pub skipped: Vec<(usize, Outcome)>,
    /// Per object, the suite program index of each planned program.
    pub programs: Vec<Vec<usize>>,
}

impl Suite {
    /// The plan for `kernel`: every program not skipped on it, with its
    /// cases; `report_cases` false only to measure streaming.
    pub fn plan_for(&self, kernel: &KernelEntry, report_cases: bool) -> KernelPlan {
        let mut plan = kmatrix_protocol::Plan {
            objects: Vec::new(),
            report_cases,
            exec: None,
            probes: Vec::new(),
            probe_all: false,
        };
        let mut skipped = Vec::new();
        let mut programs = Vec::new();
        for (index, specs) in self.programs.iter().enumerate() {
            let settings = &self.settings[index];
            let mut object = kmatrix_protocol::ObjectPlan {
                index: index as u32,
                loader: self.loader_of(index),
                maps: settings.maps.clone(),
                globals: settings.globals.clone(),
                programs: Vec::new(),
            };
            let mut planned = Vec::new();
            for (p, spec) in specs.iter().enumerate() {
                if let Some(skip) = spec.skips.iter().find(|s| s.kernels.matches(kernel)) {
                    let outcome = Outcome::Skipped {
                        reason: skip.reason.clone(),
                    };
                    skipped.push((spec.load_test, outcome.clone()));
                    skipped.extend(spec.cases.iter().map(|c| (c.test, outcome.clone())));
                    continue;
                }
                let is_static = self.is_static(index, &spec.name);
                if let Some(agree) = spec.agree_test.filter(|_| is_static) {
                    // libbpf is not asked, so there is nothing to compare.
                    skipped.push((agree, static_under_libbpf()));
                }
                if object.loader == Loader::Libbpf && is_static {
                    skipped.push((spec.load_test, static_under_libbpf()));
                    skipped.extend(spec.cases.iter().map(|c| {
                        (
                            c.test,
                            Outcome::Skipped {
                                reason: "not run: the program did not load".into(),
                            },
                        )
                    }));
                    continue;
                }
                planned.push(p);
                for feature in &spec.requires {
                    if !plan.probes.contains(feature) {
                        plan.probes.push(feature.clone());
                    }
                }
                object.programs.push(kmatrix_protocol::ProgramPlan {
                    name: spec.name.clone(),
                    test_run: spec.test_run,
                    cases: spec.cases.iter().map(|c| c.plan.clone()).collect(),
                });
            }
            plan.objects.push(object);
            programs.push(planned);
        }
        if self.differential {
            // The other loader, load checks only, after every object.
            let others: Vec<_> = plan
                .objects
                .iter()
                .map(|object| kmatrix_protocol::ObjectPlan {
                    loader: Loader::ALL
                        .into_iter()
                        .find(|l| *l != object.loader)
                        .expect("two loaders"),
                    programs: object
                        .programs
                        .iter()
                        .filter(|p| {
                            object.loader == Loader::Libbpf
                                || !self.is_static(object.index as usize, &p.name)
                        })
                        .map(|p| kmatrix_protocol::ProgramPlan {
                            name: p.name.clone(),
                            test_run: None,
                            cases: Vec::new(),
                        })
                        .collect(),
                    ..object.clone()
                })
                .collect();
            plan.objects.extend(others);
        }
        KernelPlan {
            plan,
            skipped,
            programs,
        }
    }
}

impl Suite {
    /// Whether program `name` of object `index` is `static`.
    pub fn is_static(&self, index: usize, name: &str) -> bool {
        self.objects[index]
            .program(name)
            .is_some_and(|p| p.is_static)
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
