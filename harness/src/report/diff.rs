//! `kmatrix report diff`: what changed between two runs, per kernel and
//! test: tests newly failing or newly passing, verifier figures that grew
//! beyond a threshold, and programs close to the verifier's complexity
//! limit.

use std::io::Write;

use serde::Serialize;

use super::markdown::{code, text};
use super::{Mark, Summary};

/// One change worth reporting.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// The kernel's label.
    pub kernel: String,
    /// The test's name.
    pub test: String,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

/// What changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// Passed (or failed as expected) before, fails now.
    NewlyFailing,
    /// Failed before, passes now.
    NewlyPassing,
    /// A verifier figure grew beyond the threshold.
    Grew {
        /// Which figure.
        figure: &'static str,
        /// Before.
        from: u64,
        /// Now.
        to: u64,
    },
    /// Within the margin of the complexity limit.
    NearLimit {
        /// Instructions processed now.
        insns: u64,
        /// The limit.
        limit: u64,
    },
}

impl Finding {
    /// Whether it fails the diff: a new failure or a figure that grew.
    pub fn is_regression(&self) -> bool {
        matches!(self.change, Change::NewlyFailing | Change::Grew { .. })
    }

    fn describe(&self) -> String {
        match &self.change {
            Change::NewlyFailing => "newly failing".into(),
            Change::NewlyPassing => "newly passing".into(),
            Change::Grew { figure, from, to } => format!(
                "{figure} grew from {from} to {to} (+{:.0}%)",
                (*to as f64 / (*from).max(1) as f64 - 1.0) * 100.0
            ),
            Change::NearLimit { insns, limit } => format!(
                "{insns} instructions processed, {:.1}% of the limit of {limit}",
                *insns as f64 * 100.0 / *limit as f64
            ),
        }
    }
}

/// The findings between `base` and `new`: figures that grew by more than
/// `threshold` (0.1 for 10%), and programs within `margin` (a share) of
/// the limit.
pub fn diff(base: &Summary, new: &Summary, threshold: f64, margin: f64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (c, column) in new.columns.iter().enumerate() {
        let base_column = base.column(&column.label);
        for (r, test) in new.rows.iter().enumerate() {
            let finding = |change| Finding {
                kernel: column.label.clone(),
                test: test.clone(),
                change,
            };
            let base_cell = base_column.zip(base.row(test));
            let was = base_cell.map_or(Mark::Missing, |(bc, br)| Mark::of(base.cell(bc, br)));
            let now = Mark::of(new.cell(c, r));
            let good = |mark| matches!(mark, Mark::Pass | Mark::ExpectedFailure);
            match (was, now) {
                (was, Mark::Fail | Mark::KernelError) if good(was) => {
                    findings.push(finding(Change::NewlyFailing))
                }
                (Mark::Fail | Mark::KernelError, Mark::Pass) => {
                    findings.push(finding(Change::NewlyPassing))
                }
                _ => {}
            }
            let Some(stats) = new.stats(c, r) else {
                continue;
            };
            let before = base_cell.and_then(|(bc, br)| base.stats(bc, br));
            let figures = [
                (
                    "instructions processed",
                    stats.insns_processed,
                    before.and_then(|b| b.insns_processed),
                ),
                (
                    "total states",
                    stats.total_states,
                    before.and_then(|b| b.total_states),
                ),
                (
                    "peak states",
                    stats.peak_states,
                    before.and_then(|b| b.peak_states),
                ),
            ];
            for (figure, to, from) in figures {
                if let (Some(from), Some(to)) = (from, to) {
                    if to as f64 > from as f64 * (1.0 + threshold) {
                        findings.push(finding(Change::Grew { figure, from, to }));
                    }
                }
            }
            if let Some(insns) = stats.insns_processed {
                let limit = stats.limit();
                if insns as f64 >= limit as f64 * (1.0 - margin) {
                    findings.push(finding(Change::NearLimit { insns, limit }));
                }
            }
        }
    }
    findings
}

