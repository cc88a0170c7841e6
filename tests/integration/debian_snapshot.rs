//! Debian's snapshot archive as a kernel source (`debian = { suite, build
//! }` entries and `debian:SUITE:BUILD` bisections), against a loopback
//! stand-in in its format ([`crate::support::snapshot`]). On the host: a
//! tampered index or package is refused (`cache.rs` has the pin, the fetch
//! and a tampered `Packages.xz`), a series is listed in build order and an
//! unfetchable good end skipped. In VMs: a build boots and passes the
//! example suite, then again `--offline` with the stand-in gone, and an
//! 8-build bisection.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::mirror::{shipped_package, test_keyring};
use crate::support::snapshot::{archive, first_seen, repackaged, Build, SUITE};
use crate::support::{bisect_booted, example, kmatrix, text, Server, GONE};

crate::support::tests! {
    host a_tampered_snapshot_inrelease_or_package_is_refused,
    host a_debian_series_is_listed_and_an_unfetchable_good_end_skipped,
    vm a_debian_snapshot_build_runs_the_example_suite_and_offline,
    vm bisect_over_debian_snapshot_builds_in_four_boots,
}

/// `kmatrix --matrix MATRIX ARGS…` against the snapshot archive at
/// `snapshot`, with its cache in `cache`, trusting the test key.
fn against(snapshot: &str, matrix: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut command = kmatrix(&["--matrix", matrix.to_str().unwrap()]);
    command
        .args(args)
        .env("KMATRIX_CACHE_DIR", cache)
        .env("KMATRIX_DEBIAN_KEYRING", test_keyring())
        .env("KMATRIX_DEBIAN_SNAPSHOT", snapshot);
    command
}

/// A matrix of one unpinned `debian = { suite, build }` entry.
fn matrix_of(dir: &Path, build: &str) -> PathBuf {
    let path = dir.join("kernels.toml");
    std::fs::write(
        &path,
        format!("[[kernel]]\ndebian = {{ suite = \"{SUITE}\", build = \"{build}\" }}\n"),
    )
    .unwrap();
    path
}

/// The blobs a cache holds.
fn blobs(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("blobs/sha256")).map_or(0, |d| d.count())
}

/// An `InRelease` whose signed text was changed pins nothing; a `.deb`
/// whose bytes are not those its signed index named is discarded, and
/// nothing is kept. Each error names the file, the archive and what to do.
fn a_tampered_snapshot_inrelease_or_package_is_refused() {
    let build = Build::new(
        "6.1.0-20",
        "6.1.85+1",
        b"the kernel package the index names".to_vec(),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), &build.name);
    let before = std::fs::read_to_string(&matrix).unwrap();

    let mut files = archive(std::slice::from_ref(&build));
    let inrelease = format!("/archive/debian/{}/dists/{SUITE}/InRelease", first_seen(0));
    let signed = String::from_utf8(files[&inrelease].clone()).unwrap();
    let forged = signed.replace("Origin: kmatrix tests", "Origin: kmatrix fakes");
    assert_ne!(forged, signed);
    files.insert(inrelease, forged.into_bytes());
    let forged = Server::start(files);
    let update = against(&forged.url, &matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    let out = text(&update);
    assert_eq!(update.status.code(), Some(3), "{out}");
    assert!(
        out.contains(&format!(
            "the index of `{SUITE}` at {}/archive/debian/{}",
            forged.url,
            first_seen(0)
        )) && out.contains("could not be verified, so kmatrix uses none of it")
            && out.contains("its signature does not verify")
            && out.contains("KMATRIX_DEBIAN_KEYRING"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&matrix).unwrap(), before);

    let genuine = Server::start(archive(std::slice::from_ref(&build)));
    let update = against(&genuine.url, &matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(update.status.success(), "{}", text(&update));
    let pin = hex::encode(Sha256::digest(&build.deb));
    assert!(
        std::fs::read_to_string(&matrix).unwrap().contains(&pin),
        "not pinned: {}",
        text(&update)
    );

    let mut files = archive(std::slice::from_ref(&build));
    let deb = files.get_mut(&build.file()).unwrap();
    deb[3] ^= 1;
    let swapped = hex::encode(Sha256::digest(&*deb));
    let swapped_archive = Server::start(files);
    let fetch = against(&swapped_archive.url, &matrix, &cache, &["kernels", "fetch"])
        .output()
        .unwrap();
    let out = text(&fetch);
    assert_eq!(fetch.status.code(), Some(3), "{out}");
    assert!(
        out.contains(&build.package())
            && out.contains(&swapped)
            && out.contains(&pin)
            && out.contains("kmatrix kernels update"),
        "{out}"
    );
    assert!(
        swapped_archive.requests().contains(&build.file()),
        "{:?}",
        swapped_archive.requests()
    );
    assert_eq!(blobs(&cache), 0, "a tampered package was kept");
}

/// Eight builds of `6.1.0-1x` (small stand-in packages), the first one's
/// file gone from the archive: bisect lists the series in the order it was
/// built, pins the good end from its signed index, and, its download
/// failing before any VM starts, skips it and says so; the listing, pin
/// and skip are kept in the cache's bisect/ state.
fn a_debian_series_is_listed_and_an_unfetchable_good_end_skipped() {
    let builds = series(|n| format!("stand-in package {n}").into_bytes());
    let mut files = archive(&builds);
    files.remove(&builds[0].file());
    let server = Server::start(files);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), "6.1.0-11");
    let object = example("loop_sum.bpf.c");
    let args = bisect_args(&object);

    let run = against(&server.url, &matrix, &cache, &args)
        .output()
        .unwrap();
    let out = text(&run);
    assert_eq!(run.status.code(), Some(3), "{out}");
    assert!(
        out.contains("8 releases of debian:bookworm (6.1 builds) from 6.1.0-11 to 6.1.0-18"),
        "{out}"
    );
    assert!(
        out.contains("6.1.0-11: skipped, it could not be booted")
            && out.contains(&builds[0].file()),
        "{out}"
    );
    assert!(
        out.contains("the good end 6.1.0-11 could not be booted"),
        "{out}"
    );
    let states: Vec<_> = std::fs::read_dir(cache.join("bisect")).unwrap().collect();
    assert_eq!(states.len(), 1);
    let state = std::fs::read_to_string(states[0].as_ref().unwrap().path()).unwrap();
    let names: Vec<String> = builds.iter().map(|b| format!("\"{}\"", b.name)).collect();
    let listed: Vec<usize> = names.iter().filter_map(|n| state.find(n)).collect();
    assert_eq!(listed.len(), 8, "{state}");
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "not in build order: {state}"
    );
    assert!(
        state.contains(&hex::encode(Sha256::digest(&builds[0].deb))),
        "the good end's pin: {state}"
    );
}

