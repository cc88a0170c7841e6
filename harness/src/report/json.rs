//! `--json`: the run as JSON lines, and merging shards' files.
//!
//! Schema version 1, one object per line, each with a `type`:
//!
//! | type | fields |
//! | --- | --- |
//! | `run-started` | `schema` (1), `kmatrix` (version), `matrix` (the selected kernels, before sharding), `kernels` (this run's), `tests` (names, in order), `shard` (`"K/N"` or null) |
//! | `kernel-started` | `kernel` |
//! | `kernel-booted` | `kernel`, `release`, `btf` |
//! | `outcome` | `kernel`, `test`, `result`: `{"outcome": "passed", "detail"}`, `{"outcome": "failed", "reason", "verifier_log"}`, `{"outcome": "expected-failure", "reason"}` or `{"outcome": "skipped", "reason"}` |
//! | `agent-error` | `kernel`, `message` |
//! | `output` | `kernel`, `stream` (`stdout` or `stderr`), `text` (what `kmatrix exec`'s program wrote, UTF-8 with replacements) |
//! | `exited` | `kernel`, `status` (how `kmatrix exec`'s program ended) |
//! | `kernel-finished` | `kernel`, `error` (null when it completed), `console_tail` |
//! | `run-finished` | `passed` |
//!
//! A file without `run-finished`, or with a line that does not parse, is
//! from a run that died or was cut short; [`merge`] refuses it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{error_chain, Summary};
use crate::runner::{KernelOutcome, RunEvent};
use crate::suite::{Outcome, Suite};

/// The schema version written in `run-started`.
pub const SCHEMA: u32 = 1;

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    /// The first line.
    RunStarted {
        /// [`SCHEMA`].
        schema: u32,
        /// The kmatrix version that wrote the file.
        kmatrix: String,
        /// Every selected kernel, before sharding, in matrix order.
        matrix: Vec<String>,
        /// The kernels this run covers.
        kernels: Vec<String>,
        /// Test names, in suite order.
        tests: Vec<String>,
        /// `K/N` when sharded.
        shard: Option<String>,
    },
    /// A kernel's VM is starting.
    KernelStarted {
        /// Its label.
        kernel: String,
    },
    /// A kernel booted.
    KernelBooted {
        /// Its label.
        kernel: String,
        /// `uname -r`.
        release: String,
        /// Whether it has BTF.
        btf: bool,
    },
    /// A test's outcome.
    Outcome {
        /// The kernel's label.
        kernel: String,
        /// The test's name.
        test: String,
        /// What happened.
        result: Outcome,
    },
    /// The agent reported a problem outside any test.
    AgentError {
        /// The kernel's label.
        kernel: String,
        /// What it said.
        message: String,
    },
    /// What `kmatrix exec`'s program wrote.
    Output {
        /// The kernel's label.
        kernel: String,
        /// `stdout` or `stderr`.
        stream: String,
        /// The bytes, as UTF-8 with replacements.
        text: String,
    },
    /// How `kmatrix exec`'s program ended.
    Exited {
        /// The kernel's label.
        kernel: String,
        /// E.g. `exit code 3`, `killed by signal 11 (core dumped)`.
        status: String,
    },
    /// A kernel is done.
    KernelFinished {
        /// Its label.
        kernel: String,
        /// Why it failed; `None` when it completed.
        error: Option<String>,
        /// The end of its console, when it failed.
        console_tail: Option<String>,
    },
    /// The last line.
    RunFinished {
        /// Whether the run passed.
        passed: bool,
    },
}

/// Writes a run as JSON lines.
pub struct JsonReporter<'a, W> {
    out: W,
    suite: &'a Suite,
}

impl<'a, W: Write> JsonReporter<'a, W> {
    /// Writes `run-started`.
    pub fn start(
        mut out: W,
        suite: &'a Suite,
        matrix: &[String],
        kernels: &[String],
        shard: Option<String>,
    ) -> std::io::Result<Self> {
        let record = Record::RunStarted {
            schema: SCHEMA,
            kmatrix: env!("CARGO_PKG_VERSION").to_owned(),
            matrix: matrix.to_vec(),
            kernels: kernels.to_vec(),
            tests: suite.tests.iter().map(|t| t.name.clone()).collect(),
            shard,
        };
        write_line(&mut out, &record)?;
        Ok(Self { out, suite })
    }

