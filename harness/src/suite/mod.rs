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
//! [`Suite::plan_for`] then gives each kernel its guest [`Plan`], and
//! [`KernelCheck`] turns the guest's raw results into [`Outcome`]s.

mod expect;
mod file;

use std::path::{Path, PathBuf};

use kmatrix_protocol::{CasePlan, MapEntry, MapRead};

pub use expect::{KernelCheck, Outcome};

use crate::kernels::{KernelEntry, Selection};
use crate::objects::{self, ObjectError, TestObject, TestRunKind};

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

/// Map types a suite may read and write (`BPF_MAP_TYPE_HASH`, `ARRAY`,
/// `LRU_HASH`).
const SUITE_MAP_TYPES: [u32; 3] = [1, 2, 9];

/// A checked suite.
#[derive(Debug)]
pub struct Suite {
    /// The objects, in order; their index is their name in the guest.
    pub objects: Vec<TestObject>,
    /// Per object, every program with what to check of it.
    pub programs: Vec<Vec<ProgramSpec>>,
    /// Every test (row of the matrix), in order.
    pub tests: Vec<Test>,
}

/// One test: a program's load check, or one of its cases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    /// The object's index.
    pub object: usize,
    /// The program's index in [`Suite::programs`] for the object.
    pub program: usize,
    /// The case's index, `None` for the load check.
    pub case: Option<usize>,
    /// The test's name: `program::load` or `program::case` (prefixed by
    /// the object when two objects share a program name).
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
    /// Kernels it is not tried on.
    pub skips: Vec<Skip>,
    /// Its test-run cases.
    pub cases: Vec<CaseSpec>,
    /// The index of its load check in [`Suite::tests`].
    pub load_test: usize,
}

/// A kernel constraint with its reason.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// The kernels where the program must load.
    pub kernels: Selection,
    /// Why it cannot load elsewhere.
    pub reason: String,
}

/// Kernels a program is not tried on, and why.
#[derive(Clone, Debug)]
pub struct Skip {
    /// The kernels.
    pub kernels: Selection,
    /// Why.
    pub reason: String,
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
}

