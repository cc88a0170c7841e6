//! End-to-end tests: real Debian kernels booted in real QEMU, loading real
//! eBPF objects built from `tests/bpf/*.c` with clang.
//!
//! Kernels are downloaded into the user's cache on first use. Tests that
//! boot VMs take a lock so that at most one matrix runs at a time (the
//! machines have two cores; each matrix runs two VMs).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kmatrix::agent::Init;
use kmatrix::image::ImageParts;
use kmatrix::kernels::{Matrix, Selection};
use kmatrix::report::{Cell, Summary};
use kmatrix::runner::{self, RunConfig};
use kmatrix::suite::{Outcome, Suite};
use kmatrix::vm::{AccelChoice, VmConfig};
use sha2::{Digest, Sha256};
use support::{boot_lock, kmatrix, repo, text, Server};

mod support;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/bpf").join(name)
}

/// The cells of the matrix row for `program`.
fn matrix_row<'a>(out: &'a str, program: &str) -> Vec<&'a str> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&program) && words.len() > 1)
        .map(|words| words[1..].to_vec())
        .unwrap_or_default()
}

fn stray_vms() -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", "kmatrix-vm-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("qemu"))
        .map(str::to_owned)
        .collect()
}

/// The fixtures on the oldest and the newest kernel of the shipped matrix,
/// through the library: load outcomes checked one by one. (The example
/// suite runs on the same kernels through `cargo test`: tests/kernels.rs.)
#[test]
fn oldest_and_newest_kernels_report_every_program() {
    let _lock = boot_lock();
    let matrix = Matrix::load(&repo().join("kernels.toml")).unwrap();
    let oldest = matrix.kernels.first().unwrap().label.clone();
    let newest = matrix.kernels.last().unwrap().label.clone();
    let selection = Selection::List(vec![oldest.clone(), newest.clone()]);
    let kernels = selection.apply(&matrix.kernels).unwrap();

    let scratch = tempfile::tempdir().unwrap();
    // Bare objects: the load check only, no expectations.
    let fixtures = vec![
        fixture("xdp_pass.bpf.c"),
        fixture("verifier_reject.bpf.c"),
        repo().join("tests/example/loop_sum.bpf.c"),
        repo().join("tests/example/trace_test1.bpf.c"),
    ];
    let objects = kmatrix::objects::load(&fixtures, scratch.path()).unwrap();
    let suite = Arc::new(Suite::from_objects(objects));
    let parts = Arc::new(ImageParts::new(Init::Agent, &suite.objects).unwrap());
    let fetcher = Arc::new(kmatrix::cli::fetcher(&matrix, false).unwrap());
    let config = RunConfig {
        jobs: 2,
        vm: VmConfig {
            qemu: VmConfig::default_qemu(),
            accel: AccelChoice::Auto.resolve(),
            memory_mib: 512,
            boot_timeout: std::time::Duration::from_secs(120),
            run_timeout: std::time::Duration::from_secs(300),
        },
        report_cases: true,
        exec: None,
    };
    let selected: Vec<_> = kernels.iter().map(|k| (*k).clone()).collect();
    let mut summary = Summary::new(&kernels, &suite);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(runner::run(
        &selected,
        suite.clone(),
        parts,
        fetcher,
        &config,
        |event| summary.record(&event),
    ));

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
#[test]
fn cli_prints_live_lines_and_matrix_with_the_right_exit_status() {
    let _lock = boot_lock();
    let failing = kmatrix(&["test", "--kernels", "6.1"])
        .arg(fixture("xdp_pass.bpf.c"))
        .arg(fixture("verifier_reject.bpf.c"))
        .output()
        .unwrap();
    let out = text(&failing);
    assert_eq!(failing.status.code(), Some(1), "{out}");
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
    let out = text(&passing);
    assert_eq!(passing.status.code(), Some(0), "{out}");
    assert!(out.contains("no failures: 1 tests on 1 kernels"), "{out}");
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

/// A kernel that panics (here: its /init cannot be executed) is a failed
/// kernel with the console's tail, and leaves no QEMU behind.
#[test]
fn a_panicking_kernel_fails_with_its_console() {
    let _lock = boot_lock();
    let output = kmatrix(&["test", "--kernels", "6.1"])
        // A dynamically linked binary cannot run in the bare initramfs.
        .env(kmatrix::agent::AGENT_ENV, "/bin/true")
        .arg(fixture("xdp_pass.bpf.c"))
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("6.1  ERROR the guest stopped before finishing: the kernel panicked: Kernel panic - not syncing"), "{out}");
    assert!(out.contains("console (last lines):"), "{out}");
    assert_eq!(matrix_row(&out, "xdp_pass::load"), ["ERR"], "{out}");
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

fn example(name: &str) -> String {
    repo()
        .join("tests/example")
        .join(name)
        .display()
        .to_string()
}

/// `kmatrix test --kernels 6.1 --suite <suite>`.
fn test_suite_on_6_1(suite: &Path) -> std::process::Output {
    kmatrix(&[
        "test",
        "--kernels",
        "6.1",
        "--suite",
        suite.to_str().unwrap(),
    ])
    .output()
    .unwrap()
}

const SSH_SYN: &str = "02000000000202000000000108004500002800004000400600000a0000010a00000230390016000000000000000050020fff00000000";

/// Wrong expectations fail with expected against actual: a return value, a
/// counter, and a load expectation the kernel has outgrown.
#[test]
fn wrong_expectations_fail_with_expected_and_actual() {
    let _lock = boot_lock();
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("wrong.toml");
    std::fs::write(
        &suite,
        format!(
            r#"
[[object]]
path = "{xdp}"
[[object.program]]
name = "xdp_filter"
[[object.program.case]]
name = "wrong_verdict"
input = "{SSH_SYN}"
expect_return = "XDP_PASS"
[[object.program.case]]
name = "wrong_counter"
input = "{SSH_SYN}"
repeat = 3
before = [{{ map = "drops", key = 0, value = 0 }}]
after = [{{ map = "drops", key = 0, value = 2 }}]

[[object]]
path = "{tc}"
[[object.program]]
name = "tc_drop_expired"
max_kernel = "5.4"
reason = "pretend it needs an old kernel"
"#,
            xdp = example("xdp_filter.bpf.c"),
            tc = example("tc_ttl.bpf.c"),
        ),
    )
    .unwrap();
    let output = test_suite_on_6_1(&suite);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("6.1  FAIL  xdp_filter::wrong_verdict: return value: expected XDP_PASS (2), got XDP_DROP (1)"),
        "{out}"
    );
    assert!(
        out.contains("6.1  FAIL  xdp_filter::wrong_counter: map `drops`[0]: expected 2, got 3"),
        "{out}"
    );
    assert!(
        out.contains("6.1  FAIL  tc_drop_expired::load: unexpectedly loaded: the suite expects it to load only on ..5.4 (pretend it needs an old kernel)"),
        "{out}"
    );
    assert_eq!(matrix_row(&out, "xdp_filter::load"), ["pass"], "{out}");
    assert_eq!(
        matrix_row(&out, "xdp_filter::wrong_counter"),
        ["FAIL"],
        "{out}"
    );
}

/// A suite that names what is not there is refused before anything boots.
#[test]
fn bad_suites_are_refused_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let xdp = example("xdp_filter.bpf.c");
    let trace = example("trace_test1.bpf.c");
    let kprobe = fixture("kprobe_open.bpf.c").display().to_string();
    let cases = [
        (
            "[[object]]\npath = \"x.bpf.c\"\n[[object.program]]\nname = 1\n".to_owned(),
            ":4:8: invalid type: integer `1`, expected a string".to_owned(),
        ),
        (
            format!("[[object]]\npath = \"{xdp}\"\n[[object.program]]\nname = \"xdp_filtre\"\n"),
            "program xdp_filtre: the object has no such program; it has: xdp_filter".to_owned(),
        ),
        (
            format!("[[object]]\npath = \"{xdp}\"\n[[object.program]]\nname = \"xdp_filter\"\n[[object.program.case]]\nname = \"c\"\ninput = \"{SSH_SYN}\"\nafter = [{{ map = \"dorps\", key = 0, value = 1 }}]\n"),
            "program xdp_filter, case c: the object has no map `dorps`; it has: drops".to_owned(),
        ),
        (
            format!("[[object]]\npath = \"{trace}\"\n[[object.program]]\nname = \"trace_test1\"\n[[object.program.case]]\nname = \"c\"\ninput = \"{SSH_SYN}\"\n"),
            "case c: Tracing programs run on no packet: drop `input`".to_owned(),
        ),
        (
            format!("[[object]]\npath = \"{kprobe}\"\n[[object.program]]\nname = \"kprobe_open\"\n[[object.program.case]]\nname = \"c\"\n"),
            "case c: BPF_PROG_TEST_RUN cannot run a kprobe program".to_owned(),
        ),
        (
            format!("[[object]]\npath = \"{xdp}\"\n[[object.program]]\nname = \"xdp_filter\"\n[[object.program.case]]\nname = \"c\"\ninput_file = \"missing.bin\"\n"),
            "case c: input_file ".to_owned(),
        ),
    ];
    for (i, (contents, expected)) in cases.iter().enumerate() {
        let suite = dir.path().join(format!("suite{i}.toml"));
        std::fs::write(&suite, contents).unwrap();
        let output = test_suite_on_6_1(&suite);
        let out = text(&output);
        assert_eq!(output.status.code(), Some(2), "{out}");
        assert!(
            out.contains(expected.as_str()),
            "expected `{expected}` in\n{out}"
        );
        assert!(!out.contains("BOOT"), "{out}");
    }
}

