//! arm64 guests: the same object on both architectures, an expectation
//! scoped to one architecture, and `kmatrix exec` of an arm64 program (and
//! the error, before boot, for a program of the other architecture).

use std::process::Command;

use crate::support::{example, exited, kmatrix, matrix_row, stray_vms, text};

crate::support::tests! {
    arm64 an_expectation_scoped_to_one_architecture_binds_only_there,
    arm64 exec_runs_arm64_programs_on_arm64_kernels_only,
}

fn suite(dir: &std::path::Path, arch: &str) -> String {
    let path = dir.join(format!("scoped-{arch}.toml"));
    std::fs::write(
        &path,
        format!(
            "[[object]]\npath = \"{}\"\n[[object.program]]\nname = \"xdp_tail_from_subprog\"\narch = \"{arch}\"\nmin_kernel = \"6.0\"\nreason = \"tail calls from subprograms\"\n",
            example("tail_subprog.bpf.c")
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// A tail call from a subprogram: arm64's JIT takes it from 6.0, x86-64's
/// from 5.10. Scoped to arm64, the constraint makes 5.10-arm64's rejection
/// expected and leaves 5.10 (amd64) bound to load; scoped to amd64, the
/// same rejection on 5.10-arm64 is the kernel's failure.
fn an_expectation_scoped_to_one_architecture_binds_only_there() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let kernels = "5.10,5.10-arm64,6.1-arm64";
    let output = kmatrix(&["test", "--kernels", kernels, "--json"])
        .arg(&json)
        .args(["--suite", &suite(dir.path(), "arm64")])
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("test                          5.10  5.10-arm64  6.1-arm64"),
        "{out}"
    );
    assert_eq!(
        matrix_row(&out, "xdp_tail_from_subprog::load"),
        ["pass", "xfail", "pass"],
        "{out}"
    );
    assert!(
        out.contains("tail calls from subprograms (verifier: tail_calls are not allowed in non-JITed programs with bpf-to-bpf calls"),
        "{out}"
    );
    let records = std::fs::read_to_string(&json).unwrap();
    assert!(
        records.contains(r#"{"type":"kernel-started","kernel":"5.10-arm64","arch":"arm64"}"#),
        "{records}"
    );

    let output = kmatrix(&["test", "--kernels", "5.10-arm64"])
        .args(["--suite", &suite(dir.path(), "amd64")])
        .output()
        .unwrap();
    let out = exited(&output, 1);
    assert_eq!(
        matrix_row(&out, "xdp_tail_from_subprog::load"),
        ["FAIL"],
        "{out}"
    );
}

/// An arm64 program runs in an arm64 kernel; an amd64 one is refused
/// before anything boots, naming both architectures.
fn exec_runs_arm64_programs_on_arm64_kernels_only() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hello.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <sys/utsname.h>\nint main(void) { struct utsname u; uname(&u); printf(\"hello from %s\\n\", u.machine); return 0; }\n",
    )
    .unwrap();
    let program = dir.path().join("hello-arm64");
    let built = Command::new("aarch64-linux-gnu-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        .expect("aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu) is installed");
    assert!(built.status.success(), "{}", text(&built));

    let output = kmatrix(&["exec", "--kernels", "6.1..6.1", "--no-share", "--"])
        .arg(&program)
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("hello from aarch64"), "{out}");
    assert!(
        out.contains("is an arm64 program: it runs on the 1 arm64 kernels of the 2 selected"),
        "{out}"
    );

    let started = std::time::Instant::now();
    let output = kmatrix(&["exec", "--kernels", "6.1-arm64", "--", "/bin/true"])
        .output()
        .unwrap();
    let out = exited(&output, 2);
    assert!(
        out.contains("/bin/true is an amd64 program, but the selected kernels (6.1-arm64) are arm64: build it for arm64 (Rust: `--target aarch64-unknown-linux-gnu`) or select amd64 kernels (`--arch amd64`)"),
        "{out}"
    );
    assert!(started.elapsed().as_secs() < 5, "{out}");
    assert!(stray_vms().is_empty());
}