/// One line per finding, regressions first.
pub fn render_text(findings: &[Finding], out: &mut impl Write) -> std::io::Result<()> {
    if findings.is_empty() {
        return writeln!(out, "no changes: nothing newly failing, nothing grew");
    }
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| !f.is_regression());
    for finding in sorted {
        let mark = if finding.is_regression() {
            "REGRESSION"
        } else {
            "note"
        };
        writeln!(
            out,
            "{mark:<10} {} on {}: {}",
            finding.test,
            finding.kernel,
            finding.describe()
        )?;
    }
    let regressions = findings.iter().filter(|f| f.is_regression()).count();
    writeln!(
        out,
        "\n{regressions} regression(s), {} finding(s)",
        findings.len()
    )
}

/// A Markdown table, for a pull-request comment or the step summary; names
/// are escaped as in the `--summary`.
pub fn render_markdown(findings: &[Finding], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "### kmatrix: changes against the base run\n")?;
    if findings.is_empty() {
        return writeln!(out, "No changes: nothing newly failing, nothing grew.");
    }
    writeln!(
        out,
        "| | test | kernel | change |\n| --- | --- | --- | --- |"
    )?;
    for finding in findings {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            if finding.is_regression() {
                "❌"
            } else {
                "ℹ️"
            },
            code(&finding.test),
            text(&finding.kernel),
            finding.describe()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kmatrix_protocol::report::{Outcome, Record};
    use kmatrix_protocol::ProgramStats;

    use super::*;

    fn run(outcome: Outcome, insns: u64, states: u64) -> Summary {
        let mut summary = Summary::with(vec!["6.1".into()], vec!["p::load".into()]);
        summary.apply(&Record::Outcome {
            kernel: "6.1".into(),
            test: "p::load".into(),
            reproduce: None,
            result: outcome,
        });
        summary.apply(&Record::Stats {
            kernel: "6.1".into(),
            test: "p::load".into(),
            stats: ProgramStats {
                insns_processed: Some(insns),
                total_states: Some(states),
                ..ProgramStats::default()
            },
        });
        summary
    }

    fn pass() -> Outcome {
        Outcome::Passed {
            detail: String::new(),
        }
    }

    #[test]
    fn growth_beyond_the_threshold_and_new_failures_are_regressions() {
        let base = run(pass(), 1000, 100);
        assert!(diff(&base, &run(pass(), 1090, 105), 0.10, 0.10).is_empty());
        let grown = diff(&base, &run(pass(), 1200, 100), 0.10, 0.10);
        assert_eq!(
            grown[0].change,
            Change::Grew {
                figure: "instructions processed",
                from: 1000,
                to: 1200
            }
        );
        assert!(grown[0].is_regression());
        let failed = diff(
            &base,
            &run(Outcome::failed("verifier: too complex"), 1000, 100),
            0.10,
            0.10,
        );
        assert_eq!(failed[0].change, Change::NewlyFailing);
        let near = diff(&base, &run(pass(), 950_000, 100), 1000.0, 0.10);
        assert_eq!(
            near[0].change,
            Change::NearLimit {
                insns: 950_000,
                limit: 1_000_000
            }
        );
        assert!(!near[0].is_regression());
        let mut text = Vec::new();
        render_text(&grown, &mut text).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "REGRESSION p::load on 6.1: instructions processed grew from 1000 to 1200 (+20%)\n\n1 regression(s), 1 finding(s)\n"
        );
    }

    #[test]
    fn names_cannot_break_the_markdown_table() {
        let test = "<img src=x onerror=alert(1)> `x` | y\nz";
        let kernel = "6.1 | <b>*x*</b>";
        let findings = [Change::NewlyFailing, Change::NewlyPassing].map(|change| Finding {
            kernel: kernel.into(),
            test: test.into(),
            change,
        });
        let mut markdown = Vec::new();
        render_markdown(&findings, &mut markdown).unwrap();
        let html = crate::report::tests::github::cmark_gfm(&String::from_utf8(markdown).unwrap());
        let document = crate::report::tests::github::Node::parse(&html)
            .unwrap_or_else(|e| panic!("{e}:\n{html}"));
        assert!(document.all("img").is_empty(), "{html}");
        let tables = document.children("table");
        assert_eq!(tables.len(), 1, "{html}");
        let rows = tables[0].all("tr");
        assert_eq!(rows.len(), 1 + findings.len(), "{html}");
        for row in &rows[1..] {
            let cells = row.children("td");
            assert_eq!(cells.len(), 4, "{html}");
            assert_eq!(cells[1].text(), test.replace(['|', '\n'], " "));
            assert_eq!(cells[2].text(), kernel);
        }
    }
}
