//! `--json`: the run as JSON lines (the schema is
//! [`kmatrix_protocol::report`]), and merging shards' files back into one
//! [`Summary`] through the same fold a live run uses.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use kmatrix_protocol::report::{Record, SCHEMA};

use super::Summary;

/// Writes records as JSON lines.
pub struct JsonWriter<W> {
    out: W,
}

impl<W: Write> JsonWriter<W> {
    /// A writer to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Writes one line, flushing after the last.
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        if matches!(record, Record::RunFinished { .. }) {
            self.out.flush()?;
        }
        Ok(())
    }
}

/// Shard files that cannot be merged into one matrix.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is cut short or damaged.
    #[error("{}:{line}: the shard's results are truncated or damaged ({reason}); rerun that shard", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The files do not make up one run.
    #[error("{0}")]
    Mismatch(String),
}

/// One file, read.
struct ShardRun {
    path: PathBuf,
    matrix: Vec<String>,
    kernels: Vec<String>,
    tests: Vec<String>,
    shard: Option<String>,
    records: Vec<Record>,
}

fn read(path: &Path) -> Result<ShardRun, MergeError> {
    let file = std::fs::File::open(path).map_err(|source| MergeError::Read {
        path: path.to_owned(),
        source,
    })?;
    let damaged = |line: usize, reason: String| MergeError::Damaged {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut records = Vec::new();
    let mut lines = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| MergeError::Read {
            path: path.to_owned(),
            source,
        })?;
        lines = i + 1;
        let record: Record =
            serde_json::from_str(&line).map_err(|e| damaged(i + 1, e.to_string()))?;
        records.push(record);
    }
    let Some(Record::RunStarted {
        schema,
        matrix,
        kernels,
        tests,
        shard,
        ..
    }) = records.first().cloned()
    else {
        return Err(damaged(1, "it does not start with run-started".into()));
    };
    if schema != SCHEMA {
        return Err(damaged(
            1,
            format!("schema {schema}; this kmatrix reads schema {SCHEMA}"),
        ));
    }
    if !matches!(records.last(), Some(Record::RunFinished { .. })) {
        return Err(damaged(
            lines,
            "it ends before run-finished: the shard died or its file was cut".into(),
        ));
    }
    Ok(ShardRun {
        path: path.to_owned(),
        matrix,
        kernels,
        tests,
        shard,
        records,
    })
}

/// One complete run's file (a shard's too), folded: what `--only-failed`
/// reads.
pub fn read_run(path: &Path) -> Result<Summary, MergeError> {
    let run = read(path)?;
    let mut summary = Summary::with(run.kernels, run.tests);
    for record in &run.records {
        summary.apply(record);
    }
    Ok(summary)
}

