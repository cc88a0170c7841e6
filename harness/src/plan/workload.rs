//! What runs in each kernel: a suite and objects, `kmatrix exec`'s
//! program, or feature probes alone (`kmatrix probe`), read and checked
//! with the initramfs parts they need.

use std::path::{Path, PathBuf};

use kmatrix_protocol::{Arch, ExecPlan, Feature, Loader};

use super::{Notice, PlanError};
use crate::agent::Init;
use crate::image::ImageParts;
use crate::suite::Suite;

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
        /// Run only the tests of these names (`--only`); empty: all.
        only: Vec<String>,
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
        /// Run it on a terminal of this size (`kmatrix shell`).
        tty: Option<kmatrix_protocol::WindowSize>,
    },
    /// Nothing loaded: every kernel probes every feature it names, and
    /// these (`kmatrix probe`).
    Probes {
        /// The features asked about.
        features: Vec<Feature>,
    },
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
    /// for kernels of `arches` in guests of `memory_mib` MiB.
    pub(super) fn load(
        &self,
        arches: &[Arch],
        memory_mib: u32,
        notices: &mut Vec<Notice>,
    ) -> Result<LoadedTests, PlanError> {
        let io = |what| move |source| PlanError::Io { what, source };
        match self {
            Tests::Suite {
                suite,
                objects,
                loader,
                compare_loaders,
                only,
            } => {
                let scratch = tempfile::Builder::new()
                    .prefix("kmatrix-objects-")
                    .tempdir()
                    .map_err(io("creating a scratch directory"))?;
                let (mut suite, path) = load_suite(suite.as_deref(), objects, scratch.path())?;
                suite.use_loaders(loader.unwrap_or_default(), *compare_loaders);
                suite.select(only)?;
                if let Some(path) = path {
                    suite.check_plan_len(&path)?;
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
                tty,
            } => {
                let mut prepared = crate::exec::prepare(command, files, env, *share, memory_mib)?;
                prepared.plan.tty = *tty;
                notices.extend(prepared.notices.iter().cloned().map(Notice::Share));
                let mut parts = ImageParts::new(Init::Agent, arches, &[])
                    .map_err(io("building the initramfs"))?;
                prepared.pack(&mut parts)?;
                Ok(LoadedTests {
                    suite: Suite::from_objects(Vec::new()),
                    parts,
                    exec: Some(prepared.plan),
                    probe_all: false,
                    probes: Vec::new(),
                })
            }
            Tests::Probes { features } => Ok(LoadedTests {
                suite: Suite::from_objects(Vec::new()),
                parts: ImageParts::new(Init::Agent, arches, &[])
                    .map_err(io("building the initramfs"))?,
                exec: None,
                probe_all: true,
                probes: features.clone(),
            }),
        }
    }
}

/// The suite, with its file where there is one.
fn load_suite(
    suite: Option<&Path>,
    objects: &[PathBuf],
    scratch: &Path,
) -> Result<(Suite, Option<PathBuf>), PlanError> {
    Ok(match (suite, objects.is_empty()) {
        (Some(path), _) => (Suite::load(path, objects, scratch)?, Some(path.to_owned())),
        (None, false) => (
            Suite::from_objects(crate::objects::load(objects, scratch)?),
            None,
        ),
        (None, true) => {
            let path = crate::suite::find(None)?;
            (Suite::load(&path, &[], scratch)?, Some(path))
        }
    })
}
