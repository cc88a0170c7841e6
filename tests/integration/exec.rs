//! `kmatrix exec` and kmatrix as cargo's runner, with real programs: the
//! probe crate in tests/exec-probe (an aya test binary that attaches XDP to
//! `lo` and reads a map, and two small programs), built here with cargo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kmatrix::report::reproduce::quote;

use crate::support::records::records;
use crate::support::{self, exited, kmatrix, repo, text};

crate::support::tests! {
    vm an_aya_test_binary_runs_in_two_kernels,
    vm cargo_runs_tests_in_the_kernel_through_kmatrix,
    vm a_program_writing_megabytes_arrives_complete,
    vm a_failure_on_one_kernel_names_it,
    vm a_crash_is_a_failure_with_the_signal,
    vm a_background_child_does_not_hold_the_run,
    vm output_before_a_hang_is_not_lost,
    host listing_and_an_empty_filter_boot_nothing,
    vm nextest_runs_each_test_in_the_kernel_and_never_passes_a_failure,
    vm tests_read_their_crate_directory_and_cannot_write_it,
    vm a_script_runs_with_the_host_tools_it_names,
    vm a_script_naming_libtest_options_runs_in_the_kernel,
    vm a_program_named_without_a_slash_is_found_on_the_path,
    vm the_share_keeps_names_as_bytes_and_leaves_out_links_leading_out,
    vm an_exec_failures_reproduce_line_fails_the_same_through_sh,
}

fn probe_manifest() -> PathBuf {
    repo().join("tests/exec-probe/Cargo.toml")
}

fn probe_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("exec-probe")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The probe's programs, built once: name -> executable.
fn probe() -> &'static [(String, PathBuf)] {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let output = cargo()
            .args([
                "build",
                "--locked",
                "--bins",
                "--tests",
                "--message-format=json",
            ])
            .arg("--manifest-path")
            .arg(probe_manifest())
            .arg("--target-dir")
            .arg(probe_target())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "building the probe: {}",
            text(&output)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter_map(|m| {
                let exe = m["executable"].as_str()?;
                Some((m["target"]["name"].as_str()?.to_owned(), PathBuf::from(exe)))
            })
            .collect()
    })
}

fn program(name: &str) -> String {
    let (_, path) = probe()
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", probe()));
    path.display().to_string()
}

fn exec(args: &[&str]) -> Output {
    kmatrix(args).output().unwrap()
}

fn oldest_and_newest() -> String {
    let (oldest, newest) = support::oldest_and_newest_amd64();
    format!("{oldest},{newest}")
}

