//! The verifier's log, read for the one line a user reads first: the
//! cause, on every kernel's log format. Statistics (`processed …`, 7.x's
//! `insns processed …`), state dumps (`cur state:`/`old state:` after an
//! infinite loop), instruction and source lines are skipped; where the
//! kernel explains the failure (7.3's `Verification failed: … Reason:`
//! block), its reason is the headline.

/// Lines the verifier adds that are not the cause.
const NOT_THE_CAUSE: &[&str] = &[
    "processed ",
    "insns processed",
    "verification time",
    "stack depth",
    "subprog ",
    "-- END PROG LOAD LOG --",
    "cur state:",
    "old state:",
    "Verification failed",
    "; ",
];

/// The verifier's cause, if the log gives one.
pub fn headline(log: &str) -> Option<String> {
    reason(log).or_else(|| cause(log).map(str::to_owned))
}

/// 7.3's explanation: the indented paragraph after `Reason:`, on one
/// line.
fn reason(log: &str) -> Option<String> {
    let mut lines = log
        .lines()
        .skip_while(|l| l.trim_end() != "Reason:")
        .skip(1);
    let text: Vec<&str> = lines
        .by_ref()
        .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    (!text.is_empty()).then(|| text.join(" "))
}

/// The last line of the log's first paragraph that says why: not a
/// statistic, a state dump, an instruction or a source line.
fn cause(log: &str) -> Option<&str> {
    log.lines()
        .map(str::trim_end)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .filter(|l| !NOT_THE_CAUSE.iter().any(|prefix| l.starts_with(prefix)))
        .filter(|l| !is_instruction(l))
        .last()
}

/// `12: (85) call …` or `0: R1=ctx() R10=fp0`: where the verifier is, not
/// what it found.
fn is_instruction(line: &str) -> bool {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real logs, captured from every shipped kernel with `kmatrix test
    /// --json` on `tests/bpf/verifier_reject.bpf.c` and
    /// `tests/bpf/verifier/*.bpf.c`.
    fn log(kernel: &str, case: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/judge/verifier-logs")
            .join(format!("{kernel}-{case}.log"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const KERNELS: [&str; 5] = ["5.10", "6.1", "6.12", "7.2", "7.3"];

    fn headlines(case: &str) -> Vec<String> {
        KERNELS
            .iter()
            .map(|k| headline(&log(k, case)).unwrap_or_default())
            .collect()
    }

    #[test]
    fn out_of_bounds_packet_access() {
        assert_eq!(
            headlines("packet_out_of_bounds")[..4],
            [
                "R1 offset is outside of the packet",
                "R1 offset is outside of the packet",
                "R1 offset is outside of the packet",
                "R1 min value is outside of the allowed memory range",
            ]
        );
        assert!(headlines("packet_out_of_bounds")[4]
            .starts_with("The verifier cannot prove offset + access_size <= object_size. Here, the minimal bound for a memory access is 20"));
    }

    #[test]
    fn unchecked_map_value() {
        let all = headlines("unchecked_map_value");
        for headline in &all[..4] {
            assert_eq!(headline, "R0 invalid mem access 'map_value_or_null'");
        }
        assert_eq!(all[4], "R0 may be NULL here (a nullable map value pointer). The program could dereference NULL on this path, so the verifier cannot prove this access is safe.");
    }

    #[test]
    fn infinite_loop() {
        for headline in headlines("infinite_loop") {
            assert_eq!(headline, "infinite loop detected at insn 2");
        }
    }

    #[test]
    fn gpl_only_helper_from_a_non_gpl_program() {
        let all = headlines("gpl_helper");
        for headline in &all[..4] {
            assert_eq!(
                headline,
                "cannot call GPL-restricted function from non-GPL compatible program"
            );
        }
        assert_eq!(all[4], "The helper bpf_trace_printk#6 is not allowed: this helper is restricted to GPL-compatible programs.");
    }

    #[test]
    fn unknown_helper() {
        for headline in headlines("unknown_helper") {
            assert_eq!(headline, "invalid func unknown#999");
        }
    }

    #[test]
    fn no_cause_no_headline() {
        assert_eq!(headline("\n"), None);
        assert_eq!(headline("0: R1=ctx() R10=fp0\nprocessed 1 insns\n"), None);
    }
}
