//! `kmatrix kernels`: list, fetch, update and clean the matrix's kernels.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;

use super::args::SelectArgs;
use super::noticed;
use crate::cache::Cache;
use crate::error::{Error, Status};
use crate::error_chain::error_chain;
use crate::kernels::{update, Change, Selection};
use crate::plan::{KernelSet, PlanError};

#[derive(Subcommand)]
pub enum KernelsCommand {
    /// List the matrix: label, version, source, cached or not.
    List,
    /// Download and extract kernels into the cache.
    Fetch {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Move pins to the newest package of each kernel's series, rewriting
    /// kernels.toml in place.
    Update {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Print the cache directory (for CI cache steps).
    CacheDir {
        /// Print the saved VMs' directory instead: to cache where saved
        /// VMs are portable (arm64 ones; see the README's Saved VMs).
        #[arg(long)]
        saved_vms: bool,
    },
    /// Remove cache entries no kernels.toml entry uses, saved VMs no run
    /// would restore, and the least recently used saved VMs over the cap
    /// (KMATRIX_SNAPSHOT_CAP); a dry run unless --delete.
    Gc {
        /// Remove them, rather than only listing them.
        #[arg(long)]
        delete: bool,
    },
}

pub async fn run(matrix: Option<PathBuf>, command: KernelsCommand) -> Result<Status, Error> {
    match command {
        KernelsCommand::List => list(matrix),
        KernelsCommand::Fetch { select } => fetch(matrix, &select).await,
        KernelsCommand::Update { select } => update(matrix, &select).await,
        KernelsCommand::CacheDir { saved_vms } => {
            let cache = Cache::from_env()?;
            if saved_vms {
                println!("{}", cache.snapshots_dir().display());
            } else {
                println!("{}", cache.root().display());
            }
            Ok(Status::Passed)
        }
        KernelsCommand::Gc { delete } => gc(matrix, delete),
    }
}

fn list(matrix: Option<PathBuf>) -> Result<Status, Error> {
    let set = noticed(KernelSet::resolve(matrix, &Selection::All, None, None))?;
    let fetcher = set.fetcher(true, |_| {})?;
    println!(
        "{:<11} {:<6} {:<9} {:<28} {:<7} {:>8}  {:<14} SOURCE",
        "LABEL", "ARCH", "VERSION", "RELEASE", "CACHED", "SIZE", "PIN"
    );
    for kernel in &set.matrix.kernels {
        let cached = fetcher.cached(kernel);
        let size = cached.as_ref().map_or_else(
            || "-".to_owned(),
            |a| format!("{:.1} MB", crate::cache::size(&a.dir) as f64 / 1e6),
        );
        let pin = match kernel.sha256.values().next() {
            Some(pin) if kernel.sha256.len() == 1 => hex::encode(&pin[..6]),
            Some(pin) => format!("{}+{}", hex::encode(&pin[..4]), kernel.sha256.len() - 1),
            None => "(none)".to_owned(),
        };
        // The upstream version and `uname -r` are known once it is cached.
        let version = cached
            .as_ref()
            .and_then(|a| a.upstream_version())
            .unwrap_or_else(|| kernel.version.to_string());
        let release = cached.as_ref().map_or("-", |a| a.release.as_str());
        println!(
            "{:<11} {:<6} {:<9} {:<28} {:<7} {:>8}  {:<14} {}",
            kernel.label,
            kernel.arch,
            version,
            release,
            if cached.is_some() { "yes" } else { "no" },
            size,
            pin,
            kernel.source
        );
    }
    let usage = saved_vms(&fetcher)?.usage();
    println!(
        "saved VMs: {}, {}",
        usage.saved.len(),
        store_size(usage.bytes, usage.cap)
    );
    Ok(Status::Passed)
}

/// The store of saved VMs in `fetcher`'s cache, its cap checked.
fn saved_vms(fetcher: &crate::kernels::Fetcher) -> Result<crate::vm::snapshot::Store, Error> {
    crate::vm::snapshot::cap_from_env().map_err(crate::plan::PlanError::from)?;
    Ok(crate::vm::snapshot::Store::in_cache(fetcher.cache()))
}

/// `bytes` of saved VMs against the store's `cap`.
fn store_size(bytes: u64, cap: u64) -> String {
    format!(
        "{:.1} MB of the {:.1} MB cap ({})",
        bytes as f64 / 1e6,
        cap as f64 / 1e6,
        crate::vm::snapshot::CAP_ENV
    )
}

fn gc(matrix: Option<PathBuf>, delete: bool) -> Result<Status, Error> {
    use crate::cache::Entry;
    use crate::vm::snapshot::{evictions, Current, Usage};
    let set = noticed(KernelSet::resolve(matrix, &Selection::All, None, None))?;
    let fetcher = set.fetcher(true, |_| {})?;
    let mut unused: Vec<(Entry, Option<String>)> =
        fetcher.unused().into_iter().map(|e| (e, None)).collect();
    // Saved VMs no run would restore now.
    let store = saved_vms(&fetcher)?;
    let kernels = set
        .matrix
        .kernels
        .iter()
        .filter_map(|kernel| {
            let artifacts = fetcher.cached(kernel)?;
            let machine = crate::vm::Machine::for_kernel(kernel.arch, artifacts.virtio_mmio);
            Some((artifacts.boot_image, machine))
        })
        .collect();
    let qemu = crate::vm::VmConfig::default_qemu();
    let survey = store.survey(&Current::now(&store, kernels, &[&qemu.amd64, &qemu.arm64]));
    let snapshots = format!(
        "saved VMs: {} kept ({:.1} MB), {} no run would restore ({:.1} MB)",
        survey.reachable.len(),
        megabytes(&survey.reachable),
        survey.unreachable.len(),
        megabytes(survey.unreachable.iter().map(|(e, _)| e)),
    );
    let saved_vms = unused.len();
    unused.extend(
        survey
            .unreachable
            .into_iter()
            .map(|(entry, why)| (entry, Some(format!("saved VM: {why}")))),
    );
    let removed = |entry: &Entry, saved_vm: bool| -> Result<bool, Error> {
        if !delete {
            return Ok(true);
        }
        if saved_vm {
            return Ok(store.remove(&entry.path));
        }
        let gone = if entry.path.is_dir() {
            std::fs::remove_dir_all(&entry.path)
        } else {
            std::fs::remove_file(&entry.path)
        };
        gone.map(|()| true).map_err(|source| Error::Write {
            path: entry.path.clone(),
            source,
        })
    };
    let show = |entry: &Entry, why: &str, gone: bool| {
        let kept = if gone { "" } else { ", in use by a run: kept" };
        println!(
            "{:>9.1} MB  {}{why}{kept}",
            entry.bytes as f64 / 1e6,
            entry.path.display()
        );
    };
    let mut count = 0;
    let mut bytes = 0;
    for (i, (entry, why)) in unused.iter().enumerate() {
        let gone = removed(entry, i >= saved_vms)?;
        let why = why.as_ref().map(|w| format!("  ({w})")).unwrap_or_default();
        show(entry, &why, gone);
        if gone {
            count += 1;
            bytes += entry.bytes;
        }
    }
    // Then the least recently used of those left, while over the cap.
    let evicted = if delete {
        store.evict(None)
    } else {
        let mut usage = store.usage();
        usage
            .saved
            .retain(|s| !unused.iter().any(|(e, _)| e.path == s.entry.path));
        usage.bytes = usage.saved.iter().map(|s| s.entry.bytes).sum();
        evictions(&usage, None, |_| true)
    };
    for entry in &evicted {
        show(
            entry,
            "  (saved VM: least recently used, over the cap)",
            true,
        );
        count += 1;
        bytes += entry.bytes;
    }
    let Usage {
        bytes: left, cap, ..
    } = store.usage();
    let left = if delete {
        left
    } else {
        left.saturating_sub(
            unused[saved_vms..]
                .iter()
                .map(|(e, _)| e.bytes)
                .chain(evicted.iter().map(|e| e.bytes))
                .sum(),
        )
    };
    println!("{snapshots}");
    println!("saved VMs left: {}", store_size(left, cap));
    let verb = if delete {
        "removed"
    } else {
        "would remove (pass --delete)"
    };
    println!(
        "{verb}: {count} entries, {:.1} MB (unused by {}, never restored, or over the cap)",
        bytes as f64 / 1e6,
        set.matrix.path.display()
    );
    Ok(Status::Passed)
}

/// The size of `entries` in MB.
fn megabytes<'a>(entries: impl IntoIterator<Item = &'a crate::cache::Entry>) -> f64 {
    entries.into_iter().map(|e| e.bytes).sum::<u64>() as f64 / 1e6
}

/// The kernels `select` names in the matrix, with their notices shown.
fn selected(matrix: Option<PathBuf>, select: &SelectArgs) -> Result<KernelSet, PlanError> {
    noticed(KernelSet::resolve(
        matrix,
        &select.kernels,
        select.arch,
        None,
    ))
}

async fn fetch(matrix: Option<PathBuf>, select: &SelectArgs) -> Result<Status, Error> {
    let set = selected(matrix, select)?;
    noticed(set.check_pinned())?;
    let fetcher = Arc::new(set.fetcher(false, crate::report::progress::on_stderr())?);
    let mut tasks = tokio::task::JoinSet::new();
    for kernel in set.kernels.iter().cloned() {
        let fetcher = fetcher.clone();
        tasks.spawn(async move { (kernel.label.clone(), fetcher.fetch(&kernel).await) });
    }
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        let (label, result) = joined.expect("a fetch task does not panic");
        match result {
            Ok(artifacts) => println!(
                "{label:>8}  cached {} at {}",
                artifacts.release,
                artifacts.dir.display()
            ),
            Err(err) => {
                failed += 1;
                eprintln!("{label:>8}  error: {}", error_chain(&err));
            }
        }
    }
    if failed > 0 {
        return Err(Error::FetchFailed {
            failed,
            total: set.kernels.len(),
        });
    }
    Ok(Status::Passed)
}