/// An aya test binary runs in two kernels; its tests are reported per
/// kernel, prefixed lines keep the kernels apart.
fn an_aya_test_binary_runs_in_two_kernels() {
    let kernels = oldest_and_newest();
    let (oldest, newest) = kernels.split_once(',').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("exec.json");
    let junit = dir.path().join("exec.xml");
    let output = exec(&[
        "exec",
        "--kernels",
        &kernels,
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--",
        &program("kernel"),
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    for kernel in [oldest, newest] {
        assert!(
            out.contains(&format!(
                "[{kernel}] test xdp_filter_counts_ssh_syns_on_lo ... ok"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("kmatrix: {kernel}: ok (exit code 0)")),
            "{out}"
        );
    }
    let row = out
        .lines()
        .find(|l| l.starts_with("xdp_filter_counts_ssh_syns_on_lo "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        row.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["pass", "pass"],
        "{out}"
    );

    // Per-test outcomes per kernel in the JSON lines and the JUnit file.
    let records = records(&json);
    let passed: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "outcome" && r["result"]["outcome"] == "passed")
        .map(|r| {
            format!(
                "{}::{}",
                r["kernel"].as_str().unwrap(),
                r["test"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        passed.contains(&format!("{oldest}::xdp_filter_counts_ssh_syns_on_lo")),
        "{passed:?}"
    );
    assert!(
        passed.contains(&format!("{newest}::xdp_filter_counts_ssh_syns_on_lo")),
        "{passed:?}"
    );
    assert_eq!(records.last().unwrap()["type"], "run-finished");
    let suites = junit_parser::from_reader(std::io::BufReader::new(
        std::fs::File::open(&junit).unwrap(),
    ))
    .unwrap();
    assert_eq!(suites.suites.len(), 2);
    assert_eq!((suites.suites[0].tests, suites.suites[0].failures), (2, 0));
}

/// kmatrix as cargo's runner: `cargo test` runs the probe's tests inside
/// the kernel.
fn cargo_runs_tests_in_the_kernel_through_kmatrix() {
    let output = cargo_through_kmatrix(
        &["test", "--locked", "--test", "kernel"],
        &[],
        "qemu-system-x86_64",
    );
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("test xdp_filter_counts_ssh_syns_on_lo ... ok"),
        "{out}"
    );
    assert!(out.contains("kmatrix: 6.1: ok (exit code 0)"), "{out}");
}

/// Megabytes written at once arrive whole, stdout and stderr apart.
fn a_program_writing_megabytes_arrives_complete() {
    let bytes = 4 * 1024 * 1024 + 17;
    let output = exec(&[
        "exec",
        "--kernels",
        "6.1",
        "--",
        &program("chatter"),
        &bytes.to_string(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        output.stdout.len(),
        bytes,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<u8> = (0..bytes).map(|i| b'a' + (i % 26) as u8).collect();
    assert!(
        output.stdout == expected,
        "the bytes arrived out of order or changed"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("chatter: wrote {bytes} bytes"))
    );
}

/// A program that fails on one kernel fails the run, naming that kernel.
fn a_failure_on_one_kernel_names_it() {
    let kernels = oldest_and_newest();
    let (oldest, newest) = kernels.split_once(',').unwrap();
    let output = exec(&[
        "exec",
        "--kernels",
        &kernels,
        "--",
        &program("exit-on"),
        oldest,
    ]);
    let out = exited(&output, 1);
    assert!(
        out.contains(&format!("kmatrix: {oldest}: FAILED: exit code 3")),
        "{out}"
    );
    assert!(
        out.contains(&format!("kmatrix: {newest}: ok (exit code 0)")),
        "{out}"
    );
}

/// A program killed by a signal fails the run, with the signal named.
fn a_crash_is_a_failure_with_the_signal() {
    let output = exec(&["exec", "--kernels", "6.1", "--", &program("crash")]);
    let out = exited(&output, 1);
    assert!(out.contains("crash: aborting"), "{out}");
    assert!(
        out.contains("kmatrix: 6.1: FAILED: killed by signal 6 (SIGABRT)"),
        "{out}"
    );
}

/// A program that leaves a background child holding its stdout ends when
/// it exits: the child is killed with its process group, the exit status
/// and everything printed arrive, and the run does not wait for the run
/// timeout.
fn a_background_child_does_not_hold_the_run() {
    let start = std::time::Instant::now();
    let output = exec(&[
        "exec",
        "--kernels",
        "6.1",
        "--run-timeout",
        "60",
        "--",
        "/bin/sh",
        "-c",
        "(while :; do :; done) & echo started it; exit 3",
    ]);
    let out = exited(&output, 1);
    assert!(out.contains("started it"), "{out}");
    assert!(out.contains("kmatrix: 6.1: FAILED: exit code 3"), "{out}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(40),
        "{:?}",
        start.elapsed()
    );
}

/// A line printed before the program hangs reaches the host before the
/// run timeout ends the kernel.
fn output_before_a_hang_is_not_lost() {
    let output = exec(&[
        "exec",
        "--kernels",
        "6.1",
        "--run-timeout",
        "8",
        "--",
        "/bin/sh",
        "-c",
        "echo before the hang; while :; do :; done",
    ]);
    let out = exited(&output, 1);
    assert!(out.contains("before the hang"), "{out}");
    assert!(out.contains("the agent did not finish within 8s"), "{out}");
}

/// cargo with kmatrix as its runner, the test binaries getting `tail`, and
/// `KMATRIX_QEMU` set to `qemu`.
fn cargo_through_kmatrix(args: &[&str], tail: &[&str], qemu: &str) -> Output {
    cargo_through_kmatrix_on(args, tail, qemu, "")
}

/// As [`cargo_through_kmatrix`], with `KMATRIX_SELECT` set to `select`.
fn cargo_through_kmatrix_on(args: &[&str], tail: &[&str], qemu: &str, select: &str) -> Output {
    probe();
    let runner = format!("{} exec --kernels 6.1 --", env!("CARGO_BIN_EXE_kmatrix"));
    cargo()
        .args(args)
        .arg("--manifest-path")
        .arg(probe_manifest())
        .arg("--target-dir")
        .arg(probe_target())
        .arg("--")
        .args(tail)
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", runner)
        .env("KMATRIX_KERNELS", repo().join("kernels.toml"))
        .env("KMATRIX_QEMU", qemu)
        .env("KMATRIX_SELECT", select)
        .output()
        .unwrap()
}

/// Listing a test binary through the runner, and a filter that leaves no
/// test, boot nothing (QEMU is missing: a boot would fail).
fn listing_and_an_empty_filter_boot_nothing() {
    let output = cargo_through_kmatrix(
        &["test", "--locked", "--test", "kernel"],
        &["--list"],
        "/nonexistent/qemu",
    );
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("xdp_filter_counts_ssh_syns_on_lo: test"),
        "{out}"
    );
    assert!(!out.contains("[6.1]"), "{out}");

    let output = cargo_through_kmatrix(
        &["test", "--locked", "--test", "kernel"],
        &["no_such_test"],
        "/nonexistent/qemu",
    );
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("running 0 tests"), "{out}");

    let binary = program("kernel");
    let output = exec(&[
        "exec",
        "--kernels",
        "6.1",
        "--",
        &binary,
        "--exact",
        "no::such",
    ]);
    let out = exited(&output, 1);
    assert!(
        out.contains("no test in") && out.contains("is named no::such: nothing was booted"),
        "{out}"
    );
}

/// cargo-nextest with kmatrix as the runner: it lists through the runner,
/// then runs each test alone in the kernels (`KMATRIX_SELECT` overriding
/// the runner line's `--kernels`); a failing test fails.
fn nextest_runs_each_test_in_the_kernel_and_never_passes_a_failure() {
    let output = cargo_through_kmatrix_on(
        &[
            "nextest",
            "run",
            "--locked",
            "--no-fail-fast",
            "--test",
            "kernel",
            "--test",
            "failing",
        ],
        &[],
        "qemu-system-x86_64",
        "6.1,7.3",
    );
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("kmatrix: 7.3: FAILED: exit code 101"), "{out}");
    for passed in [
        "kernel xdp_filter_counts_ssh_syns_on_lo",
        "kernel the_guest_has_bpffs_tracefs_and_cgroup2",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains("PASS") && l.contains(passed)),
            "{passed}: {out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.contains("FAIL") && l.contains("failing always_fails")),
        "{out}"
    );
    assert!(out.contains("this test always fails"), "{out}");
}

/// The crate's directory is in the guest without flags, read-only: tests
/// load an object and read a fixture from it, and cannot write there.
fn tests_read_their_crate_directory_and_cannot_write_it() {
    let written = repo().join("tests/exec-probe/data/written-by-a-test");
    let _ = std::fs::remove_file(&written);
    // cargo runs test binaries in the package's directory.
    let output = cargo_through_kmatrix_on(
        &["test", "--locked", "--test", "crate_files"],
        &[],
        "qemu-system-x86_64",
        &oldest_and_newest(),
    );
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    for test in [
        "loads_an_object_from_its_crate_directory",
        "reads_a_fixture_from_its_crate_directory",
        "cannot_write_into_its_crate_directory",
    ] {
        assert_eq!(support::matrix_row(&out, test), ["pass", "pass"], "{out}");
    }
    assert!(!written.exists(), "a test wrote to the host");
}

/// A shell script runs with the host tools it names (sent with their
/// libraries), from a directory the guest shares.
fn a_script_runs_with_the_host_tools_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("run-tests.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\necho \"kernel $(uname -r)\"\nls \"$(dirname \"$0\")\"\nip -o link show lo\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = kmatrix(&["exec", "--kernels", "6.1", "--", script.to_str().unwrap()])
        .current_dir(dir.path())
        .env("KMATRIX_KERNELS", repo().join("kernels.toml"))
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("kernel 6.1.0-"), "{out}");
    assert!(stdout.lines().any(|l| l == "run-tests.sh"), "{out}");
    assert!(stdout.contains("1: lo: <LOOPBACK,UP"), "{out}");
}

/// A script that mentions libtest's options (here in a comment) is no test
/// binary: it is never run on the host to be listed, and runs in the
/// kernel.
fn a_script_naming_libtest_options_runs_in_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran-on-the-host");
    let script = dir.path().join("run.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# RUST_TEST_THREADS --include-ignored\n[ \"$KMATRIX_GUEST\" = 1 ] || touch '{}'\necho 'running 0 tests'\necho \"in $(uname -r)\"\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = kmatrix(&["exec", "--kernels", "6.1", "--", script.to_str().unwrap()])
        .current_dir(dir.path())
        .env("KMATRIX_KERNELS", repo().join("kernels.toml"))
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("in 6.1.0-"),
        "{out}"
    );
    assert!(out.contains("kmatrix: 6.1: ok (exit code 0)"), "{out}");
    assert!(!marker.exists(), "the script ran on the host");
}

/// A program named without a `/` is found on the PATH, as a shell finds
/// it, from any directory: the README's `kmatrix exec -- sh -c 'uname -r'`.
fn a_program_named_without_a_slash_is_found_on_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let output = kmatrix(&[
        "exec",
        "--kernels",
        "6.1",
        "--",
        "sh",
        "-c",
        "echo \"in $(uname -r)\"",
    ])
    .current_dir(dir.path())
    .env("KMATRIX_KERNELS", repo().join("kernels.toml"))
    .output()
    .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("in 6.1.0-"),
        "{out}"
    );

    let output = kmatrix(&["exec", "--kernels", "6.1", "--", "no-such-program-anywhere"])
        .current_dir(dir.path())
        .env("KMATRIX_KERNELS", repo().join("kernels.toml"))
        .output()
        .unwrap();
    let out = exited(&output, 2);
    assert!(
        out.contains("no-such-program-anywhere: no executable of that name on the PATH"),
        "{out}"
    );
}

