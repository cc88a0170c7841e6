//! The kernels a command works on: the matrix found (or the built-in
//! one), the selection, the architecture and the shard.

use std::path::{Path, PathBuf};

use kmatrix_protocol::Arch;

use super::PlanError;
use crate::cache::Cache;
use crate::kernels::{FetchEvent, Fetcher, KernelEntry, Matrix, Selection};
use crate::partition::Shard;

/// Environment variable naming the kernel matrix file.
pub const MATRIX_ENV: &str = "KMATRIX_KERNELS";

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

/// The architecture `kmatrix exec` runs `program` on: its own, if the
/// selection has kernels of it (saying so when it leaves others out).
pub(super) fn exec_arch(
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