/// Merges shard files into one matrix, checking that together they are
/// exactly one whole run.
pub fn merge(paths: &[PathBuf]) -> Result<Summary, MergeError> {
    let runs = paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let first = runs
        .first()
        .ok_or_else(|| MergeError::Mismatch("no shard files given".into()))?;
    for run in &runs {
        if run.matrix != first.matrix || run.tests != first.tests {
            return Err(MergeError::Mismatch(format!(
                "{} and {} come from different runs (other kernels or tests)",
                first.path.display(),
                run.path.display()
            )));
        }
    }
    let mut covered: Vec<&String> = runs.iter().flat_map(|r| &r.kernels).collect();
    covered.sort();
    let mut expected: Vec<&String> = first.matrix.iter().collect();
    expected.sort();
    if covered != expected {
        let missing: Vec<_> = expected
            .iter()
            .filter(|k| !covered.contains(k))
            .map(|k| k.as_str())
            .collect();
        let shards: Vec<_> = runs.iter().filter_map(|r| r.shard.as_deref()).collect();
        return Err(MergeError::Mismatch(if missing.is_empty() {
            format!(
                "kernels appear in more than one file (shards given: {})",
                shards.join(", ")
            )
        } else {
            format!(
                "no results for kernel(s) {}: a shard's file is missing (shards given: {})",
                missing.join(", "),
                shards.join(", ")
            )
        }));
    }

    let mut summary = Summary::with(first.matrix.clone(), first.tests.clone());
    for run in &runs {
        for record in &run.records {
            summary.apply(record);
        }
        let finished = |kernel: &String| {
            run.records
                .iter()
                .any(|r| matches!(r, Record::KernelFinished { kernel: k, .. } if k == kernel))
        };
        if let Some(kernel) = run.kernels.iter().find(|k| !finished(k)) {
            return Err(MergeError::Damaged {
                path: run.path.clone(),
                line: run.records.len(),
                reason: format!("kernel {kernel} never finished"),
            });
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmatrix_protocol::report::Outcome;

    fn shard_file(dir: &Path, name: &str, records: &[Record]) -> PathBuf {
        let path = dir.join(name);
        let mut text = String::new();
        for record in records {
            text += &serde_json::to_string(record).unwrap();
            text += "\n";
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn shard(kernel: &str, index: usize, outcome: Outcome) -> Vec<Record> {
        vec![
            Record::RunStarted {
                schema: SCHEMA,
                kmatrix: "0".into(),
                matrix: vec!["5.10".into(), "6.1".into()],
                kernels: vec![kernel.into()],
                tests: vec!["p::load".into()],
                shard: Some(format!("{index}/2")),
                reproduce: None,
            },
            Record::Outcome {
                kernel: kernel.into(),
                test: "p::load".into(),
                reproduce: None,
                result: outcome,
            },
            Record::KernelFinished {
                kernel: kernel.into(),
                error: None,
                console_tail: None,
                infrastructure: false,
            },
            Record::RunFinished { passed: true },
        ]
    }

    fn pass() -> Outcome {
        Outcome::Passed {
            detail: "xdp".into(),
        }
    }

    #[test]
    fn merges_shards_into_matrix_order() {
        let dir = tempfile::tempdir().unwrap();
        let b = shard_file(dir.path(), "b.json", &shard("6.1", 2, pass()));
        let a = shard_file(dir.path(), "a.json", &shard("5.10", 1, pass()));
        let summary = merge(&[b, a]).unwrap();
        let labels: Vec<_> = summary.columns.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["5.10", "6.1"]);
        assert!(summary.passed());
    }

    #[test]
    fn a_missing_shard_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = shard_file(dir.path(), "a.json", &shard("5.10", 1, pass()));
        let err = merge(&[a]).unwrap_err().to_string();
        assert_eq!(
            err,
            "no results for kernel(s) 6.1: a shard's file is missing (shards given: 1/2)"
        );
    }

    #[test]
    fn a_cut_file_names_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let a = shard_file(dir.path(), "a.json", &shard("5.10", 1, pass()));
        let b = shard_file(dir.path(), "b.json", &shard("6.1", 2, pass()));
        let text = std::fs::read_to_string(&b).unwrap();
        std::fs::write(&b, &text[..text.len() / 2]).unwrap();
        let err = merge(&[a, b.clone()]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:", b.display())), "{err}");
        assert!(err.contains("truncated or damaged"), "{err}");
    }

    #[test]
    fn a_failed_shard_fails_the_merge() {
        let dir = tempfile::tempdir().unwrap();
        let a = shard_file(dir.path(), "a.json", &shard("5.10", 1, pass()));
        let failed = Outcome::Failed {
            reason: "return value: expected 1, got 2".into(),
            verifier_log: None,
            kernel_log: None,
        };
        let b = shard_file(dir.path(), "b.json", &shard("6.1", 2, failed));
        assert!(!merge(&[a, b]).unwrap().passed());
    }

    #[test]
    fn only_failed_reruns_the_failed_tests_where_anything_failed() {
        let dir = tempfile::tempdir().unwrap();
        let failed = Outcome::failed("return value: expected 1, got 2");
        let mut records = shard("6.1", 2, failed);
        let Record::RunStarted {
            kernels,
            shard: sharded,
            ..
        } = &mut records[0]
        else {
            unreachable!()
        };
        *kernels = vec!["5.10".into(), "6.1".into()];
        *sharded = None;
        records.insert(
            1,
            Record::Outcome {
                kernel: "5.10".into(),
                test: "p::load".into(),
                reproduce: None,
                result: pass(),
            },
        );
        records.insert(
            3,
            Record::KernelFinished {
                kernel: "5.10".into(),
                error: None,
                console_tail: None,
                infrastructure: false,
            },
        );
        let path = shard_file(dir.path(), "run.json", &records);
        let summary = read_run(&path).unwrap();
        let rerun = crate::report::failure::rerun(&summary).unwrap();
        assert_eq!(rerun.kernels, ["6.1"]);
        assert_eq!(rerun.tests, ["p::load"]);

        let passed = shard_file(dir.path(), "passed.json", &shard("5.10", 1, pass()));
        assert_eq!(
            crate::report::failure::rerun(&read_run(&passed).unwrap()),
            None
        );

        let cut = dir.path().join("cut.json");
        std::fs::write(&cut, "{\"type\": \"run-started\"").unwrap();
        assert!(matches!(read_run(&cut), Err(MergeError::Damaged { .. })));
        assert!(matches!(
            read_run(&dir.path().join("missing.json")),
            Err(MergeError::Read { .. })
        ));
    }
}
