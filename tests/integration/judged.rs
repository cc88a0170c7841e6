//! Green means judged: every program of an object gets a verdict (static
//! ones, and each on its own under aya), what the kernel logs goes with the
//! test that made it log, and a kernel splat fails that test.
//!
//! No shipped kernel can be made to WARN from BPF on purpose, so the splat
//! tests use a stand-in for the mechanics: a program under `kmatrix exec`
//! writes a `WARNING:` line to `/dev/kmsg`, which the agent reads as it
//! reads any kernel splat. The kernel line that goes with a load is real:
//! the warning the kernel logs when it verifies a program calling
//! `bpf_probe_write_user`.

use std::path::Path;

use crate::support::records::{outcome, records};
use crate::support::{self, example, exited, fixture, kmatrix, matrix_row, text, SSH_SYN};

crate::support::tests! {
    vm static_programs_are_judged_under_aya_and_named_under_libbpf,
    vm a_program_s_aya_verdict_does_not_depend_on_its_siblings,
    vm a_kernel_line_goes_with_the_load_that_made_it,
    vm a_splat_fails_the_test_that_caused_it,
    vm a_splat_outside_any_test_fails_the_kernel,
    vm a_failures_reproduce_command_runs_that_test_alone_and_fails_the_same,
}

/// The commands of the `reproduce:` lines on `output`'s stdout.
fn reproduce_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("reproduce: "))
        .map(str::to_owned)
        .collect()
}

