//! Saved VMs on a busy machine: runs side by side while two processes keep
//! both cores busy find the saved VMs the first runs made, and the store
//! ends with one per kernel (`tests/soak.sh` is the long version, run by
//! hand).

use std::path::Path;
use std::process::{Child, Command};

use crate::support::records::booted;
use crate::support::{fixture, kmatrix_cached, private_cache, stray_vms, text};

crate::support::tests! {
    vm side_by_side_runs_on_a_busy_machine_restore_one_saved_vm_per_kernel,
}

/// Processes that spin until dropped.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start(count: usize) -> Self {
        Self(
            (0..count)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// The kernel releases of the saved VMs in `cache`, sorted.
fn saved_vms(cache: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(cache.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("meta.json")).ok())
        .filter_map(|meta| serde_json::from_str::<serde_json::Value>(&meta).ok())
        .filter_map(|meta| Some(meta["kernel_release"].as_str()?.to_owned()))
        .collect();
    found.sort();
    found
}

fn side_by_side_runs_on_a_busy_machine_restore_one_saved_vm_per_kernel() {
    let cache = private_cache("5.10,6.1");
    let dir = tempfile::tempdir().unwrap();
    let _hogs = Hogs::start(2);
    for round in 0..3 {
        let runs: Vec<_> = (0..2)
            .map(|i| {
                let json = dir.path().join(format!("{round}-{i}.json"));
                let child =
                    kmatrix_cached(cache.path(), &["test", "--kernels", "5.10,6.1", "--json"])
                        .arg(&json)
                        .arg(fixture("xdp_pass.bpf.c"))
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                (json, child)
            })
            .collect();
        for (json, child) in runs {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "round {round}: {}", text(&output));
            if round > 0 {
                let all = [("5.10".to_owned(), true), ("6.1".to_owned(), true)];
                assert_eq!(booted(&json), all, "round {round}: {}", text(&output));
            }
        }
    }
    let saved = saved_vms(cache.path());
    assert_eq!(saved.len(), 2, "one saved VM per kernel: {saved:?}");
    assert!(
        saved[0].starts_with("5.10") && saved[1].starts_with("6.1"),
        "{saved:?}"
    );
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}
