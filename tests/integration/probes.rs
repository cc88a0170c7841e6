//! Feature probes: `kmatrix probe` against known facts of the oldest
//! shipped kernels, answered from the cache the second time, and a suite's
//! `requires` judged by what each kernel's probe found.

use crate::support::{example, exited, kmatrix, kmatrix_cached, matrix_row, private_cache, text};

crate::support::tests! {
    vm probes_agree_with_known_facts_and_are_cached,
    vm requires_expects_rejection_only_where_a_feature_is_missing,
}

/// bpf_loop arrived in 5.17, cgroup storage maps in 6.2, the ring buffer in
/// 5.8: the probes of 5.10, 6.1 and 6.12 say so, as JSON too; a second run
/// boots nothing.
fn probes_agree_with_known_facts_and_are_cached() {
    let cache = private_cache("5.10,6.1,6.12");
    let json = cache.path().join("probe.json");
    let probe = |qemu: &str, extra: &[&str]| {
        kmatrix_cached(
            cache.path(),
            &["probe", "--kernels", "5.10,6.1,6.12", "--json"],
        )
        .arg(&json)
        .args(extra)
        .args([
            "helper:bpf_loop",
            "map:ringbuf",
            "map:cgrp_storage",
            "kfunc:bpf_rcu_read_lock",
        ])
        .env("KMATRIX_QEMU", qemu)
        .output()
        .unwrap()
    };
    let output = probe("qemu-system-x86_64", &[]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    for (feature, cells) in [
        ("helper:bpf_loop", ["no", "yes", "yes"]),
        ("map:ringbuf", ["yes", "yes", "yes"]),
        ("map:cgrp_storage", ["no", "no", "yes"]),
        ("kfunc:bpf_rcu_read_lock", ["no", "no", "yes"]),
    ] {
        assert_eq!(matrix_row(&out, feature), cells, "{feature}: {out}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["features"]["helper:bpf_loop"]["5.10"], false, "{doc}");
    assert_eq!(doc["features"]["helper:bpf_loop"]["6.1"], true, "{doc}");

    // From the cache: nothing boots (QEMU is not even there).
    let output = probe("/nonexistent/qemu", &[]);
    let cached = text(&output);
    assert!(output.status.success(), "{cached}");
    assert!(!cached.contains("BOOT"), "{cached}");
    assert_eq!(
        matrix_row(&cached, "map:cgrp_storage"),
        ["no", "no", "yes"],
        "{cached}"
    );

    // --refresh probes again, and says when it cannot.
    let output = probe("/nonexistent/qemu", &["--refresh"]);
    let refreshed = text(&output);
    assert_eq!(output.status.code(), Some(1), "{refreshed}");
    assert!(refreshed.contains("could not be probed"), "{refreshed}");
}

/// `requires`: rejected where the probe found the feature missing (an
/// expected failure naming it), bound to load where it is there, and a
/// program that loads despite a requirement its kernel lacks fails the run.
fn requires_expects_rejection_only_where_a_feature_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("requires.toml");
    std::fs::write(
        &suite,
        format!(
            "[[object]]\npath = \"{}\"\n[[object.program]]\nname = \"xdp_loop_sum\"\nrequires = [\"helper:bpf_loop\"]\n\n[[object]]\npath = \"{}\"\n[[object.program]]\nname = \"xdp_filter\"\nrequires = [\"map:cgrp_storage\"]\n",
            example("loop_sum.bpf.c"),
            example("xdp_filter.bpf.c"),
        ),
    )
    .unwrap();
    let json = dir.path().join("run.json");
    let output = kmatrix(&["test", "--kernels", "5.10,6.12", "--json"])
        .arg(&json)
        .arg("--suite")
        .arg(&suite)
        .output()
        .unwrap();
    let out = exited(&output, 1);
    assert_eq!(
        matrix_row(&out, "xdp_loop_sum::load"),
        ["xfail", "pass"],
        "{out}"
    );
    assert!(
        out.contains("xdp_loop_sum::load on 5.10: the kernel lacks helper:bpf_loop (verifier:"),
        "{out}"
    );
    assert_eq!(
        matrix_row(&out, "xdp_filter::load"),
        ["FAIL", "pass"],
        "{out}"
    );
    assert!(
        out.contains("unexpectedly loaded: the suite requires map:cgrp_storage, which this kernel's probe says it lacks"),
        "{out}"
    );
    let records = std::fs::read_to_string(&json).unwrap();
    assert!(
        records.contains(
            r#"{"type":"probed","kernel":"5.10","feature":"helper:bpf_loop@xdp","available":false}"#
        ),
        "{records}"
    );
}
