//! Ubuntu's mainline builds, from a loopback stand-in in their layout:
//! `<base>/` listing `vX.Y.Z/` directories, each with an `amd64/` holding
//! the generic kernel's `.deb`s (shipped Debian kernels under the mainline
//! packages' names) and a `CHECKSUMS` signed by the test key. Pins,
//! verification and listing on the host; the example suite and
//! `kmatrix bisect` in VMs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kmatrix::cache::Cache;
use kmatrix::kernels::source::listing::Line;
use kmatrix::kernels::{FetchError, Fetcher, Matrix};
use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use crate::support::mirror::{detach_sign, shipped_package, test_keyring};
use crate::support::{bisect_booted, debian_6_1, example, kmatrix_in, text, Server, GONE};

crate::support::tests! {
    host mainline_pins_verify_and_fetch,
    host mainline_refuses_a_tampered_checksums_or_package,
    host mainline_works_offline_from_the_cache,
    host mainline_lists_releases_in_version_order,
    vm mainline_kernel_runs_the_example_suite,
    vm bisect_finds_the_first_bad_release_in_four_boots,
}

/// The bytes of the shipped Debian kernel `label`'s package.
fn shipped(label: &str) -> Vec<u8> {
    shipped_package(label).2
}

/// The image package's name in release `version` (`5.10.3`), as the
/// mainline builds name it.
fn image_package(version: &str) -> String {
    let abi: String = version
        .split('.')
        .map(|n| format!("{n:0>2}"))
        .collect::<String>();
    format!("linux-image-unsigned-{version}-{abi}-generic")
}

/// The stand-in's files for `releases` (version, .deb bytes), below
/// `/mainline`; `tamper` changes them after signing.
fn stand_in(
    releases: &[(&str, &[u8])],
    tamper: impl Fn(&mut BTreeMap<String, Vec<u8>>),
) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut index = String::from("<html><body><pre><a href=\"../\">../</a>\n");
    for (version, deb) in releases {
        let tag = format!("v{version}");
        index += &format!("<a href=\"{tag}/\">{tag}/</a>  2024-12-14 10:46  -\n");
        let file = format!(
            "{}_{version}.202412141046_amd64.deb",
            image_package(version)
        );
        let checksums = format!(
            "# Checksums, check with the command below:\n#     shasum -c CHECKSUMS\n#\n# Checksums-Sha256:\n{}  {file}\n",
            hex::encode(Sha256::digest(deb))
        );
        let dir = format!("/mainline/{tag}");
        files.insert(
            format!("{dir}/"),
            b"<a href=\"amd64/\">amd64/</a>\nTest amd64 succeeded\n".to_vec(),
        );
        files.insert(
            format!("{dir}/amd64/CHECKSUMS.gpg"),
            detach_sign(&checksums),
        );
        files.insert(format!("{dir}/amd64/CHECKSUMS"), checksums.into_bytes());
        files.insert(format!("{dir}/amd64/{file}"), deb.to_vec());
    }
    index += "</pre></body></html>\n";
    files.insert("/mainline/".into(), index.into_bytes());
    tamper(&mut files);
    files
}

/// `kmatrix --matrix MATRIX ARGS…` against the stand-in at `server`, with
/// its cache in `cache`, trusting the test key.
fn against(server: &Server, matrix: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut command = kmatrix_in(matrix, cache, args);
    command
        .env("KMATRIX_MAINLINE_BASE", format!("{}/mainline", server.url))
        .env("KMATRIX_MAINLINE_KEYRING", test_keyring());
    command
}

/// A matrix of unpinned mainline entries for `versions`.
fn matrix_of(dir: &Path, versions: &[&str]) -> PathBuf {
    let path = dir.join("kernels.toml");
    let entries: String = versions
        .iter()
        .map(|v| format!("[[kernel]]\nlabel = \"{v}\"\nmainline = \"{v}\"\n"))
        .collect();
    std::fs::write(&path, entries).unwrap();
    path
}

