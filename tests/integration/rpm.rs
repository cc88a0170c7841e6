//! The rpm source against a loopback repository in the real format
//! ([`crate::support::rpmrepo`]: rpmbuild, rpmsign, createrepo_c):
//! `kernels update` pins, fetches verify and extract, `--offline` works
//! from the cache, tampered metadata and packages are refused, and the
//! stand-in kernel boots and passes the example suite.

use std::path::Path;

use kmatrix::cache::Cache;
use kmatrix::kernels::{Fetcher, Matrix};
use sha2::{Digest, Sha256};

use crate::support::rpmrepo::{self, build, createrepo, files_below, kernel_specs, Spec};
use crate::support::{debian_6_1, repo, run_in, text, Server};

crate::support::tests! {
    host rpm_kernels_pin_verify_and_fetch,
    host rpm_tampering_is_refused,
    vm rpm_kernel_boots_the_example_suite,
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A package that is no kernel: what the refusals need.
fn tiny(release: &str) -> Spec<'_> {
    Spec {
        name: "kernel-core",
        version: "6.1.0",
        release,
        payload: "w2.xzdio",
        files: vec![("/lib/modules/6.1.0-tiny/vmlinuz".into(), b"IMAGE".to_vec())],
    }
}

/// The stand-in repository: the shipped kernel as `kernel-core` and
/// `kernel-modules-core` 6.1.0-50.test, an older 49.test and a 6.2 build
/// that `update` must pass over, metadata signed.
fn kernel_repo(dir: &Path) -> (Server, std::path::PathBuf) {
    let kernel = debian_6_1();
    let repo = dir.join("repo");
    let packages = repo.join("Packages");
    for spec in kernel_specs(&kernel, "50.test") {
        build(&spec, &packages, true);
    }
    build(&tiny("49.test"), &packages, true);
    build(
        &Spec {
            version: "6.2.0",
            ..tiny("1.test")
        },
        &packages,
        true,
    );
    createrepo(&repo, "xz", true);
    (rpmrepo::serve(&repo), repo)
}

/// `update` pins the newest build of the series and its modules package;
/// `fetch` verifies and extracts them; a fetcher with `offline` set works
/// from the downloads alone, and says what is missing when they are not
/// there.
fn rpm_kernels_pin_verify_and_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (server, repo) = kernel_repo(dir.path());
    let matrix = rpmrepo::matrix(
        dir.path(),
        "rpm-6.1",
        &server.url,
        "kernel-core-6.1.0-49.test",
    );
    let cache = dir.path().join("cache");

    let update = run_in(
        &matrix,
        &cache,
        &["kernels", "update", "--kernels", "rpm-6.1"],
    );
    assert!(update.status.success(), "{}", text(&update));
    let pinned = std::fs::read_to_string(&matrix).unwrap();
    let core = repo.join("Packages/kernel-core-6.1.0-50.test.x86_64.rpm");
    let modules = repo.join("Packages/kernel-modules-core-6.1.0-50.test.x86_64.rpm");
    for expected in [
        "# RPM kernels for the test".to_owned(),
        "package = \"kernel-core-6.1.0-50.test\"".to_owned(),
        format!(
            "\"kernel-core-6.1.0-50.test.x86_64\" = \"{}\"",
            sha256_of(&core)
        ),
        format!(
            "\"kernel-modules-core-6.1.0-50.test.x86_64\" = \"{}\"",
            sha256_of(&modules)
        ),
    ] {
        assert!(pinned.contains(&expected), "no `{expected}` in:\n{pinned}");
    }
    assert!(!pinned.contains("6.2.0"), "{pinned}");

    let fetch = run_in(
        &matrix,
        &cache,
        &["kernels", "fetch", "--kernels", "rpm-6.1"],
    );
    let out = text(&fetch);
    assert!(fetch.status.success(), "{out}");
    let release = debian_6_1().release;
    assert!(out.contains(&format!("cached {release}")), "{out}");
    assert!(
        server
            .requests()
            .iter()
            .any(|p| p.ends_with("repomd.xml.asc")),
        "{:?}",
        server.requests()
    );

    // Offline: the extracted kernel is dropped, its downloads kept.
    std::fs::remove_dir_all(cache.join("kernels")).unwrap();
    let matrix = Matrix::load(&matrix).unwrap();
    let entry = &matrix.kernels[0];
    let offline = |cache: &Path| {
        let fetcher = Fetcher::new(Cache::at(cache.to_owned()).unwrap(), &matrix, true, |_| {});
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(fetcher.fetch(entry))
    };
    let requests = server.requests().len();
    let artifacts = offline(&cache).unwrap();
    assert_eq!(artifacts.release, release);
    // The modules come from kernel-modules-core, as .ko.xz.
    assert_eq!(artifacts.modules, debian_6_1().modules);
    assert_eq!(
        server.requests().len(),
        requests,
        "offline asked the server"
    );
    let err = offline(&dir.path().join("empty-cache"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kernel `rpm-6.1` is not cached") && err.contains("--offline"),
        "{err}"
    );
}

