//! The run stage: what the user asked for (a matrix file, a kernel
//! selection, a shard, a suite or objects or a program, VM settings) turned
//! into a validated, typed [`RunPlan`] before anything boots. Every command
//! and `cargo test` go through here; none repeats the sequence.
//!
//! The stages are separate because not every command needs all of them:
//! [`KernelSet`] is the matrix and its selected kernels (all `kmatrix
//! kernels` commands stop there), [`Tests`] is what runs in each kernel,
//! and [`RunPlan`] joins them with a fetcher and the VM settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kmatrix_protocol::{Arch, ExecPlan, Feature, Loader};

use crate::agent::Init;
use crate::cache::{Cache, CacheError};
use crate::exec::ExecError;
use crate::image::ImageParts;
use crate::kernels::{
    FetchEvent, Fetcher, KernelEntry, Matrix, MatrixError, SelectError, Selection,
};
use crate::objects::ObjectError;
use crate::partition::{Shard, ShardError};
use crate::suite::{Suite, SuiteError};
use crate::vm::VmConfig;

/// Environment variable naming the kernel matrix file.
pub const MATRIX_ENV: &str = "KMATRIX_KERNELS";

/// A request that cannot become a plan: always the user's input to fix.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No matrix file was given or found.
    #[error("no kernels.toml in {} or its parents to update (the built-in matrix is in use): `kmatrix init` writes it out", dir.display())]
    BuiltInMatrix {
        /// Where the search started.
        dir: PathBuf,
    },
    /// The matrix file is wrong.
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    /// `--kernels` picks nothing, or something unknown.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// `--shard` does not fit the selection.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A selected kernel has no pins.
    #[error("kernel `{label}` has no sha256 pins: run `kmatrix kernels update --kernels {label}` to pin its packages")]
    Unpinned {
        /// The kernel's label.
        label: String,
    },
    /// The suite is wrong.
    #[error(transparent)]
    Suite(#[from] SuiteError),
    /// An object is wrong.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The program for `kmatrix exec` cannot be packed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// `kmatrix exec`'s program cannot run on the selected kernels.
    #[error("{} is an {program_arch} program, but the selected kernels ({kernels}) are {kernel_arch}: build it for {kernel_arch} (Rust: `--target {}`) or select {program_arch} kernels (`--arch {program_arch}`)", program.display(), rust_target(*kernel_arch))]
    ArchMismatch {
        /// The program.
        program: PathBuf,
        /// Its architecture.
        program_arch: Arch,
        /// The selected kernels.
        kernels: String,
        /// Theirs.
        kernel_arch: Arch,
    },
    /// The cache directory is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A scratch directory or the initramfs parts could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// `given`, else [`MATRIX_ENV`], else `kernels.toml` here or in the nearest
/// parent that has one.
pub fn find_matrix(given: Option<PathBuf>) -> Result<Option<PathBuf>, PlanError> {
    if let Some(path) = given.or_else(|| std::env::var_os(MATRIX_ENV).map(PathBuf::from)) {
        return Ok(Some(path));
    }
    let cwd = std::env::current_dir().map_err(|source| PlanError::Io {
        what: "reading the current directory",
        source,
    })?;
    Ok(cwd
        .ancestors()
        .map(|dir| dir.join("kernels.toml"))
        .find(|path| path.is_file()))
}

/// The matrix `given` names, or the one found from the current directory,
/// or the built-in one (saying so on stderr).
pub fn load_matrix(given: Option<PathBuf>) -> Result<Matrix, PlanError> {
    match find_matrix(given)? {
        Some(path) => Ok(Matrix::load(&path)?),
        None => {
            let matrix = Matrix::built_in()?;
            eprintln!(
                "kmatrix: no kernels.toml here or in a parent directory: using the built-in matrix ({} kernels); `kmatrix init` writes it out to pin or change it",
                matrix.kernels.len()
            );
            Ok(matrix)
        }
    }
}

/// The matrix and the kernels a command works on.
#[derive(Debug)]
pub struct KernelSet {
    /// The whole matrix.
    pub matrix: Matrix,
    /// Every selected kernel's label, before sharding, in matrix order.
    pub selected: Vec<String>,
    /// The kernels to work on: the selection, or this shard of it.
    pub kernels: Vec<KernelEntry>,
    /// The shard, when sharded.
    pub shard: Option<Shard>,
}

/// What a range that reaches past the matrix's oldest or newest series
/// leaves out, in one line, if it does.
fn range_note(selection: &Selection, matrix: &Matrix, selected: &[KernelEntry]) -> Option<String> {
    let Selection::Range { from, to } = selection else {
        return None;
    };
    let series = matrix.kernels.iter().map(|k| k.version.series());
    let (oldest, newest) = (series.clone().min()?, series.max()?);
    let show = |(major, minor): (u32, u32)| format!("{major}.{minor}");
    let mut past = Vec::new();
    if from.is_some_and(|from| from < oldest) {
        past.push(format!(
            "below the oldest kernel of the matrix ({})",
            show(oldest)
        ));
    }
    if to.is_some_and(|to| to > newest) {
        past.push(format!("above the newest ({})", show(newest)));
    }
    if past.is_empty() {
        return None;
    }
    let labels: Vec<&str> = selected.iter().map(|k| k.label.as_str()).collect();
    Some(format!(
        "`{selection}` reaches {}: it selects {}; other series come from OCI images or `url`/`path` entries (examples, 5.4 to 6.8, are commented in kernels.toml; `kmatrix init` writes it out)",
        past.join(" and "),
        labels.join(", ")
    ))
}

/// Rust's name for the (gnu) target of `arch`.
fn rust_target(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-unknown-linux-gnu",
        Arch::Arm64 => "aarch64-unknown-linux-gnu",
    }
}

