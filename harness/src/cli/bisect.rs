//! `kmatrix bisect`: the releases between a good and a bad kernel of a
//! source that lists them, searched ([`crate::bisect`]) by booting about
//! log2(N) of them, each run as `kmatrix test` runs one kernel; one that
//! cannot be booted is skipped. The listing, pins, verdicts and skips are
//! kept in the cache, keyed by the question (its ends name their source),
//! so an interrupted bisection resumes where it stopped.

use std::path::{Path, PathBuf};

use clap::Args;
use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use super::args::VmArgs;
use super::noticed;
use super::run::run_to_end;
use crate::bisect::{BisectError, Next, Search, State, Verdict, SKIP_BUDGET};
use crate::cache::Cache;
use crate::error::{Error, Interrupt, Status};
use crate::error_chain::error_chain;
use crate::kernels::source::listing::{Line, Release, DEBIAN_FLAVOUR};
use crate::kernels::{Fetcher, KernelEntry, Selection};
use crate::plan::{KernelSet, RunConfig, RunRequest, Tests};
use crate::report::{progress, Reporter};

#[derive(Args)]
#[command(after_help = after_help())]
pub struct BisectArgs {
    /// A release whose verdict is the good one: `mainline:VERSION`,
    /// `oci:REPOSITORY:TAG` or `debian:SUITE:BUILD`.
    #[arg(long, value_name = "SOURCE:RELEASE")]
    good: String,
    /// A later release of the same source whose verdict differs
    /// (`mainline:6.6.69`).
    #[arg(long, value_name = "SOURCE:RELEASE")]
    bad: String,
    /// The architecture of the kernels booted.
    #[arg(long, default_value = "amd64", value_parser = parse_arch)]
    arch: Arch,
    /// Judge only the test of this name (`PROGRAM::load`,
    /// `PROGRAM::CASE`); repeatable [default: every test of the suite].
    #[arg(long, value_name = "TEST")]
    only: Vec<String>,
    /// Use only cached kernels and pins (and the releases an earlier run
    /// of the same bisection listed).
    #[arg(long)]
    offline: bool,
    /// Forget the verdicts and skips of an earlier run of the same
    /// bisection (after rebuilding an object its suite names).
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

fn after_help() -> String {
    format!(
        "Releases are named `mainline:VERSION` (Ubuntu's mainline builds: `mainline:6.6.60`), \
`oci:REPOSITORY:TAG` (an OCI repository's tags that begin with a kernel version, cilium/ci-kernels' or \
little-vm-helper's images, walked in version order, only those of the good end's form: \
`oci:registry.example/kernels:6.6.60`) or `debian:SUITE:BUILD` (the {DEBIAN_FLAVOUR} images of one Debian \
series in the snapshot archive, in the order they were built: `debian:bookworm:6.1.0-20`); both ends of one source.

A release that cannot be booted (its download fails, or its kernel fails before the agent runs) is skipped and a \
neighbour tried instead; the answer names what was skipped, and is a range when skips leave it open. One run skips \
at most {SKIP_BUDGET}. Verdicts, pins and skips are kept in the cache's bisect/ directory, keyed by the question: \
running the same command again resumes (--fresh forgets them)."
    )
}

fn parse_arch(text: &str) -> Result<Arch, String> {
    text.parse()
}

/// How a release's kernel came out.
enum Judged {
    /// Its tests' marks.
    Verdict(Verdict),
    /// It could not be booted, and why; `kept` when the release itself is
    /// to blame, so that a resumed bisection skips it again (not when the
    /// network, the host or `--offline` stood in the way: those are tried
    /// again next time).
    Unbootable { reason: String, kept: bool },
}

pub async fn bisect(matrix: Option<PathBuf>, args: BisectArgs) -> Result<Status, Error> {
    let good: Release = args.good.parse().map_err(BisectError::Release)?;
    let bad: Release = args.bad.parse().map_err(BisectError::Release)?;
    if good.line != bad.line {
        return Err(BisectError::Release(format!(
            "--good {good} and --bad {bad} are not releases of one source: give two of {}",
            good.line
        ))
        .into());
    }
    let line = good.line.clone();
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
        if state.releases.len() < 2 {
            return Err(Error::Usage(format!(
                "--offline: no earlier run of this bisection listed the releases of {line}; run it once online"
            )));
        }
        state.releases.clone()
    } else {
        let listed = fetcher
            .releases(&line, args.arch)
            .await
            .map_err(BisectError::List)?;
        line.between(&listed, &good.name, &bad.name)
            .map_err(BisectError::List)?
    };
    state.releases = releases.clone();
    eprintln!(
        "kmatrix: bisect: {} releases of {line} from {} to {}; at most {} to boot",
        releases.len(),
        good.name,
        bad.name,
        Search::most_boots(releases.len())
    );

