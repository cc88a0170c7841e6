//! `cargo test` through libtest-mimic: the `kernels` test binary
//! (tests/kernels.rs) listed, filtered and failed.

use std::path::PathBuf;
use std::process::Command;

use kmatrix::kernels::Matrix;

use crate::support::{example, exited, kernels_test_binary, kmatrix, repo, text, SSH_SYN};

crate::support::tests! {
    host cargo_test_list_boots_and_downloads_nothing,
    vm cargo_test_filter_boots_only_the_selected_kernel,
    vm cargo_test_fails_with_the_reason,
}

/// `--list` names every trial and boots and downloads nothing.
fn cargo_test_list_boots_and_downloads_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(kernels_test_binary())
        .arg("--list")
        .env("KMATRIX_CACHE_DIR", cache.path().join("cache"))
        // Anything booted or downloaded would fail.
        .env("KMATRIX_QEMU", "/nonexistent/qemu")
        .env("KMATRIX_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    let trials: Vec<_> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test").map(str::to_owned))
        .collect();
    assert_eq!(trials.len(), 45, "{out}");
    assert!(
        trials.contains(&"5.10::xdp_filter::drops_ssh".to_owned()),
        "{out}"
    );
    assert!(
        trials.contains(&"7.3::xdp_loop_sum::load".to_owned()),
        "{out}"
    );
    assert!(
        trials.contains(&"5.10-arm64::xdp_tail_from_subprog::load".to_owned()),
        "{out}"
    );
    assert!(
        !cache.path().join("cache").exists(),
        "the cache was touched"
    );
}

/// A filter on one kernel boots that kernel only; the others' trials are
/// filtered out.
fn cargo_test_filter_boots_only_the_selected_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("qemu.log");
    let wrapper = dir.path().join("qemu");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec qemu-system-x86_64 \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let user_cache = PathBuf::from(
        String::from_utf8(kmatrix(&["kernels", "cache-dir"]).output().unwrap().stdout)
            .unwrap()
            .trim(),
    );
    let run_dirs = || {
        std::fs::read_dir(user_cache.join("tmp")).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("kmatrix-vm-"))
                .count()
        })
    };
    let before = run_dirs();
    let output = Command::new(kernels_test_binary())
        .arg("7.3::xdp_filter")
        .env("KMATRIX_QEMU", &wrapper)
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    // The kernel's other tests were still running: stopped and cleaned up.
    assert_eq!(run_dirs(), before, "a run directory was left behind");
    assert!(out.contains("test 7.3::xdp_filter::drops_ssh"), "{out}");
    assert!(
        out.contains("3 passed; 0 failed; 0 ignored; 0 measured; 42 filtered out"),
        "{out}"
    );
    let boots = std::fs::read_to_string(&log).unwrap();
    assert_eq!(boots.lines().count(), 1, "{boots}");
    let matrix = Matrix::load(&repo().join("kernels.toml")).unwrap();
    let newest = matrix.kernels.iter().rfind(|k| k.label == "7.3").unwrap();
    let fetcher = kmatrix::kernels::Fetcher::new(
        kmatrix::cache::Cache::at(user_cache).unwrap(),
        &matrix,
        true,
        |_| {},
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let artifacts = runtime.block_on(fetcher.fetch(newest)).unwrap();
    assert!(
        boots.contains(&artifacts.boot_image.display().to_string()),
        "{boots}"
    );
}

/// A failing case fails `cargo test`, with the reason in the output.
fn cargo_test_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("wrong.toml");
    std::fs::write(
        &suite,
        format!(
            "[[object]]\npath = \"{}\"\n[[object.program]]\nname = \"xdp_filter\"\n[[object.program.case]]\nname = \"wrong_verdict\"\ninput = \"{SSH_SYN}\"\nexpect_return = \"XDP_PASS\"\n",
            example("xdp_filter.bpf.c")
        ),
    )
    .unwrap();
    let output = Command::new(kernels_test_binary())
        .env("KMATRIX_SUITE", &suite)
        .env("KMATRIX_SELECT", "6.1")
        .output()
        .unwrap();
    let out = exited(&output, 101);
    assert!(
        out.contains("test 6.1::xdp_filter::wrong_verdict ... FAILED"),
        "{out}"
    );
    assert!(
        out.contains("return value: expected XDP_PASS (2), got XDP_DROP (1)"),
        "{out}"
    );
    assert!(out.contains("1 passed; 1 failed"), "{out}");
}