fn suite(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("kmatrix-suite.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Static entry programs are programs: aya loads them, and each has the
/// kernel's verdict; under libbpf, which refuses them, they are its
/// limitation naming "static", while the global sibling is still judged.
fn static_programs_are_judged_under_aya_and_named_under_libbpf() {
    let dir = tempfile::tempdir().unwrap();
    let object = fixture("static_progs.bpf.c");
    let suite = suite(
        dir.path(),
        &format!(
            "[[object]]\npath = {object:?}\n\n[[object.program]]\nname = \"xdp_static_unchecked\"\nmax_kernel = \"3.0\"\nreason = \"it reads past the packet without a bounds check\"\n"
        ),
    );
    let run = |loader: &str| {
        kmatrix(&[
            "test",
            "--kernels",
            "6.1",
            "--loader",
            loader,
            "--suite",
            suite.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    };
    let output = run("aya");
    let out = exited(&output, 0);
    for (test, cell) in [
        ("xdp_static_pass::load", "pass"),
        ("xdp_static_unchecked::load", "xfail"),
        ("xdp_global_entry::load", "pass"),
    ] {
        assert_eq!(matrix_row(&out, test), [cell], "{test}: {out}");
    }
    assert!(out.contains("R1 offset is outside of the packet"), "{out}");

    let output = run("libbpf");
    let out = exited(&output, 1);
    assert_eq!(
        matrix_row(&out, "xdp_global_entry::load"),
        ["pass"],
        "{out}"
    );
    for test in ["xdp_static_pass::load", "xdp_static_unchecked::load"] {
        assert_eq!(matrix_row(&out, test), ["LIMIT"], "{test}: {out}");
    }
    assert!(
        out.contains("libbpf cannot load it: it is a static program"),
        "{out}"
    );
}

/// A sibling aya cannot relocate (CO-RE into a flexible array) is its own
/// limitation; the program beside it loads, and the limitation names only
/// the section it comes from.
fn a_program_s_aya_verdict_does_not_depend_on_its_siblings() {
    let output = kmatrix(&["test", "--kernels", "6.1", "--loader", "aya"])
        .arg(fixture("flex_siblings.bpf.c"))
        .output()
        .unwrap();
    let out = exited(&output, 1);
    assert_eq!(matrix_row(&out, "mount_exit::load"), ["pass"], "{out}");
    assert_eq!(matrix_row(&out, "mount_entry::load"), ["LIMIT"], "{out}");
    let limitation = out
        .lines()
        .find(|l| l.contains("LIMIT") && l.contains("mount_entry::load:"))
        .unwrap();
    assert!(
        limitation.contains("sys_enter_mount") && !limitation.contains("sys_exit_mount"),
        "{limitation}"
    );
}

/// What the kernel logs while it verifies a program goes with that
/// program's load test (here failed on purpose, so that it carries the
/// log), and not with its sibling's.
fn a_kernel_line_goes_with_the_load_that_made_it() {
    let (oldest, _) = support::oldest_and_newest_amd64();
    let dir = tempfile::tempdir().unwrap();
    let object = fixture("probe_write_user.bpf.c");
    let suite = suite(
        dir.path(),
        &format!(
            "[[object]]\npath = {object:?}\n\n[[object.program]]\nname = \"writes_user\"\nmax_kernel = \"3.0\"\nreason = \"a failure on purpose, to carry the kernel's log\"\n"
        ),
    );
    let json = dir.path().join("run.json");
    let output = kmatrix(&[
        "test",
        "--kernels",
        &oldest,
        "--suite",
        suite.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let out = exited(&output, 1);
    let records = records(&json);
    let failed = &outcome(&records, "writes_user::load")["result"];
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(
        failed["kernel_log"].as_str().is_some_and(
            |log| log.contains("is installing a program with bpf_probe_write_user helper")
        ),
        "{failed}"
    );
    let quiet = &outcome(&records, "quiet::load")["result"];
    assert_eq!(quiet["outcome"], "passed", "{quiet}");
    assert!(out.contains("kernel log:"), "{out}");
}

/// A script that prints libtest's lines and, during its second test,
/// writes a kernel WARNING to `/dev/kmsg`.
const WARNS_IN_A_TEST: &str = "echo 'running 2 tests'
printf 'test quiet ... '; echo ok
printf 'test warns ... '
echo '<4>------------[ cut here ]------------' > /dev/kmsg
echo '<4>WARNING: CPU: 0 PID: 1 at kmatrix/stand-in.c:1 stand_in+0x0/0x10' > /dev/kmsg
echo '<4>Call Trace:' > /dev/kmsg
sleep 0.3; echo ok
echo 'test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out'
";

/// A splat during a test fails that test, though the test passed and the
/// program exited 0: its lines are in the JSON, the JUnit file and the
/// Markdown summary; the other test passes.
fn a_splat_fails_the_test_that_caused_it() {
    let dir = tempfile::tempdir().unwrap();
    let (json, junit, summary) = (
        dir.path().join("run.json"),
        dir.path().join("junit.xml"),
        dir.path().join("summary.md"),
    );
    let output = kmatrix(&[
        "exec",
        "--kernels",
        "6.1",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--summary",
        summary.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        WARNS_IN_A_TEST,
    ])
    .output()
    .unwrap();
    let out = exited(&output, 1);
    assert!(
        out.contains("kmatrix: 6.1: FAILED: exit code 0, but warns failed"),
        "{out}"
    );
    let records = records(&json);
    assert_eq!(outcome(&records, "quiet")["result"]["outcome"], "passed");
    let warns = &outcome(&records, "warns")["result"];
    assert_eq!(
        warns["reason"],
        "the kernel printed a splat: WARNING: CPU: 0 PID: 1 at kmatrix/stand-in.c:1 stand_in+0x0/0x10",
        "{warns}"
    );
    let log = warns["kernel_log"].as_str().unwrap();
    assert!(
        log.starts_with("------------[ cut here ]------------\nWARNING: CPU: 0"),
        "{log}"
    );
    assert!(log.contains("Call Trace:"), "{log}");
    for (file, path) in [("JUnit", &junit), ("summary", &summary)] {
        let written = std::fs::read_to_string(path).unwrap();
        assert!(
            written.contains("WARNING: CPU: 0 PID: 1 at kmatrix/stand-in.c:1"),
            "{file}: {written}"
        );
    }
}

/// A splat outside any test fails the kernel's column, with its lines.
fn a_splat_outside_any_test_fails_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let output = kmatrix(&[
        "exec",
        "--kernels",
        "6.1",
        "--json",
        json.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "echo '<3>BUG: kernel NULL pointer dereference, address: 0000000000000008' > /dev/kmsg; sleep 0.3",
    ])
    .output()
    .unwrap();
    let out = exited(&output, 1);
    assert!(
        out.contains("kmatrix: 6.1: FAILED: the kernel printed a splat outside any test: BUG: kernel NULL pointer dereference"),
        "{out}"
    );
    let records = records(&json);
    let splat = records
        .iter()
        .find(|r| r["type"] == "splat")
        .unwrap_or_else(|| panic!("no splat record: {records:?}"));
    assert_eq!(splat["kernel"], "6.1");
    assert_eq!(splat["source"], "kmsg");
}

/// The command line a failure ends with reproduces exactly that failure:
/// run as printed, it runs that one test on that kernel, which fails for
/// the same reason; `--only-failed` with the first run's file alone does
/// the same.
fn a_failures_reproduce_command_runs_that_test_alone_and_fails_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let xdp = example("xdp_filter.bpf.c");
    let suite = suite(
        dir.path(),
        &format!(
            "[[object]]\npath = {xdp:?}\n\n[[object.program]]\nname = \"xdp_filter\"\n\n\
             [[object.program.case]]\nname = \"drops_ssh\"\ninput = \"{SSH_SYN}\"\nexpect_return = \"XDP_DROP\"\n\n\
             [[object.program.case]]\nname = \"wrong_verdict\"\ninput = \"{SSH_SYN}\"\nexpect_return = \"XDP_PASS\"\n"
        ),
    );
    let json = dir.path().join("run.json");
    let output = kmatrix(&[
        "test",
        "--kernels",
        "6.1",
        "--suite",
        suite.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        fixture("xdp_pass.bpf.c").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let out = exited(&output, 1);
    assert_eq!(matrix_row(&out, "xdp_filter::drops_ssh"), ["pass"], "{out}");
    assert_eq!(
        matrix_row(&out, "xdp_filter::wrong_verdict"),
        ["FAIL"],
        "{out}"
    );
    let reason = "return value: expected XDP_PASS (2), got XDP_DROP (1)";
    assert!(
        out.contains(&format!("xdp_filter::wrong_verdict on 6.1: {reason}")),
        "{out}"
    );

    // One failure, one reproduce line, the same as the JSON outcome's.
    let lines = reproduce_lines(&output);
    assert_eq!(lines.len(), 1, "{out}");
    let command = lines[0].as_str();
    assert!(
        command.starts_with("kmatrix test --kernels 6.1 --suite ")
            && command.contains(" --only xdp_filter::wrong_verdict "),
        "{command}"
    );
    let records = records(&json);
    assert_eq!(
        outcome(&records, "xdp_filter::wrong_verdict")["reproduce"],
        command
    );

    // Run as printed (kmatrix itself found as a shell would find it).
    let rest = command.strip_prefix("kmatrix ").unwrap();
    let again = |command_line: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$KMATRIX\" {command_line}"))
            .env("KMATRIX", env!("CARGO_BIN_EXE_kmatrix"))
            .env_remove("GITHUB_STEP_SUMMARY")
            .current_dir(support::repo())
            .output()
            .unwrap()
    };
    // `--only-failed` alone takes the kernels, the tests, the suite and
    // the objects from the file.
    let only_failed = format!("test --only-failed {}", json.to_str().unwrap());
    for line in [rest, only_failed.as_str()] {
        let output = again(line);
        let out = text(&output);
        assert_eq!(output.status.code(), Some(1), "{line}: {out}");
        assert_eq!(
            matrix_row(&out, "xdp_filter::wrong_verdict"),
            ["FAIL"],
            "{out}"
        );
        for other in [
            "xdp_filter::drops_ssh",
            "xdp_filter::load",
            "xdp_pass::load",
        ] {
            assert!(matrix_row(&out, other).is_empty(), "{other} ran: {out}");
        }
        assert!(
            out.contains(&format!("xdp_filter::wrong_verdict on 6.1: {reason}")),
            "{out}"
        );
        let reproduced = reproduce_lines(&output);
        assert_eq!(reproduced, [command], "{out}");
    }

    // A name the suite does not have is bad input, before any kernel.
    let output = again(&format!(
        "test --kernels 6.1 --suite {} --only xdp_filter::wrong_verdic",
        suite.to_str().unwrap()
    ));
    let out = exited(&output, 2);
    assert!(
        out.contains("near names: xdp_filter::wrong_verdict"),
        "{out}"
    );
}
