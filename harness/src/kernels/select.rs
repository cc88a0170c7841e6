//! `--kernels`: which entries of the matrix a run uses.

use std::fmt;
use std::str::FromStr;

use super::{KernelEntry, Version};

/// A selection of kernels: `all`, an inclusive `major.minor` range with
/// optional ends (`5.4..6.8`, `6.1..`, `..6.1`), or a comma list of labels
/// or versions (`6.1,6.12`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// Every entry.
    #[default]
    All,
    /// Entries whose series lies in the inclusive range.
    Range {
        /// Lowest series, if bounded.
        from: Option<(u32, u32)>,
        /// Highest series, if bounded.
        to: Option<(u32, u32)>,
    },
    /// Entries named by label or `major.minor`.
    List(Vec<String>),
}

/// A selection that does not fit the matrix.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The `--kernels` text could not be parsed.
    #[error("`{text}` is not a kernel selection: {reason} (expected `all`, a range such as `5.4..6.8`, `6.1..` or `..6.1`, or a list such as `6.1,6.12`)")]
    Syntax {
        /// What was given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A listed kernel is not in the matrix.
    #[error("no kernel `{name}` in the matrix; it has: {available}")]
    Unknown {
        /// The name that matched nothing.
        name: String,
        /// The labels that are there.
        available: String,
    },
    /// The selection has no kernel of the architecture asked for.
    #[error("`{selection}` selects no {arch} kernel; the matrix has: {available}")]
    NoArch {
        /// The selection.
        selection: String,
        /// The architecture.
        arch: kmatrix_protocol::Arch,
        /// The entries that are there, with their versions.
        available: String,
    },
    /// The selection matched no kernel.
    #[error("`{selection}` selects no kernel; the matrix has: {available}")]
    Empty {
        /// The selection.
        selection: String,
        /// The entries that are there, with their versions.
        available: String,
    },
}

impl FromStr for Selection {
    type Err = SelectError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = |reason: String| SelectError::Syntax {
            text: text.to_owned(),
            reason,
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(syntax("it is empty".into()));
        }
        if text == "all" {
            return Ok(Selection::All);
        }
        if let Some((from, to)) = text.split_once("..") {
            let bound = |s: &str| -> Result<Option<(u32, u32)>, SelectError> {
                if s.is_empty() {
                    return Ok(None);
                }
                let version: Version = s.parse().map_err(syntax)?;
                if version.patch != 0 {
                    return Err(syntax(format!("range ends are MAJOR.MINOR, not `{s}`")));
                }
                Ok(Some(version.series()))
            };
            let (from, to) = (bound(from)?, bound(to)?);
            if let (Some(from), Some(to)) = (from, to) {
                if from > to {
                    return Err(syntax("the range is reversed".into()));
                }
            }
            return Ok(Selection::Range { from, to });
        }
        let names: Vec<String> = text.split(',').map(|s| s.trim().to_owned()).collect();
        if names.iter().any(String::is_empty) {
            return Err(syntax("the list has an empty item".into()));
        }
        Ok(Selection::List(names))
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let series = |s: Option<(u32, u32)>| s.map(|(a, b)| format!("{a}.{b}")).unwrap_or_default();
        match self {
            Selection::All => f.write_str("all"),
            Selection::Range { from, to } => write!(f, "{}..{}", series(*from), series(*to)),
            Selection::List(names) => f.write_str(&names.join(",")),
        }
    }
}

impl Selection {
    /// Whether `kernel` is in this selection.
    pub fn matches(&self, kernel: &KernelEntry) -> bool {
        match self {
            Selection::All => true,
            Selection::Range { from, to } => {
                let series = kernel.version.series();
                from.is_none_or(|from| series >= from) && to.is_none_or(|to| series <= to)
            }
            Selection::List(names) => names.iter().any(|name| {
                kernel.label == *name
                    || name.parse::<Version>().is_ok_and(|v| {
                        v.series() == kernel.version.series()
                            && (v.patch == 0 || v == kernel.version)
                    })
            }),
        }
    }

    /// The entries this selection picks, of `arch` if given, in matrix
    /// order.
    pub fn apply_arch<'a>(
        &self,
        kernels: &'a [KernelEntry],
        arch: Option<kmatrix_protocol::Arch>,
    ) -> Result<Vec<&'a KernelEntry>, SelectError> {
        let mut selected = self.apply(kernels)?;
        if let Some(arch) = arch {
            selected.retain(|k| k.arch == arch);
            if selected.is_empty() {
                return Err(SelectError::NoArch {
                    selection: self.to_string(),
                    arch,
                    available: available(kernels),
                });
            }
        }
        Ok(selected)
    }

    /// The entries this selection picks, in matrix order.
    pub fn apply<'a>(
        &self,
        kernels: &'a [KernelEntry],
    ) -> Result<Vec<&'a KernelEntry>, SelectError> {
        let available = || available(kernels);
        if let Selection::List(names) = self {
            for name in names {
                let one = Selection::List(vec![name.clone()]);
                if !kernels.iter().any(|k| one.matches(k)) {
                    return Err(SelectError::Unknown {
                        name: name.clone(),
                        available: available(),
                    });
                }
            }
        }
        // A list item that is some kernel's label names that kernel alone
        // (`6.1` is not also `6.1-arm64`); others match by version.
        let picks = |k: &KernelEntry| match self {
            Selection::List(names) => names.iter().any(|name| {
                if kernels.iter().any(|other| other.label == *name) {
                    k.label == *name
                } else {
                    Selection::List(vec![name.clone()]).matches(k)
                }
            }),
            _ => self.matches(k),
        };
        let selected: Vec<_> = kernels.iter().filter(|k| picks(k)).collect();
        if selected.is_empty() {
            return Err(SelectError::Empty {
                selection: self.to_string(),
                available: available(),
            });
        }
        Ok(selected)
    }
}

