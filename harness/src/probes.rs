//! Feature probe answers (`kmatrix probe`): what a kernel's full probe
//! found, kept in the cache by the kernel's artifacts (its pinned digests),
//! and how a question is answered from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmatrix_protocol::{Feature, FeatureKind};

use crate::cache::Cache;
use crate::kernels::KernelArtifacts;

/// Bumped when what a full probe covers changes, so that old answers are
/// probed again.
const FORMAT: u32 = 1;

/// Every feature a kernel's full probe answered, by its name
/// (`helper:bpf_loop@xdp`).
pub type Answers = BTreeMap<String, Option<bool>>;

/// The cached answers of kernels.
pub struct ProbeCache {
    dir: PathBuf,
}

impl ProbeCache {
    /// The store in `cache`.
    pub fn in_cache(cache: &Cache) -> Self {
        Self {
            dir: cache.root().join("probes"),
        }
    }

    fn file(&self, kernel: &KernelArtifacts) -> PathBuf {
        let key = kernel.dir.file_name().unwrap_or_default().to_string_lossy();
        self.dir.join(format!("{key}-v{FORMAT}.json"))
    }

    /// `kernel`'s answers, if a full probe of it is cached.
    pub fn load(&self, kernel: &KernelArtifacts) -> Option<Answers> {
        serde_json::from_slice(&std::fs::read(self.file(kernel)).ok()?).ok()
    }

    /// Keeps `answers` for `kernel`: written whole under another name,
    /// then renamed.
    pub fn store(&self, kernel: &KernelArtifacts, answers: &Answers) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer(tmp.as_file(), answers)?;
        tmp.persist(self.file(kernel)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Where the answers live (for messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The answer `answers` give about `feature`: a helper asked for no
/// program type is there if any type may call it.
pub fn answer(answers: &Answers, feature: &Feature) -> Option<bool> {
    if let Some(answer) = answers.get(&feature.to_string()) {
        return *answer;
    }
    match feature.kind {
        FeatureKind::Helper if feature.prog.is_none() => {
            let prefix = format!("{feature}@");
            let found: Vec<_> = answers
                .range(prefix.clone()..)
                .take_while(|(name, _)| name.starts_with(&prefix))
                .map(|(_, answer)| *answer)
                .collect();
            if found.contains(&Some(true)) {
                Some(true)
            } else if found.is_empty() {
                // No program type the kernel has names the helper: the
                // kernel has no such helper (its BTF was read).
                helpers_known(answers).then_some(false)
            } else {
                found.contains(&Some(false)).then_some(false)
            }
        }
        // A full probe lists everything the kernel names: what it does
        // not list, the kernel does not have.
        FeatureKind::Prog | FeatureKind::Map | FeatureKind::Attach => {
            let prefix = format!("{}:", feature.kind.name());
            answers
                .keys()
                .any(|k| k.starts_with(&prefix))
                .then_some(false)
        }
        FeatureKind::Kfunc => answers
            .keys()
            .any(|k| k.starts_with("kfunc:"))
            .then_some(false),
        FeatureKind::Helper => helpers_known(answers).then_some(false),
    }
}

fn helpers_known(answers: &Answers) -> bool {
    answers.keys().any(|k| k.starts_with("helper:"))
}

/// The rows of a listing of `answers` of many kernels: every feature any
/// of them answered, helpers once for any program type.
pub fn listed(all: &[&Answers]) -> Vec<Feature> {
    let mut features: Vec<Feature> = all
        .iter()
        .flat_map(|answers| answers.keys())
        .filter_map(|name| name.parse::<Feature>().ok())
        .map(|feature| feature.any_prog())
        .collect();
    features.sort();
    features.dedup();
    features
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_helpers_for_any_type_and_absent_names_as_missing() {
        let answers: Answers = [
            ("prog:xdp", Some(true)),
            ("map:ringbuf", Some(true)),
            ("attach:sk_lookup", None),
            ("helper:bpf_loop@xdp", Some(false)),
            ("helper:bpf_loop@kprobe", Some(true)),
            ("helper:bpf_spin_lock@xdp", Some(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let ask = |text: &str| answer(&answers, &text.parse().unwrap());
        assert_eq!(ask("helper:bpf_loop"), Some(true));
        assert_eq!(ask("helper:bpf_loop@xdp"), Some(false));
        assert_eq!(ask("helper:bpf_spin_lock"), Some(false));
        assert_eq!(ask("helper:bpf_no_such"), Some(false));
        assert_eq!(ask("map:cgrp_storage"), Some(false));
        assert_eq!(ask("attach:sk_lookup"), None);
        assert_eq!(ask("kfunc:bpf_rcu_read_lock"), None);
        let rows: Vec<String> = listed(&[&answers]).iter().map(|f| f.to_string()).collect();
        assert_eq!(
            rows,
            [
                "prog:xdp",
                "map:ringbuf",
                "attach:sk_lookup",
                "helper:bpf_loop",
                "helper:bpf_spin_lock"
            ]
        );
    }
}
