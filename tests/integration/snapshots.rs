//! Saved VMs: a warm run gives the cold run's results, for a suite and for
//! `kmatrix exec`; a damaged snapshot, or one of another kernel, falls back
//! to a cold boot that says why and saves a good one; a cache path with a
//! comma and bytes that are not UTF-8 works; two processes saving the same
//! snapshot both succeed; `kernels gc` removes what no run would restore;
//! an arm64 saved VM is restored on another machine, an amd64 one is not.
//!
//! Each test has its own cache holding the shared cache's kernels (hard
//! links), so that its snapshots are its own.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::records::{booted, records};
use crate::support::{example, kmatrix_cached, private_cache, stray_vms, text};

crate::support::tests! {
    vm a_warm_run_gives_the_cold_results,
    vm kmatrix_exec_runs_the_same_restored,
    vm a_damaged_snapshot_falls_back_to_a_cold_boot_and_is_replaced,
    vm a_snapshot_missing_its_state_is_replaced_by_the_next_save,
    vm a_large_input_to_a_restored_vm_is_waited_for_and_its_snapshot_kept,
    vm a_snapshot_of_another_kernel_is_caught,
    vm a_cache_path_with_a_comma_and_bytes_not_utf8_saves_and_restores,
    vm two_processes_saving_one_snapshot_both_succeed,
    vm kernels_gc_removes_snapshots_of_kernels_no_longer_kept,
    arm64 an_arm64_saved_vm_is_restored_on_another_machine,
}

fn run(cache: &Path, args: &[&str]) -> Output {
    kmatrix_cached(cache, args).output().unwrap()
}

fn suite_args<'a>(kernels: &'a str, suite: &'a str, json: &'a str) -> Vec<&'a str> {
    vec![
        "test",
        "--kernels",
        kernels,
        "--suite",
        suite,
        "--json",
        json,
    ]
}

/// The saved VMs in `cache`: (directory, kernel release).
fn snapshots(cache: &Path) -> Vec<(PathBuf, String)> {
    let mut found: Vec<_> = std::fs::read_dir(cache.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let meta = std::fs::read_to_string(e.path().join("meta.json")).ok()?;
            let meta: serde_json::Value = serde_json::from_str(&meta).ok()?;
            Some((e.path(), meta["kernel_release"].as_str()?.to_owned()))
        })
        .collect();
    found.sort();
    found
}

fn snapshot_of(cache: &Path, release_prefix: &str) -> PathBuf {
    snapshots(cache)
        .into_iter()
        .find(|(_, release)| release.starts_with(release_prefix))
        .unwrap_or_else(|| panic!("no snapshot of {release_prefix} in {:?}", snapshots(cache)))
        .0
}

/// The outcomes in a `--json` file, with timings taken out of details.
fn outcomes(json: &Path) -> Vec<String> {
    let mut lines: Vec<String> = records(json)
        .iter()
        .filter(|value| value["type"] == "outcome")
        .map(|value| {
            let result = &value["result"];
            let detail = result["detail"]
                .as_str()
                .or(result["reason"].as_str())
                .unwrap_or_default()
                .split(',')
                .next()
                .unwrap_or_default()
                .to_owned();
            format!(
                "{} {} {} {detail}",
                value["kernel"], value["test"], result["outcome"]
            )
        })
        .collect();
    lines.sort();
    lines
}

