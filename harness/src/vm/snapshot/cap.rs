//! The store's size cap and its least-recently-used eviction.
//!
//! A saved VM's last use is its `state` file's modification time: set when
//! it is saved and each time a run restores it ([`Slot::load`], one
//! `futimens` on the open file, atomic). A run restoring a saved VM holds a
//! shared lock (`flock`) on its `state` until the VM is gone; eviction
//! takes the lock exclusively, without waiting, and leaves a saved VM whose
//! lock it cannot take: one in use is never evicted. A restore that finds
//! its saved VM being evicted (its lock taken, or its `state` replaced once
//! locked) boots cold, as if there were none.
//!
//! After a save makes the store larger than its cap ([`CAP_ENV`], else
//! [`DEFAULT_CAP`]), the least recently used saved VMs other than the new
//! one go until it fits.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use super::key::META;
use super::portable::DIGESTS;
use super::tsc::TSC_KHZ;
use super::{discard, Slot, Store, STATE};
use crate::cache::Entry;

/// Environment variable that sets the store's cap.
pub const CAP_ENV: &str = "KMATRIX_SNAPSHOT_CAP";

/// The store's cap when [`CAP_ENV`] is not set: 8 GiB, the shipped
/// matrix's saved VMs four times over.
pub const DEFAULT_CAP: u64 = 8 << 30;

/// [`CAP_ENV`] is not a size.
#[derive(Debug, thiserror::Error)]
#[error("{CAP_ENV}={value:?} is not a size: give bytes, or a whole number with K, M, G or T (powers of 1024), such as 8G")]
pub struct CapError {
    /// What it was set to.
    pub value: String,
}

/// The cap [`CAP_ENV`] sets, else [`DEFAULT_CAP`].
pub fn cap_from_env() -> Result<u64, CapError> {
    match std::env::var_os(CAP_ENV).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_CAP),
        Some(value) => {
            let value = value.to_string_lossy().into_owned();
            parse_size(&value).ok_or(CapError { value })
        }
    }
}

/// `8G`, `8GiB`, `512M`, `4096`: a whole number of bytes, KiB, MiB, GiB
/// or TiB.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// A saved VM (or what is left of one) in the store.
#[derive(Clone, Debug)]
pub struct Saved {
    /// Its directory and size.
    pub entry: Entry,
    /// Its last use: when it was saved or last restored.
    pub used: SystemTime,
}

/// The store's saved VMs, their size and its cap.
#[derive(Debug)]
pub struct Usage {
    /// Every saved VM, least recently used first.
    pub saved: Vec<Saved>,
    /// Their size.
    pub bytes: u64,
    /// The cap.
    pub cap: u64,
}

impl Store {
    /// Every saved VM in the store (its records aside), least recently
    /// used first.
    pub fn usage(&self) -> Usage {
        let mut saved: Vec<Saved> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|path| !is_record(path))
            .map(|path| Saved {
                used: last_use(&path),
                entry: Entry {
                    bytes: crate::cache::size(&path),
                    path,
                },
            })
            .collect();
        saved.sort_by(|a, b| (a.used, &a.entry.path).cmp(&(b.used, &b.entry.path)));
        Usage {
            bytes: saved.iter().map(|s| s.entry.bytes).sum(),
            saved,
            cap: self.cap,
        }
    }

    /// Removes the saved VM in `dir` unless a run holds it.
    pub fn remove(&self, dir: &Path) -> bool {
        try_evict(dir, &self.tmp)
    }

    /// Evicts the least recently used saved VMs but `keep` until the store
    /// fits its cap, leaving those in use; returns what it evicted.
    pub fn evict(&self, keep: Option<&Path>) -> Vec<Entry> {
        let usage = self.usage();
        let tmp = self.tmp.clone();
        evictions(&usage, keep, |saved| try_evict(&saved.entry.path, &tmp))
    }
}

/// Those of `usage`'s saved VMs, least recently used first, whose eviction
/// brings the store within its cap, never `keep`; `evict` evicts one, or
/// says it could not (it is in use).
pub fn evictions(
    usage: &Usage,
    keep: Option<&Path>,
    mut evict: impl FnMut(&Saved) -> bool,
) -> Vec<Entry> {
    let mut bytes = usage.bytes;
    let mut evicted = Vec::new();
    for saved in &usage.saved {
        if bytes <= usage.cap {
            break;
        }
        if Some(saved.entry.path.as_path()) != keep && evict(saved) {
            bytes -= saved.entry.bytes;
            evicted.push(saved.entry.clone());
        }
    }
    evicted
}

/// Whether `path` is one of the store's records rather than a saved VM.
pub(super) fn is_record(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    (name.starts_with(TSC_KHZ) && path.is_file()) || (name == DIGESTS && path.is_dir())
}

