//! The sources whose releases can be listed in order, for `kmatrix
//! bisect`: Ubuntu's mainline builds (a directory per release), an OCI
//! repository (its tags that begin with a version, in either layout
//! [`crate::kernels::oci_image`] reads) and Debian's snapshot archive (the
//! builds of one series). A release is named `mainline:VERSION`,
//! `oci:REPOSITORY:TAG` or `debian:SUITE:BUILD`; each source's own file
//! lists it.

use std::collections::BTreeMap;
use std::fmt;

use kmatrix_protocol::Arch;

use super::mainline::MainlineError;
use super::names::{image_package, tag_version};
use super::{checksums, debian_snapshot, oci_tags, snapshot, Sources};
use crate::kernels::blobs::Blobs;
use crate::kernels::error::OciError;
use crate::kernels::{KernelEntry, Source, Version};

/// The flavour of the Debian images a `debian:` line walks.
pub const DEBIAN_FLAVOUR: &str = "cloud";

/// The spellings `--good` and `--bad` take, for errors and help.
pub const SPELLINGS: &str = "`mainline:VERSION`, `oci:REPOSITORY:TAG` or `debian:SUITE:BUILD` (`kmatrix bisect --help` says more)";

/// A source's releases, in order: what a bisection walks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Ubuntu's mainline builds.
    Mainline,
    /// The tags of an OCI repository (`registry/name`).
    Oci {
        /// The repository, without a tag.
        repository: String,
    },
    /// The builds of a Debian series in the snapshot archive.
    Debian {
        /// The suite the builds were published in.
        suite: String,
        /// The series, `MAJOR.MINOR`.
        series: String,
    },
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Mainline => f.write_str("mainline"),
            Line::Oci { repository } => write!(f, "oci:{repository}"),
            Line::Debian { suite, series } => write!(f, "debian:{suite} ({series} builds)"),
        }
    }
}

/// One release of a line: a mainline directory (`v6.6.64`), a tag or a
/// Debian build (`6.1.0-20`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Its line.
    pub line: Line,
    /// Its name within the line.
    pub name: String,
}

impl std::str::FromStr for Release {
    type Err = String;

    fn from_str(given: &str) -> Result<Self, String> {
        let unknown = || format!("`{given}` names no release bisect can list: give {SPELLINGS}");
        let (source, rest) = given.split_once(':').ok_or_else(unknown)?;
        let release = match source {
            "mainline" => {
                let tag = checksums::tag(rest)?;
                if checksums::release_version(&tag).is_none() {
                    return Err(format!(
                        "`{given}` is a release candidate or a series: bisect walks releases"
                    ));
                }
                Release {
                    line: Line::Mainline,
                    name: tag,
                }
            }
            "oci" => {
                let (repository, tag) = rest
                    .rsplit_once(':')
                    .filter(|(r, t)| !r.is_empty() && !t.contains('/') && !r.contains('@'))
                    .ok_or_else(|| format!("`{given}`: give `oci:REPOSITORY:TAG`, the repository without a tag or digest, e.g. `oci:registry.example/kernels:6.6.64`"))?;
                if tag_version(tag).is_none() {
                    return Err(format!("`{given}`: the tag `{tag}` does not begin with a kernel version, so its place among the tags is unknown; bisect walks tags like `6.6.64` or `6.6-20250101.012345`"));
                }
                Release {
                    line: Line::Oci {
                        repository: repository.to_owned(),
                    },
                    name: tag.to_owned(),
                }
            }
            "debian" => {
                let (suite, build) = rest
                    .split_once(':')
                    .filter(|(s, _)| !s.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "`{given}`: give `debian:SUITE:BUILD`, e.g. `debian:bookworm:6.1.0-20`"
                        )
                    })?;
                let version = Version::find_in(build)
                    .filter(|_| build.starts_with(|c: char| c.is_ascii_digit()))
                    .filter(|_| !build.contains(|c: char| c.is_whitespace() || c == '/'))
                    .ok_or_else(|| format!("`{build}` is not a Debian kernel build: give its ABI name as the package names it, e.g. `6.1.0-20` (from `linux-image-6.1.0-20-cloud-amd64`)"))?;
                Release {
                    line: Line::Debian {
                        suite: suite.to_owned(),
                        series: format!("{}.{}", version.major, version.minor),
                    },
                    name: build.to_owned(),
                }
            }
            _ => return Err(unknown()),
        };
        Ok(release)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.line {
            Line::Mainline => write!(f, "mainline:{}", self.name),
            Line::Oci { repository } => write!(f, "oci:{repository}:{}", self.name),
            Line::Debian { suite, .. } => write!(f, "debian:{suite}:{}", self.name),
        }
    }
}

