//! Kernel splats: the reports a kernel prints when it finds itself broken
//! (`WARNING:`, `BUG:`, an Oops, KASAN and UBSAN reports, lockdep, RCU
//! stalls, soft and hard lockups, hung tasks, panics), found by the
//! kernel's own markers in its log's lines. The agent reads them from
//! `/dev/kmsg` and the host from the console; both judge them here.

/// The most lines of a kernel log kept with one test.
pub const MAX_LINES: usize = 200;

/// One splat: its first line and the lines from there on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splat {
    /// The marker's line, e.g. `WARNING: CPU: 0 PID: 1 at kernel/bpf/...`.
    pub headline: String,
    /// The splat's lines, starting with the line that opened it (a
    /// `cut here` line when there is one).
    pub lines: Vec<String>,
}

/// The first splat in `lines`, with everything after it (up to
/// [`MAX_LINES`]).
pub fn find<S: AsRef<str>>(lines: &[S]) -> Option<Splat> {
    find_all(lines).into_iter().next()
}

/// Every splat in `lines`, each with the lines up to the next one (up to
/// [`MAX_LINES`] each).
pub fn find_all<S: AsRef<str>>(lines: &[S]) -> Vec<Splat> {
    let markers: Vec<usize> = (0..lines.len())
        .filter(|&i| is_marker(lines[i].as_ref()))
        .collect();
    let start = |at: usize| match at.checked_sub(1) {
        Some(before) if lines[before].as_ref().contains("[ cut here ]") => before,
        _ => at,
    };
    markers
        .iter()
        .enumerate()
        .map(|(n, &at)| {
            let end = markers.get(n + 1).map_or(lines.len(), |&next| start(next));
            Splat {
                headline: strip_timestamp(lines[at].as_ref()).to_owned(),
                lines: lines[start(at)..end.max(at + 1)]
                    .iter()
                    .take(MAX_LINES)
                    .map(|l| l.as_ref().to_owned())
                    .collect(),
            }
        })
        .collect()
}

/// How a stretch of log lines holding a splat is named: its first splat's
/// headline, else its first line.
pub fn headline_of<S: AsRef<str>>(lines: &[S]) -> String {
    find(lines).map_or_else(
        || {
            lines
                .first()
                .map(|l| l.as_ref().to_owned())
                .unwrap_or_default()
        },
        |s| s.headline,
    )
}

/// The `MAX_LINES` lines of `lines` to keep: from just before its first
/// splat when there is one (so that its marker is never cut), else the
/// newest.
pub fn keep<S>(mut lines: Vec<S>) -> Vec<S>
where
    S: AsRef<str>,
{
    if lines.len() <= MAX_LINES {
        return lines;
    }
    let from = match lines.iter().position(|l| is_marker(l.as_ref())) {
        Some(at) => at.saturating_sub(1),
        None => lines.len() - MAX_LINES,
    };
    lines.drain(..from);
    lines.truncate(MAX_LINES);
    lines
}

/// Whether a log line opens a splat, by the markers the kernel prints.
pub fn is_marker(line: &str) -> bool {
    let line = strip_timestamp(line);
    // `watchdog: BUG: soft lockup`, `rcu: INFO: rcu_sched self-detected
    // stall`: a subsystem's prefix may come first.
    let body = match line.split_once(": ") {
        Some((prefix, rest))
            if !prefix.is_empty()
                && prefix.len() <= 16
                && prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            rest
        }
        _ => line,
    };
    const STARTS: &[&str] = &[
        "WARNING: ",
        "BUG: ",
        "kernel BUG at ",
        "Oops: ",
        "Oops ",
        "UBSAN: ",
        "KASAN: ",
        "Kernel panic - not syncing",
        "general protection fault",
        "Unable to handle kernel ",
        "Internal error: ",
    ];
    if STARTS.iter().any(|m| body.starts_with(m)) || line.contains("Watchdog detected hard LOCKUP")
    {
        return true;
    }
    (body.starts_with("INFO: task ") && body.contains(" blocked for more than "))
        || (body.starts_with("INFO: ")
            && (body.contains("self-detected stall") || body.contains("detected stalls")))
}