impl Suite {
    /// A suite of bare objects: every program must load everywhere.
    pub fn from_objects(objects: Vec<TestObject>) -> Self {
        let mut suite = Suite {
            objects: Vec::new(),
            programs: Vec::new(),
            tests: Vec::new(),
        };
        for object in objects {
            suite.push_object(object, Vec::new());
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

        let mut suite = Suite {
            objects: Vec::new(),
            programs: Vec::new(),
            tests: Vec::new(),
        };
        for raw_object in raw.object {
            let object = loaded.next().expect("one object per path");
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
            suite.push_object(object, specs);
        }
        for object in loaded {
            suite.push_object(object, Vec::new());
        }
        suite.name_tests();
        Ok(suite)
    }

    /// Adds an object: the programs the suite lists first, in its order,
    /// then the object's other programs with the load check only.
    fn push_object(&mut self, object: TestObject, mut specs: Vec<ProgramSpec>) {
        for program in &object.programs {
            if !specs.iter().any(|s| s.name == program.name) {
                specs.push(ProgramSpec {
                    name: program.name.clone(),
                    kind: program.kind.clone(),
                    test_run: program.test_run,
                    load_on: None,
                    skips: Vec::new(),
                    cases: Vec::new(),
                    load_test: 0,
                });
            }
        }
        self.objects.push(object);
        self.programs.push(specs);
    }

    /// Numbers and names the tests, in object, program, case order.
    fn name_tests(&mut self) {
        let mut tests = Vec::new();
        for (object, specs) in self.programs.iter_mut().enumerate() {
            for (program, spec) in specs.iter_mut().enumerate() {
                spec.load_test = tests.len();
                tests.push(Test {
                    object,
                    program,
                    case: None,
                    name: String::new(),
                });
                for (case, spec) in spec.cases.iter_mut().enumerate() {
                    spec.test = tests.len();
                    tests.push(Test {
                        object,
                        program,
                        case: Some(case),
                        name: String::new(),
                    });
                }
            }
        }
        for test in &mut tests {
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
            test.name = match test.case {
                None => format!("{program}::load"),
                Some(case) => format!("{program}::{}", spec.cases[case].name),
            };
        }
        self.tests = tests;
    }

    /// Whether the suite has any test-run case.
    pub fn has_cases(&self) -> bool {
        self.tests.iter().any(|t| t.case.is_some())
    }
}

/// Checks one program entry against its object. Errors carry the entry's
/// detail (the case) and the message.
fn check_program(
    object: &TestObject,
    raw: file::RawProgram,
    dir: &Path,
) -> Result<ProgramSpec, (Option<String>, String)> {
    let info = object.program(&raw.name).ok_or_else(|| {
        let names: Vec<_> = object.programs.iter().map(|p| p.name.as_str()).collect();
        (
            None,
            format!(
                "the object has no such program; it has: {}",
                names.join(", ")
            ),
        )
    })?;
    let selection = |text: &str| -> Result<Selection, (Option<String>, String)> {
        text.parse()
            .map_err(|e: crate::kernels::SelectError| (None, e.to_string()))
    };
    let bound = |text: &str| -> Result<(u32, u32), (Option<String>, String)> {
        match selection(&format!("{text}.."))? {
            Selection::Range {
                from: Some(from), ..
            } => Ok(from),
            _ => Err((
                None,
                format!("`{text}` is not a MAJOR.MINOR kernel version"),
            )),
        }
    };
    let load_on = match (&raw.kernels, &raw.min_kernel, &raw.max_kernel) {
        (None, None, None) => None,
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err((
                None,
                "give either `kernels` or `min_kernel`/`max_kernel`, not both".into(),
            ))
        }
        (Some(kernels), None, None) => Some(selection(kernels)?),
        (None, min, max) => Some(Selection::Range {
            from: min.as_deref().map(bound).transpose()?,
            to: max.as_deref().map(bound).transpose()?,
        }),
    };
    let load_on = match (load_on, raw.reason) {
        (Some(kernels), Some(reason)) => Some(Expectation { kernels, reason }),
        (Some(_), None) => {
            return Err((
                None,
                "a kernel constraint needs a `reason`, shown when it fails as expected".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                None,
                "`reason` goes with `min_kernel`, `max_kernel` or `kernels`".into(),
            ))
        }
        (None, None) => None,
    };
    let skips = raw
        .skip
        .into_iter()
        .map(|skip| {
            Ok(Skip {
                kernels: selection(&skip.kernels)?,
                reason: skip.reason,
            })
        })
        .collect::<Result<Vec<Skip>, (Option<String>, String)>>()?;
    let mut cases: Vec<CaseSpec> = Vec::new();
    for raw_case in raw.case {
        let name = raw_case.name.clone();
        if cases.iter().any(|c| c.name == name) {
            return Err((
                Some(format!("case {name}")),
                "the case name is used twice".into(),
            ));
        }
        let Some(kind) = info.test_run else {
            return Err((
                Some(format!("case {name}")),
                format!(
                    "BPF_PROG_TEST_RUN cannot run a {} program; cases need xdp, classifier, socket, cgroup_skb, flow_dissector, raw_tracepoint, sk_lookup, fentry or fexit programs",
                    info.kind
                ),
            ));
        };
        let case = check_case(object, kind, raw_case, dir)
            .map_err(|m| (Some(format!("case {name}")), m))?;
        cases.push(case);
    }
    Ok(ProgramSpec {
        name: info.name.clone(),
        kind: info.kind.clone(),
        test_run: info.test_run,
        load_on,
        skips,
        cases,
        load_test: 0,
    })
}

fn check_case(
    object: &TestObject,
    kind: TestRunKind,
    raw: file::RawCase,
    dir: &Path,
) -> Result<CaseSpec, String> {
    let data = match (raw.input, raw.input_file) {
        (Some(_), _) | (_, Some(_)) if !kind.takes_packet() => {
            return Err(format!(
                "{kind:?} programs run on no packet: drop `input`, give a `ctx` if the program reads one"
            ))
        }
        (None, None) if !kind.takes_packet() => Vec::new(),
        (Some(hex), None) => parse_hex(&hex).map_err(|e| format!("input: {e}"))?,
        (None, Some(file)) => {
            let path = dir.join(&file);
            std::fs::read(&path).map_err(|e| format!("input_file {}: {e}", path.display()))?
        }
        (None, None) => return Err("give the packet as `input` (hex) or `input_file`".into()),
        (Some(_), Some(_)) => return Err("give either `input` or `input_file`, not both".into()),
    };
    if kind.takes_packet() && data.len() < 14 {
        return Err(format!(
            "the input is {} bytes; BPF_PROG_TEST_RUN needs at least an Ethernet header (14 bytes)",
            data.len()
        ));
    }
    let ctx = raw
        .ctx
        .as_deref()
        .map(parse_hex)
        .transpose()
        .map_err(|e| format!("ctx: {e}"))?;
    let expect_return = raw
        .expect_return
        .map(|value| expect::return_value(kind, &value))
        .transpose()?;
    if raw.expect_output.is_some() && !kind.takes_packet() {
        return Err(format!("{kind:?} programs leave no output packet to check"));
    }
    let expect_output = raw
        .expect_output
        .as_deref()
        .map(parse_hex)
        .transpose()
        .map_err(|e| format!("expect_output: {e}"))?;
    let map = |name: &str| -> Result<&crate::objects::MapInfo, String> {
        let map = object.map(name).ok_or_else(|| {
            let names: Vec<_> = object.maps.iter().map(|m| m.name.as_str()).collect();
            format!(
                "the object has no map `{name}`; it has: {}",
                names.join(", ")
            )
        })?;
        if !SUITE_MAP_TYPES.contains(&map.map_type) {
            return Err(format!(
                "map `{name}` has type {}; suites read and write ARRAY, HASH and LRU_HASH maps",
                map.map_type
            ));
        }
        Ok(map)
    };
    let mut writes = Vec::new();
    for entry in &raw.before {
        let info = map(&entry.map)?;
        writes.push(MapEntry {
            map: entry.map.clone(),
            key: sized_bytes(&entry.key, info.key_size)
                .map_err(|e| format!("map `{}` key: {e}", entry.map))?,
            value: sized_bytes(&entry.value, info.value_size)
                .map_err(|e| format!("map `{}` value: {e}", entry.map))?,
        });
    }
    let mut reads = Vec::new();
    let mut expect_maps = Vec::new();
    for entry in &raw.after {
        let info = map(&entry.map)?;
        reads.push(MapRead {
            map: entry.map.clone(),
            key: sized_bytes(&entry.key, info.key_size)
                .map_err(|e| format!("map `{}` key: {e}", entry.map))?,
            value_size: info.value_size,
        });
        expect_maps.push(
            sized_bytes(&entry.value, info.value_size)
                .map_err(|e| format!("map `{}` value: {e}", entry.map))?,
        );
    }
    if raw.repeat == 0 {
        return Err("`repeat` must be at least 1".into());
    }
    // The kernel runs context-only kinds once and refuses a repeat count.
    let repeat = match (kind.takes_packet(), raw.repeat) {
        (true, n) => n,
        (false, 1) => 0,
        (false, _) => return Err(format!("{kind:?} programs run once: drop `repeat`")),
    };
    Ok(CaseSpec {
        name: raw.name,
        plan: CasePlan {
            data,
            ctx,
            repeat,
            want_output: expect_output.is_some(),
            writes,
            reads,
        },
        expect_return,
        expect_output,
        expect_maps,
        test: 0,
    })
}