/// The shared directory reaches the guest byte for byte: two files whose
/// names differ only in bytes that are not UTF-8 stay two, and a symbolic
/// link that leads out of the directory is left out, with a notice.
fn the_share_keeps_names_as_bytes_and_leaves_out_links_leading_out() {
    use std::os::unix::ffi::OsStrExt;
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"n\xff")), "first\n").unwrap();
    std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"n\xfe")), "second\n").unwrap();
    let secret = outer.path().join("secret");
    std::fs::write(&secret, "outside\n").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("outside")).unwrap();
    let output = kmatrix(&[
        "exec",
        "--kernels",
        "6.1",
        "--",
        "sh",
        "-c",
        "cat n*; test -e outside || echo 'no link'",
    ])
    .current_dir(&dir)
    .env("KMATRIX_KERNELS", repo().join("kernels.toml"))
    .output()
    .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("first") && stdout.contains("second"),
        "{out}"
    );
    assert!(stdout.contains("no link"), "{out}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("not sharing symbolic links that lead out of"),
        "{out}"
    );
}

/// Runs `line` (a printed reproduce line, `kmatrix …`) through `sh` from
/// the repository, kmatrix found as a shell would find it.
fn through_sh(line: &str) -> Output {
    let rest = line
        .strip_prefix("kmatrix ")
        .unwrap_or_else(|| panic!("not a kmatrix line: {line}"));
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec \"$KMATRIX\" {rest}"))
        .env("KMATRIX", env!("CARGO_BIN_EXE_kmatrix"))
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove(kmatrix::cargo_test::KERNELS_ENV)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// The commands a run printed after `reproduce: ` (the failure list's,
/// then each kernel's status line's).
fn reproduce_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once("reproduce: ").map(|(_, c)| c.to_owned()))
        .collect()
}

