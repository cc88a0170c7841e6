//! Test suites: what to check of each program on each kernel.
//!
//! A suite file (`kmatrix-suite.toml`) names objects and, per program, where
//! it must load (elsewhere it is an expected failure), kernels to skip, and
//! `BPF_PROG_TEST_RUN` cases with the return value, output packet and map
//! values they must produce. Bare objects given on the command line join the
//! suite with the load check only.
//!
//! Everything is checked here, before any VM boots: the objects are read,
//! and every program, map, input file and return value named must exist.
//! [`Suite::plan_for`] then gives each kernel its guest
//! [`kmatrix_protocol::Plan`]; [`crate::judge`] holds the results against
//! the suite.

mod check;
mod file;
mod only;
mod plan;
mod settings;
mod spec;

use std::path::{Path, PathBuf};

use kmatrix_protocol::Loader;

pub use plan::{not_loaded, KernelPlan, Planned};
pub use settings::ObjectSettings;
pub use spec::{AllowedSplat, CaseSpec, Expectation, ProgramSpec, Skip, Test};

use crate::objects::{self, ObjectError, TestObject};
use check::check_program;

/// The suite file `kmatrix test` looks for in the current directory.
pub const SUITE_FILE: &str = "kmatrix-suite.toml";

/// Environment variable naming the suite file.
pub const SUITE_ENV: &str = "KMATRIX_SUITE";

/// The suite file: `given`, else [`SUITE_ENV`], else [`SUITE_FILE`] in the
/// current directory or the nearest parent that has one.
pub fn find(given: Option<PathBuf>) -> Result<PathBuf, SuiteError> {
    if let Some(path) = given.or_else(|| std::env::var_os(SUITE_ENV).map(PathBuf::from)) {
        return Ok(path);
    }
    let cwd = std::env::current_dir().map_err(|source| SuiteError::Read {
        path: PathBuf::from("."),
        source,
    })?;
    cwd.ancestors()
        .map(|dir| dir.join(SUITE_FILE))
        .find(|path| path.is_file())
        .ok_or_else(|| SuiteError::NotFound { dir: cwd.clone() })
}

/// Checks that `text` has the shape of a suite file, without reading any
/// object it names (what the fuzz target exercises).
pub fn check_syntax(text: &str, path: &Path) -> Result<(), SuiteError> {
    let _: file::RawSuite = crate::toml_file::parse(text, path)?;
    Ok(())
}

/// A checked suite.
#[derive(Debug)]
pub struct Suite {
    /// The objects, in order; their index is their name in the guest.
    pub objects: Vec<TestObject>,
    /// Per object, every program with what to check of it.
    pub programs: Vec<Vec<ProgramSpec>>,
    /// Every test (row of the matrix), in order.
    pub tests: Vec<Test>,
    /// Per object, how to load it.
    pub settings: Vec<ObjectSettings>,
    /// The loader of objects whose settings name none.
    pub default_loader: Loader,
    /// Whether every program is also loaded by the other loader, and the
    /// two verdicts compared (`--loader both`).
    pub differential: bool,
    /// Per test, whether it was asked for by `--only` ([`Suite::select`]);
    /// `None`: all were.
    pub(crate) only: Option<Vec<bool>>,
}