/// A kernel that does not reach the agent in time is stopped, and named.
#[test]
fn a_hung_boot_times_out_and_leaves_no_qemu() {
    let _lock = boot_lock();
    let output = kmatrix(&["test", "--kernels", "6.1", "--boot-timeout", "1"])
        .arg(fixture("xdp_pass.bpf.c"))
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("6.1  ERROR the kernel did not start the agent within 1s"),
        "{out}"
    );
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

/// Ctrl-C stops every VM at once.
#[test]
fn interrupting_a_run_stops_every_vm() {
    let _lock = boot_lock();
    let mut child = kmatrix(&["test", "--kernels", "5.10,6.1"])
        .arg(fixture("xdp_pass.bpf.c"))
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
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // QEMU is killed, not asked: give the kernel a moment to reap it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}

/// Bad input is refused before anything boots, with a message naming it.
#[test]
fn bad_input_gets_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let not_elf = scratch.path().join("notes.o");
    std::fs::write(&not_elf, "not an object").unwrap();
    let broken = scratch.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[[kernel]]\nlabel = \"6.1\"\ndebian = { suite = \"bookworm\" package = \"x\" }\n",
    )
    .unwrap();
    let xdp = fixture("xdp_pass.bpf.c");
    let xdp = xdp.to_str().unwrap();

    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["test", "--kernels", "6.1", "/nonexistent/probe.bpf.o"],
            "error: cannot read /nonexistent/probe.bpf.o: No such file or directory".into(),
        ),
        (
            vec!["test", "--kernels", "6.1", not_elf.to_str().unwrap()],
            format!(
                "error: {} is not an eBPF object: not an ELF file",
                not_elf.display()
            ),
        ),
        (
            vec!["test", "--kernels", "4.19", xdp],
            "error: no kernel `4.19` in the matrix; it has: 5.10 (5.10.0), 6.1 (6.1.0)".into(),
        ),
        (
            vec!["test", "--kernels", "3.0..4.4", xdp],
            "error: `3.0..4.4` selects no kernel; the matrix has: 5.10".into(),
        ),
        (
            vec!["--matrix", broken.to_str().unwrap(), "test", xdp],
            format!("error: {}:3:", broken.display()),
        ),
    ];
    for (args, expected) in cases {
        let output = kmatrix(&args).output().unwrap();
        let out = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {out}");
        assert!(
            out.contains(&expected),
            "{args:?}: expected `{expected}` in\n{out}"
        );
    }
}