/// A saved VM's last use: its state's modification time, else its
/// `meta.json`'s or its own.
fn last_use(dir: &Path) -> SystemTime {
    [dir.join(STATE), dir.join(META), dir.to_owned()]
        .iter()
        .find_map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Evicts the saved VM in `dir` unless a run holds it: with its state
/// locked, it is moved aside into `tmp` and removed.
pub(super) fn try_evict(dir: &Path, tmp: &Path) -> bool {
    let lock = File::open(dir.join(STATE)).ok();
    if let Some(state) = &lock {
        if state.try_lock().is_err() {
            return false;
        }
    }
    discard(dir, tmp);
    !dir.exists()
}

impl Slot {
    /// Locks the saved state at `state` shared for as long as this slot
    /// lives and records its use; false if it is being evicted.
    pub(super) fn hold(&self, state: &Path) -> bool {
        let Ok(file) = File::open(state) else {
            return false;
        };
        if file.try_lock_shared().is_err() {
            return false;
        }
        // Evicted between the open and the lock: the path holds another
        // file, or none.
        let same = match (file.metadata(), std::fs::metadata(state)) {
            (Ok(held), Ok(now)) => (held.dev(), held.ino()) == (now.dev(), now.ino()),
            _ => false,
        };
        if !same {
            return false;
        }
        let _ = file.set_modified(SystemTime::now());
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::vm::snapshot::fixtures::*;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        for bad in ["", "G", "8 X", "-1G", "1.5G", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    /// A saved VM of `bytes` bytes named `name`, last used `age` seconds
    /// ago.
    fn plant(store: &Store, name: &str, bytes: usize, age: u64) -> PathBuf {
        let dir = store.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(META), "{}").unwrap();
        let state = File::create(dir.join(STATE)).unwrap();
        std::io::Write::write_all(&mut &state, &vec![0; bytes]).unwrap();
        state
            .set_modified(SystemTime::now() - Duration::from_secs(age))
            .unwrap();
        dir
    }

    fn capped(root: &Path, cap: u64) -> Store {
        Store { cap, ..store(root) }
    }

    #[test]
    fn the_least_recently_used_go_until_the_store_fits() {
        let root = tempfile::tempdir().unwrap();
        let store = capped(root.path(), 10_000);
        let oldest = plant(&store, "oldest", 4000, 300);
        let old = plant(&store, "old", 4000, 200);
        let recent = plant(&store, "recent", 4000, 100);
        let new = plant(&store, "new", 4000, 400);
        // Records are not saved VMs.
        store.stable_tsc_khz(2_596_000);
        std::fs::create_dir_all(store.dir.join(DIGESTS)).unwrap();
        std::fs::write(store.dir.join(DIGESTS).join("x"), vec![0; 50_000]).unwrap();

        let usage = store.usage();
        let order: Vec<_> = usage.saved.iter().map(|s| s.entry.path.clone()).collect();
        assert_eq!(
            order,
            [new.clone(), oldest.clone(), old.clone(), recent.clone()]
        );
        assert!(
            usage.bytes > 16_000 && usage.bytes < 20_000,
            "{}",
            usage.bytes
        );

        // The new save is kept however old its state's time.
        let evicted = store.evict(Some(&new));
        let evicted: Vec<_> = evicted.into_iter().map(|e| e.path).collect();
        assert_eq!(evicted, [oldest.clone(), old.clone()]);
        assert!(!oldest.exists() && !old.exists());
        assert!(new.exists() && recent.exists());
        assert!(store.usage().bytes <= store.cap);
        assert!(store.evict(Some(&new)).is_empty());
    }

    #[test]
    fn a_saved_vm_in_use_is_never_evicted() {
        let root = tempfile::tempdir().unwrap();
        let store = capped(root.path(), 5_000);
        let inputs = inputs(Path::new("/k/vmlinux"), 2_596_000);
        let slot = save(&store, inputs.clone(), &"x".repeat(4000));
        let (state, _) = slot.load().expect("it loads, and is held");
        let other = plant(&store, "other", 4000, 10);
        let used = std::fs::metadata(&state).unwrap().modified().unwrap();
        assert!(used > SystemTime::now() - Duration::from_secs(5));

        // Over the cap, the held one is older but stays.
        let evicted = store.evict(None);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].path, other);
        assert!(state.exists());

        // Once its run is over it may go.
        drop(slot);
        plant(&store, "other", 4000, 10);
        let evicted = store.evict(Some(&store.dir.join("other")));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].path, state.parent().unwrap());

        // A restore of a saved VM being evicted finds none.
        let slot = save(&store, inputs, "state");
        let state = slot.dir.join(STATE);
        let evicting = File::open(&state).unwrap();
        evicting.try_lock().unwrap();
        assert!(slot.load().is_none());
    }

    #[test]
    fn nothing_goes_while_the_store_fits() {
        let root = tempfile::tempdir().unwrap();
        let store = capped(root.path(), 100_000);
        plant(&store, "a", 4000, 300);
        plant(&store, "b", 4000, 200);
        let usage = store.usage();
        assert!(evictions(&usage, None, |_| panic!("evicted within the cap")).is_empty());
    }
}
