//! `kmatrix bisect`'s search, without I/O: given the releases between a
//! good and a bad kernel (both included, oldest first), which one to boot
//! next, and once the verdicts known say enough, the first release whose
//! verdict differs from the good one's.
//!
//! The good end is booted first (its verdict is what the others are
//! compared with); the bad end is assumed to differ and is booted only
//! when the search ends at it, to confirm it. Between them it is a binary
//! search: 1 + ⌈log2(N − 1)⌉ boots for N releases, one more when the bad
//! end is the answer. A release that cannot be booted is skipped, as `git
//! bisect skip` does: the nearest release not skipped is tried instead,
//! and an answer with skips between its two releases is a range. Verdicts
//! and skips already known (from an earlier, interrupted bisection of the
//! same question: [`State`]) are not tried again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::kernels::source::listing::ListError;
use crate::report::{Mark, Summary};

/// The most releases one run of a bisection skips before it gives up
/// (each cost a download or a boot); running it again tries more.
pub const SKIP_BUDGET: usize = 3;

/// Why a bisection could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    /// `--good` or `--bad` is not a release of a source bisect can list.
    #[error("{0}")]
    Release(String),
    /// The source's releases could not be listed, or the ends are not
    /// among them.
    #[error(transparent)]
    List(#[from] ListError),
    /// The good end could not be booted: there is nothing to compare with.
    #[error("the good end {release} could not be booted ({reason}): pick another --good (run with --fresh to try it again)")]
    GoodUnbootable {
        /// The good end.
        release: String,
        /// Why.
        reason: String,
    },
    /// Every release that could tell where the verdict changes was
    /// skipped, the bad end included.
    #[error("every release after {last_same} judged as the good end did or could not be booted ({}): bisect cannot tell whether the verdict changes; pick another --bad", .skipped.join(", "))]
    Unconfirmed {
        /// The last release with the good end's verdict.
        last_same: String,
        /// The releases after it, none of which booted.
        skipped: Vec<String>,
    },
    /// Too many releases could not be booted in one run.
    #[error("{} releases could not be booted, so this run stops: {}; run the same command again to try others (its verdicts and skips are kept; --fresh forgets them)", .skipped.len(), .skipped.join("; "))]
    TooManySkips {
        /// Each skipped release, with why.
        skipped: Vec<String>,
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
        match self {
            BisectError::Release(_) | BisectError::NoChange { .. } => true,
            BisectError::List(err) => err.is_bad_input(),
            _ => false,
        }
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
    /// Boot this release and [`Search::record`] its verdict (or
    /// [`Search::skip`] it).
    Boot(String),
    /// The answer: the last release that judged as the good end did, and
    /// the first that did not; when releases between them were skipped,
    /// the first that differs is one of those or `first_differing`.
    Found {
        /// The last release with the good end's verdict.
        last_same: String,
        /// The first booted release whose verdict differs.
        first_differing: String,
        /// The skipped releases between them, oldest first.
        skipped: Vec<String>,
    },
    /// The bad end judged as the good end did: there is nothing to find.
    NoChange,
    /// The good end was skipped: there is nothing to compare with.
    NoReference,
    /// Every release after `last_same` was skipped, the bad end included.
    Unconfirmed {
        /// The last release with the good end's verdict.
        last_same: String,
        /// The releases after it.
        skipped: Vec<String>,
    },
}

/// A bisection over releases, with the verdicts known so far and the
/// releases that could not be booted (skipped, as `git bisect skip` does:
/// a neighbour is tried instead).
#[derive(Clone, Debug)]
pub struct Search {
    releases: Vec<String>,
    verdicts: BTreeMap<String, Verdict>,
    skipped: BTreeMap<String, String>,
}

impl Search {
    /// A search over `releases` (good end first, bad end last; at least
    /// two), starting from the verdicts already `known` and the releases
    /// already `skipped` (with why).
    pub fn new(
        releases: Vec<String>,
        known: BTreeMap<String, Verdict>,
        skipped: BTreeMap<String, String>,
    ) -> Self {
        assert!(releases.len() >= 2, "a bisection needs two ends");
        Self {
            releases,
            verdicts: known,
            skipped,
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

    /// Why `release` was skipped, if it was.
    pub fn skipped(&self, release: &str) -> Option<&str> {
        self.skipped.get(release).map(String::as_str)
    }

    /// Records `release`'s verdict.
    pub fn record(&mut self, release: &str, verdict: Verdict) {
        self.verdicts.insert(release.to_owned(), verdict);
    }

    /// Records that `release` could not be booted, and why.
    pub fn skip(&mut self, release: &str, reason: String) {
        self.skipped.insert(release.to_owned(), reason);
    }

    /// The release nearest `mid` strictly between `low` and `high` that was
    /// not skipped (the later one first on a tie).
    fn nearest(&self, low: usize, high: usize, mid: usize) -> Option<usize> {
        let usable =
            |i: usize| low < i && i < high && !self.skipped.contains_key(&self.releases[i]);
        (0..high - low).find_map(|d| {
            [Some(mid + d), mid.checked_sub(d)]
                .into_iter()
                .flatten()
                .find(|&i| usable(i))
        })
    }

    /// What to do next.
    pub fn next(&self) -> Next {
        let at = |i: usize| self.verdicts.get(&self.releases[i]);
        let last = self.releases.len() - 1;
        if self.skipped.contains_key(&self.releases[0]) {
            return Next::NoReference;
        }
        let Some(good) = at(0) else {
            return Next::Boot(self.releases[0].clone());
        };
        let (mut same, mut differs) = (0, last);
        while let Some(pick) = self.nearest(same, differs, same + (differs - same) / 2) {
            match at(pick) {
                None => return Next::Boot(self.releases[pick].clone()),
                Some(verdict) if verdict == good => same = pick,
                Some(_) => differs = pick,
            }
        }
        let between = |to: usize| self.releases[same + 1..to].to_vec();
        match at(differs) {
            None if self.skipped.contains_key(&self.releases[differs]) => Next::Unconfirmed {
                last_same: self.releases[same].clone(),
                skipped: between(differs + 1),
            },
            None => Next::Boot(self.releases[differs].clone()),
            Some(verdict) if verdict == good => Next::NoChange,
            Some(_) => Next::Found {
                last_same: self.releases[same].clone(),
                first_differing: self.releases[differs].clone(),
                skipped: between(differs),
            },
        }
    }

    /// The most kernels a search over `n` releases boots when none is
    /// skipped.
    pub fn most_boots(n: usize) -> usize {
        let between = n.saturating_sub(1);
        1 + (usize::BITS - between.saturating_sub(1).leading_zeros()) as usize + 1
    }
}

/// What a bisection keeps between runs, in the cache: its question, the
/// releases its source listed between the ends, and the pins, verdicts and
/// skips of the releases it tried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The question, as the key was made of it (for people reading it).
    pub question: String,
    /// The releases from the good end to the bad, as last listed.
    #[serde(default)]
    pub releases: Vec<String>,
    /// Pins (name → sha256 hex) by release.
    pub pins: BTreeMap<String, BTreeMap<String, String>>,
    /// Verdicts by release.
    pub verdicts: BTreeMap<String, Verdict>,
    /// Why each release that could not be booted was skipped.
    #[serde(default)]
    pub skipped: BTreeMap<String, String>,
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
        bisect_skipping(n, first_bad, &[])
    }

    /// As [`bisect`], with the releases at `unbootable` (indexes) failing
    /// to boot; what was tried includes them.
    fn bisect_skipping(n: usize, first_bad: usize, unbootable: &[usize]) -> (Next, Vec<String>) {
        let releases = releases(n);
        let mut search = Search::new(releases.clone(), BTreeMap::new(), BTreeMap::new());
        let mut tried = Vec::new();
        loop {
            match search.next() {
                Next::Boot(release) => {
                    let index = releases.iter().position(|r| *r == release).unwrap();
                    assert!(!tried.contains(&release), "{release} tried twice");
                    tried.push(release.clone());
                    if unbootable.contains(&index) {
                        search.skip(&release, "panicked".into());
                        continue;
                    }
                    let mark = if index >= first_bad { "fail" } else { "pass" };
                    search.record(&release, verdict(mark));
                }
                done => return (done, tried),
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
                        skipped: Vec::new(),
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
        let mut search = Search::new(releases(8), known, BTreeMap::new());
        assert_eq!(search.next(), Next::Boot("v5.10.6".into()));
        search.record("v5.10.6", verdict("fail"));
        search.record("v5.10.5", verdict("fail"));
        assert!(matches!(search.next(), Next::Found { .. }));
    }

    #[test]
    fn an_unbootable_release_is_skipped_for_a_neighbour() {
        // Unskipped, 8 releases changing at index 4 boot v5.10.{1,4,6,5}.
        let (found, tried) = bisect_skipping(8, 4, &[5]);
        assert_eq!(
            found,
            Next::Found {
                last_same: "v5.10.4".into(),
                first_differing: "v5.10.5".into(),
                skipped: Vec::new(),
            }
        );
        assert_eq!(
            tried,
            ["v5.10.1", "v5.10.4", "v5.10.6", "v5.10.7", "v5.10.5"]
        );
        let (found, tried) = bisect_skipping(8, 4, &[3, 4]);
        assert_eq!(
            tried,
            ["v5.10.1", "v5.10.4", "v5.10.5", "v5.10.3", "v5.10.6"]
        );
        assert_eq!(
            found,
            Next::Found {
                last_same: "v5.10.3".into(),
                first_differing: "v5.10.6".into(),
                skipped: vec!["v5.10.4".into(), "v5.10.5".into()],
            }
        );
    }

    #[test]
    fn skips_next_to_the_change_make_the_answer_a_range() {
        for n in [4, 8, 9, 17] {
            for first_bad in 2..n - 1 {
                let (found, _) = bisect_skipping(n, first_bad, &[first_bad]);
                assert_eq!(
                    found,
                    Next::Found {
                        last_same: format!("v5.10.{first_bad}"),
                        first_differing: format!("v5.10.{}", first_bad + 2),
                        skipped: vec![format!("v5.10.{}", first_bad + 1)],
                    },
                    "n {n}, first bad {first_bad}"
                );
            }
        }
        let (found, _) = bisect_skipping(8, 3, &[2, 3, 4]);
        assert_eq!(
            found,
            Next::Found {
                last_same: "v5.10.2".into(),
                first_differing: "v5.10.6".into(),
                skipped: vec!["v5.10.3".into(), "v5.10.4".into(), "v5.10.5".into()],
            }
        );
    }

    #[test]
    fn skipped_ends_are_said() {
        assert_eq!(bisect_skipping(8, 4, &[0]).0, Next::NoReference);
        let (found, tried) = bisect_skipping(8, 7, &[7]);
        assert_eq!(
            found,
            Next::Unconfirmed {
                last_same: "v5.10.7".into(),
                skipped: vec!["v5.10.8".into()],
            }
        );
        assert_eq!(tried.last().unwrap(), "v5.10.8");
        // A change inside is still found when the bad end cannot boot: it
        // is only booted to confirm.
        let (found, tried) = bisect_skipping(8, 4, &[7]);
        assert!(
            matches!(found, Next::Found { ref first_differing, .. } if first_differing == "v5.10.5")
        );
        assert!(!tried.contains(&"v5.10.8".to_owned()));
    }

    #[test]
    fn known_skips_are_not_tried_again() {
        let skipped: BTreeMap<String, String> =
            [("v5.10.4".to_owned(), "no blob".to_owned())].into();
        let known: BTreeMap<String, Verdict> = [("v5.10.1".to_owned(), verdict("pass"))].into();
        let search = Search::new(releases(8), known, skipped);
        assert_eq!(search.next(), Next::Boot("v5.10.5".into()));
        assert_eq!(search.skipped("v5.10.4"), Some("no blob"));
    }

    #[test]
    fn state_round_trips_and_a_new_question_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bisect/q.json");
        let mut state = State::load(&path, "q");
        assert!(state.verdicts.is_empty());
        state.verdicts.insert("v5.10.1".into(), verdict("pass"));
        state.skipped.insert("v5.10.2".into(), "panicked".into());
        state.releases = releases(3);
        state.save(&path).unwrap();
        assert_eq!(State::load(&path, "q"), state);
        assert!(State::load(&path, "another").verdicts.is_empty());
        assert_eq!(verdict("fail").to_string(), "prog::load fail");
    }
}