impl KernelSet {
    /// Finds and loads the matrix, then applies the selection, the
    /// architecture and the shard.
    pub fn resolve(
        matrix: Option<PathBuf>,
        selection: &Selection,
        arch: Option<Arch>,
        shard: Option<Shard>,
    ) -> Result<Self, PlanError> {
        Self::select(load_matrix(matrix)?, selection, arch, shard)
    }

    /// Applies the selection, the architecture and the shard to `matrix`.
    pub fn select(
        matrix: Matrix,
        selection: &Selection,
        arch: Option<Arch>,
        shard: Option<Shard>,
    ) -> Result<Self, PlanError> {
        let selected: Vec<KernelEntry> = selection
            .apply_arch(&matrix.kernels, arch)?
            .into_iter()
            .cloned()
            .collect();
        if let Some(note) = range_note(selection, &matrix, &selected) {
            eprintln!("kmatrix: {note}");
        }
        let kernels = match shard {
            Some(shard) => shard.apply(&selected)?,
            None => selected.clone(),
        };
        Ok(Self {
            selected: selected.iter().map(|k| k.label.clone()).collect(),
            matrix,
            kernels,
            shard,
        })
    }

    /// The architectures of the kernels to work on.
    pub fn arches(&self) -> Vec<Arch> {
        let arches: std::collections::BTreeSet<Arch> =
            self.kernels.iter().map(|k| k.arch).collect();
        arches.into_iter().collect()
    }