/// The entries of a matrix, with their versions, for messages.
fn available(kernels: &[KernelEntry]) -> String {
    kernels
        .iter()
        .map(|k| format!("{} ({})", k.label, k.version))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Matrix;

    fn matrix() -> Matrix {
        let mut text = String::new();
        for (label, package) in [
            ("5.10", "linux-image-5.10.0-32-cloud-amd64"),
            ("6.1", "linux-image-6.1.0-50-cloud-amd64"),
            ("6.12", "linux-image-6.12.117+deb13-cloud-amd64"),
            ("7.3", "linux-image-7.3.4+deb13-cloud-amd64"),
        ] {
            text += &format!(
                "[[kernel]]\nlabel = \"{label}\"\ndebian = {{ suite = \"s\", package = \"{package}\" }}\nsha256 = {{ \"{package}\" = \"{}\" }}\n",
                "0".repeat(64)
            );
        }
        Matrix::parse(&text, "kernels.toml".as_ref()).unwrap()
    }

    fn labels(selection: &str) -> Result<Vec<String>, SelectError> {
        let matrix = matrix();
        let selection: Selection = selection.parse()?;
        Ok(selection
            .apply(&matrix.kernels)?
            .into_iter()
            .map(|k| k.label.clone())
            .collect())
    }

    #[test]
    fn ranges_are_inclusive_and_open_ended() {
        assert_eq!(labels("5.10..6.12").unwrap(), ["5.10", "6.1", "6.12"]);
        assert_eq!(labels("6.1..").unwrap(), ["6.1", "6.12", "7.3"]);
        assert_eq!(labels("..6.1").unwrap(), ["5.10", "6.1"]);
        assert_eq!(labels("5.4..6.8").unwrap(), ["5.10", "6.1"]);
        assert_eq!(labels("all").unwrap().len(), 4);
    }

    #[test]
    fn ranges_span_architectures_and_labels_name_one_kernel() {
        let mut matrix = matrix();
        let mut arm = matrix.kernels[1].clone();
        arm.label = "6.1-arm64".into();
        arm.arch = kmatrix_protocol::Arch::Arm64;
        matrix.kernels.push(arm);
        let pick = |text: &str, arch| -> Vec<String> {
            text.parse::<Selection>()
                .unwrap()
                .apply_arch(&matrix.kernels, arch)
                .unwrap()
                .into_iter()
                .map(|k| k.label.clone())
                .collect()
        };
        assert_eq!(pick("6.1..6.1", None), ["6.1", "6.1-arm64"]);
        assert_eq!(pick("6.1", None), ["6.1"]);
        assert_eq!(pick("6.1-arm64", None), ["6.1-arm64"]);
        assert_eq!(
            pick("all", Some(kmatrix_protocol::Arch::Arm64)),
            ["6.1-arm64"]
        );
        let err = "5.10"
            .parse::<Selection>()
            .unwrap()
            .apply_arch(&matrix.kernels, Some(kmatrix_protocol::Arch::Arm64))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("`5.10` selects no arm64 kernel"), "{err}");
    }

    #[test]
    fn lists_keep_matrix_order() {
        assert_eq!(labels("6.12,5.10").unwrap(), ["5.10", "6.12"]);
        assert_eq!(labels("6.1, 6.1").unwrap(), ["6.1"]);
    }

    #[test]
    fn empty_range_lists_what_is_there() {
        let err = labels("4.4..4.19").unwrap_err().to_string();
        assert!(err.contains("selects no kernel"), "{err}");
        assert!(
            err.contains("5.10 (5.10.0)") && err.contains("7.3 (7.3.4)"),
            "{err}"
        );
    }

    #[test]
    fn unknown_label_is_named() {
        let err = labels("6.1,6.6").unwrap_err().to_string();
        assert!(
            err.starts_with("no kernel `6.6` in the matrix; it has: 5.10"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_say_what_is_expected() {
        for bad in ["", "6.1..5.10", "6..7", "6.1,,6.12", "6.1.3..6.2"] {
            let err = bad.parse::<Selection>().unwrap_err().to_string();
            assert!(err.contains("expected `all`"), "{bad}: {err}");
        }
    }

    #[test]
    fn ranges_select_by_version_whatever_the_source() {
        let text = "[[kernel]]\nmainline = \"5.4.x\"\n\
            [[kernel]]\nmainline = \"6.6.64\"\n\
            [[kernel]]\nmainline = \"6.12.x\"\n\
            [[kernel]]\nlabel = \"u\"\nubuntu = { suite = \"noble\", package = \"linux-image-6.8.0-31-generic\" }\n\
            [[kernel]]\noci = \"r/ci-kernels:5.15\"\n\
            [[kernel]]\noci = \"r/ci-kernels:6.9\"\n\
            [[kernel]]\ndebian = { suite = \"bookworm\", build = \"6.1.0-20\" }\n\
            [[kernel]]\nlabel = \"4.19\"\ndebian = { suite = \"buster\", package = \"linux-image-4.19.0-27-cloud-amd64\" }\n";
        let matrix = Matrix::parse(text, "kernels.toml".as_ref()).unwrap();
        let pick = |selection: &str| -> Vec<String> {
            selection
                .parse::<Selection>()
                .unwrap()
                .apply(&matrix.kernels)
                .unwrap()
                .into_iter()
                .map(|k| k.label.clone())
                .collect()
        };
        assert_eq!(pick("5.4..6.8"), ["5.4", "6.6", "u", "5.15", "6.1"]);
        assert_eq!(pick("6.9.."), ["6.12", "6.9"]);
        assert_eq!(pick("..5.4"), ["5.4", "4.19"]);
    }
}
