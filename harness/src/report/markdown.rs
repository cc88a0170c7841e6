//! The Markdown summary: the matrix as a table, then the failures, for
//! `$GITHUB_STEP_SUMMARY` or `--summary`. Everything a kernel or a suite
//! named is escaped: names are code spans, reasons are escaped text, logs
//! sit in fences longer than any backtick run inside them and keep only
//! their last [`LOG_LINES`] lines. Each failure is a list item; its logs
//! are folded into `<details>` indented to the item's content, with the
//! blank lines that end an HTML block in CommonMark.

use std::fmt::Write;

use super::failure::{self, Subject};
use super::{printable, Mark, Summary};

/// Lines of a log (verifier, console) kept in the summary; GitHub caps a
/// step summary at 1 MiB.
const LOG_LINES: usize = 200;

/// Renders the summary.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let verdict = if summary.passed() { "passed" } else { "failed" };
    let _ = writeln!(out, "## kmatrix: {verdict}\n");
    let _ = write!(out, "| test |");
    for column in &summary.columns {
        let _ = write!(out, " {} |", text(&column.label));
    }
    let _ = write!(out, "\n|---|");
    for _ in &summary.columns {
        let _ = write!(out, ":-:|");
    }
    out.push('\n');
    for (r, name) in summary.rows.iter().enumerate() {
        let _ = write!(out, "| {} |", code(name));
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
        let _ = writeln!(out, "\n### Failures");
    }
    for failure in failures {
        out.push('\n');
        let (first, sections) = failure.folded();
        let reason = text(first);
        let _ = match failure.subject {
            Subject::Test { test, kernel } => {
                write!(out, "- {} on **{}**: {reason}", code(test), text(kernel))
            }
            Subject::Kernel { kernel } => write!(out, "- **kernel {}**: {reason}", text(kernel)),
            Subject::Agent { kernel } => {
                write!(out, "- **kernel {}**: agent: {reason}", text(kernel))
            }
            Subject::Splat { kernel } => write!(out, "- **kernel {}**: {reason}", text(kernel)),
            Subject::LoaderLimitation { test, kernel } => write!(
                out,
                "- {} on **{}**: 🚧 loader limitation, not the kernel's verdict: {reason}",
                code(test),
                text(kernel)
            ),
            Subject::Program { kernel } => {
                write!(out, "- **kernel {}**: the program: {reason}", text(kernel))
            }
        };
        if !failure.also.is_empty() {
            let (named, more) = failure.also_named();
            let also: Vec<String> = named.iter().map(|t| code(t)).collect();
            let _ = write!(
                out,
                " (and, for the same reason, {}{})",
                also.join(", "),
                super::failure::more_text(more)
            );
        }
        out.push('\n');
        for (title, log) in sections {
            let _ = write!(
                out,
                "\n{ITEM}<details><summary>{title}</summary>\n\n{}\n{ITEM}</details>\n",
                in_item(&block(log))
            );
        }
        if let Some(command) = &failure.reproduce {
            let _ = write!(out, "\n{ITEM}Reproduce:\n\n{}", in_item(&block(command)));
        }
    }
    out
}

/// The indentation of a list item's content: what `- ` is wide. Block
/// content indented less ends the item.
const ITEM: &str = "  ";

/// `blocks` indented to a list item's content; blank lines stay empty.
fn in_item(blocks: &str) -> String {
    let mut out = String::with_capacity(blocks.len() + blocks.len() / 8);
    for line in blocks.split_inclusive('\n') {
        if line != "\n" {
            out.push_str(ITEM);
        }
        out.push_str(line);
    }
    out
}

/// Text with Markdown's and HTML's special characters escaped, on one
/// line (a table's cell too).
pub(super) fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The longest run of backticks in `raw`.
fn longest_backtick_run(raw: &str) -> usize {
    raw.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// An inline code span that holds `raw` whatever it contains, on one line
/// (a table's cell too: `|` becomes a space).
pub(super) fn code(raw: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(raw) + 1);
    let raw = raw.replace(['\n', '\r', '|'], " ");
    let pad = if raw.starts_with('`') || raw.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{raw}{pad}{fence}")
}

/// A fenced block holding the last [`LOG_LINES`] lines of `log`.
fn block(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let kept = &lines[lines.len().saturating_sub(LOG_LINES)..];
    let mut body = String::new();
    if kept.len() < lines.len() {
        let _ = writeln!(body, "[… {} earlier lines cut …]", lines.len() - kept.len());
    }
    for line in kept {
        body.extend(line.chars().map(printable::shown));
        body.push('\n');
    }
    let fence = "`".repeat((longest_backtick_run(&body) + 1).max(3));
    format!("{fence}\n{body}{fence}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_guest_wrote_cannot_break_the_summary() {
        assert_eq!(text("a|b *c* <script>"), "a\\|b \\*c\\* \\<script\\>");
        assert_eq!(code("map `x`"), "`` map `x` ``");
        assert_eq!(code("`x"), "`` `x ``");
        let log = "line\n```\nclosed?\n";
        assert_eq!(block(log), "````\nline\n```\nclosed?\n````\n");
        let long: String = (0..500).map(|i| format!("{i}\n")).collect();
        let cut = block(&long);
        assert!(
            cut.starts_with("```\n[… 300 earlier lines cut …]\n300\n"),
            "{cut}"
        );
    }
}
