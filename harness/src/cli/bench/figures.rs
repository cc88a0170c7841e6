//! What `kmatrix bench --json FILE` writes: one JSON document per run of a
//! benchmark, with its settings, every sample and the medians, so that
//! figures can be tracked over time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::error::Error;

/// One run of a benchmark.
#[derive(Debug, Serialize)]
pub struct Document {
    /// `boot`, `stream` or `fanout`.
    pub benchmark: &'static str,
    /// The kmatrix version that measured.
    pub kmatrix: &'static str,
    /// When, in seconds since the Unix epoch.
    pub unix_time: u64,
    /// The kernel's label.
    pub kernel: String,
    /// What else the figures depend on (release, accelerator, machine, …).
    pub settings: BTreeMap<&'static str, serde_json::Value>,
    /// Runs of each side.
    pub runs: usize,
    /// The figures, in the order printed.
    pub figures: Vec<Figure>,
    /// Medians against each other.
    pub ratios: Vec<Ratio>,
    /// `boot --phases`: each phase of the cold runs, in milliseconds, in
    /// the order they happen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Figure>,
}

/// One measured figure: every sample, in run order, and their median.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// Its name: `bare-boot`, `cold`, `warm`, `streamed`, `discarded`, or
    /// a phase's.
    pub name: &'static str,
    /// `s`, `ms` or `cases/s`.
    pub unit: &'static str,
    /// The median sample.
    pub median: f64,
    /// The samples.
    pub samples: Vec<f64>,
}

/// One figure's median over another's.
#[derive(Debug, Serialize)]
pub struct Ratio {
    /// The figure divided.
    pub of: &'static str,
    /// The figure it is divided by.
    pub to: &'static str,
    /// The quotient of their medians.
    pub value: f64,
}

impl Figure {
    /// Durations, in seconds.
    pub fn seconds(name: &'static str, samples: &[Duration]) -> Self {
        let samples: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        Self::new(name, "s", samples)
    }

    /// `samples` in `unit`.
    pub fn new(name: &'static str, unit: &'static str, samples: Vec<f64>) -> Self {
        Self {
            name,
            unit,
            median: median(&samples),
            samples,
        }
    }

    /// This figure's median over `to`'s.
    pub fn ratio_to(&self, to: &Figure) -> Ratio {
        Ratio {
            of: self.name,
            to: to.name,
            value: self.median / to.median,
        }
    }
}

impl Document {
    /// A document of `benchmark` on `kernel`, measured now.
    pub fn new(benchmark: &'static str, kernel: &str, runs: usize) -> Self {
        Self {
            benchmark,
            kmatrix: env!("CARGO_PKG_VERSION"),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            kernel: kernel.to_owned(),
            settings: BTreeMap::new(),
            runs,
            figures: Vec::new(),
            ratios: Vec::new(),
            phases: Vec::new(),
        }
    }

    /// Writes it to `path`, pretty, ending in a newline.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let mut json = serde_json::to_vec_pretty(self).expect("figures serialize");
        json.push(b'\n');
        std::fs::write(path, json).map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
    }
}

/// The median of `samples` (the upper one of an even count).
fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_keeps_its_samples_in_order_and_their_median() {
        let cold = Figure::seconds("cold", &[1.5, 1.2, 1.9].map(Duration::from_secs_f64));
        assert_eq!(cold.samples, [1.5, 1.2, 1.9]);
        assert_eq!(cold.median, 1.5);
        let bare = Figure::new("bare-boot", "s", vec![1.0, 3.0, 2.0, 0.5]);
        assert_eq!(bare.median, 2.0);
        let ratio = cold.ratio_to(&bare);
        assert_eq!(
            (ratio.of, ratio.to, ratio.value),
            ("cold", "bare-boot", 0.75)
        );
    }

    #[test]
    fn the_document_is_written_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = Document::new("stream", "6.1", 2);
        doc.settings.insert("cases", 100.into());
        let streamed = Figure::new("streamed", "cases/s", vec![900.0, 1100.0]);
        let discarded = Figure::new("discarded", "cases/s", vec![2000.0, 2200.0]);
        doc.ratios.push(streamed.ratio_to(&discarded));
        doc.figures = vec![streamed, discarded];
        let path = dir.path().join("bench.json");
        doc.write(&path).unwrap();
        let read: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(read["benchmark"], "stream");
        assert_eq!(read["kernel"], "6.1");
        assert_eq!(read["settings"]["cases"], 100);
        assert_eq!(read["figures"][0]["name"], "streamed");
        assert_eq!(read["figures"][0]["samples"][1], 1100.0);
        assert_eq!(read["figures"][1]["median"], 2200.0);
        assert_eq!(read["ratios"][0]["value"], 1100.0 / 2200.0);
        assert!(read["unix_time"].as_u64().unwrap() > 1_600_000_000);
        let bad = dir.path().join("missing/bench.json");
        assert!(matches!(doc.write(&bad), Err(Error::Write { .. })));
    }
}
