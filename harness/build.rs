//! Builds the guest agent and the benchmark's floor init as static
//! binaries with the installed toolchain, so that `kmatrix` carries them
//! inside: for amd64 always, and for arm64 where the Rust target, the cross
//! linker and arm64's static libelf and zlib are installed (else kmatrix is
//! built without it, says so here, and refuses arm64 kernels with the fix).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One guest architecture: its Rust target, the C cross compiler (none for
/// the host's own), where its static libelf and zlib are, and the variable
/// names the harness reads the binaries' paths from.
struct Guest {
    target: &'static str,
    cc: Option<&'static str>,
    lib_dir: &'static str,
    agent_var: &'static str,
    floor_var: &'static str,
}

const AMD64: Guest = Guest {
    target: "x86_64-unknown-linux-gnu",
    cc: None,
    lib_dir: "/usr/lib/x86_64-linux-gnu",
    agent_var: "KMATRIX_AGENT_BIN",
    floor_var: "KMATRIX_FLOOR_INIT_BIN",
};

const ARM64: Guest = Guest {
    target: "aarch64-unknown-linux-gnu",
    cc: Some("aarch64-linux-gnu-gcc"),
    lib_dir: "/usr/lib/aarch64-linux-gnu",
    agent_var: "KMATRIX_AGENT_ARM64_BIN",
    floor_var: "KMATRIX_FLOOR_INIT_ARM64_BIN",
};

/// What `kmatrix` says when it was built without the arm64 agent.
const ARM64_SETUP: &str = "rustup target add aarch64-unknown-linux-gnu; apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross; dpkg --add-architecture arm64 && apt-get update && apt-get install libelf-dev:arm64 zlib1g-dev:arm64";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap();
    for path in [
        "guest-agent/src",
        "guest-agent/Cargo.toml",
        "protocol/src",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rustc-env=KMATRIX_ARM64_SETUP={ARM64_SETUP}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guest");

    build(&AMD64, workspace, &target_dir, None);
    match arm64_missing() {
        None => build(&ARM64, workspace, &target_dir, None),
        Some(missing) => {
            println!(
                "cargo:warning=building kmatrix without the arm64 guest agent ({missing} missing): arm64 kernels will not run. To add it: {ARM64_SETUP}"
            );
            let empty = out_dir.join("no-arm64-agent");
            std::fs::write(&empty, b"").expect("write the empty arm64 agent");
            build(&ARM64, workspace, &target_dir, Some(&empty));
        }
    }
}

/// What the arm64 build needs that this machine lacks, if anything.
fn arm64_missing() -> Option<String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", ARM64.target])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if !libdir.is_some_and(|dir| dir.is_dir()) {
        return Some(format!("the Rust target {}", ARM64.target));
    }
    let cc = ARM64.cc.expect("a cross compiler");
    let on_path = env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .any(|dir| dir.join(cc).is_file());
    if !on_path {
        return Some(cc.to_owned());
    }
    ["libelf.a", "libz.a"]
        .into_iter()
        .find(|lib| !Path::new(ARM64.lib_dir).join(lib).is_file())
        .map(|lib| format!("{}/{lib}", ARM64.lib_dir))
}

/// Builds `guest`'s binaries and exports their paths, or exports `stub`
/// for both.
fn build(guest: &Guest, workspace: &Path, target_dir: &Path, stub: Option<&Path>) {
    if let Some(stub) = stub {
        export(guest.agent_var, stub);
        export(guest.floor_var, stub);
        return;
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", guest.target])
        .arg("--manifest-path")
        .arg(workspace.join("guest-agent/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
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
    let upper = guest.target.to_uppercase().replace('-', "_");
    let lower = guest.target.replace('-', "_");
    match guest.cc {
        // libbpf links Debian's static libelf and zlib (libelf-dev,
        // zlib1g-dev): the host's own unless the user points elsewhere.
        None => {
            if env::var_os("LIBBPF_SYS_LIBRARY_PATH").is_none() {
                command.env("LIBBPF_SYS_LIBRARY_PATH", guest.lib_dir);
            }
        }
        // A cross build: the cross compiler links, and builds libbpf's C
        // against the target's libraries (libelf-dev:arm64, zlib1g-dev:arm64).
        Some(cc) => {
            command
                .env("LIBBPF_SYS_LIBRARY_PATH", guest.lib_dir)
                .env(format!("CARGO_TARGET_{upper}_LINKER"), cc)
                .env(format!("CC_{lower}"), cc)
                .env(format!("AR_{lower}"), cc.replace("-gcc", "-ar"));
        }
    }
    command.env(
        format!("CARGO_TARGET_{upper}_RUSTFLAGS"),
        "-C target-feature=+crt-static",
    );
    let status = command
        .status()
        .expect("run cargo to build the guest agent");
    assert!(
        status.success(),
        "building the static guest agent for {} failed ({status}); see the output above",
        guest.target
    );
    let bin_dir = target_dir.join(guest.target).join("release");
    export(guest.agent_var, &bin_dir.join("kmatrix-guest-agent"));
    export(guest.floor_var, &bin_dir.join("floor-init"));
}

fn export(var: &str, path: &Path) {
    assert!(path.exists(), "{} was not built", path.display());
    println!("cargo:rustc-env={var}={}", path.display());
}