fn packages_xz(entries: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut text = String::new();
    for (package, filename, data) in entries {
        text += &format!(
            "Package: {package}\nFilename: {filename}\nSize: {}\nSHA256: {}\n\n",
            data.len(),
            hex::encode(Sha256::digest(data))
        );
    }
    let mut xz = Vec::new();
    xz2::read::XzEncoder::new(text.as_bytes(), 1)
        .read_to_end(&mut xz)
        .unwrap();
    xz
}

fn matrix_file(dir: &Path, package: &str, pin: &[u8]) -> PathBuf {
    let path = dir.join("kernels.toml");
    std::fs::write(
        &path,
        format!(
            "[[kernel]]\nlabel = \"6.1\"\ndebian = {{ suite = \"test\", package = \"{package}\" }}\n[kernel.sha256]\n\"{package}\" = \"{}\"\n",
            hex::encode(pin)
        ),
    )
    .unwrap();
    path
}

fn cache_entries(cache: &Path) -> usize {
    ["blobs/sha256", "kernels", "tmp"]
        .iter()
        .map(|d| std::fs::read_dir(cache.join(d)).map_or(0, |e| e.count()))
        .sum()
}

/// A download that does not match its pin is discarded, named with both
/// digests, and leaves the cache as it was.
#[test]
fn a_corrupt_download_is_caught_by_the_pin_and_not_cached() {
    let package = "linux-image-6.1.0-99-cloud-amd64";
    let good = b"the kernel package the pin was taken from".to_vec();
    let mut corrupt = good.clone();
    corrupt[0] ^= 1;
    // The index agrees with the pin; the file served is one byte off.
    let index = packages_xz(&[(package, "pool/k.deb", &good)]);
    let mirror = Server::start(BTreeMap::from([
        (
            "/debian/dists/test/main/binary-amd64/Packages.xz".to_owned(),
            index,
        ),
        ("/debian/pool/k.deb".to_owned(), corrupt.clone()),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), package, &Sha256::digest(&good));
    let cache = dir.path().join("cache");

    let output = kmatrix(&["--matrix", matrix.to_str().unwrap(), "kernels", "fetch"])
        .env("KMATRIX_CACHE_DIR", &cache)
        .env("KMATRIX_DEBIAN_MIRROR", format!("{}/debian", mirror.url))
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    let expected = format!(
        "has sha256 {}, but kernels.toml pins {}; the download was discarded",
        hex::encode(Sha256::digest(&corrupt)),
        hex::encode(Sha256::digest(&good))
    );
    assert!(out.contains(&expected), "{out}");
    assert_eq!(cache_entries(&cache), 0, "the cache must be left clean");
}

/// A pinned package the mirror no longer has is named, with the fix.
#[test]
fn a_vanished_package_points_to_the_update_command() {
    let index = packages_xz(&[("linux-image-6.1.0-100-cloud-amd64", "pool/new.deb", b"new")]);
    let mirror = Server::start(BTreeMap::from([(
        "/debian/dists/test/main/binary-amd64/Packages.xz".to_owned(),
        index,
    )]));
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), "linux-image-6.1.0-99-cloud-amd64", &[7; 32]);
    let output = kmatrix(&["--matrix", matrix.to_str().unwrap(), "kernels", "fetch"])
        .env("KMATRIX_CACHE_DIR", dir.path().join("cache"))
        .env("KMATRIX_DEBIAN_MIRROR", format!("{}/debian", mirror.url))
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(
        out.contains("package `linux-image-6.1.0-99-cloud-amd64` is not in `test`")
            && out.contains("Debian drops superseded kernels")
            && out.contains("run `kmatrix kernels update --kernels 6.1`"),
        "{out}"
    );
}

