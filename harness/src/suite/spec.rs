//! What a checked suite holds for each program: its tests, the kernels
//! where it must load, skips, allowed splats and test-run cases.

use kmatrix_protocol::{Arch, CasePlan, Feature, TestRunKind};

use crate::kernels::{KernelEntry, Selection};

/// One test: a program's load check, or one of its cases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    /// The object's index.
    pub object: usize,
    /// The program's index in [`Suite::programs`] for the object.
    pub program: usize,
    /// The case's index, `None` for the load check.
    pub case: Option<usize>,
    /// The test's name: `program::load` (`program::load[aya]` and
    /// `program::load[libbpf]` under `--loader both`, with
    /// `program::loaders-agree`) or `program::case`, prefixed by the object
    /// when two objects share a program name.
    pub name: String,
}

/// What to check of one program.
#[derive(Clone, Debug)]
pub struct ProgramSpec {
    /// The program's name.
    pub name: String,
    /// Its kind (`xdp`, `classifier`, …).
    pub kind: String,
    /// How test runs name its return values, if it can be run.
    pub test_run: Option<TestRunKind>,
    /// Where it must load; elsewhere its rejection is expected.
    pub load_on: Option<Expectation>,
    /// Kernel features it needs: where one is missing its rejection is
    /// expected. A helper names the program's own section, so that the
    /// guest probes it for the program's type.
    pub requires: Vec<Feature>,
    /// Kernels it is not tried on.
    pub skips: Vec<Skip>,
    /// Splats it is known to cause: on these kernels its tests that make
    /// the kernel print them are expected failures.
    pub allowed_splats: Vec<AllowedSplat>,
    /// Its test-run cases.
    pub cases: Vec<CaseSpec>,
    /// The index in [`Suite::tests`] of its load check by its object's
    /// loader.
    pub load_test: usize,
    /// The index of its load check by the other loader, under `--loader
    /// both`.
    pub other_load_test: Option<usize>,
    /// The index of its loaders-agree test, under `--loader both`.
    pub agree_test: Option<usize>,
}

impl ProgramSpec {
    /// Program `name` of `kind`, which must load everywhere, with nothing
    /// else to check (its tests are numbered later).
    pub fn must_load(name: String, kind: String, test_run: Option<TestRunKind>) -> Self {
        ProgramSpec {
            name,
            kind,
            test_run,
            load_on: None,
            requires: Vec::new(),
            skips: Vec::new(),
            allowed_splats: Vec::new(),
            cases: Vec::new(),
            load_test: 0,
            other_load_test: None,
            agree_test: None,
        }
    }

    /// The indexes of all its tests.
    pub fn tests(&self) -> impl Iterator<Item = usize> + '_ {
        [Some(self.load_test), self.other_load_test, self.agree_test]
            .into_iter()
            .flatten()
            .chain(self.cases.iter().map(|c| c.test))
    }
}

/// A kernel constraint with its reason.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// The kernels where the program must load.
    pub kernels: Selection,
    /// The architecture the constraint is about; on others the program
    /// must load everywhere.
    pub arch: Option<Arch>,
    /// Why it cannot load elsewhere.
    pub reason: String,
}

impl Expectation {
    /// Whether the program must load on `kernel`.
    pub fn must_load(&self, kernel: &KernelEntry) -> bool {
        self.arch.is_some_and(|arch| arch != kernel.arch) || self.kernels.matches(kernel)
    }
}

/// Kernels a program is not tried on, and why.
#[derive(Clone, Debug)]
pub struct Skip {
    /// The kernels.
    pub kernels: Selection,
    /// Why.
    pub reason: String,
}

/// A known splat, allowed on some kernels.
#[derive(Clone, Debug)]
pub struct AllowedSplat {
    /// The kernels.
    pub kernels: Selection,
    /// Why it is allowed (a kernel bug, and where it is fixed).
    pub reason: String,
    /// Text its headline must hold, if only one splat is allowed.
    pub contains: Option<String>,
}

impl AllowedSplat {
    /// Whether this allows `headline` on `kernel`.
    pub fn allows(&self, kernel: &KernelEntry, headline: &str) -> bool {
        self.kernels.matches(kernel)
            && self
                .contains
                .as_deref()
                .is_none_or(|text| headline.contains(text))
    }
}

/// One test-run case and what it must produce.
#[derive(Clone, Debug)]
pub struct CaseSpec {
    /// The case's name.
    pub name: String,
    /// What the guest does.
    pub plan: CasePlan,
    /// The return value it must give.
    pub expect_return: Option<u32>,
    /// The output packet it must leave.
    pub expect_output: Option<Vec<u8>>,
    /// Map values it must leave, in the order of `plan.reads`.
    pub expect_maps: Vec<Vec<u8>>,
    /// Its index in [`Suite::tests`].
    pub test: usize,
}