/// A suite that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// No suite file was found.
    #[error("no {SUITE_FILE} in {} or its parents; set {SUITE_ENV} or pass the suite explicitly", dir.display())]
    NotFound {
        /// Where the search started.
        dir: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read the suite {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape.
    #[error(transparent)]
    Syntax(#[from] crate::toml_file::SyntaxError),
    /// An object could not be used.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// `--only` names a test the suite does not have.
    #[error("no test is named `{name}`{}; test names are `PROGRAM::load` and `PROGRAM::CASE`, as the matrix's rows show them", near_names(near))]
    NoSuchTest {
        /// The name given.
        name: String,
        /// The suite's test names nearest to it.
        near: Vec<String>,
    },
    /// An entry names something that is not there, or is not runnable.
    #[error("{}: {entry}: {message}", path.display())]
    Entry {
        /// The suite file.
        path: PathBuf,
        /// The entry, e.g. `object xdp_filter.bpf.c, program xdp_filter, case drops_ssh`.
        entry: String,
        /// What is wrong.
        message: String,
    },
    /// The suite's plan for the guest is longer than the agent reads.
    #[error("{}: the guest's plan of this suite would take {} MiB, over the {} MiB the guest agent reads: split its cases over more than one suite file", path.display(), len.div_ceil(1 << 20), kmatrix_protocol::input::MAX_INPUT_LEN >> 20)]
    PlanTooLong {
        /// The suite file.
        path: PathBuf,
        /// The plan's encoded length in bytes.
        len: usize,
    },
}

/// `; near names: a, b`, when there are any.
fn near_names(near: &[String]) -> String {
    if near.is_empty() {
        String::new()
    } else {
        format!("; near names: {}", near.join(", "))
    }
}

impl Suite {
    /// A suite with nothing in it yet.
    fn empty() -> Self {
        Suite {
            objects: Vec::new(),
            programs: Vec::new(),
            tests: Vec::new(),
            settings: Vec::new(),
            default_loader: Default::default(),
            differential: false,
            only: None,
        }
    }

    /// A suite of bare objects: every program must load everywhere.
    pub fn from_objects(objects: Vec<TestObject>) -> Self {
        let mut suite = Suite::empty();
        for object in objects {
            suite.push_object(object, Vec::new(), ObjectSettings::default());
        }
        suite.name_tests();
        suite
    }

    /// Reads the suite at `path` and adds the bare `objects`; `scratch`
    /// receives objects built from C sources.
    pub fn load(path: &Path, objects: &[PathBuf], scratch: &Path) -> Result<Self, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: file::RawSuite = crate::toml_file::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let paths: Vec<PathBuf> = raw.object.iter().map(|o| dir.join(&o.path)).collect();
        let all: Vec<PathBuf> = paths.iter().chain(objects).cloned().collect();
        let mut loaded = objects::load(&all, scratch)?.into_iter();

        let mut suite = Suite::empty();
        for raw_object in raw.object {
            let mut object = loaded.next().expect("one object per path");
            let settings = settings::check(&object, &raw_object, &text, path)?;
            settings.size_maps(&mut object);
            let mut specs = Vec::new();
            for raw_program in raw_object.program {
                let entry = format!("object {}, program {}", raw_object.path, raw_program.name);
                let spec = check_program(&object, raw_program, dir).map_err(
                    |(entry_detail, message)| SuiteError::Entry {
                        path: path.to_owned(),
                        entry: match entry_detail {
                            Some(detail) => format!("{entry}, {detail}"),
                            None => entry.clone(),
                        },
                        message,
                    },
                )?;
                if specs.iter().any(|s: &ProgramSpec| s.name == spec.name) {
                    return Err(SuiteError::Entry {
                        path: path.to_owned(),
                        entry,
                        message: "the program is listed twice".into(),
                    });
                }
                specs.push(spec);
            }
            suite.push_object(object, specs, settings);
        }
        for object in loaded {
            suite.push_object(object, Vec::new(), ObjectSettings::default());
        }
        suite.name_tests();
        Ok(suite)
    }

    /// Adds an object: the programs the suite lists first, in its order,
    /// then the object's other programs with the load check only.
    fn push_object(
        &mut self,
        object: TestObject,
        mut specs: Vec<ProgramSpec>,
        settings: ObjectSettings,
    ) {
        for program in &object.programs {
            if !specs.iter().any(|s| s.name == program.name) {
                specs.push(ProgramSpec::must_load(
                    program.name.clone(),
                    program.kind.clone(),
                    program.test_run,
                ));
            }
        }
        self.objects.push(object);
        self.programs.push(specs);
        self.settings.push(settings);
    }

    /// Numbers and names the tests, in object, program, case order; under
    /// `--loader both` a program's load checks come in [`Loader::ALL`]
    /// order, then its loaders-agree test.
    fn name_tests(&mut self) {
        let mut tests = Vec::new();
        let loaders: Vec<Loader> = (0..self.programs.len())
            .map(|o| self.loader_of(o))
            .collect();
        for ((object, specs), &own) in self.programs.iter_mut().enumerate().zip(&loaders) {
            for (program, spec) in specs.iter_mut().enumerate() {
                let mut push = |case| {
                    tests.push(Test {
                        object,
                        program,
                        case,
                        name: String::new(),
                    });
                    tests.len() - 1
                };
                spec.other_load_test = None;
                spec.agree_test = None;
                if self.differential {
                    for loader in Loader::ALL {
                        let test = push(None);
                        if loader == own {
                            spec.load_test = test;
                        } else {
                            spec.other_load_test = Some(test);
                        }
                    }
                    spec.agree_test = Some(push(None));
                } else {
                    spec.load_test = push(None);
                }
                for (case, spec) in spec.cases.iter_mut().enumerate() {
                    spec.test = push(Some(case));
                }
            }
        }
        for (index, test) in tests.iter_mut().enumerate() {
            let spec = &self.programs[test.object][test.program];
            let shared =
                self.programs.iter().enumerate().any(|(o, specs)| {
                    o != test.object && specs.iter().any(|s| s.name == spec.name)
                });
            let program = if shared {
                format!("{}:{}", self.objects[test.object].name, spec.name)
            } else {
                spec.name.clone()
            };
            let own = loaders[test.object];
            test.name = match test.case {
                Some(case) => format!("{program}::{}", spec.cases[case].name),
                None if spec.agree_test == Some(index) => format!("{program}::loaders-agree"),
                None if !self.differential => format!("{program}::load"),
                None if spec.load_test == index => format!("{program}::load[{}]", own.name()),
                None => format!("{program}::load[{}]", own.other().name()),
            };
        }
        self.tests = tests;
        // Tests renumbered: a selection is made again.
        self.only = None;
    }

    /// Sets the loader of objects whose settings name none and, with
    /// `differential` (`--loader both`), also loads every program with the
    /// other loader: each program's load check becomes one per loader,
    /// `load[aya]` and `load[libbpf]`, beside a `loaders-agree` test that
    /// compares their verdicts.
    pub fn use_loaders(&mut self, default: Loader, differential: bool) {
        self.default_loader = default;
        self.differential = differential;
        self.name_tests();
    }

    /// The load check of `spec`, a program of object `object`, by `loader`:
    /// its own loader's, or the other's under `--loader both`.
    pub fn load_test(&self, object: usize, spec: &ProgramSpec, loader: Loader) -> Option<usize> {
        if loader == self.loader_of(object) {
            Some(spec.load_test)
        } else {
            spec.other_load_test
        }
    }

    /// The loader of object `object`.
    pub fn loader_of(&self, object: usize) -> Loader {
        self.settings[object].loader.unwrap_or(self.default_loader)
    }

    /// Whether the suite has any test-run case.
    pub fn has_cases(&self) -> bool {
        self.tests.iter().any(|t| t.case.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::ProgramInfo;
    use kmatrix_protocol::TestRunKind;

    pub(super) fn object(name: &str, programs: &[&str]) -> TestObject {
        TestObject {
            path: name.into(),
            name: name.into(),
            data: Vec::new(),
            programs: programs
                .iter()
                .map(|p| ProgramInfo {
                    name: (*p).into(),
                    kind: "xdp".into(),
                    section: "xdp".into(),
                    test_run: Some(TestRunKind::Xdp),
                    is_static: false,
                })
                .collect(),
            maps: Vec::new(),
            globals: Vec::new(),
            aya_error: None,
        }
    }

    /// Gives program `program` of object `object` a case named `name`.
    pub(super) fn with_case(suite: &mut Suite, object: usize, program: usize, name: &str) {
        suite.programs[object][program].cases.push(CaseSpec {
            name: name.into(),
            plan: Default::default(),
            expect_return: None,
            expect_output: None,
            expect_maps: Vec::new(),
            test: 0,
        });
        suite.name_tests();
    }

    fn names(suite: &Suite) -> Vec<&str> {
        suite.tests.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn under_both_loaders_each_loader_has_its_own_load_test() {
        let mut suite =
            Suite::from_objects(vec![object("a.o", &["p", "q"]), object("b.o", &["p"])]);
        suite.programs[0][1].cases.push(CaseSpec {
            name: "c".into(),
            plan: Default::default(),
            expect_return: None,
            expect_output: None,
            expect_maps: Vec::new(),
            test: 0,
        });
        suite.settings[1].loader = Some(Loader::Aya);
        suite.use_loaders(Loader::Libbpf, false);
        assert_eq!(
            names(&suite),
            ["a.o:p::load", "q::load", "q::c", "b.o:p::load"]
        );

        suite.use_loaders(Loader::Libbpf, true);
        assert_eq!(
            names(&suite),
            [
                "a.o:p::load[aya]",
                "a.o:p::load[libbpf]",
                "a.o:p::loaders-agree",
                "q::load[aya]",
                "q::load[libbpf]",
                "q::loaders-agree",
                "q::c",
                "b.o:p::load[aya]",
                "b.o:p::load[libbpf]",
                "b.o:p::loaders-agree",
            ]
        );
        // Each loader's verdict goes to its own test, whichever loader is
        // the object's.
        for (object, specs) in suite.programs.iter().enumerate() {
            for spec in specs {
                for loader in Loader::ALL {
                    let test = suite.load_test(object, spec, loader).unwrap();
                    assert!(
                        suite.tests[test]
                            .name
                            .ends_with(&format!("::load[{}]", loader.name())),
                        "{}",
                        suite.tests[test].name
                    );
                }
                let all: Vec<usize> = spec.tests().collect();
                assert_eq!(all.len(), 3 + spec.cases.len());
            }
        }
        let q = &suite.programs[0][1];
        assert_eq!(
            (q.load_test, q.other_load_test),
            (4, Some(3)),
            "a.o's is libbpf"
        );
        let p = &suite.programs[1][0];
        assert_eq!(
            (p.load_test, p.other_load_test),
            (7, Some(8)),
            "b.o's is aya"
        );

        suite.use_loaders(Loader::Libbpf, false);
        assert_eq!(
            names(&suite),
            ["a.o:p::load", "q::load", "q::c", "b.o:p::load"]
        );
        assert_eq!(suite.load_test(0, &suite.programs[0][0], Loader::Aya), None);
    }
}
