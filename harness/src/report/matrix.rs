//! The final matrix: tests as rows, kernels as columns, then the reason for
//! every failure (with the verifier's log, or the console's tail), and the
//! expected failures and skips with theirs.

use std::io::Write;

use super::{Cell, Mark, Summary};
use crate::suite::Outcome;

/// Verifier log lines shown per failure (the tail, where the reason is).
const LOG_LINES: usize = 25;

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
                Mark::KernelError => "ERR",
                Mark::Missing => "-",
            };
            write!(out, "  {mark:>width$}")?;
        }
        writeln!(out)?;
    }

    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for (c, column) in summary.columns.iter().enumerate() {
        if let Some(failure) = &column.failure {
            let mut text = format!("kernel {}: {failure}", column.label);
            if let Some(tail) = column.console_tail.as_deref().filter(|t| !t.is_empty()) {
                text += &format!("\n    console (last lines):\n{}", indent(tail, 6));
            }
            failures.push(text);
        }
        for message in &column.agent_errors {
            failures.push(format!("kernel {}: agent: {message}", column.label));
        }
        for (r, name) in names.iter().enumerate() {
            match summary.cell(c, r) {
                Some(Cell::Done(Outcome::Failed {
                    reason,
                    verifier_log,
                })) => {
                    let mut text = format!("{name} on {}: {reason}", column.label);
                    if let Some(log) = verifier_log {
                        let lines: Vec<_> = log.lines().collect();
                        let shown = &lines[lines.len().saturating_sub(LOG_LINES)..];
                        text += "\n    verifier log";
                        if shown.len() < lines.len() {
                            text += &format!(" (last {} of {} lines)", shown.len(), lines.len());
                        }
                        text += &format!(":\n{}", indent(&shown.join("\n"), 6));
                    }
                    failures.push(text);
                }
                Some(Cell::Done(Outcome::ExpectedFailure { reason })) => {
                    notes.push(format!("xfail {name} on {}: {reason}", column.label))
                }
                Some(Cell::Done(Outcome::Skipped { reason })) => {
                    notes.push(format!("skip  {name} on {}: {reason}", column.label))
                }
                Some(Cell::Done(Outcome::Passed { .. }) | Cell::NotRun) | None => {}
            }
        }
    }
    if !notes.is_empty() {
        writeln!(out, "\nexpected failures and skips:")?;
        for note in notes {
            writeln!(out, "  {note}")?;
        }
    }
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
            writeln!(out, "  {failure}")?;
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