/// A failed libtest test and a program that exited non-zero under `kmatrix
/// exec` each end with a command line which, run through `sh`, fails the
/// same way: the test alone (`NAME --exact`, the run's other options
/// kept), the program as given on that kernel.
fn an_exec_failures_reproduce_line_fails_the_same_through_sh() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("exec.json");
    let failing = program("failing");
    let output = exec(&[
        "exec",
        "--kernels",
        "6.1",
        "--json",
        json.to_str().unwrap(),
        "--",
        &failing,
        "--test-threads",
        "1",
        "always",
    ]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let quoted = quote(&failing);
    let test_line =
        format!("kmatrix exec --kernels 6.1 -- {quoted} --test-threads 1 always_fails --exact");
    let program_line = format!("kmatrix exec --kernels 6.1 -- {quoted} --test-threads 1 always");
    // The status line names the program; the failure list its exit, then
    // the test.
    assert_eq!(
        reproduce_lines(&out),
        [
            program_line.clone(),
            program_line.clone(),
            test_line.clone()
        ],
        "{out}"
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed = records
        .iter()
        .find(|r| r["type"] == "outcome" && r["test"] == "always_fails")
        .unwrap_or_else(|| panic!("no outcome: {records:?}"));
    assert_eq!(failed["reproduce"], test_line.as_str());

    // Run as printed: the one test, failing for the same reason, and the
    // same lines printed again.
    for line in [&test_line, &program_line] {
        let again = through_sh(line);
        let out = text(&again);
        assert_eq!(again.status.code(), Some(1), "{line}: {out}");
        assert!(out.contains("running 1 test"), "{line}: {out}");
        assert!(out.contains("this test always fails"), "{line}: {out}");
        assert!(out.contains("kmatrix: 6.1: FAILED: exit code 101"), "{out}");
        assert!(reproduce_lines(&out).contains(line), "{line}: {out}");
    }

    // A plain program: its line is the program as given, on the kernel.
    let output = exec(&["exec", "--kernels", "6.1", "--", &program("exit-on"), "6.1"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let line = format!(
        "kmatrix exec --kernels 6.1 -- {} 6.1",
        quote(&program("exit-on"))
    );
    assert_eq!(reproduce_lines(&out), std::slice::from_ref(&line), "{out}");
    let again = through_sh(&line);
    let out = text(&again);
    assert_eq!(again.status.code(), Some(1), "{out}");
    assert!(out.contains("kmatrix: 6.1: FAILED: exit code 3"), "{out}");
}