/// A loopback mirror serving the shipped 6.1 kernel package (taken from the
/// user's cache, fetched there first if need be); with its name and pin.
fn serve_the_6_1_package() -> (Server, String, [u8; 32]) {
    let matrix = Matrix::load(&repo().join("kernels.toml")).unwrap();
    let entry = matrix.kernels.iter().find(|k| k.label == "6.1").unwrap();
    let (package, pin) = entry.sha256.iter().next().unwrap();
    let fetched = kmatrix(&["kernels", "fetch", "--kernels", "6.1"])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched));
    let user_cache = PathBuf::from(
        String::from_utf8(kmatrix(&["kernels", "cache-dir"]).output().unwrap().stdout)
            .unwrap()
            .trim(),
    );
    let deb = std::fs::read(user_cache.join("blobs/sha256").join(hex::encode(pin))).unwrap();
    let mirror = Server::start(BTreeMap::from([
        (
            "/debian/dists/test/main/binary-amd64/Packages.xz".to_owned(),
            packages_xz(&[(package, "pool/k.deb", &deb)]),
        ),
        ("/debian/pool/k.deb".to_owned(), deb),
    ]));
    (mirror, package.clone(), *pin)
}

/// Two kmatrix processes filling one cache at once both succeed and leave
/// one whole entry of each kind.
#[test]
fn two_processes_share_a_cache() {
    let (mirror, package, pin) = serve_the_6_1_package();
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), &package, &pin);
    let cache = dir.path().join("cache");
    let spawn = || {
        kmatrix(&["--matrix", matrix.to_str().unwrap(), "kernels", "fetch"])
            .env("KMATRIX_CACHE_DIR", &cache)
            .env("KMATRIX_DEBIAN_MIRROR", format!("{}/debian", mirror.url))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
    let count = |d: &str| std::fs::read_dir(cache.join(d)).unwrap().count();
    assert_eq!(
        (count("blobs/sha256"), count("kernels"), count("tmp")),
        (1, 1, 0)
    );
    let again = kmatrix(&["--matrix", matrix.to_str().unwrap(), "kernels", "list"])
        .env("KMATRIX_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(text(&again).contains(" yes "), "{}", text(&again));
}

/// A real kernel package served from a mirror is verified, extracted and
/// cached; the second fetch downloads nothing.
#[test]
fn a_second_fetch_downloads_nothing() {
    let (mirror, package, pin) = serve_the_6_1_package();
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), &package, &pin);
    let cache = dir.path().join("cache");
    let fetch = || {
        kmatrix(&["--matrix", matrix.to_str().unwrap(), "kernels", "fetch"])
            .env("KMATRIX_CACHE_DIR", &cache)
            .env("KMATRIX_DEBIAN_MIRROR", format!("{}/debian", mirror.url))
            .output()
            .unwrap()
    };
    let first = fetch();
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("sha256 verified"), "{}", text(&first));
    let requests = mirror.requests().len();
    assert_eq!(requests, 2, "index and package: {:?}", mirror.requests());

    let second = fetch();
    assert!(second.status.success(), "{}", text(&second));
    assert!(!text(&second).contains("FETCH"), "{}", text(&second));
    assert_eq!(mirror.requests().len(), requests, "{:?}", mirror.requests());
    assert_eq!(std::fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
}

