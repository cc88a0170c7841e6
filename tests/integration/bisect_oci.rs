//! `kmatrix bisect` over an OCI repository's tags, on the loopback registry
//! of `sources.rs`: listing across the registry's pages (little-vm-helper's
//! dated tags, on the host), and a bisection over a stand-in series of
//! ci-kernels images (5.10 builds for the early tags, the 6.1 build from
//! the first bad one), one of them broken, in VMs.

use sha2::{Digest, Sha256};

use kmatrix::cache::Cache;
use kmatrix::kernels::source::listing::{Line, Release};
use kmatrix::kernels::source::oci_tags::PAGE;
use kmatrix::kernels::{Fetcher, Matrix};
use kmatrix_protocol::Arch;

use crate::oci_lvh::base_layer;
use crate::sources::{ci_kernels_layer, runtime, write_matrix, Registry};
use crate::support::run_in;
use crate::support::{bisect_booted, example, exited, shipped_kernel, text};

crate::support::tests! {
    host oci_tags_are_listed_across_pages_in_version_order,
    host an_unpullable_good_end_is_skipped_and_said,
    vm bisect_over_oci_tags_skips_a_broken_image_in_four_boots,
}

/// A matrix of one unpinned entry, the image `reference` (bisect boots
/// its own entries).
fn one_tag(dir: &std::path::Path, reference: &str) -> std::path::PathBuf {
    write_matrix(dir, &format!("[[kernel]]\noci = \"{reference}\"\n"))
}

/// More tags than one page holds, pushed out of order, among tags of other
/// forms: listed whole, and the ones between two dated tags are those of
/// their form, in version (then date) order.
fn oci_tags_are_listed_across_pages_in_version_order() {
    let registry = Registry::start();
    let repository = "lvh-images/kernel-images";
    let dated = |n: usize| format!("6.1-20250101.{n:06}");
    let count = PAGE + 5;
    for n in (0..count).rev() {
        registry.push_layers(&format!("{repository}:{}", dated(n)), vec![base_layer()]);
    }
    for noise in [
        "6.1",
        "6.1-main",
        "bpf-next-20250101.000001",
        "6.6-20250101.000001",
    ] {
        registry.push_layers(&format!("{repository}:{noise}"), vec![base_layer()]);
    }
    let dir = tempfile::tempdir().unwrap();
    let matrix = one_tag(
        dir.path(),
        &format!("{}/{repository}:{}", registry.addr, dated(0)),
    );
    let matrix = Matrix::load(&matrix).unwrap();
    let fetcher = Fetcher::new(
        Cache::at(dir.path().join("cache")).unwrap(),
        &matrix,
        false,
        |_| {},
    );
    let good: Release = format!("oci:{}/{repository}:{}", registry.addr, dated(3))
        .parse()
        .unwrap();
    let listed = runtime()
        .block_on(fetcher.releases(&good.line, Arch::Amd64))
        .unwrap();
    assert_eq!(listed.len(), count + 4, "{listed:?}");

    let between = good
        .line
        .between(&listed, &dated(3), &dated(PAGE + 2))
        .unwrap();
    let expected: Vec<String> = (3..=PAGE + 2).map(dated).collect();
    assert_eq!(between, expected);

    let missing = Line::Oci {
        repository: format!("{}/no/such", registry.addr),
    };
    let err = runtime()
        .block_on(fetcher.releases(&missing, Arch::Amd64))
        .unwrap_err();
    let said = kmatrix::error_chain::error_chain(&err);
    assert!(
        said.contains("cannot list the tags") && said.contains("no/such"),
        "{said}"
    );
}