/// Hex bytes; whitespace, `:` and `_` between digits are ignored.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':' && *c != '_')
        .collect();
    hex::decode(&digits).map_err(|e| format!("`{text}` is not hex bytes ({e})"))
}

/// A key or value as bytes of the map's size: an integer is written
/// little-endian, as the guest's CPU stores it.
fn sized_bytes(raw: &file::RawBytes, size: u32) -> Result<Vec<u8>, String> {
    let size = size as usize;
    match raw {
        file::RawBytes::Number(n) => {
            if size > 8 {
                return Err(format!(
                    "the map's entries are {size} bytes; give them as hex"
                ));
            }
            let bytes = n.to_le_bytes();
            let fits = size == 8
                || (*n >= 0 && (*n as u64) >> (size * 8) == 0)
                || (*n < 0 && *n >= -(1i64 << (size * 8 - 1)));
            if !fits {
                return Err(format!("{n} does not fit in {size} bytes"));
            }
            Ok(bytes[..size].to_vec())
        }
        file::RawBytes::Hex(text) => {
            let bytes = parse_hex(text)?;
            if bytes.len() != size {
                return Err(format!("{} bytes given, the map's are {size}", bytes.len()));
            }
            Ok(bytes)
        }
    }
}

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
        };
        let mut skipped = Vec::new();
        let mut programs = Vec::new();
        for (index, specs) in self.programs.iter().enumerate() {
            let mut object = kmatrix_protocol::ObjectPlan {
                index: index as u32,
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
                planned.push(p);
                object.programs.push(kmatrix_protocol::ProgramPlan {
                    name: spec.name.clone(),
                    cases: spec.cases.iter().map(|c| c.plan.clone()).collect(),
                });
            }
            plan.objects.push(object);
            programs.push(planned);
        }
        KernelPlan {
            plan,
            skipped,
            programs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_allows_separators() {
        assert_eq!(
            parse_hex("00 11:22_33\n44").unwrap(),
            [0, 0x11, 0x22, 0x33, 0x44]
        );
        assert!(parse_hex("0g").unwrap_err().contains("not hex bytes"));
    }

    #[test]
    fn integers_are_sized_little_endian() {
        use file::RawBytes::*;
        assert_eq!(
            sized_bytes(&Number(3), 8).unwrap(),
            [3, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(sized_bytes(&Number(0x0102), 4).unwrap(), [2, 1, 0, 0]);
        assert_eq!(sized_bytes(&Number(-1), 2).unwrap(), [0xff, 0xff]);
        assert!(sized_bytes(&Number(256), 1)
            .unwrap_err()
            .contains("does not fit"));
        assert!(sized_bytes(&Hex("0102".into()), 4)
            .unwrap_err()
            .contains("2 bytes given, the map's are 4"));
        assert!(sized_bytes(&Number(1), 16)
            .unwrap_err()
            .contains("give them as hex"));
    }
}
