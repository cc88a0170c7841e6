//! The final matrix: tests as rows, kernels as columns, then the reason for
//! every failure (with the verifier's log, or the console's tail), and the
//! expected failures and skips with theirs.

use std::io::Write;

use super::{failure, Mark, Summary};

/// Verifier log lines shown per failure (the tail, where the reason is).
const LOG_LINES: usize = 25;

/// Writes, per load test and kernel, the instructions the verifier
/// processed and their share of its complexity limit (`--stats`).
pub fn render_stats(summary: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<usize> = (0..summary.rows.len())
        .filter(|&r| (0..summary.columns.len()).any(|c| summary.stats(c, r).is_some()))
        .collect();
    if rows.is_empty() {
        return writeln!(out, "\nno verifier statistics were reported");
    }
    let cell = |c: usize, r: usize| match summary.stats(c, r) {
        Some(stats) => match stats.insns_processed {
            Some(insns) => format!(
                "{insns} ({:.1}%)",
                insns as f64 * 100.0 / stats.limit() as f64
            ),
            None => "?".to_owned(),
        },
        None => "-".to_owned(),
    };
    let first = rows
        .iter()
        .map(|&r| summary.rows[r].len())
        .max()
        .unwrap_or(0)
        .max("program".len());
    let widths: Vec<usize> = (0..summary.columns.len())
        .map(|c| {
            rows.iter()
                .map(|&r| cell(c, r).len())
                .chain([summary.columns[c].label.len()])
                .max()
                .unwrap_or(1)
        })
        .collect();
    writeln!(
        out,
        "\ninstructions the verifier processed (share of its complexity limit; ? = not reported by this kernel):"
    )?;
    write!(out, "{:first$}", "program")?;
    for (column, width) in summary.columns.iter().zip(&widths) {
        write!(out, "  {:>width$}", column.label)?;
    }
    writeln!(out)?;
    for r in rows {
        write!(out, "{:first$}", summary.rows[r])?;
        for (c, width) in widths.iter().enumerate() {
            write!(out, "  {:>width$}", cell(c, r))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Writes the matrix and the failures below it.
pub fn render(summary: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    let names = &summary.rows;
    let first = names
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("test".len());
    let widths: Vec<usize> = summary
        .columns
        .iter()
        .map(|c| c.label.len().max(5))
        .collect();

    write!(out, "\n{:first$}", "test")?;
    for (column, width) in summary.columns.iter().zip(&widths) {
        write!(out, "  {:>width$}", column.label)?;
    }
    writeln!(out)?;
    for (r, name) in names.iter().enumerate() {
        write!(out, "{name:first$}")?;
        for (c, width) in widths.iter().enumerate() {
            let mark = match Mark::of(summary.cell(c, r)) {
                Mark::Pass => "pass",
                Mark::Fail => "FAIL",
                Mark::ExpectedFailure => "xfail",
                Mark::Skip => "skip",
                Mark::LoaderLimitation => "LIMIT",
                Mark::KernelError => "ERR",
                Mark::Missing => "-",
            };
            write!(out, "  {mark:>width$}")?;
        }
        writeln!(out)?;
    }

    let notes = failure::notes(summary);
    if !notes.is_empty() {
        writeln!(out, "\nexpected failures and skips:")?;
        for (kind, test, kernel, reason) in notes {
            writeln!(out, "  {kind:<5} {test} on {kernel}: {reason}")?;
        }
    }
    let failures = failure::all(summary);
    if failures.is_empty() {
        writeln!(
            out,
            "\nno failures: {} tests on {} kernels",
            summary.rows.len(),
            summary.columns.len()
        )?;
    } else {
        writeln!(out, "\nfailures:")?;
        for failure in failures {
            write!(out, "  {}: {}", failure.headline(), failure.reason)?;
            if let Some(tail) = failure.console_tail {
                write!(out, "\n    console (last lines):\n{}", indent(tail, 6))?;
            }
            if let Some(log) = failure.kernel_log {
                write!(out, "\n    kernel log:\n{}", indent(log, 6))?;
            }
            if let Some(log) = failure.verifier_log {
                let lines: Vec<_> = log.lines().collect();
                let shown = &lines[lines.len().saturating_sub(LOG_LINES)..];
                write!(out, "\n    verifier log")?;
                if shown.len() < lines.len() {
                    write!(out, " (last {} of {} lines)", shown.len(), lines.len())?;
                }
                write!(out, ":\n{}", indent(&shown.join("\n"), 6))?;
            }
            if let Some(command) = &failure.reproduce {
                write!(out, "\n    reproduce: {command}")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{:by$}{l}", ""))
        .collect::<Vec<_>>()
        .join("\n")
}
