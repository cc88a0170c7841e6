//! kmatrix's integration tests, one module per topic (ARCHITECTURE.md
//! lists them), in one test binary with its own harness
//! ([`support::trials`]): `cargo test --test integration run::` runs one
//! topic. The example suite through `cargo test` is the `kernels` binary
//! (tests/kernels.rs).

mod arm64;
mod bench;
mod bisect_oci;
mod cache;
mod cargo_test;
mod ci;
mod debian_snapshot;
mod exec;
mod input;
mod judged;
mod loaders;
mod mainline;
mod oci_lvh;
mod probes;
mod rpm;
mod run;
mod shards;
mod shell;
mod snapshots;
mod soak;
mod sources;
mod support;
mod ubuntu;
mod unpinned;

fn main() -> std::process::ExitCode {
    support::trials::main(&[
        arm64::TESTS,
        bench::TESTS,
        bisect_oci::TESTS,
        cache::TESTS,
        cargo_test::TESTS,
        ci::TESTS,
        debian_snapshot::TESTS,
        exec::TESTS,
        input::TESTS,
        judged::TESTS,
        loaders::TESTS,
        mainline::TESTS,
        oci_lvh::TESTS,
        probes::TESTS,
        rpm::TESTS,
        run::TESTS,
        shards::TESTS,
        shell::TESTS,
        snapshots::TESTS,
        soak::TESTS,
        sources::TESTS,
        support::trials::TESTS,
        ubuntu::TESTS,
        unpinned::TESTS,
    ])
}
