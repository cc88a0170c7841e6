//! `kmatrix bisect`: the releases between a good and a bad kernel of a
//! source that lists them, searched ([`crate::bisect`]) by booting about
//! log2(N) of them, each run as `kmatrix test` runs one kernel. Verdicts
//! and pins are kept in the cache, keyed by the question, so an
//! interrupted bisection resumes where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use super::args::VmArgs;
use super::noticed;
use super::run::run_to_end;
use crate::bisect::{BisectError, Next, Search, State, Verdict};
use crate::cache::Cache;
use crate::error::{Error, Interrupt, Status};
use crate::kernels::source::checksums;
use crate::kernels::{Fetcher, KernelEntry, Selection, Source};
use crate::plan::{KernelSet, RunConfig, RunRequest, Tests};
use crate::report::{progress, Reporter};

#[derive(Args)]
pub struct BisectArgs {
    /// A release whose verdict is the good one, as `SOURCE:VERSION`
    /// (`mainline:6.6.60`).
    #[arg(long, value_name = "SOURCE:VERSION")]
    good: String,
    /// A later release whose verdict differs (`mainline:6.6.69`).
    #[arg(long, value_name = "SOURCE:VERSION")]
    bad: String,
    /// The architecture of the kernels booted.
    #[arg(long, default_value = "amd64", value_parser = parse_arch)]
    arch: Arch,
    /// Judge only the test of this name (`PROGRAM::load`,
    /// `PROGRAM::CASE`); repeatable [default: every test of the suite].
    #[arg(long, value_name = "TEST")]
    only: Vec<String>,
    /// Use only cached kernels and pins.
    #[arg(long)]
    offline: bool,
    /// Forget the verdicts of an earlier run of the same bisection (after
    /// rebuilding an object its suite names).
    #[arg(long)]
    fresh: bool,
    #[command(flatten)]
    vm: VmArgs,
    /// The suite file [default, when no OBJECT is given: as `kmatrix test`].
    #[arg(long, value_name = "FILE")]
    suite: Option<PathBuf>,
    /// eBPF objects (`.o`) or C sources (`.c`), checked for loading only.
    #[arg(value_name = "OBJECT")]
    objects: Vec<PathBuf>,
}

fn parse_arch(text: &str) -> Result<Arch, String> {
    text.parse()
}

/// The directory name of a `--good`/`--bad` release.
fn release(given: &str) -> Result<String, BisectError> {
    match given.split_once(':') {
        Some(("mainline", version)) => checksums::tag(version).map_err(BisectError::Release),
        _ => Err(BisectError::Release(format!(
            "`{given}`: bisect lists the releases of Ubuntu's mainline builds; give `mainline:VERSION` (e.g. `mainline:6.6.64`)"
        ))),
    }
}

pub async fn bisect(matrix: Option<PathBuf>, args: BisectArgs) -> Result<Status, Error> {
    let (good, bad) = (release(&args.good)?, release(&args.bad)?);
    let version = |tag: &str| {
        checksums::release_version(tag).ok_or_else(|| {
            BisectError::Release(format!(
                "{tag} is a release candidate: bisect walks releases"
            ))
        })
    };
    let (good_version, bad_version) = (version(&good)?, version(&bad)?);
    if good_version >= bad_version {
        return Err(Error::Usage(format!(
            "--good {good} must be older than --bad {bad}"
        )));
    }
    let set = noticed(KernelSet::resolve(
        matrix.clone(),
        &Selection::All,
        None,
        None,
    ))?;
    let fetcher = set.fetcher(args.offline, progress::on_stderr())?;
    let question = question(&args, &good, &bad);
    let state_path = state_path(fetcher.cache(), &question);
    let mut state = match args.fresh {
        true => State::load(Path::new(""), &question),
        false => State::load(&state_path, &question),
    };

    let releases = if args.offline {
        let mut known: Vec<_> = state.pins.keys().cloned().collect();
        known.sort_by_key(|t| checksums::release_version(t));
        known
    } else {
        let listed = fetcher
            .mainline_releases()
            .await
            .map_err(BisectError::Listing)?;
        for end in [&good, &bad] {
            if !listed.iter().any(|(_, tag)| tag == end) {
                return Err(BisectError::NotListed(end.clone()).into());
            }
        }
        listed
            .into_iter()
            .filter(|(v, _)| (good_version..=bad_version).contains(v))
            .map(|(_, tag)| tag)
            .collect()
    };
    eprintln!(
        "kmatrix: bisect: {} releases from {good} to {bad}; at most {} to boot",
        releases.len(),
        Search::most_boots(releases.len())
    );

    let mut search = Search::new(releases, state.verdicts.clone());
    let mut booted = Vec::new();
    let answer = loop {
        match search.next() {
            Next::Boot(tag) => {
                let entry = pinned(&fetcher, &mut state, &tag, args.arch).await?;
                let verdict = match judge(matrix.clone(), &args, entry).await? {
                    Ok(verdict) => verdict,
                    Err(signal) => return Ok(Status::Interrupted(signal)),
                };
                eprintln!("kmatrix: bisect: {tag}: {verdict}");
                search.record(&tag, verdict.clone());
                state.verdicts.insert(tag.clone(), verdict);
                save(&state, &state_path)?;
                booted.push(tag);
            }
            done => break done,
        }
    };
    let verdict = |tag: &str| search.verdict(tag).cloned().unwrap_or_default();
    let cached: Vec<&String> = search
        .releases()
        .iter()
        .filter(|r| search.verdict(r).is_some() && !booted.contains(r))
        .collect();
    println!(
        "booted: {}{}",
        if booted.is_empty() {
            "nothing".to_owned()
        } else {
            booted.join(", ")
        },
        if cached.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = cached.iter().map(|s| s.as_str()).collect();
            format!(" (verdicts of {} from an earlier run)", names.join(", "))
        }
    );
    match answer {
        Next::Found {
            last_same,
            first_differing,
        } => {
            println!("first release whose verdict differs: {first_differing}");
            println!("  {last_same}: {}", verdict(&last_same));
            println!("  {first_differing}: {}", verdict(&first_differing));
            println!("upstream range: {last_same}..{first_differing}");
            Ok(Status::Passed)
        }
        Next::NoChange => Err(BisectError::NoChange {
            verdict: verdict(&good),
            good,
            bad,
        }
        .into()),
        Next::Boot(_) => unreachable!("the loop boots"),
    }
}