/// A good end whose layer is gone is skipped (its fetch fails before any
/// VM starts), and, nothing being left to compare with, said; the skip is
/// kept in the cache's bisect/ state.
fn an_unpullable_good_end_is_skipped_and_said() {
    let registry = Registry::start();
    let repository = "ci-kernels/stand-in";
    let gone = base_layer();
    let gone_digest = format!("sha256:{}", hex::encode(Sha256::digest(&gone)));
    registry.push_layers(&format!("{repository}:6.1.1"), vec![gone]);
    for p in 2..=3 {
        let layer = crate::oci_lvh::layer(&[(format!("etc/{p}"), vec![b'x'])]);
        registry.push_layers(&format!("{repository}:6.1.{p}"), vec![layer]);
    }
    registry.delete_blob(repository, &gone_digest);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = one_tag(dir.path(), &format!("{}/{repository}:6.1.1", registry.addr));
    let image = format!("oci:{}/{repository}", registry.addr);
    let (good, bad) = (format!("{image}:6.1.1"), format!("{image}:6.1.3"));
    let object = example("loop_sum.bpf.c");
    let args = ["bisect", "--good", &good, "--bad", &bad, &object];

    let run = run_in(&matrix, &cache, &args);
    let out = exited(&run, 3);
    assert!(
        out.contains("6.1.1: skipped, it could not be booted"),
        "{out}"
    );
    assert!(
        out.contains("the good end 6.1.1 could not be booted"),
        "{out}"
    );
    let states: Vec<_> = std::fs::read_dir(cache.join("bisect")).unwrap().collect();
    assert_eq!(states.len(), 1);
    let state = std::fs::read_to_string(states[0].as_ref().unwrap().path()).unwrap();
    assert!(state.contains("\"skipped\""), "{state}");
    assert!(state.contains("\"6.1.1\""), "{state}");
    assert!(
        state.contains(&format!("oci:{}/{repository}:6.1.1", registry.addr)),
        "{state}"
    );
}

/// Eight tags `5.10.1` … `5.10.8`: 5.10 builds up to 5.10.4, 6.1 builds
/// from 5.10.5 on (`bpf_loop`, 5.17, loads only on the latter); 5.10.6's
/// kernel layer is gone from the registry. The search skips 5.10.6 for its
/// neighbour and still boots four kernels.
fn bisect_over_oci_tags_skips_a_broken_image_in_four_boots() {
    let (old, new) = (shipped_kernel("5.10"), shipped_kernel("6.1"));
    let registry = Registry::start();
    let repository = "ci-kernels/stand-in";
    let mut broken_layer = None;
    for p in 1..=8 {
        let kernel = if p < 5 { &old } else { &new };
        let layer = match p {
            6 => {
                let layer = ci_kernels_layer(kernel, &[("etc/broken", b"6")]);
                broken_layer = Some(format!("sha256:{}", hex::encode(Sha256::digest(&layer))));
                layer
            }
            _ => ci_kernels_layer(kernel, &[]),
        };
        registry.push_layers(&format!("{repository}:5.10.{p}"), vec![layer]);
    }
    registry.delete_blob(repository, &broken_layer.unwrap());

    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = one_tag(
        dir.path(),
        &format!("{}/{repository}:5.10.1", registry.addr),
    );
    let object = example("loop_sum.bpf.c");
    let image = format!("oci:{}/{repository}", registry.addr);
    let (good, bad) = (format!("{image}:5.10.1"), format!("{image}:5.10.8"));
    let args = ["bisect", "--good", &good, "--bad", &bad, &object];

    let run = run_in(&matrix, &cache, &args);
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(
        out.contains("first release whose verdict differs: 5.10.5\n"),
        "{out}"
    );
    assert!(
        out.contains("skipped (could not be booted): 5.10.6 ("),
        "{out}"
    );
    assert!(!out.contains("upstream range"), "{out}");
    let booted = bisect_booted(&out);
    assert!(booted.len() <= 4, "{booted:?}");
    assert!(!booted.contains(&"5.10.6"), "{booted:?}");

    // Resumed from the cache: nothing boots, the skip is remembered.
    let again = run_in(&matrix, &cache, &args);
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(out.contains("booted: nothing"), "{out}");
    assert!(
        out.contains("skipped (could not be booted): 5.10.6 ("),
        "{out}"
    );
    assert!(
        out.contains("first release whose verdict differs: 5.10.5\n"),
        "{out}"
    );
}