/// A console line without its `[    1.234567] ` timestamp.
fn strip_timestamp(line: &str) -> &str {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix('[') {
        if let Some((stamp, after)) = rest.split_once(']') {
            if stamp
                .trim()
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.')
            {
                return after.strip_prefix(' ').unwrap_or(after);
            }
        }
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_own_markers_open_a_splat() {
        for line in [
            "WARNING: CPU: 0 PID: 61 at kernel/bpf/verifier.c:12345 do_check+0x1/0x2",
            "[    3.141592] BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "BUG: KASAN: slab-out-of-bounds in bpf_prog_test_run_xdp+0x1",
            "UBSAN: array-index-out-of-bounds in kernel/bpf/core.c:1",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [agent:1]",
            "rcu: INFO: rcu_sched self-detected stall on CPU",
            "INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
            "Oops: general protection fault, probably for non-canonical address",
            "Kernel panic - not syncing: Attempted to kill init!",
            "kernel BUG at mm/slub.c:1!",
            "WARNING: possible circular locking dependency detected",
            "Internal error: Oops: 0000000096000004 [#1] SMP",
            "NMI watchdog: Watchdog detected hard LOCKUP on cpu 0",
            "watchdog: CPU0: Watchdog detected hard LOCKUP on cpu 0",
        ] {
            assert!(is_marker(line), "{line}");
        }
    }

    #[test]
    fn ordinary_lines_that_mention_the_words_are_not_splats() {
        for line in [
            "PCI: Using host bridge windows from ACPI; if necessary, use \"pci=nocrs\" and report a bug",
            "rcu: Hierarchical RCU implementation.",
            "RAS: Correctable Errors collector initialized.",
            "**   trace_printk() being used. Allocating extra memory.  **",
            "please report this as a BUG: to the list",
        ] {
            assert!(!is_marker(line), "{line}");
        }
    }

    #[test]
    fn a_splat_starts_at_its_cut_here_line_and_is_bounded() {
        let mut lines = vec![
            "bpf: something ordinary".to_owned(),
            "------------[ cut here ]------------".to_owned(),
            "WARNING: CPU: 0 PID: 1 at kmatrix".to_owned(),
        ];
        lines.extend((0..500).map(|i| format!("frame {i}")));
        let splat = find(&lines).unwrap();
        assert_eq!(splat.headline, "WARNING: CPU: 0 PID: 1 at kmatrix");
        assert_eq!(splat.lines[0], "------------[ cut here ]------------");
        assert_eq!(splat.lines.len(), MAX_LINES);
        assert_eq!(find(&lines[..1]), None);
    }

    #[test]
    fn every_splat_is_found_and_a_long_log_keeps_its_marker() {
        let lines = [
            "WARNING: CPU: 0 PID: 1 at a",
            "Call Trace:",
            "------------[ cut here ]------------",
            "BUG: KASAN: use-after-free in b",
            "Read of size 8",
        ];
        let all = find_all(&lines);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].lines, ["WARNING: CPU: 0 PID: 1 at a", "Call Trace:"]);
        assert_eq!(all[1].headline, "BUG: KASAN: use-after-free in b");
        assert_eq!(all[1].lines[0], "------------[ cut here ]------------");
        assert_eq!(headline_of(&["no marker"]), "no marker");

        let mut long: Vec<String> = (0..50).map(|i| format!("boot {i}")).collect();
        long.push("WARNING: CPU: 0 PID: 1 at early".into());
        long.extend((0..400).map(|i| format!("after {i}")));
        let kept = keep(long);
        assert_eq!(kept.len(), MAX_LINES);
        assert_eq!(kept[1], "WARNING: CPU: 0 PID: 1 at early");
    }
}
