//! The test objects in `guest-agent/tests-data/`, built with clang, and
//! the BTF they are relocated against as aya does.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use aya_obj::btf::{Btf, BtfFeatures};

/// `isolate`'s object: siblings aya-obj cannot relocate, a static
/// program, a program calling another.
pub(crate) const ISOLATE: &str = "isolate.bpf.c";

/// Maps declared without their sizes, BTF-defined and legacy.
pub(crate) const VALUE_SIZE: &str = "value_size.bpf.c";

/// `loader/`'s object: programs global and static (with `WITH_STATIC`),
/// globals in every data section, maps sized by a loader or the suite.
pub(crate) const LOADER: &str = "loader.bpf.c";

/// Builds `tests-data/{source}` with clang for `target` (`bpf`,
/// `bpfeb`), with `defines`.
pub(crate) fn build(source: &str, target: &str, defines: &[&str]) -> Vec<u8> {
    static BUILT: AtomicUsize = AtomicUsize::new(0);
    let help = "install clang and libbpf-dev (bpf/bpf_helpers.h) to run these tests";
    assert!(
        Path::new("/usr/include/bpf/bpf_helpers.h").exists(),
        "no /usr/include/bpf/bpf_helpers.h: {help}"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests-data")
        .join(source);
    let out = std::env::temp_dir().join(format!(
        "kmatrix-test-data-{}-{}.o",
        std::process::id(),
        BUILT.fetch_add(1, Ordering::Relaxed)
    ));
    let arch = std::env::consts::ARCH;
    let status = Command::new("clang")
        .args(["-target", target, "-O2", "-g"])
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|err| panic!("clang: {err}: {help}"));
    assert!(
        status.success(),
        "clang failed on {}: {help}",
        source.display()
    );
    let data = std::fs::read(&out).expect("clang's object");
    std::fs::remove_file(&out).expect("remove clang's object");
    data
}

/// A kernel with every BTF feature aya probes for.
pub(crate) fn all_btf_features() -> BtfFeatures {
    BtfFeatures::new(true, true, true, true, true, true, true, true)
}

/// The host's BTF, which the tests relocate against.
pub(crate) fn host_btf() -> Btf {
    Btf::from_sys_fs().unwrap_or_else(|err| {
        panic!("these tests relocate against the host's /sys/kernel/btf/vmlinux: {err}")
    })
}
