//! `kmatrix matrix` (the CI job matrix of a sharded run) and `kmatrix
//! report merge`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{OutputArgs, SelectArgs};
use super::run::finish;
use crate::error::{Error, Status};
use crate::partition::Shard;
use crate::plan::KernelSet;

#[derive(Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Shards (CI jobs); at most one per kernel [default: one per kernel].
    #[arg(long)]
    shards: Option<usize>,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Merge the --json files of a sharded run into one matrix; fails if a
    /// shard failed, or its file is missing or cut short.
    Merge {
        #[command(flatten)]
        outputs: OutputArgs,
        /// The shards' --json files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// One entry per shard, with its `kmatrix test` arguments.
pub fn job_matrix(matrix: Option<PathBuf>, args: &MatrixArgs) -> Result<Status, Error> {
    let set = KernelSet::resolve(matrix, &args.select.kernels, None)?;
    let total = args.shards.unwrap_or(set.kernels.len());
    if total == 0 {
        return Err(Error::Usage("--shards must be at least 1".into()));
    }
    let selection = args.select.kernels.to_string();
    let mut include = Vec::new();
    for index in 1..=total {
        let shard = Shard { index, total };
        let kernels: Vec<_> = shard
            .apply(&set.kernels)
            .map_err(|e| Error::Plan(e.into()))?
            .iter()
            .map(|k| k.label.clone())
            .collect();
        include.push(serde_json::json!({
            "shard": shard.to_string(),
            "name": format!("{shard}: {}", kernels.join(", ")),
            "kernels": kernels,
            "args": format!("--kernels {selection} --shard {shard}"),
        }));
    }
    println!("{}", serde_json::json!({ "include": include }));
    Ok(Status::Passed)
}

/// `kmatrix report merge`.
pub fn merge(files: &[PathBuf], outputs: &OutputArgs) -> Result<Status, Error> {
    let summary = crate::report::json::merge(files)?;
    finish(
        &summary,
        outputs,
        &mut crate::report::printable::Printable(std::io::stdout().lock()),
    )
}