/// Eight builds `6.1.0-11` … `6.1.0-18` of one series, made by source
/// versions `6.1.61+1` … `6.1.68+1`; the `n`th's package (from 1) is
/// `deb(n)`.
fn series(deb: impl Fn(usize) -> Vec<u8>) -> Vec<Build> {
    (1..=8)
        .map(|n| {
            let name = format!("6.1.0-{}", 10 + n);
            Build::new(&name, &format!("6.1.{}+1", 60 + n), deb(n))
        })
        .collect()
}

/// A build the stand-in serves (Debian's shipped 6.1), pinned by
/// `kernels update`, boots and passes the example suite; then again with
/// `--offline` and the stand-in gone, from the cache.
fn a_debian_snapshot_build_runs_the_example_suite_and_offline() {
    let (package, pin, deb) = shipped_package("6.1");
    let name = package
        .strip_prefix("linux-image-")
        .and_then(|p| p.strip_suffix("-cloud-amd64"))
        .expect("the shipped 6.1 kernel is a cloud-amd64 image");
    let build = Build::new(name, "6.1.85+1", deb);
    let server = Server::start(archive(std::slice::from_ref(&build)));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), name);
    let update = against(&server.url, &matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(update.status.success(), "{}", text(&update));
    let pinned = std::fs::read_to_string(&matrix).unwrap();
    assert!(pinned.contains(&hex::encode(pin)), "{pinned}");

    let suite = example("kmatrix-suite.toml");
    let run = against(&server.url, &matrix, &cache, &["test", "--suite", &suite])
        .output()
        .unwrap();
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains(&format!("{name}-cloud-amd64")), "{out}");
    assert!(server.requests().contains(&build.file()), "{out}");

    let asked = server.requests().len();
    let offline = against(
        GONE,
        &matrix,
        &cache,
        &["test", "--suite", &suite, "--offline"],
    )
    .output()
    .unwrap();
    assert!(offline.status.success(), "{}", text(&offline));
    assert_eq!(server.requests().len(), asked, "offline asked the stand-in");
}

/// Eight builds `6.1.0-11` … `6.1.0-18` of one series: Debian's 5.10
/// kernel repackaged under the first four names, its 6.1 kernel under the
/// rest (`bpf_loop`, 5.17, loads only on the latter). The search boots at
/// most four and names `6.1.0-15`; run again, it boots nothing and
/// downloads nothing.
fn bisect_over_debian_snapshot_builds_in_four_boots() {
    let (old, new) = (shipped_package("5.10").2, shipped_package("6.1").2);
    let builds = series(|n| repackaged(if n < 5 { &old } else { &new }, &format!("build {n}")));
    let server = Server::start(archive(&builds));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), "6.1.0-11");
    let object = example("loop_sum.bpf.c");
    let args = bisect_args(&object);

    let run = against(&server.url, &matrix, &cache, &args)
        .output()
        .unwrap();
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("8 releases of debian:bookworm"), "{out}");
    assert!(
        out.contains("first release whose verdict differs: 6.1.0-15\n"),
        "{out}"
    );
    assert!(!out.contains("upstream range"), "{out}");
    let booted = bisect_booted(&out);
    assert!(booted.len() <= 4, "{booted:?}");
    let downloaded: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("/file/"))
        .collect();
    assert!(downloaded.len() <= 4, "{downloaded:?}");

    // Resumed from the cache: nothing boots or downloads again.
    let asked = server.requests().len();
    let again = against(&server.url, &matrix, &cache, &args)
        .output()
        .unwrap();
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(out.contains("booted: nothing"), "{out}");
    assert!(
        out.contains("first release whose verdict differs: 6.1.0-15\n"),
        "{out}"
    );
    let fetched_again: Vec<String> = server.requests()[asked..]
        .iter()
        .filter(|r| r.starts_with("/file/") || r.starts_with("/archive/"))
        .cloned()
        .collect();
    assert!(fetched_again.is_empty(), "{fetched_again:?}");
}

/// `kmatrix bisect` of `object` over the stand-in's series, from its first
/// build to its last.
fn bisect_args(object: &str) -> [&str; 6] {
    [
        "bisect",
        "--good",
        "debian:bookworm:6.1.0-11",
        "--bad",
        "debian:bookworm:6.1.0-18",
        object,
    ]
}