/// Tampered metadata is refused before anything is pinned; an unsigned
/// package, a tampered header and a tampered payload are refused before
/// anything is extracted, each with what is wrong.
fn rpm_tampering_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    // Signed metadata: a changed repomd.xml, or a changed primary.xml.
    let signed = dir.path().join("signed");
    build(&tiny("1.test"), &signed.join("Packages"), true);
    createrepo(&signed, "xz", true);
    let mut files = files_below(&signed);
    let repomd = files["/repo/repodata/repomd.xml"].clone();
    let mut forged = String::from_utf8(repomd.clone()).unwrap();
    forged = forged.replacen("<revision>", "<revision>1", 1);
    files.insert("/repo/repodata/repomd.xml".into(), forged.into_bytes());
    let server = Server::start(files);
    let matrix = rpmrepo::matrix(
        dir.path(),
        "forged",
        &server.url,
        "kernel-core-6.1.0-1.test",
    );
    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    let out = text(&update);
    assert!(!update.status.success(), "{out}");
    assert!(
        out.contains("could not be verified, so kmatrix uses none of it: repomd.xml.asc:"),
        "{out}"
    );

    let mut files = files_below(&signed);
    let primary = files
        .keys()
        .find(|k| k.ends_with("primary.xml.xz"))
        .unwrap()
        .clone();
    let mut bytes = files[&primary].clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    files.insert(primary, bytes);
    let server = Server::start(files);
    let matrix = rpmrepo::matrix(
        dir.path(),
        "forged",
        &server.url,
        "kernel-core-6.1.0-1.test",
    );
    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    let out = text(&update);
    assert!(!update.status.success(), "{out}");
    assert!(out.contains("served a primary metadata file"), "{out}");
    assert!(out.contains("corrupt or tampered with"), "{out}");

    // Unsigned metadata (as most distributions publish it), gzip: the
    // packages' own signatures decide.
    let plain = dir.path().join("plain");
    let packages = plain.join("Packages");
    build(&tiny("2.test"), &packages, false);
    let header = build(&tiny("3.test"), &packages, true);
    let payload = build(&tiny("4.test"), &packages, true);
    let mut bytes = std::fs::read(&header).unwrap();
    let at = bytes
        .windows(19)
        .position(|w| w == b"kmatrix test kernel")
        .unwrap();
    bytes[at] = b'K';
    std::fs::write(&header, bytes).unwrap();
    let mut bytes = std::fs::read(&payload).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&payload, bytes).unwrap();
    createrepo(&plain, "gz", false);
    let server = rpmrepo::serve(&plain);
    let keyring = rpmrepo::rpm_key().public.display().to_string();
    let entry = |label: &str, release: &str| {
        format!(
            "[[kernel]]\nlabel = \"{label}\"\nrpm = {{ repo = \"{}/repo\", package = \"kernel-core-6.1.0-{release}\", keyring = \"{keyring}\" }}\nsha256 = {{ \"kernel-core-6.1.0-{release}.x86_64\" = \"{}\" }}\n",
            server.url,
            sha256_of(&packages.join(format!("kernel-core-6.1.0-{release}.x86_64.rpm")))
        )
    };
    let matrix = dir.path().join("plain.toml");
    std::fs::write(
        &matrix,
        [
            entry("unsigned", "2.test"),
            entry("bad-header", "3.test"),
            entry("bad-payload", "4.test"),
        ]
        .concat(),
    )
    .unwrap();
    for (label, says) in [
        ("unsigned", "kernel-core-6.1.0-2.test: it is not signed"),
        (
            "bad-header",
            "kernel-core-6.1.0-3.test: its header has sha256",
        ),
        (
            "bad-payload",
            "kernel-core-6.1.0-4.test: its payload has sha256",
        ),
    ] {
        let fetch = run_in(&matrix, &cache, &["kernels", "fetch", "--kernels", label]);
        let out = text(&fetch);
        assert!(!fetch.status.success(), "{label}: {out}");
        assert!(out.contains(says), "{label}: {out}");
    }
    assert_eq!(
        std::fs::read_dir(cache.join("kernels")).map_or(0, |d| d.count()),
        0,
        "a refused package was extracted"
    );
}

/// The stand-in kernel, pinned by `update`, boots and passes the example
/// suite.
fn rpm_kernel_boots_the_example_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _repo) = kernel_repo(dir.path());
    let matrix = rpmrepo::matrix(
        dir.path(),
        "rpm-6.1",
        &server.url,
        "kernel-core-6.1.0-50.test",
    );
    let cache = dir.path().join("cache");
    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    assert!(update.status.success(), "{}", text(&update));
    let suite = repo().join("tests/example/kmatrix-suite.toml");
    let run = run_in(
        &matrix,
        &cache,
        &[
            "test",
            "--kernels",
            "rpm-6.1",
            "--suite",
            suite.to_str().unwrap(),
        ],
    );
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    let release = debian_6_1().release;
    assert!(out.contains(&format!("rpm-6.1  UP    {release}")), "{out}");
    assert!(out.contains("no failures: 15 tests on 1 kernels"), "{out}");
}
