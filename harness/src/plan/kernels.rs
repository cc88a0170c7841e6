//! The kernels a command works on: the matrix found (or the built-in
//! one), the selection, the architecture and the shard.

use std::path::{Path, PathBuf};

use kmatrix_protocol::Arch;

use super::{Notice, PlanError, Resolved};
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
/// or the built-in one.
pub(super) fn load_matrix(
    given: Option<PathBuf>,
    notices: &mut Vec<Notice>,
) -> Result<Matrix, PlanError> {
    load_found(find_matrix(given)?, notices)
}

/// The matrix file `found`, or the built-in one when there is none (with a
/// notice saying so).
fn load_found(found: Option<PathBuf>, notices: &mut Vec<Notice>) -> Result<Matrix, PlanError> {
    match found {
        Some(path) => Ok(Matrix::load(&path)?),
        None => {
            let matrix = Matrix::built_in()?;
            notices.push(Notice::BuiltInMatrix {
                kernels: matrix.kernels.len(),
            });
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
/// leaves out, if it does.
fn range_note(selection: &Selection, matrix: &Matrix, selected: &[KernelEntry]) -> Option<Notice> {
    let Selection::Range { from, to } = selection else {
        return None;
    };
    let series = matrix.kernels.iter().map(|k| k.version.series());
    let (oldest, newest) = (series.clone().min()?, series.max()?);
    let below_oldest = from.is_some_and(|from| from < oldest).then_some(oldest);
    let above_newest = to.is_some_and(|to| to > newest).then_some(newest);
    if below_oldest.is_none() && above_newest.is_none() {
        return None;
    }
    Some(Notice::RangePastMatrix {
        selection: selection.clone(),
        below_oldest,
        above_newest,
        selects: selected.iter().map(|k| k.label.clone()).collect(),
    })
}

impl KernelSet {
    /// Finds and loads the matrix, then applies the selection, the
    /// architecture and the shard: what `kmatrix kernels` and `kmatrix
    /// matrix` work on.
    pub fn resolve(
        matrix: Option<PathBuf>,
        selection: &Selection,
        arch: Option<Arch>,
        shard: Option<Shard>,
    ) -> Resolved<Self> {
        Resolved::gather(|notices| {
            let matrix = load_matrix(matrix, notices)?;
            Self::select(matrix, selection, arch, shard, notices)
        })
    }

    /// Applies the selection, the architecture and the shard to `matrix`.
    pub(super) fn select(
        matrix: Matrix,
        selection: &Selection,
        arch: Option<Arch>,
        shard: Option<Shard>,
        notices: &mut Vec<Notice>,
    ) -> Result<Self, PlanError> {
        let selected: Vec<KernelEntry> = selection
            .apply_arch(&matrix.kernels, arch)?
            .into_iter()
            .cloned()
            .collect();
        notices.extend(range_note(selection, &matrix, &selected));
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

    /// The labels of the kernels to work on that are not pinned (a `path`
    /// source needs no pin): runs use only pinned artifacts, so these are
    /// reported as not run (their fetch fails before any download).
    pub fn unpinned(&self) -> Vec<String> {
        self.kernels
            .iter()
            .filter(|k| !k.is_pinned())
            .map(|k| k.label.clone())
            .collect()
    }

    /// Fails when no kernel to work on is pinned (nothing would run);
    /// notes the unpinned ones when others are.
    pub fn check_pinned(&self) -> Resolved<()> {
        Resolved::gather(|notices| {
            let labels = self.unpinned();
            if labels.is_empty() {
                Ok(())
            } else if labels.len() == self.kernels.len() {
                Err(PlanError::Unpinned { labels })
            } else {
                notices.push(Notice::Unpinned { labels });
                Ok(())
            }
        })
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
/// selection has kernels of it (with a notice when it leaves others out).
pub(super) fn exec_arch(
    matrix: &Matrix,
    selection: &Selection,
    asked: Option<Arch>,
    program: &Path,
    notices: &mut Vec<Notice>,
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
        notices.push(Notice::ExecArch {
            program: program.to_owned(),
            arch: program_arch,
            running: same.len(),
            selected: selected.len(),
        });
    }
    Ok(program_arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_matrix_file_the_built_in_one_comes_with_a_notice() {
        let mut notices = Vec::new();
        let matrix = load_found(None, &mut notices).unwrap();
        assert!(matrix.built_in);
        assert_eq!(
            notices,
            [Notice::BuiltInMatrix {
                kernels: matrix.kernels.len()
            }]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = crate::plan::tests::matrix_file(dir.path());
        let mut notices = Vec::new();
        assert!(!load_found(Some(file), &mut notices).unwrap().built_in);
        assert!(notices.is_empty());
    }
}
