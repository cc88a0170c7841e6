//! `--shard K/N`: splitting the selected kernels across CI jobs.
//!
//! Kernels are dealt out round-robin in matrix order: the i-th selected
//! kernel (0-based) goes to shard `i % N + 1`. Every machine given the same
//! kernels.toml and selection splits the same way, shards differ in size by
//! at most one kernel, and together they hold exactly the selection. A
//! shard count above the number of kernels would leave shards empty, which
//! is an error: `kmatrix matrix` never asks for more shards than kernels.

use std::fmt;
use std::str::FromStr;

/// One shard of N, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, in `1..=total`.
    pub index: usize,
    /// The number of shards.
    pub total: usize,
}

/// A shard that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// The text is not `K/N`.
    #[error("`{text}` is not a shard: {reason} (expected K/N with 1 <= K <= N, e.g. 2/3)")]
    Syntax {
        /// What was given.
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// More shards than kernels.
    #[error("{kernels} kernels cannot fill {total} shards; use at most {kernels} shards (`kmatrix matrix --shards {kernels}`)")]
    TooMany {
        /// Kernels selected.
        kernels: usize,
        /// Shards asked for.
        total: usize,
    },
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = |reason| ShardError::Syntax {
            text: text.to_owned(),
            reason,
        };
        let (index, total) = text.split_once('/').ok_or_else(|| syntax("no `/`"))?;
        let index: usize = index
            .trim()
            .parse()
            .map_err(|_| syntax("K is not a number"))?;
        let total: usize = total
            .trim()
            .parse()
            .map_err(|_| syntax("N is not a number"))?;
        if total == 0 {
            return Err(syntax("N must be at least 1"));
        }
        if index == 0 || index > total {
            return Err(syntax("K must be between 1 and N"));
        }
        Ok(Shard { index, total })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

impl Shard {
    /// The items of `selected` that belong to this shard, in order.
    pub fn apply<T: Clone>(&self, selected: &[T]) -> Result<Vec<T>, ShardError> {
        if self.total > selected.len() {
            return Err(ShardError::TooMany {
                kernels: selected.len(),
                total: self.total,
            });
        }
        Ok(selected
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.total + 1 == self.index)
            .map(|(_, item)| item.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_based_shards() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, total: 3 }));
        for bad in ["0/3", "4/3", "1/0", "1", "a/2", "1/b"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(
                err.contains("expected K/N with 1 <= K <= N"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn deals_round_robin_and_covers_everything_once() {
        let kernels = ["5.10", "6.1", "6.12", "7.2", "7.3"];
        for total in 1..=kernels.len() {
            let mut seen = Vec::new();
            let mut sizes = Vec::new();
            for index in 1..=total {
                let part = Shard { index, total }.apply(&kernels).unwrap();
                sizes.push(part.len());
                seen.extend(part);
            }
            seen.sort();
            let mut all = kernels.to_vec();
            all.sort();
            assert_eq!(seen, all, "{total} shards");
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        }
        assert_eq!(
            Shard { index: 2, total: 2 }.apply(&kernels).unwrap(),
            ["6.1", "7.2"]
        );
    }

    #[test]
    fn more_shards_than_kernels_is_an_error() {
        let err = Shard { index: 1, total: 4 }
            .apply(&["5.10", "6.1"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 kernels cannot fill 4 shards; use at most 2 shards (`kmatrix matrix --shards 2`)"
        );
    }
}