/// `tag`'s kernel, pinned from the state or from its signed `CHECKSUMS`.
async fn pinned(
    fetcher: &Fetcher,
    state: &mut State,
    tag: &str,
    arch: Arch,
) -> Result<KernelEntry, Error> {
    let mut entry = KernelEntry {
        label: tag.trim_start_matches('v').to_owned(),
        version: checksums::release_version(tag)
            .ok_or_else(|| Error::Usage(format!("{tag} is not a release")))?,
        arch,
        source: Source::Mainline {
            tag: tag.to_owned(),
        },
        sha256: BTreeMap::new(),
    };
    let pins = match state.pins.get(tag) {
        Some(pins) => pins.clone(),
        None => {
            let pinning = fetcher
                .newest_pinning(&entry)
                .await?
                .expect("a mainline release has pins");
            state.pins.insert(tag.to_owned(), pinning.sha256.clone());
            pinning.sha256
        }
    };
    for (name, digest) in pins {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digest, &mut bytes)
            .map_err(|_| Error::Usage(format!("a pin of {tag} is not sha256: {digest}")))?;
        entry.sha256.insert(name, bytes);
    }
    Ok(entry)
}

/// Runs the tests on `entry` alone and gives its verdict, or the signal
/// that interrupted it.
async fn judge(
    matrix: Option<PathBuf>,
    args: &BisectArgs,
    entry: KernelEntry,
) -> Result<Result<Verdict, Interrupt>, Error> {
    let request = RunRequest {
        matrix,
        kernels: Selection::All,
        arch: None,
        shard: None,
        tests: Tests::Suite {
            suite: args.suite.clone(),
            objects: args.objects.clone(),
            loader: None,
            compare_loaders: false,
            only: args.only.clone(),
        },
        offline: args.offline,
        config: RunConfig::new(Some(1), args.vm.config()),
    };
    let mut prepared = noticed(request.prepare())?;
    let label = entry.label.clone();
    prepared.set.selected = vec![label.clone()];
    prepared.set.kernels = vec![entry];
    let plan = noticed(prepared.plan(progress::on_stderr()))?;
    let summary = match run_to_end(&plan, Reporter::new().live(std::io::stdout()), None).await? {
        Ok(summary) => summary,
        Err(signal) => return Ok(Err(signal)),
    };
    let column = summary
        .column(&label)
        .map(|c| &summary.columns[c])
        .filter(|c| c.finished);
    match column {
        Some(column) if column.failure.is_none() => Ok(Ok(Verdict::of(&summary, &label))),
        other => Err(BisectError::Unjudged {
            release: format!("v{label}"),
            reason: other
                .and_then(|c| c.failure.clone())
                .unwrap_or_else(|| "its run did not finish".into()),
        }
        .into()),
    }
}

/// The question a state file is kept for: the ends, the architecture, the
/// tests named, and the paths and contents of the suite file and objects
/// given (not the objects a suite names: `--fresh` after rebuilding them).
fn question(args: &BisectArgs, good: &str, bad: &str) -> String {
    let mut hasher = Sha256::new();
    let suite = match args.objects.is_empty() {
        true => crate::suite::find(args.suite.clone()).ok(),
        false => args.suite.clone(),
    };
    for path in suite.iter().chain(&args.objects) {
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(path).unwrap_or_default());
    }
    format!(
        "mainline {good}..{bad} {} only [{}] files {}",
        args.arch,
        args.only.join(","),
        &hex::encode(hasher.finalize())[..16]
    )
}

fn state_path(cache: &Cache, question: &str) -> PathBuf {
    let key = hex::encode(Sha256::digest(question.as_bytes()));
    cache
        .root()
        .join("bisect")
        .join(format!("{}.json", &key[..32]))
}

fn save(state: &State, path: &Path) -> Result<(), Error> {
    state.save(path).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}