/// The `kernels` test binary (tests/kernels.rs), built by the same
/// `cargo test` run next to this one.
fn kernels_test_binary() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("kernels-") && p.extension().is_none()
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no kernels test binary in {}: run `cargo test --workspace`, which builds it",
                deps.display()
            )
        })
}

/// `--list` names every trial and boots and downloads nothing.
#[test]
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
    assert_eq!(trials.len(), 26, "{out}");
    assert!(
        trials.contains(&"5.10::xdp_filter::drops_ssh".to_owned()),
        "{out}"
    );
    assert!(
        trials.contains(&"7.3::xdp_loop_sum::load".to_owned()),
        "{out}"
    );
    assert!(
        !cache.path().join("cache").exists(),
        "the cache was touched"
    );
}

/// A filter on one kernel boots that kernel only; the others' trials are
/// filtered out.
#[test]
fn cargo_test_filter_boots_only_the_selected_kernel() {
    let _lock = boot_lock();
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

    let output = Command::new(kernels_test_binary())
        .arg("7.3::xdp_filter")
        .env("KMATRIX_QEMU", &wrapper)
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("test 7.3::xdp_filter::drops_ssh"), "{out}");
    assert!(
        out.contains("3 passed; 0 failed; 0 ignored; 0 measured; 23 filtered out"),
        "{out}"
    );
    let boots = std::fs::read_to_string(&log).unwrap();
    assert_eq!(boots.lines().count(), 1, "{boots}");
    let matrix = Matrix::load(&repo().join("kernels.toml")).unwrap();
    let newest = matrix.kernels.last().unwrap();
    let user_cache =
        String::from_utf8(kmatrix(&["kernels", "cache-dir"]).output().unwrap().stdout).unwrap();
    let fetcher = kmatrix::kernels::Fetcher::new(
        kmatrix::cache::Cache::at(PathBuf::from(user_cache.trim())).unwrap(),
        &matrix,
        true,
        |_| {},
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let artifacts = runtime.block_on(fetcher.fetch(newest)).unwrap();
    assert!(
        boots.contains(&artifacts.image.display().to_string()),
        "{boots}"
    );
}

