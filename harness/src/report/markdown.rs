//! The Markdown summary: the matrix as a table, then the failures, for
//! `$GITHUB_STEP_SUMMARY` or `--summary`.

use std::fmt::Write;

use super::failure::{self, Subject};
use super::{Mark, Summary};

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
                Mark::LoaderLimitation => "🚧 loader",
                Mark::KernelError => "💥",
                Mark::Missing => "–",
            };
            let _ = write!(out, " {mark} |");
        }
        out.push('\n');
    }

    let failures = failure::all(summary);
    if !failures.is_empty() {
        let _ = writeln!(out, "\n### Failures\n");
    }
    for failure in failures {
        let _ = match failure.subject {
            Subject::Test { test, kernel } => {
                write!(out, "- `{test}` on **{kernel}**: {}", failure.reason)
            }
            Subject::Kernel { kernel } => write!(out, "- **kernel {kernel}**: {}", failure.reason),
            Subject::Agent { kernel } => {
                write!(out, "- **kernel {kernel}**: agent: {}", failure.reason)
            }
            Subject::LoaderLimitation { test, kernel } => write!(
                out,
                "- `{test}` on **{kernel}**: 🚧 loader limitation, not the kernel's verdict: {}",
                failure.reason
            ),
            Subject::Program { kernel } => {
                write!(
                    out,
                    "- **kernel {kernel}**: the program: {}",
                    failure.reason
                )
            }
        };
        if !failure.also.is_empty() {
            let also: Vec<String> = failure.also.iter().map(|t| format!("`{t}`")).collect();
            let _ = write!(out, " (and, for the same reason, {})", also.join(", "));
        }
        for (title, text) in [
            ("console", failure.console_tail),
            ("verifier log", failure.verifier_log),
        ] {
            if let Some(text) = text {
                let _ = write!(
                    out,
                    "\n  <details><summary>{title}</summary>\n\n  ```\n{text}\n  ```\n  </details>"
                );
            }
        }
        out.push('\n');
    }
    out
}
