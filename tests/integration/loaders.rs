//! Judging the kernel, not the loader: libbpf-style programs on the oldest
//! and newest shipped kernels under the loader their suite names, and what
//! aya cannot express reported as its limitation, never as the kernel's
//! verdict.

use crate::support::{self, exited, fixture, kmatrix, matrix_row, repo, test_suite_on_6_1, text};

crate::support::tests! {
    vm libbpf_style_programs_load_where_the_kernel_allows,
    vm what_aya_cannot_express_is_a_loader_limitation,
    host loader_settings_are_checked_before_booting,
    vm a_suite_sizes_a_map_its_loader_was_to_size,
    vm both_loaders_compared,
    vm a_load_without_co_re_waits_for_no_kernel_btf,
}

fn libbpf_example(name: &str) -> String {
    repo()
        .join("tests/example/libbpf")
        .join(name)
        .display()
        .to_string()
}

/// The libbpf examples: SEC("tc") with a global set by the suite,
/// `.kconfig`, CO-RE, task storage, a ring buffer sized by the suite, and a
/// program array two program types share.
fn libbpf_style_programs_load_where_the_kernel_allows() {
    let (oldest, newest) = support::oldest_and_newest_amd64();
    let output = kmatrix(&[
        "test",
        "--kernels",
        &format!("{oldest},{newest}"),
        "--suite",
        &libbpf_example("kmatrix-suite.toml"),
    ])
    .output()
    .unwrap();
    let out = exited(&output, 0);
    for (test, cells) in [
        // The suite's min_ttl of 65 makes TTL 64 too low.
        ("tc_min_ttl::drops_ttl_64", ["pass", "pass"]),
        ("kernel_at_least_5::reads_the_version", ["pass", "pass"]),
        ("openat_flags::load", ["pass", "pass"]),
        ("count_runs::load", ["xfail", "pass"]),
        ("xdp_report::passes", ["pass", "pass"]),
        ("from_kprobe::load", ["pass", "pass"]),
        ("from_perf_event::load", ["pass", "pass"]),
    ] {
        assert_eq!(matrix_row(&out, test), cells, "{test}: {out}");
    }
}

/// Under aya, a section it does not know and a `.kconfig` extern are its
/// limitations: named, with the loader to try, failing the run but never
/// shown as the kernel's FAIL; the JSON says so too.
fn what_aya_cannot_express_is_a_loader_limitation() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let output = kmatrix(&[
        "test",
        "--kernels",
        "6.1",
        "--loader",
        "aya",
        "--json",
        json.to_str().unwrap(),
    ])
    .arg(libbpf_example("tc_min_ttl.bpf.c"))
    .arg(libbpf_example("kconfig_version.bpf.c"))
    .output()
    .unwrap();
    let out = exited(&output, 1);
    assert_eq!(matrix_row(&out, "tc_min_ttl::load"), ["LIMIT"], "{out}");
    assert_eq!(
        matrix_row(&out, "kernel_at_least_5::load"),
        ["LIMIT"],
        "{out}"
    );
    assert!(
        out.contains("aya cannot load it: error parsing BPF object: invalid program section `tc`; try `loader = \"libbpf\"`"),
        "{out}"
    );
    assert!(out.contains("section `.kconfig`"), "{out}");
    assert!(!out.contains("  FAIL  "), "{out}");
    let records = std::fs::read_to_string(&json).unwrap();
    assert!(
        records.contains(r#""result":{"outcome":"loader-limitation","reason":"aya cannot load it"#),
        "{records}"
    );

    let libbpf = kmatrix(&["test", "--kernels", "6.1", "--loader", "libbpf"])
        .arg(libbpf_example("tc_min_ttl.bpf.c"))
        .arg(libbpf_example("kconfig_version.bpf.c"))
        .output()
        .unwrap();
    assert_eq!(libbpf.status.code(), Some(0), "{}", text(&libbpf));
}

/// Loader settings that do not fit the object are refused before anything
/// boots, pointing at the suite.
fn loader_settings_are_checked_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let tc = libbpf_example("tc_min_ttl.bpf.c");
    let ring = libbpf_example("ringbuf_unsized.bpf.c");
    let stacks = repo().join("tests/bpf/stack_unsized.bpf.c");
    let stacks = stacks.display();
    let cases = [
        (
            format!("[[object]]\npath = \"{tc}\"\nloader = \"bcc\"\n"),
            ":3:10: unknown loader `bcc`; use \"aya\" or \"libbpf\"",
        ),
        (
            format!("[[object]]\npath = \"{tc}\"\nglobals = {{ max_ttl = 1 }}\n"),
            ":3:13: tc_min_ttl.bpf.c has no global `max_ttl`; it has: min_ttl",
        ),
        (
            format!("[[object]]\npath = \"{tc}\"\nglobals = {{ min_ttl = 300 }}\n"),
            "global `min_ttl`: 300 does not fit",
        ),
        (
            format!(
                "[[object]]\npath = \"{ring}\"\nmaps = {{ event = {{ max_entries = 4096 }} }}\n"
            ),
            ":3:10: ringbuf_unsized.bpf.c has no map `event`; it has: events",
        ),
        (
            format!(
                "[[object]]\npath = \"{stacks}\"\nmaps = {{ stacks = {{ value_size = 0 }} }}\n"
            ),
            ":3:10: map `stacks`: value_size must be at least 1",
        ),
        (
            format!("[[object]]\npath = \"{stacks}\"\nmaps = {{ stacks = {{}} }}\n"),
            ":3:10: map `stacks`: give its max_entries, value_size or both",
        ),
    ];
    for (i, (contents, expected)) in cases.iter().enumerate() {
        let suite = dir.path().join(format!("suite{i}.toml"));
        std::fs::write(&suite, contents).unwrap();
        let output = test_suite_on_6_1(&suite);
        let out = exited(&output, 2);
        assert!(out.contains(expected), "expected `{expected}` in\n{out}");
        assert!(!out.contains("BOOT"), "{out}");
    }
}

