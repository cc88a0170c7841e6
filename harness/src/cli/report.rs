//! `kmatrix matrix` (the CI job matrix of a sharded run), `kmatrix report
//! merge` and `kmatrix report diff`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{OutputArgs, SelectArgs};
use super::noticed;
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
    /// What changed between two runs' --json files: tests newly failing or
    /// passing, verifier figures that grew, programs near the verifier's
    /// limit; fails on a regression.
    Diff(DiffArgs),
}

/// `kmatrix report diff` arguments.
#[derive(Args)]
pub struct DiffArgs {
    /// The base run's --json file (a sharded run's files, comma separated).
    #[arg(value_name = "BASE")]
    base: String,
    /// The new run's --json file (likewise).
    #[arg(value_name = "NEW")]
    new: String,
    /// Growth of instructions processed or states that is a regression, in
    /// percent.
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    threshold: f64,
    /// Report programs within this many percent of the complexity limit.
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    margin: f64,
    /// Also write the findings as Markdown here (a pull-request comment).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also write the findings as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// `kmatrix report diff`.
pub fn diff(args: &DiffArgs) -> Result<Status, Error> {
    use crate::report::diff;
    let files = |list: &str| -> Vec<PathBuf> { list.split(',').map(PathBuf::from).collect() };
    let base = crate::report::json::merge(&files(&args.base))?;
    let new = crate::report::json::merge(&files(&args.new))?;
    let findings = diff::diff(&base, &new, args.threshold / 100.0, args.margin / 100.0);
    let mut out = crate::report::printable::Printable::new(std::io::stdout().lock());
    let _ = diff::render_text(&findings, &mut out);
    let write = |path: &PathBuf, bytes: Vec<u8>| {
        std::fs::write(path, bytes).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })
    };
    if let Some(path) = &args.markdown {
        let mut text = Vec::new();
        let _ = diff::render_markdown(&findings, &mut text);
        write(path, text)?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&findings).expect("findings serialize");
        write(path, json)?;
    }
    Ok(Status::of(
        !findings.iter().any(diff::Finding::is_regression),
    ))
}

/// One entry per shard, with its `kmatrix test` arguments.
pub fn job_matrix(matrix: Option<PathBuf>, args: &MatrixArgs) -> Result<Status, Error> {
    let set = noticed(KernelSet::resolve(
        matrix,
        &args.select.kernels,
        args.select.arch,
        None,
    ))?;
    let total = args.shards.unwrap_or(set.kernels.len());
    if total == 0 {
        return Err(Error::Usage("--shards must be at least 1".into()));
    }
    let selection = match args.select.arch {
        Some(arch) => format!("{} --arch {arch}", args.select.kernels),
        None => args.select.kernels.to_string(),
    };
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
        &mut crate::report::printable::Printable::new(std::io::stdout().lock()),
    )
}