    /// Fails unless every kernel to work on is pinned: runs use only pinned
    /// artifacts (a `path` source needs no pin).
    pub fn check_pinned(&self) -> Result<(), PlanError> {
        match self.kernels.iter().find(|k| !k.is_pinned()) {
            Some(kernel) => Err(PlanError::Unpinned {
                label: kernel.label.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A fetcher for this matrix, with the cache from the environment,
    /// reporting its progress to `progress`.
    pub fn fetcher(
        &self,
        offline: bool,
        progress: impl Fn(FetchEvent) + Send + Sync + 'static,
    ) -> Result<Fetcher, PlanError> {
        Ok(Fetcher::new(
            Cache::from_env()?,
            &self.matrix,
            offline,
            progress,
        ))
    }
}

/// What runs in each kernel, as asked.
#[derive(Clone, Debug)]
pub enum Tests {
    /// A suite file and bare objects: `--suite` (with any objects added),
    /// else the objects alone, else the suite [`crate::suite::find`] finds.
    Suite {
        /// The suite file.
        suite: Option<PathBuf>,
        /// Bare objects (`.o` or `.c`), checked for loading only.
        objects: Vec<PathBuf>,
        /// The loader of objects whose suite entry names none [default:
        /// aya].
        loader: Option<Loader>,
        /// Also load every program with the other loader and compare the
        /// verdicts (`--loader both`).
        compare_loaders: bool,
    },
    /// A host program (`kmatrix exec`).
    Exec {
        /// The program and its arguments.
        command: Vec<String>,
        /// Extra files and directories to pack.
        files: Vec<PathBuf>,
        /// Environment variables to pass through.
        env: Vec<String>,
        /// Whether the working directory is shared with the guest.
        share: bool,
    },
}

impl LoadedTests {
    /// Nothing to load: every kernel probes `features`, and with `all`
    /// every feature it names, for kernels of `arches`.
    pub fn probes(arches: &[Arch], all: bool, features: Vec<Feature>) -> Result<Self, PlanError> {
        Ok(Self {
            suite: Suite::from_objects(Vec::new()),
            parts: ImageParts::new(Init::Agent, arches, &[]).map_err(|source| PlanError::Io {
                what: "building the initramfs",
                source,
            })?,
            exec: None,
            probe_all: all,
            probes: features,
        })
    }
}

/// [`Tests`], read and checked, with the initramfs parts they need.
pub struct LoadedTests {
    /// The suite (empty for a program).
    pub suite: Suite,
    /// The kernel-independent initramfs parts.
    pub parts: ImageParts,
    /// The program to run, under `kmatrix exec`.
    pub exec: Option<ExecPlan>,
    /// Whether every kernel probes every feature it names (`kmatrix
    /// probe`).
    pub probe_all: bool,
    /// Features every kernel probes (`kmatrix probe FEATURE…`).
    pub probes: Vec<Feature>,
}

impl Tests {
    /// Reads and checks everything named, building C sources with clang,
    /// for kernels of `arches`.
    pub fn load(&self, arches: &[Arch]) -> Result<LoadedTests, PlanError> {
        let io = |what| move |source| PlanError::Io { what, source };
        match self {
            Tests::Suite {
                suite,
                objects,
                loader,
                compare_loaders,
            } => {
                let scratch = tempfile::Builder::new()
                    .prefix("kmatrix-objects-")
                    .tempdir()
                    .map_err(io("creating a scratch directory"))?;
                let mut suite = load_suite(suite.as_deref(), objects, scratch.path())?;
                suite.default_loader = loader.unwrap_or_default();
                if *compare_loaders {
                    suite.compare_loaders();
                }
                let parts = ImageParts::new(Init::Agent, arches, &suite.objects)
                    .map_err(io("building the initramfs"))?;
                Ok(LoadedTests {
                    suite,
                    parts,
                    exec: None,
                    probe_all: false,
                    probes: Vec::new(),
                })
            }
            Tests::Exec {
                command,
                files,
                env,
                share,
            } => {
                let prepared = crate::exec::prepare(command, files, env, *share)?;
                let mut parts = ImageParts::new(Init::Agent, arches, &[])
                    .map_err(io("building the initramfs"))?;
                parts
                    .add_files(&prepared.files)
                    .map_err(io("packing the program"))?;
                Ok(LoadedTests {
                    suite: Suite::from_objects(Vec::new()),
                    parts,
                    exec: Some(prepared.plan),
                    probe_all: false,
                    probes: Vec::new(),
                })
            }
        }
    }
}

fn load_suite(
    suite: Option<&Path>,
    objects: &[PathBuf],
    scratch: &Path,
) -> Result<Suite, PlanError> {
    Ok(match (suite, objects.is_empty()) {
        (Some(path), _) => Suite::load(path, objects, scratch)?,
        (None, false) => Suite::from_objects(crate::objects::load(objects, scratch)?),
        (None, true) => Suite::load(&crate::suite::find(None)?, &[], scratch)?,
    })
}

/// The architecture `kmatrix exec` runs `program` on: its own, if the
/// selection has kernels of it (saying so when it leaves others out).
fn exec_arch(
    matrix: &Matrix,
    selection: &Selection,
    asked: Option<Arch>,
    program: &Path,
) -> Result<Arch, PlanError> {
    let program_arch = crate::exec::program_arch(program)?;
    let selected = selection.apply_arch(&matrix.kernels, asked)?;
    let (same, other): (Vec<&KernelEntry>, Vec<&KernelEntry>) =
        selected.iter().partition(|k| k.arch == program_arch);
    if same.is_empty() {
        return Err(PlanError::ArchMismatch {
            program: program.to_owned(),
            program_arch,
            kernels: other
                .iter()
                .map(|k| k.label.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            kernel_arch: other[0].arch,
        });
    }
    if !other.is_empty() {
        eprintln!(
            "kmatrix: {} is an {program_arch} program: it runs on the {} {program_arch} kernels of the {} selected",
            program.display(),
            same.len(),
            selected.len()
        );
    }
    Ok(program_arch)
}

/// The number of CPUs: VMs booted at once unless told otherwise.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How a run is carried out.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Kernels booted at once.
    pub jobs: usize,
    /// How each VM runs.
    pub vm: VmConfig,
    /// Whether the guest reports each case (false only to measure what
    /// streaming costs).
    pub report_cases: bool,
}

/// What every kernel's VM shares.
pub struct Shared {
    /// The suite (empty under `kmatrix exec`).
    pub suite: Suite,
    /// The kernel-independent initramfs parts.
    pub parts: ImageParts,
    /// Fetches each kernel into the cache.
    pub fetcher: Fetcher,
    /// How the run is carried out.
    pub config: RunConfig,
    /// The program each kernel runs after the suite (`kmatrix exec`).
    pub exec: Option<ExecPlan>,
    /// Whether every kernel probes every feature it names.
    pub probe_all: bool,
    /// Features every kernel probes.
    pub probes: Vec<Feature>,
}

/// A validated run: what [`crate::runner::run`] carries out.
pub struct RunPlan {
    /// The kernels to boot, in matrix order, all pinned.
    pub kernels: Vec<KernelEntry>,
    /// Every selected kernel's label, before sharding.
    pub matrix: Vec<String>,
    /// The shard, when sharded.
    pub shard: Option<Shard>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for RunPlan {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl RunPlan {
    /// Joins the kernels and the tests; fails unless every kernel is
    /// pinned.
    pub fn new(
        kernels: KernelSet,
        tests: LoadedTests,
        fetcher: Fetcher,
        config: RunConfig,
    ) -> Result<Self, PlanError> {
        kernels.check_pinned()?;
        Ok(Self {
            kernels: kernels.kernels,
            matrix: kernels.selected,
            shard: kernels.shard,
            shared: Arc::new(Shared {
                suite: tests.suite,
                parts: tests.parts,
                fetcher,
                config,
                exec: tests.exec,
                probe_all: tests.probe_all,
                probes: tests.probes,
            }),
        })
    }

    /// What every kernel's VM shares, for the runner's tasks.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// Everything a run needs, as the user gave it.
pub struct RunRequest {
    /// The matrix file [default: found by [`find_matrix`]].
    pub matrix: Option<PathBuf>,
    /// `--kernels`.
    pub kernels: Selection,
    /// `--arch`.
    pub arch: Option<Arch>,
    /// `--shard`.
    pub shard: Option<Shard>,
    /// What runs in each kernel.
    pub tests: Tests,
    /// Use only cached kernels.
    pub offline: bool,
    /// How the run is carried out.
    pub config: RunConfig,
}

impl RunRequest {
    /// Resolves every stage into a plan; fetch progress goes to
    /// `progress`.
    pub fn resolve(
        self,
        progress: impl Fn(FetchEvent) + Send + Sync + 'static,
    ) -> Result<RunPlan, PlanError> {
        let matrix = load_matrix(self.matrix)?;
        let arch = match &self.tests {
            Tests::Exec { command, .. } => Some(exec_arch(
                &matrix,
                &self.kernels,
                self.arch,
                Path::new(&command[0]),
            )?),
            Tests::Suite { .. } => self.arch,
        };
        let kernels = KernelSet::select(matrix, &self.kernels, arch, self.shard)?;
        kernels.check_pinned()?;
        let tests = self.tests.load(&kernels.arches())?;
        let fetcher = kernels.fetcher(self.offline, progress)?;
        RunPlan::new(kernels, tests, fetcher, self.config)
    }
}