impl Line {
    /// The kernel version `name` is of, to order the line by.
    pub fn version(&self, name: &str) -> Option<Version> {
        match self {
            Line::Mainline => checksums::release_version(name),
            Line::Oci { .. } => tag_version(name),
            Line::Debian { .. } => Version::find_in(name),
        }
    }

    /// The unpinned entry that boots release `name` on `arch`.
    pub fn entry(&self, name: &str, arch: Arch) -> KernelEntry {
        let source = match self {
            Line::Mainline => Source::Mainline {
                tag: name.to_owned(),
            },
            Line::Oci { repository } => Source::Oci {
                reference: format!("{repository}:{name}"),
            },
            Line::Debian { suite, .. } => Source::DebianSnapshot {
                suite: suite.clone(),
                build: name.to_owned(),
                package: image_package(name, DEBIAN_FLAVOUR, arch),
            },
        };
        KernelEntry {
            label: name.trim_start_matches('v').to_owned(),
            version: self.version(name).unwrap_or(Version {
                major: 0,
                minor: 0,
                patch: 0,
            }),
            arch,
            source,
            sha256: BTreeMap::new(),
        }
    }

    /// The releases from `good` to `bad` (both included, oldest first)
    /// among those `listed`: those of the line's order between them, and
    /// for tags, only those shaped as the good end is (`6.6.64` walks
    /// `X.Y.Z` tags, `6.6-20250101.012345` dated ones, never `6.6` or
    /// `6.6-main`).
    pub fn between(
        &self,
        listed: &[String],
        good: &str,
        bad: &str,
    ) -> Result<Vec<String>, ListError> {
        let shape = shape(good);
        if matches!(self, Line::Oci { .. }) && shape != self::shape(bad) {
            return Err(ListError::Shapes {
                good: good.to_owned(),
                bad: bad.to_owned(),
            });
        }
        let mut ordered: Vec<(Version, &String)> = listed
            .iter()
            .filter(|name| !matches!(self, Line::Oci { .. }) || self::shape(name) == shape)
            .filter_map(|name| Some((self.version(name)?, name)))
            .collect();
        if !matches!(self, Line::Debian { .. }) {
            // Debian's builds come in the order they were made.
            ordered.sort();
        }
        let at = |end: &str| {
            ordered
                .iter()
                .position(|(_, name)| *name == end)
                .ok_or_else(|| ListError::NotListed {
                    line: self.to_string(),
                    release: end.to_owned(),
                })
        };
        let (from, to) = (at(good)?, at(bad)?);
        if from >= to {
            return Err(ListError::Order {
                good: good.to_owned(),
                bad: bad.to_owned(),
            });
        }
        Ok(ordered[from..=to]
            .iter()
            .map(|(_, name)| (*name).clone())
            .collect())
    }

    /// The range between two releases upstream's history knows, for the
    /// lines whose releases are upstream's (mainline).
    pub fn upstream_range(&self, last_same: &str, first_differing: &str) -> Option<String> {
        matches!(self, Line::Mainline).then(|| format!("{last_same}..{first_differing}"))
    }
}

/// The names of every release `line` has for `arch`, as its source lists
/// them.
pub async fn list(
    blobs: &Blobs,
    sources: &Sources,
    line: &Line,
    arch: Arch,
) -> Result<Vec<String>, ListError> {
    match line {
        Line::Mainline => Ok(sources
            .mainline()
            .releases(blobs.client())
            .await
            .map_err(ListError::Mainline)?
            .into_iter()
            .map(|(_, tag)| tag)
            .collect()),
        Line::Oci { repository } => oci_tags::list(blobs.client(), repository)
            .await
            .map_err(ListError::Oci),
        Line::Debian { series, .. } => {
            let base = snapshot::base().ok_or_else(|| {
                ListError::Snapshot(format!(
                    "no snapshot archive configured: set {}",
                    snapshot::SNAPSHOT_ENV
                ))
            })?;
            let builds = snapshot::builds(
                blobs.client(),
                &base,
                &debian_snapshot::source_package(arch),
                series,
                &format!("{DEBIAN_FLAVOUR}-{arch}"),
            )
            .await
            .map_err(ListError::Snapshot)?;
            Ok(builds.into_iter().map(|(build, _)| build).collect())
        }
    }
}

/// A tag's shape: its text with every run of digits made one `#`.
fn shape(tag: &str) -> String {
    let mut shape = String::new();
    for c in tag.chars() {
        match c.is_ascii_digit() {
            true if shape.ends_with('#') => {}
            true => shape.push('#'),
            false => shape.push(c),
        }
    }
    shape
}

