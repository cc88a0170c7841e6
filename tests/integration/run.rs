//! Runs end to end: real Debian kernels booted in real QEMU, loading real
//! eBPF objects built from `tests/bpf/*.c` with clang; what a user sees,
//! and what a failed, hung or interrupted kernel leaves behind.
//!
//! Kernels are downloaded into the user's cache on first use. Tests that
//! boot VMs take a lock so that at most one matrix runs at a time.

use kmatrix::judge::Outcome;
use kmatrix::kernels::Selection;
use kmatrix::plan::{RunConfig, RunRequest, Tests};
use kmatrix::report::{Cell, Reporter};
use kmatrix::vm::{AccelChoice, VmConfig};

use crate::support::records::{find_outcome, records};
use crate::support::{self, exited, fixture, kmatrix, matrix_row, repo, stray_vms};

crate::support::tests! {
    vm oldest_and_newest_kernels_report_every_program,
    vm cli_prints_live_lines_and_matrix_with_the_right_exit_status,
    vm a_panicking_kernel_fails_with_its_console,
    vm a_hung_boot_times_out_and_leaves_no_qemu,
    vm interrupting_a_run_stops_every_vm,
    vm every_result_before_a_hang_reaches_the_host,
}

/// The fixtures on the oldest and the newest kernel of the shipped matrix,
/// through the library: load outcomes checked one by one. (The example
/// suite runs on the same kernels through `cargo test`: tests/kernels.rs.)
fn oldest_and_newest_kernels_report_every_program() {
    let (oldest, newest) = support::oldest_and_newest_amd64();
    let selection = Selection::List(vec![oldest.clone(), newest.clone()]);

    // Bare objects: the load check only, no expectations.
    let tests = Tests::Suite {
        suite: None,
        loader: None,
        compare_loaders: false,
        only: Vec::new(),
        objects: vec![
            fixture("xdp_pass.bpf.c"),
            fixture("verifier_reject.bpf.c"),
            repo().join("tests/example/loop_sum.bpf.c"),
            repo().join("tests/example/trace_test1.bpf.c"),
        ],
    };
    let request = RunRequest {
        matrix: Some(repo().join("kernels.toml")),
        kernels: selection,
        arch: None,
        shard: None,
        tests,
        offline: false,
        config: RunConfig::new(
            Some(2),
            VmConfig {
                boot_timeout: std::time::Duration::from_secs(120),
                ..VmConfig::new(AccelChoice::Auto)
            },
        ),
    };
    let plan = request.resolve(|_| {}).result.unwrap();
    let mut reporter = Reporter::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(kmatrix::runner::run(&plan, |event| reporter.report(&event)))
        .unwrap();
    let summary = reporter.into_summary();
    let labels: Vec<_> = summary.columns.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, [oldest.as_str(), newest.as_str()]);

    for column in &summary.columns {
        assert!(column.finished && column.failure.is_none(), "{column:#?}");
        assert!(column.agent_errors.is_empty(), "{column:#?}");
    }
    let outcome = |kernel: &str, test: &str| -> Outcome {
        let c = summary
            .columns
            .iter()
            .position(|c| c.label == kernel)
            .unwrap();
        let r = summary.rows.iter().position(|r| r == test).unwrap();
        match summary.cell(c, r) {
            Some(Cell::Done(outcome)) => outcome.clone(),
            other => panic!("{test} on {kernel}: {other:?}"),
        }
    };
    let passed = |o: &Outcome| matches!(o, Outcome::Passed { .. });
    for kernel in [&oldest, &newest] {
        assert!(
            passed(&outcome(kernel, "xdp_pass::load")),
            "xdp_pass on {kernel}"
        );
        assert!(
            passed(&outcome(kernel, "trace_test1::load")),
            "fentry on {kernel}: {:?}",
            outcome(kernel, "trace_test1::load")
        );
        match outcome(kernel, "unchecked_read::load") {
            Outcome::Failed {
                verifier_log: Some(log),
                ..
            } => assert!(log.contains("invalid access to packet"), "{kernel}: {log}"),
            other => panic!("unchecked_read on {kernel} should be rejected: {other:?}"),
        }
    }
    // bpf_loop arrived in 5.17.
    assert!(matches!(
        outcome(&oldest, "xdp_loop_sum::load"),
        Outcome::Failed { .. }
    ));
    assert!(passed(&outcome(&newest, "xdp_loop_sum::load")));
    assert!(!summary.passed());
}