fn restored(json: &Path) -> Vec<bool> {
    std::fs::read_to_string(json)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""type":"kernel-booted""#))
        .map(|l| l.contains(r#""restored":true"#))
        .collect()
}

fn a_warm_run_gives_the_cold_results() {
    let cache = private_cache("5.10,7.3");
    let dir = tempfile::tempdir().unwrap();
    let suite = example("kmatrix-suite.toml");
    let json = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (cold, saving, warm) = (json("cold.json"), json("saving.json"), json("warm.json"));

    let mut args = suite_args("5.10,7.3", &suite, &cold);
    args.push("--no-snapshot");
    let output = run(cache.path(), &args);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        snapshots(cache.path()).is_empty(),
        "--no-snapshot saved a VM"
    );

    let output = run(cache.path(), &suite_args("5.10,7.3", &suite, &saving));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("VM saved for later runs"),
        "{}",
        text(&output)
    );
    assert_eq!(snapshots(cache.path()).len(), 2);

    let output = run(cache.path(), &suite_args("5.10,7.3", &suite, &warm));
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(restored(warm.as_ref()), [true, true], "{}", text(&output));
    assert_eq!(restored(cold.as_ref()), [false, false]);
    let expected = outcomes(cold.as_ref());
    assert!(expected.len() > 10, "{expected:#?}");
    assert_eq!(outcomes(saving.as_ref()), expected);
    assert_eq!(outcomes(warm.as_ref()), expected);
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn kmatrix_exec_runs_the_same_restored() {
    let cache = private_cache("6.1");
    // A script of shell built-ins: the clock and the randomness must be
    // fresh in a restored VM, the kernel the same.
    let script = r#"read release < /proc/sys/kernel/osrelease; echo "kernel $release"; read boot_id < /proc/sys/kernel/random/boot_id; read uuid < /proc/sys/kernel/random/uuid; echo "uuid $uuid" >&2; echo "args $*"; exit 3"#;
    let exec = |extra: &[&str]| {
        let mut args = vec!["exec", "--kernels", "6.1"];
        args.extend(extra);
        args.extend(["--", "/bin/sh", "-c", script, "sh", "a b", "c"]);
        run(cache.path(), &args)
    };
    let cold = exec(&["--no-snapshot"]);
    let saving = exec(&[]);
    let warm = exec(&[]);
    let again = exec(&[]);
    for output in [&cold, &saving, &warm, &again] {
        assert_eq!(output.status.code(), Some(1), "{}", text(output));
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(out.contains("kernel 6.1.0-"), "{}", text(output));
        assert!(out.contains("args a b c"), "{}", text(output));
    }
    assert_eq!(cold.stdout, warm.stdout);
    assert_eq!(warm.stdout, again.stdout);
    let uuid = |output: &Output| {
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .find_map(|l| l.strip_prefix("uuid ").map(str::to_owned))
            .unwrap_or_else(|| panic!("{}", text(output)))
    };
    assert_ne!(
        uuid(&warm),
        uuid(&again),
        "two restored VMs drew the same random numbers"
    );
    assert!(
        String::from_utf8_lossy(&warm.stderr).contains("exit code 3"),
        "{}",
        text(&warm)
    );
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn a_damaged_snapshot_falls_back_to_a_cold_boot_and_is_replaced() {
    let cache = private_cache("6.1");
    let object = example("xdp_filter.bpf.c");
    let test = || run(cache.path(), &["test", "--kernels", "6.1", &object]);
    let output = test();
    assert!(output.status.success(), "{}", text(&output));
    let state = snapshot_of(cache.path(), "6.1").join("state");
    let len = std::fs::metadata(&state).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&state)
        .unwrap();
    file.set_len(len / 2).unwrap();

    let output = test();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        out.contains("6.1  NOTE  the saved VM could not be restored (")
            && out.contains("booting cold and saving it again"),
        "{}",
        text(&output)
    );
    assert!(out.contains("VM saved for later runs"), "{}", text(&output));
    assert!(out.contains("xdp_filter::load   pass"), "{}", text(&output));

    let output = test();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        out.contains("restored from its saved VM"),
        "{}",
        text(&output)
    );
    assert!(!out.contains("NOTE"), "{}", text(&output));
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn a_snapshot_missing_its_state_is_replaced_by_the_next_save() {
    let cache = private_cache("6.1");
    let object = example("xdp_filter.bpf.c");
    let test = || run(cache.path(), &["test", "--kernels", "6.1", &object]);
    let output = test();
    assert!(output.status.success(), "{}", text(&output));
    let snapshot = snapshot_of(cache.path(), "6.1");
    std::fs::remove_file(snapshot.join("state")).unwrap();

    let output = test();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("VM saved for later runs"),
        "{}",
        text(&output)
    );
    assert!(snapshot.join("state").is_file());
    let output = test();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("restored from its saved VM"),
        "{}",
        text(&output)
    );
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn a_large_input_to_a_restored_vm_is_waited_for_and_its_snapshot_kept() {
    use std::os::unix::fs::MetadataExt;
    let cache = private_cache("6.1");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(180 << 20)
        .unwrap();
    let big = big.to_string_lossy().into_owned();
    let json = dir.path().join("run.json").to_string_lossy().into_owned();
    let script = format!("if [ -s '{big}' ]; then echo present; fi");
    let exec = |extra: &[&str]| {
        let mut args = vec!["exec", "--kernels", "6.1", "--no-share", "--json", &json];
        args.extend(extra);
        args.extend(["--", "/bin/sh", "-c", &script]);
        run(cache.path(), &args)
    };
    let saving = exec(&[]);
    assert!(saving.status.success(), "{}", text(&saving));
    let state = snapshot_of(cache.path(), "6.1").join("state");
    let saved = std::fs::metadata(&state).unwrap();

    let output = exec(&["--file", &big]);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    assert!(out.contains("present"), "{}", text(&output));
    assert!(!out.contains("NOTE"), "{}", text(&output));
    assert_eq!(restored(json.as_ref()), [true], "{}", text(&output));
    let now = std::fs::metadata(&state).unwrap();
    // The same file (its modification time is the saved VM's last use).
    assert_eq!(
        (now.ino(), now.size()),
        (saved.ino(), saved.size()),
        "the saved VM was rewritten"
    );
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn a_snapshot_of_another_kernel_is_caught() {
    let cache = private_cache("5.10,6.1");
    let object = example("xdp_filter.bpf.c");
    let output = run(cache.path(), &["test", "--kernels", "5.10,6.1", &object]);
    assert!(output.status.success(), "{}", text(&output));
    // Both boot on the same machine with the same memory: QEMU loads the
    // other kernel's state without complaint.
    let (old, new) = (
        snapshot_of(cache.path(), "5.10"),
        snapshot_of(cache.path(), "6.1"),
    );
    std::fs::copy(old.join("state"), new.join("state")).unwrap();

    let output = run(cache.path(), &["test", "--kernels", "6.1", &object]);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        out.contains("the VM runs kernel 5.10.0-") && out.contains("not 6.1.0-"),
        "{}",
        text(&output)
    );
    assert!(out.contains("6.1  UP    6.1.0-"), "{}", text(&output));
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn a_cache_path_with_a_comma_and_bytes_not_utf8_saves_and_restores() {
    use std::os::unix::ffi::OsStrExt;
    let cache = private_cache("6.1");
    let odd = cache
        .path()
        .join(std::ffi::OsStr::from_bytes(b"c,a\xffche"));
    std::fs::create_dir(&odd).unwrap();
    std::fs::rename(cache.path().join("kernels"), odd.join("kernels")).unwrap();
    let tmpdir = cache.path().join("tmp,dir");
    std::fs::create_dir(&tmpdir).unwrap();
    let object = example("xdp_filter.bpf.c");
    let test = || {
        kmatrix_cached(&odd, &["test", "--kernels", "6.1", &object])
            .env("TMPDIR", &tmpdir)
            .output()
            .unwrap()
    };
    let saving = test();
    assert!(saving.status.success(), "{}", text(&saving));
    assert!(
        String::from_utf8_lossy(&saving.stdout).contains("VM saved for later runs"),
        "{}",
        text(&saving)
    );
    let warm = test();
    let out = String::from_utf8_lossy(&warm.stdout);
    assert!(warm.status.success(), "{}", text(&warm));
    assert!(
        out.contains("restored from its saved VM"),
        "{}",
        text(&warm)
    );
    assert!(!out.contains("NOTE"), "{}", text(&warm));
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn two_processes_saving_one_snapshot_both_succeed() {
    let cache = private_cache("6.1");
    let object = example("xdp_filter.bpf.c");
    let start = || {
        kmatrix_cached(cache.path(), &["test", "--kernels", "6.1", &object])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    for child in [a, b] {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("VM saved for later runs"),
            "{}",
            text(&output)
        );
    }
    assert_eq!(snapshots(cache.path()).len(), 1);
    let output = run(cache.path(), &["test", "--kernels", "6.1", &object]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("restored from its saved VM"),
        "{}",
        text(&output)
    );
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn kernels_gc_removes_snapshots_of_kernels_no_longer_kept() {
    let cache = private_cache("6.1");
    let object = example("xdp_filter.bpf.c");
    let output = run(cache.path(), &["test", "--kernels", "6.1", &object]);
    assert!(output.status.success(), "{}", text(&output));
    let kept = snapshot_of(cache.path(), "6.1");
    let orphan = cache
        .path()
        .join("snapshots/0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("state"), vec![0; 4096]).unwrap();
    std::fs::write(
        orphan.join("meta.json"),
        r#"{"kernel_release":"6.0.0","btf":true,"boot_ms":1,"kernel":"/nonexistent/kernels/old/vmlinux","agent":"","qemu":"","host":""}"#,
    )
    .unwrap();
    // Copies of the saved VM whose key inputs no run has now: another
    // agent, and (under TCG) another TSC figure.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kept.join("meta.json")).unwrap()).unwrap();
    let mut planted = Vec::new();
    let mut plant = |name: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let dir = cache.path().join("snapshots").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(kept.join("state"), dir.join("state")).unwrap();
        let mut meta = meta.clone();
        change(&mut meta["inputs"]);
        std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
        planted.push(dir);
    };
    plant("another-agent", &|inputs| {
        inputs["agent"] = "0".repeat(64).into()
    });
    if let Some(khz) = meta["inputs"]["tsc_khz"].as_u64() {
        plant("another-tsc", &|inputs| {
            inputs["tsc_khz"] = (khz + 7_000).into()
        });
    }

    let gc = |delete: bool| {
        let mut args = vec!["kernels", "gc"];
        if delete {
            args.push("--delete");
        }
        let output = run(cache.path(), &args);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let listed = gc(false);
    assert!(listed.contains(&orphan.display().to_string()), "{listed}");
    assert!(!listed.contains(&kept.display().to_string()), "{listed}");
    assert!(listed.contains("(saved VM: another agent)"), "{listed}");
    if planted.len() == 2 {
        assert!(
            listed.contains("(saved VM: another TSC figure)"),
            "{listed}"
        );
    }
    assert!(
        listed.contains(&format!(
            "saved VMs: 1 kept ({:.1} MB), {} no run would restore",
            kmatrix::cache::size(&kept) as f64 / 1e6,
            planted.len() + 1
        )),
        "{listed}"
    );
    assert!(orphan.exists());
    gc(true);
    assert!(!orphan.exists());
    assert!(planted.iter().all(|dir| !dir.exists()));
    assert!(kept.join("state").exists());
    let output = run(cache.path(), &["test", "--kernels", "6.1", &object]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("restored from its saved VM"),
        "{}",
        text(&output)
    );
}

/// The kernels whose VM a `--json` file says was restored.
fn restored_kernels(json: &Path) -> Vec<String> {
    booted(json)
        .into_iter()
        .filter_map(|(kernel, restored)| restored.then_some(kernel))
        .collect()
}

/// Copies the tree `from` to `to`: new files, with their own times.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let (path, dest) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// An arm64 saved VM (under TCG nothing of the host is in it) made in one
/// cache is restored from a copy in another cache, whose kernels are other
/// files at other paths, on a machine of another identity
/// (`KMATRIX_MACHINE_ID`), as a CI cache carries it from runner to
/// runner; the amd64 saved VM copied with it is not (it holds this host's
/// TSC figure), and `kernels gc` there says so.
fn an_arm64_saved_vm_is_restored_on_another_machine() {
    let kernels = "6.1,6.1-arm64";
    let here = private_cache(kernels);
    let object = example("xdp_filter.bpf.c");
    let test = ["test", "--kernels", kernels, "--accel", "tcg", &object];
    let output = run(here.path(), &test);
    assert!(output.status.success(), "{}", text(&output));
    let saved = snapshots(here.path());
    assert_eq!(saved.len(), 2, "{saved:?}");
    let arm64 = saved
        .iter()
        .find(|(_, release)| release.ends_with("arm64"))
        .expect("a saved arm64 VM")
        .0
        .clone();
    let amd64 = saved
        .iter()
        .find(|(dir, _)| *dir != arm64)
        .unwrap()
        .0
        .clone();
    let meta = std::fs::read_to_string(arm64.join("meta.json")).unwrap();
    assert!(meta.contains(r#""host": null"#), "{meta}");

    let shared = kmatrix::cache::Cache::from_env().unwrap();
    let there = tempfile::Builder::new()
        .prefix("kmatrix-snapshots-test-")
        .tempdir_in(shared.tmp_dir())
        .unwrap();
    copy_tree(&here.path().join("kernels"), &there.path().join("kernels"));
    for dir in [&arm64, &amd64] {
        copy_tree(
            dir,
            &there
                .path()
                .join("snapshots")
                .join(dir.file_name().unwrap()),
        );
    }
    let elsewhere = |args: &[&str]| {
        kmatrix_cached(there.path(), args)
            .env(kmatrix::vm::snapshot::MACHINE_ID_ENV, "another-runner")
            .output()
            .unwrap()
    };
    let output = elsewhere(&["kernels", "gc"]);
    let listed = text(&output);
    assert!(output.status.success(), "{listed}");
    assert!(listed.contains("(saved VM: another machine)"), "{listed}");
    assert!(
        !listed.contains(&*arm64.file_name().unwrap().to_string_lossy()),
        "{listed}"
    );
    assert!(listed.contains("saved VMs: 1 kept"), "{listed}");

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("there.json");
    let output = elsewhere(&[&test[..], &["--json", json.to_str().unwrap()]].concat());
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(restored_kernels(&json), ["6.1-arm64"], "{}", text(&output));
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}
