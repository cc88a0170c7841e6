//! The run stage: what the user asked for (a matrix file, a kernel
//! selection, a shard, a suite or objects or a program or probes, VM
//! settings) turned into a validated, typed [`RunPlan`] before anything
//! boots. Every front end that boots (`kmatrix test`, `exec`, `probe`,
//! `bench`, and `cargo test`) makes a [`RunRequest`] and resolves it here;
//! none repeats the sequence. Nothing here prints: what the user should
//! know comes back as [`Notice`]s in a [`Resolved`], for the front end to
//! show.
//!
//! [`RunRequest::resolve`] is [`RunRequest::prepare`] (matrix, selection,
//! tests: nothing fetched, the cache untouched) then [`Prepared::plan`]
//! (pins, fetcher); a front end that boots fewer kernels than it selects
//! (`cargo test`'s filter, `bench`'s one kernel) narrows
//! [`Prepared::set`]'s kernels in between (`kmatrix probe`, which asks the
//! fetcher's cache which kernels need probing, narrows the plan's
//! [`RunPlan::kernels`]). [`KernelSet::resolve`] is the
//! first half alone, for the commands that boot nothing (`kmatrix kernels`,
//! `kmatrix matrix`).
//!
//! `kernels.rs` holds [`KernelSet`] (the matrix, the selection, the shard),
//! `workload.rs` holds [`Tests`] (what runs in each kernel), `notice.rs`
//! the notices; this file joins them into a [`RunPlan`].

mod kernels;
mod notice;
#[cfg(test)]
pub(crate) mod tests;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;

use kmatrix_protocol::report::{ExecReproduce, Reproduce};
use kmatrix_protocol::{Arch, ExecPlan, Feature};

use crate::cache::CacheError;
use crate::exec::ExecError;
use crate::image::ImageParts;
use crate::kernels::{FetchEvent, Fetcher, KernelEntry, MatrixError, SelectError, Selection};
use crate::objects::ObjectError;
use crate::partition::{Shard, ShardError};
use crate::suite::{Suite, SuiteError};
use crate::vm::VmConfig;

