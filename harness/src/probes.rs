//! Feature probe answers (`kmatrix probe`): what a kernel's full probe
//! found, kept in the cache by the kernel's artifacts (its pinned digests)
//! and the agent that probed, and how a question is answered from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmatrix_protocol::{Arch, Feature, FeatureKind};

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
    /// The sha256 of the agent that probes, per architecture: another
    /// agent may probe differently.
    agents: BTreeMap<Arch, String>,
}

impl ProbeCache {
    /// The store in `cache`.
    pub fn in_cache(cache: &Cache) -> Self {
        Self {
            dir: cache.root().join("probes"),
            agents: crate::agent::digests().clone(),
        }
    }

    /// The answers of an `arch` kernel: by its artifacts' key and the
    /// agent's digest.
    fn file(&self, kernel: &KernelArtifacts, arch: Arch) -> PathBuf {
        let key = kernel.dir.file_name().unwrap_or_default().to_string_lossy();
        let agent = self.agents.get(&arch).map_or("", |a| &a[..a.len().min(16)]);
        self.dir.join(format!("{key}-{agent}-v{FORMAT}.json"))
    }

    /// The answers of `kernel`, an `arch` kernel, if a full probe of it by
    /// this agent is cached.
    pub fn load(&self, kernel: &KernelArtifacts, arch: Arch) -> Option<Answers> {
        serde_json::from_slice(&std::fs::read(self.file(kernel, arch)).ok()?).ok()
    }

    /// Keeps `answers` for `kernel`, an `arch` kernel: written whole under
    /// another name, then renamed.
    pub fn store(
        &self,
        kernel: &KernelArtifacts,
        arch: Arch,
        answers: &Answers,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer(tmp.as_file(), answers)?;
        tmp.persist(self.file(kernel, arch)).map_err(|e| e.error)?;
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
    fn answers_are_kept_per_agent() {
        let root = tempfile::tempdir().unwrap();
        let cache = |agent: &str| ProbeCache {
            dir: root.path().join("probes"),
            agents: [(Arch::Amd64, agent.repeat(64))].into_iter().collect(),
        };
        let (old, new) = (cache("a"), cache("b"));
        let kernel = KernelArtifacts {
            dir: root.path().join("kernels/k"),
            image: PathBuf::new(),
            boot_image: PathBuf::new(),
            config: PathBuf::new(),
            release: "6.1.0".into(),
            modules_dir: PathBuf::new(),
            modules: Vec::new(),
            virtio_mmio: true,
        };
        assert_ne!(
            old.file(&kernel, Arch::Amd64),
            new.file(&kernel, Arch::Amd64)
        );
        let answers: Answers = [("prog:xdp".to_owned(), Some(true))].into_iter().collect();
        old.store(&kernel, Arch::Amd64, &answers).unwrap();
        assert_eq!(old.load(&kernel, Arch::Amd64), Some(answers));
        assert_eq!(new.load(&kernel, Arch::Amd64), None);
    }

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