fn mainline_pins_verify_and_fetch() {
    let deb = shipped("6.1");
    let server = Server::start(stand_in(&[("6.1.1", &deb)], |_| {}));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), &["v6.1.1"]);

    let update = against(&server, &matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(update.status.success(), "{}", text(&update));
    let pinned = std::fs::read_to_string(&matrix).unwrap();
    let pin = hex::encode(Sha256::digest(&deb));
    assert!(
        pinned.contains(&format!("\"{}\" = \"{pin}\"", image_package("6.1.1"))),
        "{pinned}"
    );

    let fetch = against(&server, &matrix, &cache, &["kernels", "fetch"])
        .output()
        .unwrap();
    assert!(fetch.status.success(), "{}", text(&fetch));
    assert!(cache.join("blobs/sha256").join(&pin).is_file());
    assert!(server
        .requests()
        .iter()
        .any(|r| r == "/mainline/v6.1.1/amd64/CHECKSUMS.gpg"));

    // Cached: a stand-in that has nothing is not asked for anything.
    let gone = Server::start(BTreeMap::new());
    let again = against(&gone, &matrix, &cache, &["kernels", "fetch"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert!(gone.requests().is_empty(), "{:?}", gone.requests());
}

fn mainline_refuses_a_tampered_checksums_or_package() {
    let deb = shipped("6.1");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), &["6.1.1"]);

    let forged = Server::start(stand_in(&[("6.1.1", &deb)], |files| {
        let sums = files.get_mut("/mainline/v6.1.1/amd64/CHECKSUMS").unwrap();
        sums.extend_from_slice(format!("{}  evil.deb\n", "0".repeat(64)).as_bytes());
    }));
    let update = against(&forged, &matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    let out = text(&update);
    assert!(!update.status.success(), "{out}");
    assert!(
        out.contains("could not be verified, so kmatrix uses none of it"),
        "{out}"
    );
    assert!(!std::fs::read_to_string(&matrix).unwrap().contains("sha256"));

    let good = Server::start(stand_in(&[("6.1.1", &deb)], |_| {}));
    let update = against(&good, &matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(update.status.success(), "{}", text(&update));
    let swapped = Server::start(stand_in(&[("6.1.1", &deb)], |files| {
        for (path, body) in files.iter_mut() {
            if path.ends_with(".deb") {
                body[1000] ^= 1;
            }
        }
    }));
    // The CHECKSUMS there still names the pinned digest; the bytes differ.
    let fetch = against(&swapped, &matrix, &cache, &["kernels", "fetch"])
        .output()
        .unwrap();
    let out = text(&fetch);
    assert!(!fetch.status.success(), "{out}");
    assert!(out.contains("but kernels.toml pins"), "{out}");
    assert_eq!(
        std::fs::read_dir(cache.join("blobs/sha256")).map_or(0, |d| d.count()),
        0,
        "a tampered package was kept"
    );
}

/// After a fetch, a fetcher with `offline` set rebuilds the kernel from
/// the cached package with the configured base unreachable, asking the
/// stand-in nothing; without the cache it is refused, naming the kernel.
fn mainline_works_offline_from_the_cache() {
    let deb = shipped("6.1");
    let server = Server::start(stand_in(&[("6.1.1", &deb)], |_| {}));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), &["6.1.1"]);
    for step in ["update", "fetch"] {
        let run = against(&server, &matrix, &cache, &["kernels", step])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run));
    }
    let asked = server.requests().len();

    // The extracted kernel is dropped, its package kept; the base now
    // points where nothing listens.
    std::fs::remove_dir_all(cache.join("kernels")).unwrap();
    let pinned = std::fs::read_to_string(&matrix).unwrap();
    let gone = format!("[mainline]\nbase = \"{GONE}/mainline/\"\n\n{pinned}");
    let parsed = Matrix::parse(&gone, &matrix).unwrap();
    let entry = &parsed.kernels[0];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let offline = |cache: PathBuf| {
        let fetcher = Fetcher::new(Cache::at(cache).unwrap(), &parsed, true, |_| {});
        runtime.block_on(fetcher.fetch(entry))
    };
    let artifacts = offline(cache.clone()).unwrap();
    assert_eq!(artifacts.release, debian_6_1().release);
    assert_eq!(server.requests().len(), asked, "offline asked the stand-in");

    match offline(dir.path().join("empty")) {
        Err(err @ FetchError::Offline { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("kernel `6.1.1` is not cached")
                    && message.contains(&image_package("6.1.1"))
                    && message.contains("kmatrix kernels fetch --kernels 6.1.1"),
                "{message}"
            );
        }
        other => panic!("expected an offline error, got {other:?}"),
    }
}

fn mainline_lists_releases_in_version_order() {
    let server = Server::start(stand_in(
        &[("6.6.9", b"a"), ("6.6.10", b"b"), ("6.6", b"c")],
        |_| {},
    ));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[mainline]\nbase = \"{}/mainline/\"\n[[kernel]]\nmainline = \"6.6.9\"\n",
        server.url
    );
    let matrix = Matrix::parse(&text, &dir.path().join("kernels.toml")).unwrap();
    let fetcher = Fetcher::new(
        Cache::at(dir.path().join("cache")).unwrap(),
        &matrix,
        false,
        |_| {},
    );
    let listed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fetcher.releases(&Line::Mainline, Arch::Amd64))
        .unwrap();
    let tags = Line::Mainline.between(&listed, "v6.6", "v6.6.10").unwrap();
    assert_eq!(tags, ["v6.6", "v6.6.9", "v6.6.10"]);
}

fn mainline_kernel_runs_the_example_suite() {
    let deb = shipped("6.1");
    let server = Server::start(stand_in(&[("6.1.1", &deb)], |_| {}));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), &["6.1.1"]);
    let update = against(&server, &matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(update.status.success(), "{}", text(&update));
    let suite = example("kmatrix-suite.toml");
    let run = against(&server, &matrix, &cache, &["test", "--suite", &suite])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
}

/// Eight "point releases": 5.10 builds up to v5.10.4, 6.1 builds from
/// v5.10.5 on; `bpf_loop` (5.17) loads only on the latter.
fn bisect_finds_the_first_bad_release_in_four_boots() {
    let (old, new) = (shipped("5.10"), shipped("6.1"));
    let releases: Vec<(String, &[u8])> = (1..=8)
        .map(|p| (format!("5.10.{p}"), if p < 5 { &old[..] } else { &new[..] }))
        .collect();
    let named: Vec<(&str, &[u8])> = releases.iter().map(|(v, d)| (v.as_str(), *d)).collect();
    let server = Server::start(stand_in(&named, |_| {}));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_of(dir.path(), &["5.10.1"]);
    let object = example("loop_sum.bpf.c");
    let args = [
        "bisect",
        "--good",
        "mainline:5.10.1",
        "--bad",
        "mainline:v5.10.8",
        &object,
    ];

    let run = against(&server, &matrix, &cache, &args).output().unwrap();
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(
        out.contains("first release whose verdict differs: v5.10.5"),
        "{out}"
    );
    assert!(out.contains("upstream range: v5.10.4..v5.10.5"), "{out}");
    let booted = bisect_booted(&out);
    assert!(booted.len() <= 4, "{booted:?}");

    // Resumed from the cache: nothing boots again.
    let again = against(&server, &matrix, &cache, &args).output().unwrap();
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(out.contains("booted: nothing"), "{out}");
    assert!(out.contains("upstream range: v5.10.4..v5.10.5"), "{out}");
}
