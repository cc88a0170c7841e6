//! The one path from a request to a plan: notices come back instead of
//! being printed (and survive a failure), nothing is fetched before
//! [`Prepared::plan`], and only the kernels a front end keeps need pins.

use std::path::{Path, PathBuf};

use super::*;
use crate::vm::AccelChoice;

const PIN: &str = "4545cda1cab2f7e975e9b3ad1744b4a360092a85a793156bf48f1bdf02906cc9";

/// Writes a matrix of 5.10 and 6.1 (pinned) and 6.12 (not), all amd64, into
/// `dir`.
pub(crate) fn matrix_file(dir: &Path) -> PathBuf {
    let entry = |label: &str, suite: &str, package: &str, pinned: bool| {
        let pin = if pinned {
            format!("sha256 = {{ \"{package}\" = \"{PIN}\" }}\n")
        } else {
            String::new()
        };
        format!("[[kernel]]\nlabel = \"{label}\"\ndebian = {{ suite = \"{suite}\", package = \"{package}\" }}\n{pin}\n")
    };
    let text = [
        entry(
            "5.10",
            "bullseye",
            "linux-image-5.10.0-32-cloud-amd64",
            true,
        ),
        entry("6.1", "bookworm", "linux-image-6.1.0-50-cloud-amd64", true),
        entry(
            "6.12",
            "trixie",
            "linux-image-6.12.117+deb13-cloud-amd64",
            false,
        ),
    ]
    .concat();
    let path = dir.join("kernels.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Probes on `kernels` of the matrix in `dir`: nothing to build.
fn probes(dir: &Path, kernels: &str) -> RunRequest {
    RunRequest {
        matrix: Some(matrix_file(dir)),
        kernels: kernels.parse().unwrap(),
        arch: None,
        shard: None,
        tests: Tests::Probes {
            features: Vec::new(),
        },
        offline: false,
        config: RunConfig::new(Some(1), VmConfig::new(AccelChoice::Tcg)),
    }
}

fn labels(kernels: &[KernelEntry]) -> Vec<&str> {
    kernels.iter().map(|k| k.label.as_str()).collect()
}

#[test]
fn a_range_past_the_matrix_comes_back_as_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = probes(dir.path(), "5.4..6.1").prepare();
    assert_eq!(
        prepared.notices,
        [Notice::RangePastMatrix {
            selection: "5.4..6.1".parse().unwrap(),
            below_oldest: Some((5, 10)),
            above_newest: None,
            selects: vec!["5.10".into(), "6.1".into()],
        }]
    );
    assert_eq!(
        prepared.notices[0].to_string(),
        "`5.4..6.1` reaches below the oldest kernel of the matrix (5.10): it selects 5.10, 6.1; other series come from OCI images or `url`/`path` entries (examples, 5.4 to 6.8, are commented in kernels.toml; `kmatrix init` writes it out)"
    );
    assert_eq!(
        labels(&prepared.result.unwrap().set.kernels),
        ["5.10", "6.1"]
    );

    let both = probes(dir.path(), "5.4..9.0").prepare().notices;
    let text = both[0].to_string();
    assert!(
        text.starts_with("`5.4..9.0` reaches below the oldest kernel of the matrix (5.10) and above the newest (6.12): it selects 5.10, 6.1, 6.12;"),
        "{text}"
    );
    assert!(probes(dir.path(), "5.10..6.12")
        .prepare()
        .notices
        .is_empty());
}

#[test]
fn notices_survive_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let request = RunRequest {
        shard: Some(Shard { index: 3, total: 3 }),
        ..probes(dir.path(), "5.4..6.1")
    };
    let resolved = request.resolve(|_| {});
    assert!(
        matches!(resolved.result, Err(PlanError::Shard(_))),
        "the shard fits"
    );
    assert!(matches!(
        resolved.notices[..],
        [Notice::RangePastMatrix { .. }]
    ));
}

