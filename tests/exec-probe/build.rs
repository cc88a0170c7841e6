//! Builds the example XDP filter for the tests to embed, and puts a copy in
//! the crate's `bpf/` directory for the test that loads it from there at
//! run time, as many aya projects do.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../example/xdp_filter.bpf.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("xdp_filter.o");
    println!("cargo:rerun-if-changed={}", source.display());
    let status = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", "-c"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("clang runs");
    assert!(status.success(), "clang failed on {}", source.display());
    let crate_copy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bpf");
    std::fs::create_dir_all(&crate_copy).unwrap();
    std::fs::copy(&out, crate_copy.join("xdp_filter.bpf.o")).unwrap();
}
