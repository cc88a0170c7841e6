//! `--html`: one self-contained page (no script, no network, no external
//! asset): the matrix with its marks, each failure with its headline and
//! its verifier log or console folded, the expected failures and skips,
//! and, where the run has verifier statistics, a chart per program of the
//! instructions the verifier processed on each kernel (inline SVG), so
//! that a kernel where a program got harder to verify stands out.

use std::fmt::Write;

use super::failure::{self, Subject};
use super::{printable, Mark, Summary};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1.passed{color:#1a7f37}h1.failed{color:#cf222e}
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:2px 8px;text-align:center}
th.test,td.test{text-align:left;font-family:monospace}th small{font-weight:normal;color:#666}
td.pass{background:#dafbe1}td.fail{background:#ffcecb;font-weight:bold}td.xfail{background:#fff8c5}
td.skip{color:#666}td.limit{background:#ddf4ff}td.kernel-error{background:#ff8182}td.missing{color:#999}
.failure{margin:1em 0}.failure p{margin:0}pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:30em}
figure{display:inline-block;margin:0 2em 2em 0}figcaption{font-family:monospace}
svg text{font:11px sans-serif;fill:#444}svg polyline{fill:none;stroke:#0969da;stroke-width:2}
svg circle{fill:#0969da}svg circle.rejected{fill:#fff;stroke:#cf222e;stroke-width:2}svg line{stroke:#d0d7de}
th{white-space:nowrap}p.legend{color:#666}";

/// Renders the page.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let verdict = if summary.passed() { "passed" } else { "failed" };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>kmatrix: {verdict}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n<h1 class=\"{verdict}\">kmatrix: {verdict}</h1>\n<p>{} tests on {} kernels</p>\n",
        summary.rows.len(),
        summary.columns.len()
    );
    matrix(summary, &mut out);
    failures(summary, &mut out);
    notes(summary, &mut out);
    charts(summary, &mut out);
    out.push_str("</body>\n</html>\n");
    out
}

fn matrix(summary: &Summary, out: &mut String) {
    out.push_str("<table id=\"matrix\">\n<thead><tr><th class=\"test\">test</th>");
    for column in &summary.columns {
        let _ = write!(
            out,
            "<th title=\"{}\">{}<br><small>{}</small></th>",
            escape(column.release.as_deref().unwrap_or("did not boot")),
            escape(&column.label),
            column.arch.name()
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (r, name) in summary.rows.iter().enumerate() {
        let _ = write!(out, "<tr><td class=\"test\">{}</td>", escape(name));
        for c in 0..summary.columns.len() {
            let (class, text) = match Mark::of(summary.cell(c, r)) {
                Mark::Pass => ("pass", "pass"),
                Mark::Fail => ("fail", "FAIL"),
                Mark::ExpectedFailure => ("xfail", "xfail"),
                Mark::Skip => ("skip", "skip"),
                Mark::LoaderLimitation => ("limit", "LIMIT"),
                Mark::KernelError => ("kernel-error", "ERROR"),
                Mark::Missing => ("missing", "–"),
            };
            let _ = write!(out, "<td class=\"{class}\">{text}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

fn failures(summary: &Summary, out: &mut String) {
    let failures = failure::all(summary);
    if failures.is_empty() {
        return;
    }
    out.push_str("<section id=\"failures\">\n<h2>Failures</h2>\n");
    for failure in failures {
        let (first, sections) = failure.folded();
        let label = match failure.subject {
            Subject::LoaderLimitation { .. } => "loader limitation, not the kernel's verdict",
            Subject::Test { .. } => "failed",
            _ => "error",
        };
        let _ = write!(
            out,
            "<div class=\"failure\">\n<p><strong>{}</strong> ({label}): {}</p>\n",
            escape(&failure.headline()),
            escape(first)
        );
        for (title, log) in sections {
            let _ = writeln!(
                out,
                "<details><summary>{title}</summary><pre>{}</pre></details>",
                escape(log)
            );
        }
        if let Some(command) = &failure.reproduce {
            let _ = writeln!(
                out,
                "<p class=\"reproduce\">Reproduce: <code>{}</code></p>",
                escape(command)
            );
        }
        out.push_str("</div>\n");
    }
    out.push_str("</section>\n");
}

fn notes(summary: &Summary, out: &mut String) {
    let notes = failure::notes(summary);
    if notes.is_empty() {
        return;
    }
    out.push_str("<section id=\"notes\">\n<h2>Expected failures and skips</h2>\n<ul>\n");
    for (kind, test, kernel, reason) in notes {
        let _ = writeln!(
            out,
            "<li>{kind} <code>{}</code> on {}: {}</li>",
            escape(test),
            escape(kernel),
            escape(reason)
        );
    }
    out.push_str("</ul>\n</section>\n");
}

/// A load test's chart caption: its program, and the loader under
/// `--loader both` (`xdp_pass`, `xdp_pass [libbpf]`).
fn chart_name(test: &str) -> String {
    match test.rsplit_once("::load") {
        Some((program, "")) => program.to_owned(),
        Some((program, loader)) if loader.starts_with('[') => format!("{program} {loader}"),
        _ => test.to_owned(),
    }
}

/// Chart size and margins, in pixels; each kernel gets [`STEP`] across.
const HEIGHT: usize = 180;
const LEFT: usize = 60;
const BOTTOM: usize = 70;
const STEP: usize = 24;

fn charts(summary: &Summary, out: &mut String) {
    let columns = summary.columns.len();
    let programs: Vec<(usize, Vec<Option<u64>>)> = (0..summary.rows.len())
        .map(|r| {
            let figures = (0..columns)
                .map(|c| summary.stats(c, r).and_then(|s| s.insns_processed))
                .collect();
            (r, figures)
        })
        .filter(|(_, figures): &(usize, Vec<Option<u64>>)| figures.iter().any(Option::is_some))
        .collect();
    if programs.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"stats\">\n<h2>Instructions the verifier processed</h2>\n<p class=\"legend\">Per program and kernel. A hollow red point: the kernel rejected the program (the figure is from the verifier's log); no point: the kernel does not report it.</p>\n",
    );
    for (r, figures) in programs {
        let name = chart_name(&summary.rows[r]);
        let top = figures.iter().flatten().copied().max().unwrap_or(1).max(1);
        let width = (LEFT + 20 + STEP * columns).max(240);
        let x = |c: usize| LEFT + 10 + c * STEP;
        let y = |v: u64| {
            10 + (HEIGHT - BOTTOM - 10)
                - ((v as f64 / top as f64) * (HEIGHT - BOTTOM - 10) as f64) as usize
        };
        let _ = write!(
            out,
            "<figure class=\"chart\"><figcaption>{}</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{HEIGHT}\" role=\"img\">\n<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\n<text x=\"{}\" y=\"14\" text-anchor=\"end\">{top}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n",
            escape(&name),
            HEIGHT - BOTTOM,
            width - 10,
            HEIGHT - BOTTOM,
            LEFT - 6,
            LEFT - 6,
            HEIGHT - BOTTOM
        );
        let points: Vec<String> = figures
            .iter()
            .enumerate()
            .filter_map(|(c, v)| v.map(|v| format!("{},{}", x(c), y(v))))
            .collect();
        let _ = writeln!(out, "<polyline points=\"{}\"/>", points.join(" "));
        for (c, value) in figures.iter().enumerate() {
            if let Some(v) = value {
                let loaded = Mark::of(summary.cell(c, r)) == Mark::Pass;
                let _ = writeln!(
                    out,
                    "<circle{} cx=\"{}\" cy=\"{}\" r=\"3\"><title>{}: {v}{}</title></circle>",
                    if loaded { "" } else { " class=\"rejected\"" },
                    x(c),
                    y(*v),
                    escape(&summary.columns[c].label),
                    if loaded { "" } else { " (rejected)" }
                );
            }
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" transform=\"rotate(-45 {} {})\">{}</text>",
                x(c),
                HEIGHT - BOTTOM + 14,
                x(c),
                HEIGHT - BOTTOM + 14,
                escape(&summary.columns[c].label)
            );
        }
        out.push_str("</svg></figure>\n");
    }
    out.push_str("</section>\n");
}

/// Text with HTML's special characters escaped, and control characters
/// shown as [`printable::shown`] shows them.
fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(printable::shown(c)),
        }
    }
    out
}
