//! A matrix with unpinned entries (what `kmatrix init --lts` writes): a run
//! boots and judges the pinned kernels and reports each unpinned one as not
//! run, as a kernel that could not be fetched, without asking the network
//! for it; a run with no pinned kernel does not start.

use std::path::{Path, PathBuf};

use kmatrix_protocol::report::Record;

use crate::sources::example_suite;
use crate::support::mirror::{against_mirror, serve_the_6_1_package};
use crate::support::records::records_as;
use crate::support::{exited, fixture, text, Server};

crate::support::tests! {
    vm a_pinned_kernel_runs_and_an_unpinned_one_is_reported_not_run,
    host kernels_fetch_fetches_the_pinned_and_names_the_unpinned,
    host a_run_of_unpinned_kernels_alone_does_not_start,
}

/// The unpinned entry's package: in a suite of its own, so that any
/// request for it shows in the mirror's log.
const UNPINNED: &str = "linux-image-6.12.117+deb13-cloud-amd64";

/// The command that pins the unpinned entry.
const PIN_IT: &str = "kmatrix kernels update --kernels 6.12";

/// `[[kernel]]` 6.1, pinned to `package` (when given), then 6.12 and
/// 6.6 unpinned (6.6 only with `two_unpinned`).
fn matrix(dir: &Path, pinned: Option<(&str, &[u8; 32])>, two_unpinned: bool) -> PathBuf {
    let mut text = String::new();
    if let Some((package, pin)) = pinned {
        text += &format!(
            "[[kernel]]\nlabel = \"6.1\"\ndebian = {{ suite = \"test\", package = \"{package}\" }}\n[kernel.sha256]\n\"{package}\" = \"{}\"\n\n",
            hex::encode(pin)
        );
    }
    text += &format!(
        "[[kernel]]\nlabel = \"6.12\"\ndebian = {{ suite = \"unpinned\", package = \"{UNPINNED}\" }}\n\n"
    );
    if two_unpinned {
        text += "[[kernel]]\nlabel = \"6.6\"\nversion = \"6.6\"\ndebian = { suite = \"unpinned\", package = \"linux-image-6.6.0-unpinned-cloud-amd64\" }\n";
    }
    let path = dir.join("kernels.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Whether the mirror was asked for anything of the unpinned entries.
fn asked_for_unpinned(mirror: &Server) -> Vec<String> {
    mirror
        .requests()
        .into_iter()
        .filter(|r| r.contains("unpinned") || r.contains("6.12") || r.contains("6.6"))
        .collect()
}

/// The shipped 6.1 from a loopback mirror beside an unpinned 6.12: 6.1
/// boots and passes the example suite; 6.12 is named before the run, is
/// not run in every report with the command that pins it, and the run
/// exits 3 (only the machinery failed).
fn a_pinned_kernel_runs_and_an_unpinned_one_is_reported_not_run() {
    let (mirror, package, pin) = serve_the_6_1_package();
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix(dir.path(), Some((&package, &pin)), false);
    let (json, junit, summary) = (
        dir.path().join("run.json"),
        dir.path().join("junit.xml"),
        dir.path().join("summary.md"),
    );
    let output = against_mirror(
        &matrix,
        &dir.path().join("cache"),
        &mirror.url,
        &[
            "test",
            "--suite",
            &example_suite(),
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let out = text(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "only the machinery failed: {out}"
    );
    assert!(
        out.contains(&format!(
            "kmatrix: kernel `6.12` is not pinned: it is not fetched or booted (a run reports it as not run); `{PIN_IT}` pins it"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "6.12  ERROR kernel `6.12` is not pinned, so it is not fetched or run: `{PIN_IT}` pins it"
        )),
        "{out}"
    );
    assert!(out.contains("6.1  UP    6.1.0-"), "{out}");
    assert_eq!(asked_for_unpinned(&mirror), Vec::<String>::new());

    let records: Vec<Record> = records_as(&json);
    let mut passed = 0;
    for record in &records {
        match record {
            Record::Outcome { kernel, result, .. } => {
                assert_eq!(kernel, "6.1", "only 6.1 ran: {record:?}");
                assert!(!result.is_failure(), "{record:?}");
                passed += 1;
            }
            Record::KernelFinished {
                kernel,
                error,
                infrastructure,
                ..
            } if kernel == "6.1" => assert!(error.is_none() && !infrastructure, "{record:?}"),
            Record::KernelFinished {
                error,
                infrastructure,
                ..
            } => {
                assert!(*infrastructure, "{record:?}");
                assert!(error.as_deref().unwrap().contains(PIN_IT), "{record:?}");
            }
            _ => {}
        }
    }
    assert!(passed > 0, "6.1 ran the suite: {out}");
    assert_eq!(records.last(), Some(&Record::RunFinished { passed: false }));

    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains(PIN_IT), "{junit}");
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.starts_with("## kmatrix: failed"), "{summary}");
    assert!(summary.contains("| test | 6.1 | 6.12 |"), "{summary}");
    assert!(summary.contains("✅ | 💥 |"), "{summary}");
}

/// `kmatrix kernels fetch` fetches the pinned kernel and says of the
/// unpinned one what a run says, asking the mirror nothing for it; it
/// exits 3, as when a download fails.
fn kernels_fetch_fetches_the_pinned_and_names_the_unpinned() {
    let (mirror, package, pin) = serve_the_6_1_package();
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix(dir.path(), Some((&package, &pin)), false);
    let output = against_mirror(
        &matrix,
        &dir.path().join("cache"),
        &mirror.url,
        &["kernels", "fetch"],
    )
    .output()
    .unwrap();
    let out = exited(&output, 3);
    assert!(out.contains("     6.1  cached 6.1.0-"), "{out}");
    assert!(
        out.contains(&format!(
            "    6.12  error: kernel `6.12` is not pinned, so it is not fetched or run: `{PIN_IT}` pins it"
        )),
        "{out}"
    );
    assert!(out.contains("1 of 2 kernels could not be fetched"), "{out}");
    assert_eq!(asked_for_unpinned(&mirror), Vec::<String>::new());
}

/// With no pinned kernel selected nothing would run: bad input (exit 2)
/// naming every unpinned kernel and the one command that pins them, before
/// the cache or the network is touched; online or not.
fn a_run_of_unpinned_kernels_alone_does_not_start() {
    let mirror = Server::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix(dir.path(), None, true);
    let cache = dir.path().join("cache");
    let expected = "no kernel to run has sha256 pins (6.12, 6.6): run `kmatrix kernels update --kernels 6.12,6.6` to pin their packages";
    let object = fixture("xdp_pass.bpf.c");
    for args in [
        &["probe", "helper:bpf_loop"][..],
        &["test", "--offline", object.to_str().unwrap()],
        &["kernels", "fetch"],
    ] {
        let output = against_mirror(&matrix, &cache, &mirror.url, args)
            .output()
            .unwrap();
        let out = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {out}");
        assert!(out.contains(expected), "{args:?}: {out}");
    }
    let output = against_mirror(
        &matrix,
        &cache,
        &mirror.url,
        &["probe", "--kernels", "6.12", "helper:bpf_loop"],
    )
    .output()
    .unwrap();
    let out = exited(&output, 2);
    assert!(
        out.contains(&format!(
            "kernel `6.12` has no sha256 pins: run `{PIN_IT}` to pin its packages"
        )),
        "{out}"
    );
    assert_eq!(mirror.requests(), Vec::<String>::new());
    assert!(!cache.exists(), "the cache was not made");
}