/// What a user sees: a live line per result, the matrix, the verifier log,
/// and an exit status that says whether everything passed.
fn cli_prints_live_lines_and_matrix_with_the_right_exit_status() {
    let failing = kmatrix(&["test", "--kernels", "6.1"])
        .arg(fixture("xdp_pass.bpf.c"))
        .arg(fixture("verifier_reject.bpf.c"))
        .output()
        .unwrap();
    let out = exited(&failing, 1);
    assert!(
        out.contains("     6.1  PASS  xdp_pass::load (xdp,"),
        "{out}"
    );
    assert!(
        out.contains(
            "     6.1  FAIL  unchecked_read::load: verifier: R1 offset is outside of the packet"
        ),
        "{out}"
    );
    assert_eq!(matrix_row(&out, "unchecked_read::load"), ["FAIL"], "{out}");
    assert!(
        out.contains("invalid access to packet, off=20 size=1"),
        "{out}"
    );

    let passing = kmatrix(&["test", "--kernels", "6.1"])
        .arg(fixture("xdp_pass.bpf.c"))
        .output()
        .unwrap();
    let out = exited(&passing, 0);
    assert!(out.contains("no failures: 1 tests on 1 kernels"), "{out}");
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

/// A kernel that panics before its agent ran anything (here: its /init
/// cannot be executed) is a failed kernel with the console's tail, the
/// machinery's failure (exit 3), and leaves no QEMU behind.
fn a_panicking_kernel_fails_with_its_console() {
    let output = kmatrix(&["test", "--kernels", "6.1"])
        // A dynamically linked binary cannot run in the bare initramfs.
        .env(kmatrix::agent::AGENT_ENV, "/bin/true")
        .arg(fixture("xdp_pass.bpf.c"))
        .output()
        .unwrap();
    let out = exited(&output, 3);
    assert!(out.contains("6.1  ERROR the guest stopped before finishing: the kernel panicked: Kernel panic - not syncing"), "{out}");
    assert!(out.contains("console (last lines):"), "{out}");
    assert_eq!(matrix_row(&out, "xdp_pass::load"), ["ERR"], "{out}");
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

/// A kernel that does not reach the agent in time is stopped, and named.
fn a_hung_boot_times_out_and_leaves_no_qemu() {
    // A cold boot: a saved VM would be up well within the second.
    let output = kmatrix(&[
        "test",
        "--kernels",
        "6.1",
        "--boot-timeout",
        "1",
        "--no-snapshot",
    ])
    .arg(fixture("xdp_pass.bpf.c"))
    .output()
    .unwrap();
    let out = exited(&output, 3);
    assert!(
        out.contains("6.1  ERROR the kernel did not start the agent within 1s"),
        "{out}"
    );
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

/// Ctrl-C (what a terminal sends), SIGTERM (what CI sends on cancel) and
/// SIGHUP stop every VM at once, leave no run directory behind, and exit
/// 130, 143 and 129.
fn interrupting_a_run_stops_every_vm() {
    let cache_tmp = std::path::PathBuf::from(
        String::from_utf8(kmatrix(&["kernels", "cache-dir"]).output().unwrap().stdout)
            .unwrap()
            .trim(),
    )
    .join("tmp");
    let run_dirs = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir(&cache_tmp)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .filter(|n| n.to_string_lossy().starts_with("kmatrix-vm-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = run_dirs();
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
        (nix::sys::signal::Signal::SIGHUP, 129),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = kmatrix(&["test", "--kernels", "5.10,6.1"])
            .arg(fixture("xdp_pass.bpf.c"))
            .env("TMPDIR", tmp.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("BOOT") {
            line.clear();
            assert_ne!(
                std::io::BufRead::read_line(&mut stdout, &mut line).unwrap(),
                0
            );
        }
        // The BOOT line comes just before QEMU starts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while stray_vms().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no VM started");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        // QEMU is killed, not asked: give the kernel a moment to reap it.
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(stray_vms().is_empty(), "{signal}: {:?}", stray_vms());
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{signal} left {left:?}");
        let after = run_dirs();
        let new: Vec<_> = after.iter().filter(|d| !before.contains(d)).collect();
        assert!(new.is_empty(), "{signal} left run directories {new:?}");
    }
}

/// Results wait in the agent's queue instead of costing a write each; a
/// guest that hangs mid-suite is stopped and its queue read out of its
/// memory, so every case that ran before the hang has its outcome. The
/// hang: a test run the kernel repeats four billion times.
fn every_result_before_a_hang_reaches_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let packet = "02 00 00 00 00 02 02 00 00 00 00 01 08 00";
    let mut suite = format!(
        "[[object]]\npath = {:?}\n\n[[object.program]]\nname = \"xdp_pass\"\n",
        fixture("xdp_pass.bpf.c")
    );
    for case in 0..40 {
        suite += &format!("\n[[object.program.case]]\nname = \"quick_{case}\"\ninput = \"{packet}\"\nexpect_return = \"XDP_PASS\"\n");
    }
    suite += &format!("\n[[object.program.case]]\nname = \"hangs\"\ninput = \"{packet}\"\nrepeat = 4000000000\nexpect_return = \"XDP_PASS\"\n");
    let path = dir.path().join("kmatrix-suite.toml");
    std::fs::write(&path, suite).unwrap();
    let json = dir.path().join("run.json");
    let output = kmatrix(&["test", "--kernels", "6.1", "--run-timeout", "15", "--suite"])
        .arg(&path)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let out = exited(&output, 1);
    assert!(out.contains("did not finish within 15s"), "{out}");
    let records = records(&json);
    let outcome = |test: &str| {
        find_outcome(&records, test).map(|r| r["result"]["outcome"].as_str().unwrap().to_owned())
    };
    for case in 0..40 {
        let test = format!("xdp_pass::quick_{case}");
        assert_eq!(outcome(&test).as_deref(), Some("passed"), "{test}: {out}");
    }
    assert_ne!(
        outcome("xdp_pass::hangs").as_deref(),
        Some("passed"),
        "{out}"
    );
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}