#[test]
fn only_the_kernels_a_front_end_keeps_need_pins() {
    let dir = tempfile::tempdir().unwrap();
    // Preparing checks no pin: `cargo test --list` works on any matrix.
    let prepared = noticeless(probes(dir.path(), "all").prepare());
    assert_eq!(prepared.set.selected, ["5.10", "6.1", "6.12"]);
    assert_eq!(labels(&prepared.set.kernels), ["5.10", "6.1", "6.12"]);
    assert!(prepared.tests.probe_all);
    // The unpinned kernel stays, to be reported as not run, with a notice.
    let checked = prepared.set.check_pinned();
    assert!(checked.result.is_ok());
    assert_eq!(
        checked.notices,
        [Notice::Unpinned {
            labels: vec!["6.12".into()]
        }]
    );
    // Narrowed to pinned kernels, it has nothing to note; the selection
    // stays whole.
    let mut prepared = noticeless(probes(dir.path(), "all").prepare());
    prepared.set.kernels.retain(|k| k.label != "6.12");
    noticeless(prepared.set.check_pinned());
    assert_eq!(prepared.set.selected, ["5.10", "6.1", "6.12"]);
}

#[test]
fn a_plan_of_unpinned_kernels_alone_is_refused_before_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // Before making the fetcher (and with it the cache).
    let plan = noticeless(probes(dir.path(), "6.12").prepare()).plan(|_| {});
    assert!(plan.notices.is_empty());
    match plan.result {
        Err(err @ PlanError::Unpinned { .. }) => assert_eq!(
            err.to_string(),
            "kernel `6.12` has no sha256 pins: run `kmatrix kernels update --kernels 6.12` to pin its packages"
        ),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a plan of unpinned kernels alone"),
    }
    let Err(PlanError::Unpinned { labels }) = probes(dir.path(), "6.12").resolve(|_| {}).result
    else {
        panic!("resolve is not prepare, then plan");
    };
    assert_eq!(labels, ["6.12"]);
    // Every one is named, and the command pins them all.
    let err = PlanError::Unpinned {
        labels: vec!["5.4.x".into(), "6.6.x".into()],
    };
    assert_eq!(
        err.to_string(),
        "no kernel to run has sha256 pins (5.4.x, 6.6.x): run `kmatrix kernels update --kernels 5.4.x,6.6.x` to pin their packages"
    );
}

#[test]
fn notices_read_as_they_always_did() {
    assert_eq!(
        Notice::BuiltInMatrix { kernels: 13 }.to_string(),
        "no kernels.toml here or in a parent directory: using the built-in matrix (13 kernels); `kmatrix init` writes it out to pin or change it"
    );
    assert_eq!(
        Notice::ExecArch {
            program: "/tmp/probe".into(),
            arch: Arch::Arm64,
            running: 1,
            selected: 2,
        }
        .to_string(),
        "/tmp/probe is an arm64 program: it runs on the 1 arm64 kernels of the 2 selected"
    );
    assert_eq!(
        Notice::Unpinned {
            labels: vec!["6.12".into()]
        }
        .to_string(),
        "kernel `6.12` is not pinned: it is not fetched or booted (a run reports it as not run); `kmatrix kernels update --kernels 6.12` pins it"
    );
    assert_eq!(
        Notice::Unpinned {
            labels: vec!["5.4.x".into(), "6.6.x".into()]
        }
        .to_string(),
        "2 kernels are not pinned (5.4.x, 6.6.x): they are not fetched or booted (a run reports them as not run); `kmatrix kernels update --kernels 5.4.x,6.6.x` pins them"
    );
}

/// The stage's value, which came without notices.
fn noticeless<T>(resolved: Resolved<T>) -> T {
    assert!(resolved.notices.is_empty());
    match resolved.result {
        Ok(value) => value,
        Err(err) => panic!("{err}"),
    }
}