/// A failing case fails `cargo test`, with the reason in the output.
#[test]
fn cargo_test_fails_with_the_reason() {
    let _lock = boot_lock();
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
    let out = text(&output);
    assert_eq!(output.status.code(), Some(101), "{out}");
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

/// Two shards merged give the same matrix as one unsharded run; the merged
/// JUnit file reads back with another parser; a cut shard file is refused
/// with its name.
#[test]
fn sharded_then_merged_equals_unsharded() {
    let _lock = boot_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let suite = example("kmatrix-suite.toml");
    let run = |extra: &[&str]| {
        let mut args = vec!["test", "--kernels", "5.10,6.1", "--suite", &suite];
        args.extend_from_slice(extra);
        let output = kmatrix(&args)
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
    };
    run(&["--json", &path("all.json"), "--summary", &path("all.md")]);
    run(&["--shard", "1/2", "--json", &path("shard-1.json")]);
    run(&["--shard", "2/2", "--json", &path("shard-2.json")]);

    let merged = kmatrix(&[
        "report",
        "merge",
        "--junit",
        &path("merged.xml"),
        "--summary",
        &path("merged.md"),
        &path("shard-2.json"),
        &path("shard-1.json"),
    ])
    .output()
    .unwrap();
    assert!(merged.status.success(), "{}", text(&merged));
    let all = std::fs::read_to_string(path("all.md")).unwrap();
    assert_eq!(std::fs::read_to_string(path("merged.md")).unwrap(), all);
    assert!(
        all.contains("| `xdp_loop_sum::load` | xfail | ✅ |"),
        "{all}"
    );

    // A JUnit consumer other than the writer.
    let xml = std::fs::File::open(path("merged.xml")).unwrap();
    let suites = junit_parser::from_reader(std::io::BufReader::new(xml)).unwrap();
    assert_eq!(suites.suites.len(), 2);
    let oldest = &suites.suites[0];
    assert_eq!(
        (
            oldest.name.as_str(),
            oldest.tests,
            oldest.failures,
            oldest.errors
        ),
        ("5.10", 13, 0, 0)
    );
    assert_eq!(oldest.skipped, 2, "the expected failure and the skip");
    let xfail = oldest
        .cases
        .iter()
        .find(|c| c.original_name == "xdp_loop_sum::load")
        .unwrap();
    match &xfail.status {
        junit_parser::TestStatus::Skipped(skip) => {
            assert!(
                skip.message
                    .starts_with("expected failure: bpf_loop() arrived in Linux 5.17"),
                "{skip:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((suites.suites[1].tests, suites.suites[1].skipped), (13, 0));

    // A shard file cut in the middle of a line.
    let text2 = std::fs::read_to_string(path("shard-2.json")).unwrap();
    let cut = text2.len() - text2.lines().last().unwrap().len() / 2 - 1;
    std::fs::write(path("shard-2.json"), &text2[..cut]).unwrap();
    let output = kmatrix(&[
        "report",
        "merge",
        &path("shard-1.json"),
        &path("shard-2.json"),
    ])
    .output()
    .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains(&format!("{}:", path("shard-2.json"))), "{out}");
    assert!(out.contains("truncated or damaged"), "{out}");
}