    /// Writes the line for `event`.
    pub fn report(&mut self, event: &RunEvent) -> std::io::Result<()> {
        let record = match event {
            RunEvent::KernelStarted { kernel } => Record::KernelStarted {
                kernel: kernel.clone(),
            },
            RunEvent::KernelBooted { kernel, hello } => Record::KernelBooted {
                kernel: kernel.clone(),
                release: hello.kernel_release.clone(),
                btf: hello.btf,
            },
            RunEvent::Outcome {
                kernel,
                test,
                outcome,
            } => Record::Outcome {
                kernel: kernel.clone(),
                test: self.suite.tests[*test].name.clone(),
                result: outcome.clone(),
            },
            RunEvent::AgentError { kernel, message } => Record::AgentError {
                kernel: kernel.clone(),
                message: message.clone(),
            },
            RunEvent::Output {
                kernel,
                stream,
                data,
            } => Record::Output {
                kernel: kernel.clone(),
                stream: match stream {
                    kmatrix_protocol::Stream::Stdout => "stdout".into(),
                    kmatrix_protocol::Stream::Stderr => "stderr".into(),
                },
                text: String::from_utf8_lossy(data).into_owned(),
            },
            RunEvent::Exited { kernel, info } => Record::Exited {
                kernel: kernel.clone(),
                status: super::exec::describe(info),
            },
            RunEvent::KernelFinished { kernel, outcome } => Record::KernelFinished {
                kernel: kernel.clone(),
                error: match outcome {
                    KernelOutcome::Completed { .. } => None,
                    KernelOutcome::Failed(err) => Some(error_chain(err)),
                },
                console_tail: match outcome {
                    KernelOutcome::Completed { .. } => None,
                    KernelOutcome::Failed(err) => err.console_tail().map(str::to_owned),
                },
            },
        };
        write_line(&mut self.out, &record)
    }

    /// Writes a line the caller built (e.g. `kmatrix exec`'s libtest
    /// outcomes, known only at the end).
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        write_line(&mut self.out, record)
    }

    /// Writes `run-finished` and flushes.
    pub fn finish(mut self, passed: bool) -> std::io::Result<()> {
        write_line(&mut self.out, &Record::RunFinished { passed })?;
        self.out.flush()
    }
}

fn write_line(out: &mut impl Write, record: &Record) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
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
        let mut finished = Vec::new();
        for record in &run.records {
            match record {
                Record::KernelBooted {
                    kernel, release, ..
                } => {
                    if let Some(c) = summary.column(kernel) {
                        summary.columns[c].release = Some(release.clone());
                    }
                }
                Record::Outcome {
                    kernel,
                    test,
                    result,
                } => {
                    if let (Some(c), Some(r)) = (summary.column(kernel), summary.row(test)) {
                        summary.set(c, r, result.clone());
                    }
                }
                Record::AgentError { kernel, message } => {
                    if let Some(c) = summary.column(kernel) {
                        summary.columns[c].agent_errors.push(message.clone());
                    }
                }
                Record::KernelFinished {
                    kernel,
                    error,
                    console_tail,
                } => {
                    if let Some(c) = summary.column(kernel) {
                        let failure = error.clone().map(|e| (e, console_tail.clone()));
                        summary.finish(c, failure);
                        finished.push(kernel.clone());
                    }
                }
                Record::RunStarted { .. }
                | Record::KernelStarted { .. }
                | Record::Output { .. }
                | Record::Exited { .. }
                | Record::RunFinished { .. } => {}
            }
        }
        if let Some(kernel) = run.kernels.iter().find(|k| !finished.contains(k)) {
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
            },
            Record::Outcome {
                kernel: kernel.into(),
                test: "p::load".into(),
                result: outcome,
            },
            Record::KernelFinished {
                kernel: kernel.into(),
                error: None,
                console_tail: None,
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
        };
        let b = shard_file(dir.path(), "b.json", &shard("6.1", 2, failed));
        assert!(!merge(&[a, b]).unwrap().passed());
    }
}
