//! What the kernel says about a program it verified: the verifier's
//! statistics (from its log's stats lines) and the program's size after
//! verification (from `bpf_prog_info`).

use serde::{Deserialize, Serialize};

/// The verifier's complexity limit for privileged loaders since Linux 5.2
/// (`BPF_COMPLEXITY_LIMIT_INSNS`), used when a log does not name it.
pub const COMPLEXITY_LIMIT: u64 = 1_000_000;

/// A program's verification statistics on one kernel. Each field is `None`
/// where the kernel did not say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStats {
    /// Instructions the verifier processed.
    pub insns_processed: Option<u64>,
    /// The complexity limit the verifier named.
    pub insn_limit: Option<u64>,
    /// The most verifier states kept for one instruction.
    pub max_states_per_insn: Option<u64>,
    /// Verifier states created.
    pub total_states: Option<u64>,
    /// The most verifier states alive at once.
    pub peak_states: Option<u64>,
    /// Stack depth of each subprogram, as the verifier prints it (`8+0`).
    pub stack_depth: Option<String>,
    /// Time the verifier took, in microseconds.
    pub verification_us: Option<u64>,
    /// Instructions after verification (translated).
    pub xlated_insns: Option<u64>,
    /// Bytes of JITed code.
    pub jited_bytes: Option<u64>,
}

impl ProgramStats {
    /// Reads the stats lines of a verifier log: `processed N insns (limit
    /// L) max_states_per_insn M total_states T peak_states P mark_read R`,
    /// `verification time N usec` and `stack depth A+B`.
    pub fn from_log(log: &str) -> Self {
        let mut stats = Self::default();
        for line in log.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("processed ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let number = |word: &str| word.trim_matches(|c| c == '(' || c == ')').parse().ok();
                stats.insns_processed = words.first().and_then(|w| number(w));
                for pair in words.windows(2) {
                    let value = number(pair[1]);
                    match pair[0] {
                        "(limit" => stats.insn_limit = value,
                        "max_states_per_insn" => stats.max_states_per_insn = value,
                        "total_states" => stats.total_states = value,
                        "peak_states" => stats.peak_states = value,
                        _ => {}
                    }
                }
            } else if let Some(rest) = line.strip_prefix("verification time ") {
                stats.verification_us = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            } else if let Some(rest) = line.strip_prefix("stack depth ") {
                stats.stack_depth = Some(rest.trim().to_owned());
            }
        }
        stats
    }

    /// The limit to measure headroom against: the one the log named, else
    /// [`COMPLEXITY_LIMIT`].
    pub fn limit(&self) -> u64 {
        self.insn_limit.unwrap_or(COMPLEXITY_LIMIT)
    }

    /// Fills what `self` lacks from `other`.
    pub fn or(mut self, other: Self) -> Self {
        self.insns_processed = self.insns_processed.or(other.insns_processed);
        self.insn_limit = self.insn_limit.or(other.insn_limit);
        self.max_states_per_insn = self.max_states_per_insn.or(other.max_states_per_insn);
        self.total_states = self.total_states.or(other.total_states);
        self.peak_states = self.peak_states.or(other.peak_states);
        self.stack_depth = self.stack_depth.or(other.stack_depth);
        self.verification_us = self.verification_us.or(other.verification_us);
        self.xlated_insns = self.xlated_insns.or(other.xlated_insns);
        self.jited_bytes = self.jited_bytes.or(other.jited_bytes);
        self
    }

    /// Each known figure by its `--json` name, as text.
    pub fn figures(&self) -> Vec<(&'static str, String)> {
        let numbers = [
            ("insns_processed", self.insns_processed),
            ("insn_limit", self.insn_limit),
            ("max_states_per_insn", self.max_states_per_insn),
            ("total_states", self.total_states),
            ("peak_states", self.peak_states),
            ("verification_us", self.verification_us),
            ("xlated_insns", self.xlated_insns),
            ("jited_bytes", self.jited_bytes),
        ];
        let mut figures: Vec<_> = numbers
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?.to_string())))
            .collect();
        if let Some(depth) = &self.stack_depth {
            figures.push(("stack_depth", depth.clone()));
        }
        figures
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stats_lines_of_a_log() {
        let log = "0: R1=ctx() R10=fp0\n; return XDP_PASS;\n0: (b7) r0 = 2\n1: (95) exit\nverification time 31 usec\nstack depth 8+0\nprocessed 23 insns (limit 1000000) max_states_per_insn 1 total_states 4 peak_states 4 mark_read 2\n";
        let stats = ProgramStats::from_log(log);
        assert_eq!(stats.insns_processed, Some(23));
        assert_eq!(stats.insn_limit, Some(1_000_000));
        assert_eq!(stats.max_states_per_insn, Some(1));
        assert_eq!(stats.total_states, Some(4));
        assert_eq!(stats.peak_states, Some(4));
        assert_eq!(stats.verification_us, Some(31));
        assert_eq!(stats.stack_depth.as_deref(), Some("8+0"));
        assert!(ProgramStats::from_log("no stats here").is_empty());
    }
}
