//! `kmatrix probe`: which features each selected kernel has, from the
//! cache or probed in the kernel's VM (every feature it names, once per
//! kernel build), printed as a matrix and written as JSON. An unpinned
//! kernel is not probed: its answers stay unknown, and the command exits
//! as a run whose machinery failed.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use kmatrix_protocol::{Feature, FeatureKind};

use super::args::RunArgs;
use super::noticed;
use crate::error::{Error, Status};
use crate::kernels::FetchError;
use crate::plan::{RunRequest, Tests};
use crate::probes::{answer, Answers, ProbeCache};
use crate::report::printable::Printable;
use crate::report::probe::ProbeTable;
use crate::report::{progress, Reporter};

#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Probe again even where the answers are cached.
    #[arg(long)]
    refresh: bool,
    /// Also write the answers as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Features to show (`helper:bpf_loop`, `map:ringbuf`, `prog:lsm`,
    /// `attach:tcx`, `kfunc:bpf_rcu_read_lock`, `helper:bpf_loop@xdp`)
    /// [default: every feature any selected kernel names].
    #[arg(value_name = "FEATURE", value_parser = parse_feature)]
    features: Vec<Feature>,
}

fn parse_feature(text: &str) -> Result<Feature, String> {
    text.parse()
}

/// What `kmatrix probe` asks for: every selected kernel, of which those
/// without cached answers boot.
pub(super) fn request(matrix: Option<PathBuf>, args: &ProbeArgs) -> RunRequest {
    RunRequest {
        matrix,
        kernels: args.run.select.kernels.clone(),
        arch: args.run.select.arch,
        shard: None,
        tests: Tests::Probes {
            features: args.features.clone(),
        },
        offline: false,
        config: args.run.config(),
    }
}

pub async fn run(matrix: Option<PathBuf>, args: ProbeArgs) -> Result<Status, Error> {
    let mut plan = noticed(request(matrix, &args).resolve(progress::on_stderr()))?;
    let selected = plan.kernels.clone();
    let store = ProbeCache::in_cache(plan.fetcher.cache());
    let mut artifacts = Vec::new();
    let mut answers: Vec<Option<Answers>> = Vec::new();
    let mut unpinned = false;
    for kernel in &selected {
        let fetched = match plan.fetcher.fetch(kernel).await {
            Err(err @ FetchError::NotPinned { .. }) => {
                eprintln!(
                    "kmatrix: kernel {} could not be probed: {err}",
                    kernel.label
                );
                unpinned = true;
                None
            }
            fetched => Some(fetched?),
        };
        answers.push(match &fetched {
            Some(fetched) if !args.refresh => store.load(fetched, kernel.arch),
            _ => None,
        });
        artifacts.push(fetched);
    }
    let mut failed = false;
    // A kfunc is read from BTF: where the kernel's BTF does not tag its
    // kfuncs, a full probe cannot list them, but a named one is looked up.
    let unanswered = |cached: &Answers| {
        args.features
            .iter()
            .any(|f| f.kind == FeatureKind::Kfunc && answer(cached, f).is_none())
    };
    let to_probe: Vec<&str> = selected
        .iter()
        .zip(&answers)
        .zip(&artifacts)
        .filter(|((_, cached), fetched)| {
            fetched.is_some() && cached.as_ref().is_none_or(unanswered)
        })
        .map(|((kernel, _), _)| kernel.label.as_str())
        .collect();
    plan.kernels
        .retain(|kernel| to_probe.contains(&kernel.label.as_str()));
    if !plan.kernels.is_empty() {
        let reporter = Reporter::new().live(std::io::stderr());
        let summary = match super::run::run_to_end(&plan, reporter, None).await? {
            Ok(summary) => summary,
            Err(signal) => return Ok(Status::Interrupted(signal)),
        };
        for column in &summary.columns {
            let index = selected
                .iter()
                .position(|k| k.label == column.label)
                .expect("a probed kernel is selected");
            if let Some(reason) = &column.failure {
                let _ = writeln!(
                    Printable::new(std::io::stderr()),
                    "kmatrix: kernel {} could not be probed: {reason}",
                    column.label
                );
                failed = true;
                continue;
            }
            let fetched = artifacts[index]
                .as_ref()
                .expect("a probed kernel was fetched");
            store
                .store(fetched, selected[index].arch, &column.probes)
                .map_err(|source| Error::Write {
                    path: store.dir().to_owned(),
                    source,
                })?;
            answers[index] = Some(column.probes.clone());
        }
    }
    let empty = Answers::new();
    let kernels: Vec<(&str, &Answers)> = selected
        .iter()
        .zip(&answers)
        .map(|(k, a)| (k.label.as_str(), a.as_ref().unwrap_or(&empty)))
        .collect();
    let features = if args.features.is_empty() {
        crate::probes::listed(&kernels.iter().map(|(_, a)| *a).collect::<Vec<_>>())
    } else {
        args.features.clone()
    };
    let table = ProbeTable { kernels, features };
    let mut out = Printable::new(std::io::stdout().lock());
    let _ = table.render(&mut out).and_then(|()| out.flush());
    if let Some(path) = &args.json {
        let write = std::fs::File::create(path)
            .and_then(|file| serde_json::to_writer_pretty(file, &table.json()).map_err(Into::into));
        write.map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(match (failed, unpinned) {
        (true, _) => Status::Failed,
        (false, true) => Status::Infrastructure,
        (false, false) => Status::Passed,
    })
}
