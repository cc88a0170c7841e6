//! The Markdown summary: the matrix as a table, then the failures, for
//! `$GITHUB_STEP_SUMMARY` or `--summary`.

use std::fmt::Write;

use super::{Cell, Mark, Summary};
use crate::suite::Outcome;

/// Renders the summary.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let verdict = if summary.passed() { "passed" } else { "failed" };
    let _ = writeln!(out, "## kmatrix: {verdict}\n");
    let _ = write!(out, "| test |");
    for column in &summary.columns {
        let _ = write!(out, " {} |", column.label);
    }
    let _ = write!(out, "\n|---|");
    for _ in &summary.columns {
        let _ = write!(out, ":-:|");
    }
    out.push('\n');
    for (r, name) in summary.rows.iter().enumerate() {
        let _ = write!(out, "| `{name}` |");
        for c in 0..summary.columns.len() {
            let mark = match Mark::of(summary.cell(c, r)) {
                Mark::Pass => "✅",
                Mark::Fail => "❌",
                Mark::ExpectedFailure => "xfail",
                Mark::Skip => "skip",
                Mark::KernelError => "💥",
                Mark::Missing => "–",
            };
            let _ = write!(out, " {mark} |");
        }
        out.push('\n');
    }

    let mut failures = Vec::new();
    for (c, column) in summary.columns.iter().enumerate() {
        if let Some(failure) = &column.failure {
            let mut text = format!("- **kernel {}**: {failure}", column.label);
            if let Some(tail) = column.console_tail.as_deref().filter(|t| !t.is_empty()) {
                text += &format!(
                    "\n  <details><summary>console</summary>\n\n  ```\n{tail}\n  ```\n  </details>"
                );
            }
            failures.push(text);
        }
        for message in &column.agent_errors {
            failures.push(format!("- **kernel {}**: agent: {message}", column.label));
        }
        for (r, name) in summary.rows.iter().enumerate() {
            if let Some(Cell::Done(Outcome::Failed {
                reason,
                verifier_log,
            })) = summary.cell(c, r)
            {
                let mut text = format!("- `{name}` on **{}**: {reason}", column.label);
                if let Some(log) = verifier_log {
                    text += &format!("\n  <details><summary>verifier log</summary>\n\n  ```\n{log}\n  ```\n  </details>");
                }
                failures.push(text);
            }
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "\n### Failures\n");
        for failure in failures {
            let _ = writeln!(out, "{failure}");
        }
    }
    out
}
