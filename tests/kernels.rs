//! The example suite on the oldest and the newest shipped kernel, through
//! `cargo test` (libtest-mimic), as a user's project runs it: every
//! (kernel, program, case) is a trial.

use std::path::Path;
use std::process::ExitCode;

use kmatrix::cargo_test::{self, Config};
use kmatrix::kernels::{Matrix, Selection};

fn main() -> ExitCode {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let matrix = repo.join("kernels.toml");
    let kernels = match std::env::var_os(cargo_test::KERNELS_ENV) {
        // Let the environment choose, as users can.
        Some(_) => None,
        None => {
            let shipped = Matrix::load(&matrix).expect("the shipped kernels.toml loads");
            let oldest = shipped.kernels.first().unwrap().label.clone();
            let newest = shipped.kernels.last().unwrap().label.clone();
            Some(Selection::List(vec![oldest, newest]))
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
