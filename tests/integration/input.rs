//! What the user wrote, judged: suites whose expectations are wrong fail
//! with expected against actual; suites, objects and matrices that are
//! wrong are refused before anything boots, with a message naming them.

use crate::support::{
    self, example, exited, fixture, kmatrix, matrix_row, test_suite_on_6_1, text, SSH_SYN,
};

crate::support::tests! {
    vm wrong_expectations_fail_with_expected_and_actual,
    host bad_suites_are_refused_before_booting,
    host bad_input_gets_a_clear_error,
    vm without_a_kernels_toml_the_built_in_matrix_runs_and_init_writes_it,
    host ranges_past_the_matrix_say_so,
    host an_unwritable_json_file_is_the_machinery_s_failure,
    host only_failed_refuses_an_exec_run_naming_the_exec_line,
}

/// Wrong expectations fail with expected against actual: a return value, a
/// counter, and a load expectation the kernel has outgrown.
fn wrong_expectations_fail_with_expected_and_actual() {
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
    let out = exited(&output, 1);
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
        let out = exited(&output, 2);
        assert!(
            out.contains(expected.as_str()),
            "expected `{expected}` in\n{out}"
        );
        assert!(!out.contains("BOOT"), "{out}");
    }
}

/// Bad input is refused before anything boots, with a message naming it.
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

/// With no kernels.toml anywhere, the built-in matrix is used and said so;
/// `kmatrix init` writes it out, with a suite for the objects it finds, and
/// the run then uses the written file.
fn without_a_kernels_toml_the_built_in_matrix_runs_and_init_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        support::fixture("xdp_pass.bpf.c"),
        dir.path().join("xdp_pass.bpf.c"),
    )
    .unwrap();
    let in_dir = |args: &[&str]| {
        support::kmatrix(args)
            .current_dir(dir.path())
            .env_remove("KMATRIX_KERNELS")
            .output()
            .unwrap()
    };
    let output = in_dir(&["test", "--kernels", "6.1", "xdp_pass.bpf.c"]);
    let out = support::text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("using the built-in matrix (") && out.contains("`kmatrix init` writes it out"),
        "{out}"
    );

    let output = in_dir(&["init"]);
    let out = support::text(&output);
    assert!(output.status.success(), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kernels.toml")).unwrap(),
        std::fs::read_to_string(support::repo().join("kernels.toml")).unwrap()
    );
    let suite = std::fs::read_to_string(dir.path().join("kmatrix-suite.toml")).unwrap();
    assert!(suite.contains("path = \"xdp_pass.bpf.c\""), "{suite}");

    let output = in_dir(&["test", "--kernels", "6.1", "--suite", "kmatrix-suite.toml"]);
    let out = support::text(&output);
    assert!(output.status.success(), "{out}");
    assert!(!out.contains("built-in matrix"), "{out}");
    assert!(out.contains("xdp_pass::load"), "{out}");

    let output = in_dir(&["init"]);
    assert_eq!(output.status.code(), Some(2), "{}", support::text(&output));
}

/// A range that reaches past the matrix says what it selected and where
/// other series come from; an architecture with no kernel in the selection
/// is an error naming what there is.
fn ranges_past_the_matrix_say_so() {
    let output = kmatrix(&["matrix", "--kernels", "5.4..6.8", "--arch", "amd64"])
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("`5.4..6.8` reaches below the oldest kernel of the matrix (5.10): it selects 5.10, 6.1; other series come from OCI images"),
        "{out}"
    );
    // Each shard's arguments keep the architecture.
    assert!(
        out.contains(r#""args":"--kernels 5.4..6.8 --arch amd64 --shard 2/2""#),
        "{out}"
    );
    let output = kmatrix(&["matrix", "--kernels", "6.1", "--arch", "arm64"])
        .output()
        .unwrap();
    let out = exited(&output, 2);
    assert!(
        out.contains("`6.1` selects no arm64 kernel; the matrix has: 5.10 (5.10.0)"),
        "{out}"
    );
}

/// A `--json` file that cannot be written is no verdict on the tests: the
/// machinery's exit code (3), with the path named, before anything boots.
fn an_unwritable_json_file_is_the_machinery_s_failure() {
    let output = kmatrix(&[
        "test",
        "--kernels",
        "6.1",
        "--json",
        "/proc/no-such-dir/run.json",
    ])
    .arg(fixture("xdp_pass.bpf.c"))
    .output()
    .unwrap();
    let out = exited(&output, 3);
    assert!(
        out.contains("cannot write /proc/no-such-dir/run.json"),
        "{out}"
    );
    assert!(!out.contains("BOOT"), "{out}");
}

/// `kmatrix test --only-failed` with an exec run's file is bad input, and
/// says which `kmatrix exec` line runs again what failed.
fn only_failed_refuses_an_exec_run_naming_the_exec_line() {
    use kmatrix_protocol::report::{ExecReproduce, Outcome, Record, Reproduce, SCHEMA};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("exec.json");
    let records = [
        Record::RunStarted {
            schema: SCHEMA,
            kmatrix: "0".into(),
            matrix: vec!["6.1".into()],
            kernels: vec!["6.1".into()],
            tests: Vec::new(),
            shard: None,
            reproduce: Some(Reproduce {
                exec: Some(ExecReproduce {
                    command: vec!["/t/failing-1a2b".into(), "always".into()],
                    ..ExecReproduce::default()
                }),
                ..Reproduce::default()
            }),
        },
        Record::Outcome {
            kernel: "6.1".into(),
            test: "always_fails".into(),
            reproduce: None,
            result: Outcome::failed("this test always fails"),
        },
        Record::Exited {
            kernel: "6.1".into(),
            status: "exit code 101".into(),
        },
        Record::KernelFinished {
            kernel: "6.1".into(),
            error: None,
            console_tail: None,
            infrastructure: false,
        },
        Record::RunFinished { passed: false },
    ];
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&run, lines.join("\n") + "\n").unwrap();
    let output = kmatrix(&["test", "--only-failed", run.to_str().unwrap()])
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("is from a `kmatrix exec` run"), "{out}");
    assert!(
        out.contains("kmatrix exec --kernels 6.1 -- /t/failing-1a2b always_fails --exact"),
        "{out}"
    );
}