    let mut search = Search::new(releases, state.verdicts.clone(), state.skipped.clone());
    let mut booted = Vec::new();
    let mut skipped_now = Vec::new();
    let answer = loop {
        let name = match search.next() {
            Next::Boot(name) => name,
            done => break done,
        };
        let judged = match pinned(&fetcher, &mut state, &line, &name, args.arch).await {
            Ok(entry) => match judge(matrix.clone(), &args, entry).await? {
                Ok(judged) => judged,
                Err(signal) => return Ok(Status::Interrupted(signal)),
            },
            Err((reason, kept)) => Judged::Unbootable { reason, kept },
        };
        match judged {
            Judged::Verdict(verdict) => {
                eprintln!("kmatrix: bisect: {name}: {verdict}");
                search.record(&name, verdict.clone());
                state.verdicts.insert(name.clone(), verdict);
                booted.push(name);
            }
            Judged::Unbootable { reason, kept } => {
                eprintln!("kmatrix: bisect: {name}: skipped, it could not be booted: {reason}");
                search.skip(&name, reason.clone());
                if kept && !args.offline {
                    state.skipped.insert(name.clone(), reason.clone());
                }
                skipped_now.push(format!("{name} ({reason})"));
            }
        }
        save(&state, &state_path)?;
        if skipped_now.len() >= SKIP_BUDGET && matches!(search.next(), Next::Boot(_)) {
            return Err(BisectError::TooManySkips {
                skipped: skipped_now,
            }
            .into());
        }
    };
    report(&search, &booted, &line, answer, &good, &bad)
}

/// Prints what was booted and skipped, and the answer.
fn report(
    search: &Search,
    booted: &[String],
    line: &Line,
    answer: Next,
    good: &Release,
    bad: &Release,
) -> Result<Status, Error> {
    let verdict = |name: &str| search.verdict(name).cloned().unwrap_or_default();
    let cached: Vec<&str> = search
        .releases()
        .iter()
        .filter(|r| search.verdict(r).is_some() && !booted.contains(r))
        .map(String::as_str)
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
            format!(" (verdicts of {} from an earlier run)", cached.join(", "))
        }
    );
    let skipped: Vec<String> = search
        .releases()
        .iter()
        .filter_map(|r| Some(format!("{r} ({})", search.skipped(r)?)))
        .collect();
    if !skipped.is_empty() {
        println!("skipped (could not be booted): {}", skipped.join(", "));
    }
    match answer {
        Next::Found {
            last_same,
            first_differing,
            skipped,
        } => {
            if skipped.is_empty() {
                println!("first release whose verdict differs: {first_differing}");
            } else {
                println!(
                    "first release whose verdict differs: one of {}, {first_differing} (the ones before {first_differing} could not be booted)",
                    skipped.join(", ")
                );
            }
            println!("  {last_same}: {}", verdict(&last_same));
            println!("  {first_differing}: {}", verdict(&first_differing));
            if let Some(range) = line.upstream_range(&last_same, &first_differing) {
                println!("upstream range: {range}");
            }
            Ok(Status::Passed)
        }
        Next::NoChange => Err(BisectError::NoChange {
            verdict: verdict(&good.name),
            good: good.name.clone(),
            bad: bad.name.clone(),
        }
        .into()),
        Next::NoReference => Err(BisectError::GoodUnbootable {
            reason: search.skipped(&good.name).unwrap_or_default().to_owned(),
            release: good.name.clone(),
        }
        .into()),
        Next::Unconfirmed { last_same, skipped } => {
            Err(BisectError::Unconfirmed { last_same, skipped }.into())
        }
        Next::Boot(_) => unreachable!("the loop boots"),
    }
}

/// `name`'s kernel, pinned from the state or from its source; why not,
/// when its source cannot pin it (the release is then skipped).
async fn pinned(
    fetcher: &Fetcher,
    state: &mut State,
    line: &Line,
    name: &str,
    arch: Arch,
) -> Result<KernelEntry, (String, bool)> {
    let mut entry = line.entry(name, arch);
    let pins = match state.pins.get(name) {
        Some(pins) => pins.clone(),
        None => {
            let pinning = fetcher
                .newest_pinning(&entry)
                .await
                .map_err(|e| (error_chain(&e), !e.is_passing()))?
                .ok_or_else(|| (format!("{} names no content to pin", entry.source), true))?;
            state.pins.insert(name.to_owned(), pinning.sha256.clone());
            pinning.sha256
        }
    };
    for (pin, digest) in pins {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digest.trim_start_matches("sha256:"), &mut bytes)
            .map_err(|_| (format!("its pin {pin} is not sha256: {digest}"), true))?;
        entry.sha256.insert(pin, bytes);
    }
    Ok(entry)
}

/// Runs the tests on `entry` alone and says how it came out, or the
/// signal that interrupted it. A kernel that failed for the machinery's
/// sake (its download, or a VM that broke down before its agent ran: the
/// exit-3 kind) is unbootable; one that failed running the tests has their
/// marks as its verdict.
async fn judge(
    matrix: Option<PathBuf>,
    args: &BisectArgs,
    entry: KernelEntry,
) -> Result<Result<Judged, Interrupt>, Error> {
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
    let column = summary.column(&label).map(|c| &summary.columns[c]);
    Ok(Ok(match column {
        Some(column) if column.finished && !column.infrastructure => {
            Judged::Verdict(Verdict::of(&summary, &label))
        }
        Some(column) if column.finished => Judged::Unbootable {
            reason: column
                .failure
                .clone()
                .unwrap_or_else(|| "the machinery failed".into()),
            kept: true,
        },
        _ => Judged::Unbootable {
            reason: "its run did not finish".into(),
            kept: false,
        },
    }))
}

/// The question a state file is kept for: the ends, the architecture, the
/// tests named, and the paths and contents of the suite file and objects
/// given (not the objects a suite names: `--fresh` after rebuilding them).
fn question(args: &BisectArgs, good: &Release, bad: &Release) -> String {
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
        "{good}..{bad} {} only [{}] files {}",
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
