//! Reporting: one [`Reporter`] owns every sink and receives the run's
//! events.
//!
//! Each event becomes a [`Record`] ([`record`]), which the [`Summary`]
//! folds and [`json`] writes; [`live`] prints a line per event and
//! [`exec`] echoes `kmatrix exec`'s program. Once the run is over,
//! [`matrix`], [`junit`] and [`markdown`] render the Summary, with the
//! failures [`failure`] finds, each with the command line [`reproduce`]
//! builds; [`json::merge`] replays shards' records
//! through the same fold. [`progress`] shows downloads.

pub mod diff;
pub mod exec;
pub mod failure;
pub mod html;
pub mod json;
pub mod junit;
pub mod live;
pub mod markdown;
pub mod matrix;
pub mod printable;
pub mod probe;
pub mod progress;
pub mod record;
pub mod reproduce;
mod summary;
#[cfg(test)]
mod tests;

use std::io::Write;

use kmatrix_protocol::report::Record;

pub use summary::{Cell, Column, Mark, Summary};

use crate::event::RunEvent;

/// A sink's output.
type Out<'a> = Box<dyn Write + Send + 'a>;

/// The `--json` file could not be written; the run stops.
#[derive(Debug, thiserror::Error)]
#[error("writing the --json file")]
pub struct ReportError(#[source] pub std::io::Error);

/// Owns the sinks and hands each event to every one.
#[derive(Default)]
pub struct Reporter<'a> {
    summary: Summary,
    live: Option<live::LiveReporter<Out<'a>>>,
    echo: Option<exec::ExecEcho<Out<'a>, Out<'a>>>,
    json: Option<json::JsonWriter<Out<'a>>>,
}

impl<'a> Reporter<'a> {
    /// A reporter that only folds the [`Summary`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Also prints a line per event to `out`.
    pub fn live(mut self, out: impl Write + Send + 'a) -> Self {
        self.live = Some(live::LiveReporter::new(Box::new(out)));
        self
    }

    /// Also echoes `kmatrix exec`'s program output, for a run on `kernels`
    /// kernels.
    pub fn exec_echo(
        mut self,
        kernels: usize,
        out: impl Write + Send + 'a,
        err: impl Write + Send + 'a,
    ) -> Self {
        self.echo = Some(exec::ExecEcho::new(kernels, Box::new(out), Box::new(err)));
        self
    }

    /// Also writes every event as a JSON line to `out`.
    pub fn json(mut self, out: impl Write + Send + 'a) -> Self {
        self.json = Some(json::JsonWriter::new(Box::new(out)));
        self
    }

    /// Hands `event` to every sink. Only the JSON file's errors stop the
    /// run: a closed terminal must not, since the matrix decides the exit.
    pub fn report(&mut self, event: &RunEvent) -> Result<(), ReportError> {
        // The Summary has no use for a program's output: only the JSON file
        // needs it as a record (this is the hot path of `kmatrix exec`).
        let needs_record = self.json.is_some() || !matches!(event, RunEvent::Output { .. });
        let mut record = needs_record.then(|| record::of(event, || false));
        if let Some(record) = &mut record {
            match record {
                Record::RunFinished { passed } => *passed = self.summary.passed(),
                Record::Outcome {
                    kernel,
                    test,
                    reproduce,
                    result,
                } if result.is_failure() => *reproduce = self.summary.reproduce(kernel, &[test]),
                _ => {}
            }
            self.summary.apply(record);
        }
        if let Some(live) = &mut self.live {
            let _ = live.report(event);
        }
        if let Some(echo) = &mut self.echo {
            let _ = echo.report(event);
        }
        if let (Some(json), Some(record)) = (&mut self.json, &record) {
            json.write(record).map_err(ReportError)?;
        }
        Ok(())
    }

    /// The matrix so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The matrix, once the run is over.
    pub fn into_summary(self) -> Summary {
        self.summary
    }
}