/// A stack trace map declared without a value size, as bcc's libbpf-tools
/// declare theirs: it loads under either loader once the suite sizes it,
/// and without a value size fails with a hint naming that alone.
fn a_suite_sizes_a_map_its_loader_was_to_size() {
    let dir = tempfile::tempdir().unwrap();
    let object = repo().join("tests/bpf/stack_unsized.bpf.c");
    let suite = |name: &str, sizes: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[[object]]\npath = \"{}\"\nmaps = {{ stacks = {{ {sizes} }} }}\n",
                object.display()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let sized = suite("sized.toml", "max_entries = 1024, value_size = 1016");
    let entries_only = suite("entries.toml", "max_entries = 1024");
    let (oldest, newest) = support::oldest_and_newest_amd64();
    let kernels = format!("{oldest},{newest}");
    for loader in ["aya", "libbpf"] {
        let output = kmatrix(&[
            "test",
            "--kernels",
            &kernels,
            "--loader",
            loader,
            "--suite",
            &sized,
        ])
        .output()
        .unwrap();
        let out = text(&output);
        assert_eq!(output.status.code(), Some(0), "{loader}: {out}");
        assert_eq!(
            matrix_row(&out, "record_stack::load"),
            ["pass", "pass"],
            "{loader}: {out}"
        );

        let output = kmatrix(&[
            "test",
            "--kernels",
            "6.1",
            "--loader",
            loader,
            "--suite",
            &entries_only,
        ])
        .output()
        .unwrap();
        let out = text(&output);
        assert_eq!(output.status.code(), Some(1), "{loader}: {out}");
        assert_eq!(
            matrix_row(&out, "record_stack::load"),
            ["FAIL"],
            "{loader}: {out}"
        );
        assert!(
            out.contains("(map `stacks` is declared with value_size 0, for its loader to size at run time: give it in the suite, `maps = { stacks = { value_size = BYTES } }`)"),
            "{loader}: {out}"
        );
        assert!(!out.contains("max_entries 0"), "{loader}: {out}");
        assert!(!out.contains("max_entries = N"), "{loader}: {out}");
    }
}

/// `--loader both` loads every program with both loaders: each loader's
/// verdict is a load test of its own, judged like the load test of one
/// loader, beside whether the two agree. libbpf's verdict on a static
/// program is decided on the host.
fn both_loaders_compared() {
    let output = kmatrix(&["test", "--kernels", "6.1", "--loader", "both"])
        .arg(repo().join("tests/bpf/verifier_reject.bpf.c"))
        .arg(repo().join("tests/bpf/xdp_pass.bpf.c"))
        .arg(repo().join("tests/bpf/static_pass.bpf.c"))
        .arg(libbpf_example("tc_min_ttl.bpf.c"))
        .output()
        .unwrap();
    let out = exited(&output, 1);
    for (test, cell) in [
        ("xdp_pass::load[aya]", "pass"),
        ("xdp_pass::load[libbpf]", "pass"),
        ("xdp_pass::loaders-agree", "pass"),
        ("unchecked_read::load[aya]", "FAIL"),
        ("unchecked_read::load[libbpf]", "FAIL"),
        ("unchecked_read::loaders-agree", "pass"),
        ("static_pass::load[aya]", "pass"),
        ("static_pass::load[libbpf]", "LIMIT"),
        ("static_pass::loaders-agree", "LIMIT"),
        ("tc_min_ttl::load[aya]", "LIMIT"),
        ("tc_min_ttl::load[libbpf]", "pass"),
        ("tc_min_ttl::loaders-agree", "LIMIT"),
    ] {
        assert_eq!(matrix_row(&out, test), [cell], "{test}: {out}");
    }
    assert!(matrix_row(&out, "xdp_pass::load").is_empty(), "{out}");
    assert!(
        out.contains("aya: cannot load it: error parsing BPF object: invalid program section `tc`; libbpf: loaded it"),
        "{out}"
    );
    assert!(
        out.contains("libbpf cannot load it: it is a static program"),
        "{out}"
    );
}

/// aya's loader is made without the kernel's BTF, and given it only where a
/// load needs it: an XDP program without CO-RE relocations, loaded cold,
/// waits for none of it (its parse, begun at boot, uses idle time only).
/// The CO-RE side is `judged`'s sibling test: its relocation failure shows
/// the kernel's BTF was given.
fn a_load_without_co_re_waits_for_no_kernel_btf() {
    let dir = tempfile::tempdir().unwrap();
    let timings = dir.path().join("timings.json");
    let output = kmatrix(&[
        "test",
        "--kernels",
        "6.1",
        "--no-snapshot",
        "--loader",
        "aya",
    ])
    .arg("--timings")
    .arg(&timings)
    .arg(fixture("xdp_pass.bpf.c"))
    .output()
    .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(matrix_row(&out, "xdp_pass::load"), ["pass"], "{out}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&timings).unwrap()).unwrap();
    let agent = &json["kernels"][0]["timings"]["vm"]["agent"];
    assert!(agent.is_object(), "the agent sent its timings: {json}");
    assert_eq!(agent["btf_us"], 0, "{agent}");
}
