//! `kmatrix bisect`'s search, without I/O: given the releases between a
//! good and a bad kernel (both included, oldest first), which one to boot
//! next, and once the verdicts known say enough, the first release whose
//! verdict differs from the good one's.
//!
//! The good end is booted first (its verdict is what the others are
//! compared with); the bad end is assumed to differ and is booted only
//! when the search ends at it, to confirm it. Between them it is a binary
//! search: 1 + ⌈log2(N − 1)⌉ boots for N releases, one more when the bad
//! end is the answer. Verdicts already known (from an earlier, interrupted
//! bisection of the same question: [`State`]) are not booted again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::kernels::source::mainline::MainlineError;
use crate::report::{Mark, Summary};

/// Why a bisection could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    /// `--good` or `--bad` is not a release of a source bisect can list.
    #[error("{0}")]
    Release(String),
    /// The source's releases could not be listed.
    #[error("cannot list the mainline releases")]
    Listing(#[source] MainlineError),
    /// An end is not among the releases the source lists.
    #[error(
        "the mainline base lists no release {0}: pick --good and --bad among the releases it has"
    )]
    NotListed(String),
    /// A release's kernel could not be judged (it did not boot, or failed
    /// outside any test).
    #[error("release {release} could not be judged: {reason}; bisect cannot tell which side it is on (its verdicts so far are kept: run the same command again to resume)")]
    Unjudged {
        /// The release.
        release: String,
        /// Why.
        reason: String,
    },
    /// The bad end judged as the good end did.
    #[error("{bad} judged as {good} did ({verdict}): the verdict does not change between them, so there is nothing to bisect")]
    NoChange {
        /// The good end.
        good: String,
        /// The bad end.
        bad: String,
        /// Their verdict.
        verdict: Verdict,
    },
}

impl BisectError {
    /// Whether the request, not the machine or the network, is at fault.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            BisectError::Release(_) | BisectError::NotListed(_) | BisectError::NoChange { .. }
        )
    }
}

/// What a kernel made of the tests: each test's mark.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Mark word (`pass`, `fail`, …) by test name.
    pub tests: BTreeMap<String, String>,
}

impl Verdict {
    /// The verdict of the kernel `label` in a finished run.
    pub fn of(summary: &Summary, label: &str) -> Self {
        let column = summary.column(label);
        let tests = summary
            .rows
            .iter()
            .enumerate()
            .map(|(row, name)| {
                let cell = column.and_then(|c| summary.cell(c, row));
                (name.clone(), word(Mark::of(cell)).to_owned())
            })
            .collect();
        Self { tests }
    }
}

