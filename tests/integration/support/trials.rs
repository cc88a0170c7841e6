//! The test harness (libtest-mimic): each module lists its tests with
//! [`tests!`], naming which boot VMs. Those are `[vm]` trials (the kind
//! cargo-nextest's `vm` group selects, `.config/nextest.toml`), run one at
//! a time in this process; outside CI (`CI` unset), the ones whose QEMU is
//! not found are ignored, said once, instead of failing.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard};

use kmatrix::vm::{QemuBinaries, VmConfig};
use kmatrix_protocol::Arch;
use libtest_mimic::{Arguments, Trial};

/// The libtest-mimic kind of the tests that boot VMs.
const VM_KIND: &str = "vm";

/// One test: where it is, the architectures of the VMs it boots (none for
/// a test on the host alone), and its body, which passes unless it panics.
pub struct Test {
    /// Its module's path (`module_path!()`).
    pub module: &'static str,
    /// Its function's name.
    pub name: &'static str,
    /// The architectures of the VMs it boots.
    pub boots: &'static [Arch],
    /// The test.
    pub body: fn(),
}

/// `TESTS`, this module's tests for `main.rs`: each function's name after
/// what it boots, `host` (nothing), `vm` (amd64 VMs) or `arm64` (arm64
/// VMs, and amd64 ones). A test's name is its module's path and the
/// function's (`run::a_hung_boot_times_out_and_leaves_no_qemu`).
macro_rules! tests {
    (@boots host) => { &[] };
    (@boots vm) => { &[kmatrix_protocol::Arch::Amd64] };
    (@boots arm64) => { &[kmatrix_protocol::Arch::Amd64, kmatrix_protocol::Arch::Arm64] };
    ($($boots:ident $name:ident),* $(,)?) => {
        /// This module's tests.
        pub const TESTS: &[$crate::support::trials::Test] = &[$(
            $crate::support::trials::Test {
                module: module_path!(),
                name: stringify!($name),
                boots: $crate::support::trials::tests!(@boots $boots),
                body: $name,
            }
        ),*];
    };
}
pub(crate) use tests;

/// Runs the tests of `modules` as libtest does, with its arguments.
pub fn main(modules: &[&'static [Test]]) -> ExitCode {
    let args = Arguments::from_args();
    let missing = missing_qemu();
    let tests = modules.iter().flat_map(|tests| tests.iter());
    let trials: Vec<_> = tests.clone().map(|test| test.trial(&missing)).collect();
    if !args.list {
        let skipped: Vec<_> = tests
            .zip(&trials)
            .filter(|(_, t)| t.has_ignored_flag() && !args.is_filtered_out(t) && args.is_ignored(t))
            .collect();
        for (arch, qemu) in &missing {
            let count = skipped
                .iter()
                .filter(|(test, _)| test.boots.contains(arch))
                .count();
            if count > 0 {
                let (env, package) = QemuBinaries::setting(*arch);
                eprintln!(
                    "kmatrix's tests: {qemu} is not there ({env}, else the PATH): {count} tests that boot {arch} VMs are ignored; install {package} to run them (with CI set, they fail instead)"
                );
            }
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

impl Test {
    fn trial(&'static self, missing: &[(Arch, String)]) -> Trial {
        let name = match self.module.split_once("::") {
            Some((_crate, path)) => format!("{path}::{}", self.name),
            None => self.name.to_owned(),
        };
        let boots = !self.boots.is_empty();
        let trial = Trial::test(name, move || {
            let _vms = boots.then(vm_lock);
            (self.body)();
            Ok(())
        });
        if !boots {
            return trial;
        }
        let unbootable = missing.iter().any(|(arch, _)| self.boots.contains(arch));
        trial.with_kind(VM_KIND).with_ignored_flag(unbootable)
    }
}

static VMS: Mutex<()> = Mutex::new(());

/// Held by every test that boots VMs, so that one boots them at a time
/// (the machines have two cores; a matrix runs two VMs). cargo-nextest
/// runs each test in its own process: there its `vm` group serializes them.
fn vm_lock() -> MutexGuard<'static, ()> {
    VMS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The architectures whose QEMU is not there, with its binary, outside CI;
/// in CI (`CI` set) none: a missing QEMU fails the tests there.
fn missing_qemu() -> Vec<(Arch, String)> {
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
        return Vec::new();
    }
    let qemu = VmConfig::default_qemu();
    [Arch::Amd64, Arch::Arm64]
        .into_iter()
        .map(|arch| (arch, qemu.get(arch)))
        .filter(|(_, binary)| !found(binary))
        .map(|(arch, binary)| (arch, binary.display().to_string()))
        .collect()
}

/// Whether `binary`, a path or a name looked up on the PATH, is there.
fn found(binary: &Path) -> bool {
    match binary.to_str() {
        Some(name) if !name.contains('/') => kmatrix::tools::which(name).is_some(),
        _ => binary.is_file(),
    }
}

tests! {
    host every_test_is_registered,
}

/// A `#[test]` function is compiled out of this harness (`harness =
/// false`), silently: every test is listed with [`tests!`] instead.
fn every_test_is_registered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/integration");
    let mut stray = Vec::new();
    let mut dirs = vec![dir];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                let attribute = ["#[", "test]"].concat();
                stray.extend(
                    source
                        .lines()
                        .enumerate()
                        .filter(|(_, line)| line.trim() == attribute)
                        .map(|(i, _)| format!("{}:{}", path.display(), i + 1)),
                );
            }
        }
    }
    assert!(
        stray.is_empty(),
        "#[test] functions never run here; list them in their module's `tests!` instead: {stray:?}"
    );
}
