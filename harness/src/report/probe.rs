//! `kmatrix probe`'s output: features by kernels, as a terminal matrix and
//! as JSON.

use std::io::Write;

use kmatrix_protocol::Feature;
use serde::Serialize;

use crate::probes::{answer, Answers};

/// The answers of each kernel, in matrix order, and the features asked
/// about.
pub struct ProbeTable<'a> {
    /// Each kernel's label and answers.
    pub kernels: Vec<(&'a str, &'a Answers)>,
    /// The rows.
    pub features: Vec<Feature>,
}

fn mark(answer: Option<bool>) -> &'static str {
    match answer {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    }
}

impl ProbeTable<'_> {
    /// The matrix: a row per feature, a column per kernel (`?`: could not
    /// be told).
    pub fn render(&self, out: &mut impl Write) -> std::io::Result<()> {
        let names: Vec<String> = self.features.iter().map(|f| f.to_string()).collect();
        let first = names.iter().map(String::len).max().unwrap_or(0).max(7);
        write!(out, "{:<first$}", "feature")?;
        for (label, _) in &self.kernels {
            write!(out, "  {label:>w$}", w = label.len().max(3))?;
        }
        writeln!(out)?;
        for (feature, name) in self.features.iter().zip(&names) {
            write!(out, "{name:<first$}")?;
            for (label, answers) in &self.kernels {
                write!(
                    out,
                    "  {:>w$}",
                    mark(answer(answers, feature)),
                    w = label.len().max(3)
                )?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    /// The JSON document: `{"kernels": [...], "features": {name: {kernel:
    /// true|false|null}}}`.
    pub fn json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Doc<'a> {
            kernels: Vec<&'a str>,
            features: serde_json::Map<String, serde_json::Value>,
        }
        let features = self
            .features
            .iter()
            .map(|feature| {
                let row = self
                    .kernels
                    .iter()
                    .map(|(label, answers)| {
                        (
                            label.to_string(),
                            serde_json::json!(answer(answers, feature)),
                        )
                    })
                    .collect();
                (feature.to_string(), serde_json::Value::Object(row))
            })
            .collect();
        serde_json::to_value(Doc {
            kernels: self.kernels.iter().map(|(l, _)| *l).collect(),
            features,
        })
        .expect("the document serialises")
    }
}
