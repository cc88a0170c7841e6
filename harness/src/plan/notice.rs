//! What the user should know about a plan, returned for the front end to
//! show: the run stage itself prints nothing.

use std::fmt;
use std::path::PathBuf;

use kmatrix_protocol::Arch;

use super::PlanError;
use crate::kernels::Selection;

/// Something the user should know about how a request was resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// No matrix file was given or found: the built-in matrix is in use.
    BuiltInMatrix {
        /// How many kernels it has.
        kernels: usize,
    },
    /// A range reaches past the matrix's oldest or newest series.
    RangePastMatrix {
        /// The range.
        selection: Selection,
        /// The matrix's oldest series, when the range starts below it.
        below_oldest: Option<(u32, u32)>,
        /// Its newest, when the range ends above it.
        above_newest: Option<(u32, u32)>,
        /// The labels the range selects.
        selects: Vec<String>,
    },
    /// `kmatrix exec`'s program runs on only some of the selected kernels.
    ExecArch {
        /// The program.
        program: PathBuf,
        /// Its architecture.
        arch: Arch,
        /// The selected kernels of that architecture.
        running: usize,
        /// Every selected kernel.
        selected: usize,
    },
    /// What `kmatrix exec`'s share of the working directory left out.
    Share(String),
    /// Some kernels to boot are not pinned: they are reported as not run.
    Unpinned {
        /// Their labels.
        labels: Vec<String>,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::BuiltInMatrix { kernels } => write!(
                f,
                "no kernels.toml here or in a parent directory: using the built-in matrix ({kernels} kernels); `kmatrix init` writes it out to pin or change it"
            ),
            Notice::RangePastMatrix {
                selection,
                below_oldest,
                above_newest,
                selects,
            } => {
                let show = |(major, minor): (u32, u32)| format!("{major}.{minor}");
                let past: Vec<String> = [
                    below_oldest
                        .map(|s| format!("below the oldest kernel of the matrix ({})", show(s))),
                    above_newest.map(|s| format!("above the newest ({})", show(s))),
                ]
                .into_iter()
                .flatten()
                .collect();
                write!(
                    f,
                    "`{selection}` reaches {}: it selects {}; other series come from OCI images or `url`/`path` entries (examples, 5.4 to 6.8, are commented in kernels.toml; `kmatrix init` writes it out)",
                    past.join(" and "),
                    selects.join(", ")
                )
            }
            Notice::ExecArch {
                program,
                arch,
                running,
                selected,
            } => write!(
                f,
                "{} is an {arch} program: it runs on the {running} {arch} kernels of the {selected} selected",
                program.display()
            ),
            Notice::Share(text) => f.write_str(text),
            Notice::Unpinned { labels } => match &labels[..] {
                [label] => write!(
                    f,
                    "kernel `{label}` is not pinned: it is not fetched or booted (a run reports it as not run); `kmatrix kernels update --kernels {label}` pins it"
                ),
                _ => write!(
                    f,
                    "{} kernels are not pinned ({}): they are not fetched or booted (a run reports them as not run); `kmatrix kernels update --kernels {}` pins them",
                    labels.len(),
                    labels.join(", "),
                    labels.join(",")
                ),
            },
        }
    }
}

/// A stage's result and the notices gathered on the way, kept when it
/// failed (they may explain why).
#[must_use]
pub struct Resolved<T> {
    /// What the user should know, in the order it arose.
    pub notices: Vec<Notice>,
    /// The stage's result.
    pub result: Result<T, PlanError>,
}

impl<T> Resolved<T> {
    /// Runs `stage`, gathering the notices it pushes.
    pub(super) fn gather(stage: impl FnOnce(&mut Vec<Notice>) -> Result<T, PlanError>) -> Self {
        let mut notices = Vec::new();
        let result = stage(&mut notices);
        Self { notices, result }
    }
}