/// Why a line's releases could not be listed, or the ends are not among
/// them.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The mainline base could not be read.
    #[error("cannot list the mainline releases")]
    Mainline(#[source] MainlineError),
    /// The registry could not list the tags.
    #[error("cannot list the tags")]
    Oci(#[source] OciError),
    /// The snapshot archive could not list the builds.
    #[error("cannot list the builds in the snapshot archive: {0}")]
    Snapshot(String),
    /// An end is not listed.
    #[error("{line} lists no release {release}: pick --good and --bad among the releases it has")]
    NotListed {
        /// The line.
        line: String,
        /// The end.
        release: String,
    },
    /// The ends are out of order.
    #[error("--good {good} must come before --bad {bad}")]
    Order {
        /// The good end.
        good: String,
        /// The bad end.
        bad: String,
    },
    /// The ends are tags of different kinds.
    #[error("--good {good} and --bad {bad} are tags of different forms: give two of the same form (`6.6.60` and `6.6.69`, or two dated tags), so that the tags between them are one series")]
    Shapes {
        /// The good end.
        good: String,
        /// The bad end.
        bad: String,
    },
}

impl ListError {
    /// Whether the request, not the source, is at fault.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ListError::NotListed { .. } | ListError::Order { .. } | ListError::Shapes { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn releases_are_parsed_in_every_spelling() {
        let mainline: Release = "mainline:6.6.60".parse().unwrap();
        assert_eq!(
            (mainline.line, mainline.name.as_str()),
            (Line::Mainline, "v6.6.60")
        );
        let oci: Release = "oci:127.0.0.1:5000/k/images:6.1-20250101.012345"
            .parse()
            .unwrap();
        assert_eq!(
            oci.line,
            Line::Oci {
                repository: "127.0.0.1:5000/k/images".into()
            }
        );
        assert_eq!(oci.name, "6.1-20250101.012345");
        assert_eq!(
            oci.to_string(),
            "oci:127.0.0.1:5000/k/images:6.1-20250101.012345"
        );
        let debian: Release = "debian:bookworm:6.1.0-20".parse().unwrap();
        assert_eq!(
            debian.line,
            Line::Debian {
                suite: "bookworm".into(),
                series: "6.1".into()
            }
        );
        for bad in [
            "6.6.60",
            "git:6.6",
            "mainline:6.6-rc3",
            "oci:127.0.0.1:5000/k",
            "oci:r/k:bpf-next",
            "oci:r/k@sha256:00:6.1",
            "debian:6.1.0-20",
            "debian:bookworm:cloud",
        ] {
            let err = bad.parse::<Release>().unwrap_err();
            assert!(err.contains('`'), "{bad}: {err}");
        }
    }

    #[test]
    fn tags_between_the_ends_are_those_of_their_form_in_version_order() {
        let line = Line::Oci {
            repository: "r/k".into(),
        };
        let listed = names(&[
            "6.1.10", "6.1", "6.1.9", "6.1.2", "6.1-main", "bpf-next", "6.1.11", "6.1.1",
        ]);
        assert_eq!(
            line.between(&listed, "6.1.2", "6.1.11").unwrap(),
            names(&["6.1.2", "6.1.9", "6.1.10", "6.1.11"])
        );
        let dated = names(&["6.6-20250301.0", "6.6-20250101.0", "6.6", "6.6-20250201.0"]);
        assert_eq!(
            line.between(&dated, "6.6-20250101.0", "6.6-20250301.0")
                .unwrap(),
            names(&["6.6-20250101.0", "6.6-20250201.0", "6.6-20250301.0"])
        );
        assert!(matches!(
            line.between(&listed, "6.1.1", "6.1"),
            Err(ListError::Shapes { .. })
        ));
        assert!(matches!(
            line.between(&listed, "6.1.9", "6.1.2"),
            Err(ListError::Order { .. })
        ));
        assert!(matches!(
            line.between(&listed, "6.1.1", "6.1.12"),
            Err(ListError::NotListed { .. })
        ));
    }

    #[test]
    fn debian_builds_keep_the_archive_order() {
        let line = Line::Debian {
            suite: "bookworm".into(),
            series: "6.1".into(),
        };
        let listed = names(&["6.1.0-9", "6.1.0-10", "6.1.0-11", "6.1.0-12"]);
        assert_eq!(
            line.between(&listed, "6.1.0-9", "6.1.0-11").unwrap(),
            names(&["6.1.0-9", "6.1.0-10", "6.1.0-11"])
        );
        let entry = line.entry("6.1.0-10", Arch::Amd64);
        assert_eq!(entry.label, "6.1.0-10");
        assert!(
            matches!(entry.source, Source::DebianSnapshot { ref package, .. } if package == "linux-image-6.1.0-10-cloud-amd64")
        );
    }
}
