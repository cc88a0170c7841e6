//! `kmatrix bench` on a real kernel: the phases of a cold run (`boot
//! --phases`) add up to its wall time, and the bare boot's own kernel boot
//! and module loads come from its console; every streamed case's result
//! reaches the host (`stream`).

use crate::support::{exited, kmatrix};

crate::support::tests! {
    vm boot_phases_add_up_and_the_bare_boot_gives_its_own,
    vm every_streamed_result_arrives_and_the_ratio_is_kept,
}

/// `kmatrix bench ARGS --kernel 6.1 --runs 1 --json FILE` of
/// `tests/bpf/xdp_pass.bpf.c`: its output, once it passed, and the JSON.
fn bench(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut all = vec!["bench"];
    all.extend(args);
    all.extend(["--kernel", "6.1", "--runs", "1", "--json"]);
    all.extend([json.to_str().unwrap(), "tests/bpf/xdp_pass.bpf.c"]);
    let output = kmatrix(&all).output().unwrap();
    let out = exited(&output, 0);
    let doc = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (out, doc)
}

/// The benchmark fails unless each streamed run brings every case's
/// result to the host (and no discarded one does).
fn every_streamed_result_arrives_and_the_ratio_is_kept() {
    let (out, doc) = bench(&["stream", "--cases", "20000"]);
    assert!(out.contains("run 1: streamed "), "{out}");
    assert!(out.contains("run 1: discarded "), "{out}");
    let ratio = doc["ratios"][0]["value"].as_f64().unwrap_or_default();
    assert!(ratio > 0.0, "{doc}");
    assert!(out.contains(&format!("ratio: {ratio:.2}")), "{out}");
}

fn boot_phases_add_up_and_the_bare_boot_gives_its_own() {
    let (out, doc) = bench(&["boot", "--phases"]);
    for line in [
        "kernel: boot to the agent's start",
        "agent: the run (probes, loads, cases)",
        "  loading the programs (loader, verifier, JIT)",
        "  its kernel: boot to its init",
        "  its init: modules loaded",
        "kmatrix's own time beyond the bare boot, each side's kernel boot aside",
    ] {
        assert!(out.contains(line), "no {line:?} in {out}");
    }
    let median = |list: &str, name: &str| {
        doc[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {list}: {doc}"))["median"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} has no median: {doc}"))
    };
    let cold_ms = median("figures", "cold") * 1000.0;
    let bare_ms = median("figures", "bare-boot") * 1000.0;
    // Every phase was measured; those not part of another add up to the
    // cold run (one run: its own wall time).
    let parts = ["input-host", "agent-btf", "agent-loads"];
    let mut sum = 0.0;
    for phase in doc["phases"].as_array().unwrap() {
        let name = phase["name"].as_str().unwrap();
        if name.starts_with("bare-") || name == "own-beyond-bare" {
            continue;
        }
        let value = median("phases", name);
        if !parts.contains(&name) {
            sum += value;
        }
    }
    assert!(
        (sum - cold_ms).abs() < 1.0,
        "phases {sum} ms, cold {cold_ms} ms: {doc}"
    );
    // The program's load is inside the run.
    let (run, loads) = (
        median("phases", "agent-run"),
        median("phases", "agent-loads"),
    );
    assert!(
        loads > 0.0 && loads < run,
        "loads {loads} ms, run {run} ms: {doc}"
    );
    let kernel_boot = median("phases", "kernel-boot");
    let bare_kernel_boot = median("phases", "bare-kernel-boot");
    let bare_modules = median("phases", "bare-modules");
    assert!(
        bare_kernel_boot > 100.0 && bare_kernel_boot + bare_modules < bare_ms,
        "the bare boot's kernel boot {bare_kernel_boot} ms and modules {bare_modules} ms within its {bare_ms} ms: {doc}"
    );
    assert!(bare_modules > 0.0, "{doc}");
    // kmatrix's own time: the cold run's wall time and the bare boot's,
    // each less its kernel's boot.
    let own = median("phases", "own-beyond-bare");
    let expected = (cold_ms - kernel_boot) - (bare_ms - bare_kernel_boot);
    assert!(
        (own - expected).abs() < 0.01,
        "own {own} ms, expected {expected} ms: {doc}"
    );
    // The same kernel boots in about the same time under either init.
    assert!(
        (kernel_boot - bare_kernel_boot).abs() < kernel_boot / 2.0,
        "kernel boot {kernel_boot} ms cold, {bare_kernel_boot} ms bare: {doc}"
    );
}