use kernels::{exec_arch, load_matrix};
pub use kernels::{find_matrix, KernelSet, MATRIX_ENV};
pub use notice::{Notice, Resolved};
pub use workload::{LoadedTests, Tests};

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
    /// No kernel to boot is pinned.
    #[error("{}", unpinned(labels))]
    Unpinned {
        /// Their labels.
        labels: Vec<String>,
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
    /// The saved VMs' cap does not read.
    #[error(transparent)]
    SnapshotCap(#[from] crate::vm::snapshot::CapError),
    /// A scratch directory or the initramfs parts could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Why a run whose kernels are all unpinned cannot start.
fn unpinned(labels: &[String]) -> String {
    match labels {
        [label] => format!("kernel `{label}` has no sha256 pins: run `kmatrix kernels update --kernels {label}` to pin its packages"),
        _ => format!(
            "no kernel to run has sha256 pins ({}): run `kmatrix kernels update --kernels {}` to pin their packages",
            labels.join(", "),
            labels.join(",")
        ),
    }
}

/// Rust's name for the (gnu) target of `arch`.
fn rust_target(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-unknown-linux-gnu",
        Arch::Arm64 => "aarch64-unknown-linux-gnu",
    }
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
    /// Whether the verifier's figures of a program aya loaded are asked
    /// for (a second load by libbpf in the guest): true unless no report
    /// of the run shows them.
    pub verifier_stats: bool,
    /// What the front end sends each guest after its start (`kmatrix
    /// shell`'s terminal), bytes the run forwards without reading.
    pub later_input: Option<crate::vm::LaterInput>,
}

impl RunConfig {
    /// `jobs` kernels at once [default: the number of CPUs], each VM run
    /// as `vm` says, every case reported.
    pub fn new(jobs: Option<usize>, vm: VmConfig) -> Self {
        Self {
            jobs: jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            vm,
            report_cases: true,
            verifier_stats: true,
            later_input: None,
        }
    }
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
    /// The kernels to boot, in matrix order (a front end may leave some
    /// out); an unpinned one fails its fetch before any download and is
    /// reported as not run, as a kernel that could not be fetched is.
    pub kernels: Vec<KernelEntry>,
    /// Every selected kernel's label, before sharding.
    pub matrix: Vec<String>,
    /// The shard, when sharded.
    pub shard: Option<Shard>,
    /// What a command line reproducing a failure repeats (a suite's run).
    pub reproduce: Option<Reproduce>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for RunPlan {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl RunPlan {
    /// What every kernel's VM shares, for the runner's tasks.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// Everything a run needs, as the user gave it.
#[derive(Debug)]
pub struct RunRequest {
    /// The matrix file [default: found by [`find_matrix`], else the
    /// built-in one].
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
    /// Resolves every stage into a plan: [`Self::prepare`], then
    /// [`Prepared::plan`]; fetch progress goes to `progress`.
    pub fn resolve(
        self,
        progress: impl Fn(FetchEvent) + Send + Sync + 'static,
    ) -> Resolved<RunPlan> {
        Resolved::gather(|notices| self.prepare_noting(notices)?.plan_noting(progress, notices))
    }

    /// Loads the matrix, selects the kernels and loads the tests: nothing
    /// is fetched and the cache is untouched.
    pub fn prepare(self) -> Resolved<Prepared> {
        Resolved::gather(|notices| self.prepare_noting(notices))
    }

    /// What a command line reproducing one of this run's failures repeats:
    /// the matrix and architecture as given, and the suite, loader and
    /// objects or `kmatrix exec`'s program and its files; `None` for probes
    /// and a program on a terminal (`kmatrix shell`).
    pub fn reproduce(&self) -> Option<Reproduce> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let run = Reproduce {
            matrix: self.matrix.as_ref().map(path),
            arch: self.arch.map(|a| a.to_string()),
            ..Reproduce::default()
        };
        match &self.tests {
            Tests::Suite {
                suite,
                objects,
                loader,
                compare_loaders,
                ..
            } => Some(Reproduce {
                suite: suite.as_ref().map(path),
                loader: match (loader, compare_loaders) {
                    (_, true) => Some("both".into()),
                    (Some(loader), false) => Some(loader.name().into()),
                    (None, false) => None,
                },
                objects: objects.iter().map(path).collect(),
                ..run
            }),
            Tests::Exec {
                command,
                files,
                env,
                share,
                tty: None,
            } => Some(Reproduce {
                exec: Some(ExecReproduce {
                    command: command.clone(),
                    files: files.iter().map(path).collect(),
                    env: env.clone(),
                    no_share: !share,
                }),
                ..run
            }),
            Tests::Exec { tty: Some(_), .. } | Tests::Probes { .. } => None,
        }
    }

    fn prepare_noting(self, notices: &mut Vec<Notice>) -> Result<Prepared, PlanError> {
        let reproduce = self.reproduce();
        let matrix = load_matrix(self.matrix, notices)?;
        let arch = match &self.tests {
            Tests::Exec { command, .. } => Some(exec_arch(
                &matrix,
                &self.kernels,
                self.arch,
                &crate::exec::find_program(&command[0])?,
                notices,
            )?),
            Tests::Suite { .. } | Tests::Probes { .. } => self.arch,
        };
        let set = KernelSet::select(matrix, &self.kernels, arch, self.shard, notices)?;
        let tests = self
            .tests
            .load(&set.arches(), self.config.vm.memory_mib, notices)?;
        Ok(Prepared {
            set,
            tests,
            offline: self.offline,
            config: self.config,
            reproduce,
        })
    }
}

/// A request with its kernels selected and its tests loaded, before pins
/// are checked and anything is fetched.
pub struct Prepared {
    /// The matrix and the selected kernels; a front end that boots fewer
    /// narrows `set.kernels` (the tests were loaded for all of them).
    pub set: KernelSet,
    /// What runs in each kernel.
    pub tests: LoadedTests,
    offline: bool,
    config: RunConfig,
    reproduce: Option<Reproduce>,
}

impl Prepared {
    /// The plan for the kernels left: fails when none of them is pinned,
    /// with a notice naming the unpinned ones when some are; fetch
    /// progress goes to `progress`.
    pub fn plan(self, progress: impl Fn(FetchEvent) + Send + Sync + 'static) -> Resolved<RunPlan> {
        Resolved::gather(|notices| self.plan_noting(progress, notices))
    }

    fn plan_noting(
        self,
        progress: impl Fn(FetchEvent) + Send + Sync + 'static,
        notices: &mut Vec<Notice>,
    ) -> Result<RunPlan, PlanError> {
        let Prepared {
            set,
            tests,
            offline,
            config,
            reproduce,
        } = self;
        let pinned = set.check_pinned();
        notices.extend(pinned.notices);
        pinned.result?;
        if config.vm.snapshots {
            crate::vm::snapshot::cap_from_env()?;
        }
        let fetcher = set.fetcher(offline, progress)?;
        Ok(RunPlan {
            kernels: set.kernels,
            matrix: set.selected,
            shard: set.shard,
            reproduce,
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
}
