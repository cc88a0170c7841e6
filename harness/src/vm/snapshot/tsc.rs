//! This machine's TSC figure, told to amd64 guests under TCG and part of
//! their saved VMs' keys: recorded in the store the first time and kept
//! while a new measurement is within [`TSC_TOLERANCE_PER_MILLE`] of it.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{host_identity, Store};
use crate::vm::argv::Hardware;

/// This machine's recorded TSC figure: `tsc-khz-<machine>`.
pub(super) const TSC_KHZ: &str = "tsc-khz-";

/// How far, per mille, a new TSC figure may be from the recorded one and
/// still be taken for it: figures of one host, rounded to the MHz, differ
/// by a MHz at most (0.04% at 2.6 GHz), while another host's TSC is
/// farther off.
const TSC_TOLERANCE_PER_MILLE: u64 = 5;

impl Store {
    /// The TSC figure a guest on `hardware` is told, if any: this
    /// machine's, as recorded ([`Store::stable_tsc_khz`]).
    pub fn tsc_khz(&self, hardware: Hardware) -> Option<u64> {
        crate::vm::config::tsc_khz_told(hardware.machine.arch, hardware.accel)
            .map(|khz| self.stable_tsc_khz(khz))
    }

    /// This machine's TSC record.
    fn tsc_record(&self) -> PathBuf {
        let machine = hex::encode(&Sha256::digest(host_identity())[..8]);
        self.dir.join(format!("{TSC_KHZ}{machine}"))
    }

    /// The recorded TSC figure, if `khz` is within
    /// [`TSC_TOLERANCE_PER_MILLE`] of it.
    pub(super) fn recorded_tsc_khz(&self, khz: u64) -> Option<u64> {
        std::fs::read_to_string(self.tsc_record())
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|kept| kept.abs_diff(khz) * 1000 <= kept * TSC_TOLERANCE_PER_MILLE)
    }

    /// This machine's TSC figure as first recorded, while a new figure
    /// `khz` stays within [`TSC_TOLERANCE_PER_MILLE`] of it: the figure is
    /// part of every amd64 saved VM's key, and a figure that moved with
    /// each measurement would make every run save its VMs anew.
    pub fn stable_tsc_khz(&self, khz: u64) -> u64 {
        if let Some(kept) = self.recorded_tsc_khz(khz) {
            return kept;
        }
        let file = self.tsc_record();
        // Written whole under another name, then linked into place unless
        // another process got there first, whose figure then wins: two
        // runs starting together must key their saved VMs alike.
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(&self.dir))
            .and_then(|tmp| {
                std::fs::write(tmp.path(), khz.to_string())?;
                match tmp.persist_noclobber(&file) {
                    Ok(_) => Ok(()),
                    // Another process's figure, kept if close; one too far
                    // off (a new host) is replaced.
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                        if self.recorded_tsc_khz(khz).is_some() {
                            Ok(())
                        } else {
                            e.file.persist(&file).map(|_| ()).map_err(|e| e.error)
                        }
                    }
                    Err(e) => Err(e.error),
                }
            });
        match written {
            Ok(()) => self.recorded_tsc_khz(khz).unwrap_or(khz),
            Err(_) => khz,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::vm::snapshot::fixtures::*;

    #[test]
    fn the_first_tsc_figure_is_kept_while_close_and_replaced_when_far() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        assert_eq!(store.stable_tsc_khz(2_600_000), 2_600_000);
        assert_eq!(store.stable_tsc_khz(2_601_000), 2_600_000);
        assert_eq!(store.stable_tsc_khz(3_000_000), 3_000_000);
        assert_eq!(store.stable_tsc_khz(3_000_500), 3_000_000);
    }

    #[test]
    fn measurements_under_load_keep_the_recorded_figure() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        // A TSC on a MHz boundary rounds either way; under load a 20 ms
        // window was 0.2% short once in 1000 (2590994 kHz for 2596118).
        let measured = [
            2_596_500, 2_596_499, 2_596_501, 2_590_994, 2_596_510, 2_601_000, 2_596_490,
        ];
        let first = store.stable_tsc_khz(measured[0] / 1000 * 1000);
        for khz in measured {
            assert_eq!(
                store.stable_tsc_khz((khz + 500) / 1000 * 1000),
                first,
                "{khz}"
            );
        }
    }
}
