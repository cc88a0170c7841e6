//! Builds the guest agent and the benchmark's floor init as static binaries
//! with the installed toolchain, so that `kmatrix` carries them inside.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap();
    let agent_manifest = workspace.join("guest-agent/Cargo.toml");
    for path in [
        "guest-agent/src",
        "guest-agent/Cargo.toml",
        "protocol/src",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    let target_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("guest");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", GUEST_TARGET])
        .arg("--manifest-path")
        .arg(&agent_manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["-p", "kmatrix-guest-agent", "--bins"]);
    // The host build's flags are not the guest's: start from a clean slate.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        // Nor its C flags (cargo fuzz instruments C code for ASan, which a
        // static guest cannot link).
        "CFLAGS",
        "CXXFLAGS",
        "TARGET_CFLAGS",
        "CFLAGS_x86_64_unknown_linux_gnu",
        "CFLAGS_x86_64-unknown-linux-gnu",
        "CXXFLAGS_x86_64_unknown_linux_gnu",
        "CXXFLAGS_x86_64-unknown-linux-gnu",
    ] {
        command.env_remove(var);
    }
    // Nor the cfg cargo gives this build script (a sanitizer's among them),
    // which the guest's build scripts would otherwise read as their own.
    for (var, _) in env::vars_os() {
        if var.to_string_lossy().starts_with("CARGO_CFG_") {
            command.env_remove(var);
        }
    }
    // libbpf links Debian's static libelf and zlib (libelf-dev, zlib1g-dev).
    if env::var_os("LIBBPF_SYS_LIBRARY_PATH").is_none() {
        command.env("LIBBPF_SYS_LIBRARY_PATH", "/usr/lib/x86_64-linux-gnu");
    }
    command.env(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "-C target-feature=+crt-static",
    );
    let status = command
        .status()
        .expect("run cargo to build the guest agent");
    assert!(
        status.success(),
        "building the static guest agent failed ({status}); see the output above"
    );

    let bin_dir = target_dir.join(GUEST_TARGET).join("release");
    export("KMATRIX_AGENT_BIN", &bin_dir.join("kmatrix-guest-agent"));
    export("KMATRIX_FLOOR_INIT_BIN", &bin_dir.join("floor-init"));
}

fn export(var: &str, path: &Path) {
    assert!(path.exists(), "{} was not built", path.display());
    println!("cargo:rustc-env={var}={}", path.display());
}
