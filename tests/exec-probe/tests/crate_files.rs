//! Tests that read their crate's files at run time, as tests on the host
//! do, and one that must not be able to write there. Run them in a kernel
//! (kmatrix as cargo's runner), never on the host.

use std::path::Path;

use aya::programs::Xdp;
use aya::Ebpf;

fn in_crate(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// An object read from the crate directory when the test runs.
#[test]
fn loads_an_object_from_its_crate_directory() {
    let mut ebpf = Ebpf::load_file(in_crate("bpf/xdp_filter.bpf.o")).expect("the object is there");
    let program: &mut Xdp = ebpf.program_mut("xdp_filter").unwrap().try_into().unwrap();
    program.load().expect("the verifier accepts xdp_filter");
}

/// A fixture read relative to the working directory (the crate's).
#[test]
fn reads_a_fixture_from_its_crate_directory() {
    let text = std::fs::read_to_string("data/greeting.txt").expect("the fixture is there");
    assert_eq!(text.trim(), "hello from the crate");
    assert!(Path::new(&in_crate("Cargo.toml")).exists());
}

/// The crate directory is the host's: a test cannot write there.
#[test]
fn cannot_write_into_its_crate_directory() {
    let err = std::fs::write(in_crate("data/written-by-a-test"), "x").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{err}");
}