fn word(mark: Mark) -> &'static str {
    match mark {
        Mark::Pass => "pass",
        Mark::Fail => "fail",
        Mark::ExpectedFailure => "expected failure",
        Mark::Skip => "skip",
        Mark::LoaderLimitation => "loader limitation",
        Mark::KernelError => "kernel error",
        Mark::Missing => "no result",
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tests.is_empty() {
            return f.write_str("no tests");
        }
        let parts: Vec<String> = self
            .tests
            .iter()
            .map(|(test, mark)| format!("{test} {mark}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Boot this release and [`Search::record`] its verdict.
    Boot(String),
    /// The answer: the last release that judged as the good end did, and
    /// the first that did not.
    Found {
        /// The last release with the good end's verdict.
        last_same: String,
        /// The first release whose verdict differs.
        first_differing: String,
    },
    /// The bad end judged as the good end did: there is nothing to find.
    NoChange,
}

/// A bisection over releases, with the verdicts known so far.
#[derive(Clone, Debug)]
pub struct Search {
    releases: Vec<String>,
    verdicts: BTreeMap<String, Verdict>,
}

impl Search {
    /// A search over `releases` (good end first, bad end last; at least
    /// two), starting from the verdicts already `known`.
    pub fn new(releases: Vec<String>, known: BTreeMap<String, Verdict>) -> Self {
        assert!(releases.len() >= 2, "a bisection needs two ends");
        Self {
            releases,
            verdicts: known,
        }
    }

    /// The releases searched, good end first.
    pub fn releases(&self) -> &[String] {
        &self.releases
    }

    /// `release`'s verdict, once known.
    pub fn verdict(&self, release: &str) -> Option<&Verdict> {
        self.verdicts.get(release)
    }

    /// Records `release`'s verdict.
    pub fn record(&mut self, release: &str, verdict: Verdict) {
        self.verdicts.insert(release.to_owned(), verdict);
    }

    /// What to do next.
    pub fn next(&self) -> Next {
        let at = |i: usize| self.verdicts.get(&self.releases[i]);
        let last = self.releases.len() - 1;
        let Some(good) = at(0) else {
            return Next::Boot(self.releases[0].clone());
        };
        let (mut same, mut differs) = (0, last);
        while differs - same > 1 {
            let mid = same + (differs - same) / 2;
            match at(mid) {
                None => return Next::Boot(self.releases[mid].clone()),
                Some(verdict) if verdict == good => same = mid,
                Some(_) => differs = mid,
            }
        }
        match at(differs) {
            None => Next::Boot(self.releases[differs].clone()),
            Some(verdict) if verdict == good => Next::NoChange,
            Some(_) => Next::Found {
                last_same: self.releases[same].clone(),
                first_differing: self.releases[differs].clone(),
            },
        }
    }

    /// The most kernels a search over `n` releases boots.
    pub fn most_boots(n: usize) -> usize {
        let between = n.saturating_sub(1);
        1 + (usize::BITS - between.saturating_sub(1).leading_zeros()) as usize + 1
    }
}

/// What a bisection keeps between runs, in the cache: its question, and
/// the pins and verdicts of the releases it booted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The question, as the key was made of it (for people reading it).
    pub question: String,
    /// Pins (name → sha256 hex) by release.
    pub pins: BTreeMap<String, BTreeMap<String, String>>,
    /// Verdicts by release.
    pub verdicts: BTreeMap<String, Verdict>,
}

impl State {
    /// The state at `path`; a fresh one when there is none or it cannot
    /// be read (it is only a cache).
    pub fn load(path: &Path, question: &str) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<State>(&bytes).ok())
            .filter(|state| state.question == question)
            .unwrap_or_else(|| State {
                question: question.to_owned(),
                ..State::default()
            })
    }

    /// Writes the state to `path`, through a temporary file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&mut file, self)?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(mark: &str) -> Verdict {
        Verdict {
            tests: [("prog::load".to_owned(), mark.to_owned())].into(),
        }
    }

    fn releases(n: usize) -> Vec<String> {
        (1..=n).map(|p| format!("v5.10.{p}")).collect()
    }

    /// Runs a search against an oracle whose verdict changes at
    /// `first_bad` (an index); returns the answer and what it booted.
    fn bisect(n: usize, first_bad: usize) -> (Next, Vec<String>) {
        let releases = releases(n);
        let mut search = Search::new(releases.clone(), BTreeMap::new());
        let mut booted = Vec::new();
        loop {
            match search.next() {
                Next::Boot(release) => {
                    let index = releases.iter().position(|r| *r == release).unwrap();
                    assert!(!booted.contains(&release), "{release} booted twice");
                    booted.push(release.clone());
                    let mark = if index >= first_bad { "fail" } else { "pass" };
                    search.record(&release, verdict(mark));
                }
                done => return (done, booted),
            }
        }
    }

    #[test]
    fn finds_every_first_differing_release_in_few_boots() {
        for n in [2, 3, 8, 9, 17] {
            for first_bad in 1..n {
                let (found, booted) = bisect(n, first_bad);
                assert_eq!(
                    found,
                    Next::Found {
                        last_same: format!("v5.10.{first_bad}"),
                        first_differing: format!("v5.10.{}", first_bad + 1),
                    },
                    "n {n}, first bad {first_bad}"
                );
                assert!(booted.len() <= Search::most_boots(n), "{booted:?}");
                if first_bad < n - 1 {
                    assert!(booted.len() < Search::most_boots(n), "{booted:?}");
                }
            }
        }
    }

    #[test]
    fn eight_releases_take_four_boots_when_the_change_is_inside() {
        let (_, booted) = bisect(8, 4);
        assert_eq!(booted, ["v5.10.1", "v5.10.4", "v5.10.6", "v5.10.5"]);
        assert_eq!(Search::most_boots(8), 5);
    }

    #[test]
    fn an_unchanged_bad_end_is_said() {
        let (found, booted) = bisect(8, 8);
        assert_eq!(found, Next::NoChange);
        assert_eq!(booted.last().unwrap(), "v5.10.8");
    }

    #[test]
    fn known_verdicts_are_not_booted_again() {
        let (_, first) = bisect(8, 4);
        let known: BTreeMap<String, Verdict> = first[..2]
            .iter()
            .map(|r| (r.clone(), verdict("pass")))
            .collect();
        let mut search = Search::new(releases(8), known);
        assert_eq!(search.next(), Next::Boot("v5.10.6".into()));
        search.record("v5.10.6", verdict("fail"));
        search.record("v5.10.5", verdict("fail"));
        assert!(matches!(search.next(), Next::Found { .. }));
    }

    #[test]
    fn state_round_trips_and_a_new_question_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bisect/q.json");
        let mut state = State::load(&path, "q");
        assert!(state.verdicts.is_empty());
        state.verdicts.insert("v5.10.1".into(), verdict("pass"));
        state.save(&path).unwrap();
        assert_eq!(State::load(&path, "q"), state);
        assert!(State::load(&path, "another").verdicts.is_empty());
        assert_eq!(verdict("fail").to_string(), "prog::load fail");
    }
}