async fn update(matrix: Option<PathBuf>, select: &SelectArgs) -> Result<Status, Error> {
    let set = selected(matrix, select)?;
    if set.matrix.built_in {
        let dir = std::env::current_dir().unwrap_or_default();
        return Err(crate::plan::PlanError::BuiltInMatrix { dir }.into());
    }
    let fetcher = set.fetcher(false, crate::report::progress::on_stderr())?;
    let mut pinnings = Vec::new();
    for kernel in &set.kernels {
        let Some(pinning) = fetcher.newest_pinning(kernel).await? else {
            println!(
                "{:>8}  pinned by content ({}): nothing to update",
                kernel.label, kernel.source
            );
            continue;
        };
        match update::change(kernel, &pinning) {
            Change::UpToDate { name } => println!("{:>8}  up to date: {name}", kernel.label),
            Change::Moved { from, to } => {
                println!("{:>8}  {from} -> {to}", kernel.label);
                for (name, digest) in &pinning.sha256 {
                    println!("{:>8}    {name} = {digest}", "");
                }
                for name in &pinning.missing {
                    println!(
                        "{:>8}    {name}: not in the mirror's index; pinned without it",
                        ""
                    );
                }
                pinnings.push(pinning);
            }
        }
    }
    if !pinnings.is_empty() {
        update::write(&set.matrix.path, &pinnings)?;
        println!("updated {}", set.matrix.path.display());
    }
    Ok(Status::Passed)
}
