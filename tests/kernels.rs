//! The example suite on the oldest and the newest shipped amd64 kernel and
//! the oldest arm64 one (where its arm64-only expectation fails as
//! expected), through `cargo test` (libtest-mimic), as a user's project runs
//! it: every (kernel, program, case) is a trial.

use std::path::Path;
use std::process::ExitCode;

use kmatrix::cargo_test::{self, Config};
use kmatrix::kernels::{Matrix, Selection};
use kmatrix_protocol::Arch;

fn main() -> ExitCode {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let matrix = repo.join("kernels.toml");
    let kernels = match std::env::var_os(cargo_test::KERNELS_ENV) {
        // Let the environment choose, as users can.
        Some(_) => None,
        None => {
            let shipped = Matrix::load(&matrix).expect("the shipped kernels.toml loads");
            let of = |arch| shipped.kernels.iter().filter(move |k| k.arch == arch);
            let amd64 = || of(Arch::Amd64);
            let labels = [amd64().next(), amd64().next_back(), of(Arch::Arm64).next()];
            Some(Selection::List(
                labels
                    .into_iter()
                    .flatten()
                    .map(|k| k.label.clone())
                    .collect(),
            ))
        }
    };
    // KMATRIX_SUITE, when set, names another suite (the tests of this
    // integration use it to run a failing one).
    let suite = std::env::var_os(kmatrix::suite::SUITE_ENV)
        .is_none()
        .then(|| repo.join("tests/example/kmatrix-suite.toml"));
    cargo_test::run(Config {
        matrix: Some(matrix),
        suite,
        kernels,
    })
}
