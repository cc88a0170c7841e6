//! The verifier's log, read for the one line a user reads first.

/// Lines the verifier adds after its verdict: statistics, not the cause.
const STATISTICS: &[&str] = &[
    "processed ",
    "verification time",
    "stack depth",
    "subprog ",
    "-- END PROG LOAD LOG --",
];

/// The verifier's reason: the last line of its first paragraph that is not
/// a statistics line. (Newer kernels follow it with an explanation after a
/// blank line.)
pub fn headline(log: &str) -> Option<&str> {
    log.lines()
        .map(str::trim_end)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .filter(|l| !STATISTICS.iter().any(|prefix| l.starts_with(prefix)))
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_verifier_reason() {
        let log = "0: (b7) r0 = 0\n1: (61) r2 = *(u32 *)(r1 +0)\ninvalid bpf_context access off=0 size=4\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        assert_eq!(
            headline(log),
            Some("invalid bpf_context access off=0 size=4")
        );
        assert_eq!(headline("\n"), None);
        // Linux 7.x explains the failure after a blank line.
        let log = "1: (71) r1 = *(u8 *)(r1 +20)\nR1 min value is outside of the allowed memory range\n\nVerification failed: Memory Safety\n\nverification time 2181 usec\nsubprog 0 (f) main insns_self 2\n";
        assert_eq!(
            headline(log),
            Some("R1 min value is outside of the allowed memory range")
        );
    }
}
