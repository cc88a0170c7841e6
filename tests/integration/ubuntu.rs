//! Ubuntu's archive as a kernel source, against a loopback stand-in in its
//! format ([`crate::support::ubuntu`]): `kernels update` pins the image and
//! the modules package it depends on, fetches verify the signed index, the
//! index's digests and the pins, a tampered index or package is refused,
//! `--offline` works from the cache, and the kernel boots and passes the
//! example suite; arm64 kernels come from the ports archive
//! (`[ubuntu] ports_mirror`), their gzip-ed `vmlinuz` unpacked once.

use std::collections::BTreeMap;

use kmatrix::cache::Cache;
use kmatrix::kernels::{FetchError, Fetcher, Matrix};
use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use crate::support::mirror::cache_entries;
use crate::support::text;
use crate::support::ubuntu::{
    archive, kernel, kernel_for, kmatrix_ubuntu, matrix_file, packages, pin_in, pin_of,
    ports_matrix_file, serve, serve_for, SUITE,
};
use crate::support::{example, exited, Server};

crate::support::tests! {
    host ubuntu_kernels_are_pinned_verified_and_fetched_and_work_offline,
    host a_tampered_ubuntu_index_or_package_is_refused,
    vm the_ubuntu_stand_in_boots_and_runs_the_example_suite,
    host ubuntu_arm64_kernels_come_from_the_ports_archive,
    arm64 the_ubuntu_arm64_stand_in_boots_from_the_ports_archive,
}

/// `kernels update` moves an entry from an older image to the newest one
/// and pins it with its modules package (not the extras); the fetch
/// downloads those two, verified, and extracts the kernel; offline, the
/// cache alone serves it, and what is not cached is named.
fn ubuntu_kernels_are_pinned_verified_and_fetched_and_work_offline() {
    let kernel = kernel();
    let mirror = serve();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_file(dir.path(), &mirror.url, &kernel.older, &[]);

    let updated = kmatrix_ubuntu(&matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(updated.status.success(), "{}", text(&updated));
    let parsed = Matrix::load(&matrix).unwrap();
    let entry = &parsed.kernels[0];
    assert_eq!(
        entry.source.to_string(),
        format!("ubuntu:{SUITE}/{}", kernel.image)
    );
    let pinned: Vec<_> = entry.sha256.keys().cloned().collect();
    assert_eq!(pinned, [kernel.image.clone(), kernel.modules.clone()]);
    for (name, pin) in &entry.sha256 {
        assert_eq!(*pin, pin_of(name), "{name}");
    }

    let fetched = kmatrix_ubuntu(&matrix, &cache, &["kernels", "fetch"])
        .output()
        .unwrap();
    let out = text(&fetched);
    assert!(fetched.status.success(), "{out}");
    assert!(out.contains("sha256 verified"), "{out}");
    let requests = mirror.requests();
    for wanted in [&kernel.image, &kernel.modules] {
        assert!(
            requests.iter().any(|r| r.contains(&format!("/{wanted}_"))),
            "{wanted} not fetched: {requests:?}"
        );
    }
    assert!(
        !requests.iter().any(|r| r.contains(&kernel.extra)),
        "{requests:?}"
    );
    let listed = kmatrix_ubuntu(&matrix, &cache, &["kernels", "list"])
        .output()
        .unwrap();
    let out = text(&listed);
    assert!(
        out.contains("6.1.0-50-cloud-amd64") && out.contains(" yes "),
        "{out}"
    );

    // Offline: the extracted kernel is gone, its packages are cached.
    std::fs::remove_dir_all(cache.join("kernels")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let offline = Fetcher::new(Cache::at(cache.clone()).unwrap(), &parsed, true, |_| {});
    let artifacts = runtime.block_on(offline.fetch(entry)).unwrap();
    assert_eq!(artifacts.release, "6.1.0-50-cloud-amd64");
    let empty = Fetcher::new(
        Cache::at(dir.path().join("empty")).unwrap(),
        &parsed,
        true,
        |_| {},
    );
    match runtime.block_on(empty.fetch(entry)) {
        Err(err @ FetchError::Offline { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("--offline forbids downloading it")
                    && message.contains(&kernel.image),
                "{message}"
            );
        }
        other => panic!("expected an offline error, got {other:?}"),
    }
}

/// A modules package of the genuine one's size, with other bytes.
const FORGED: &[u8] = b"forged modules pack";

/// Small stand-in packages: an image depending on its modules.
fn small_debs() -> Vec<(String, String, Vec<u8>)> {
    vec![
        (
            "linux-image-unsigned-5.15.0-91-generic".into(),
            "kmod, linux-base (>= 4.5ubuntu1~16.04.1), linux-modules-5.15.0-91-generic".into(),
            b"the image package".to_vec(),
        ),
        (
            "linux-modules-5.15.0-91-generic".into(),
            String::new(),
            b"the modules package".to_vec(),
        ),
    ]
}

/// A Packages.xz other than the signed one, an InRelease whose text was
/// changed or that another key signed, and a package other than the pinned
/// one are each refused with the fault named; kernels.toml and the cache
/// stay as they were.
fn a_tampered_ubuntu_index_or_package_is_refused() {
    let debs = small_debs();
    let image = debs[0].0.clone();
    let signed = archive(&packages(&debs), &debs);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let dists = format!("/ubuntu/dists/{SUITE}");

    // The index served is not the one InRelease signs.
    let mut forged = debs.clone();
    forged[1].2 = b"what an attacker would pin".to_vec();
    let forged_files = archive(&packages(&forged), &forged);
    let mut files = signed.clone();
    let xz = format!("{dists}/main/binary-amd64/Packages.xz");
    files.insert(xz.clone(), forged_files[&xz].clone());
    let mirror = Server::start(files);
    let matrix = matrix_file(dir.path(), &mirror.url, &image, &[]);
    let before = std::fs::read_to_string(&matrix).unwrap();
    let output = kmatrix_ubuntu(&matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    let out = exited(&output, 3);
    assert!(
        out.contains(&format!(
            "the mirror served a Packages.xz for `{SUITE}` that the archive did not sign"
        )),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&matrix).unwrap(), before);

    // InRelease changed after signing; or signed by a key the keyring
    // (here Ubuntu's own, as shipped) does not hold.
    let mut files = signed.clone();
    let inrelease = files.get_mut(&format!("{dists}/InRelease")).unwrap();
    *inrelease = String::from_utf8(inrelease.clone())
        .unwrap()
        .replace("Codename: jammy", "Codename: jammu")
        .into_bytes();
    let changed = Server::start(files);
    let untrusted = Server::start(signed.clone());
    for (mirror, trust_test_key) in [(&changed, true), (&untrusted, false)] {
        let matrix = matrix_file(dir.path(), &mirror.url, &image, &[]);
        let mut command = kmatrix_ubuntu(&matrix, &cache, &["kernels", "update"]);
        if !trust_test_key {
            command.env_remove("KMATRIX_UBUNTU_KEYRING");
        }
        let output = command.output().unwrap();
        let out = exited(&output, 3);
        assert!(
            out.contains(&format!("the index of `{SUITE}` at {}/ubuntu", mirror.url))
                && out.contains("could not be verified, so kmatrix uses none of it")
                && out.contains("its signature does not verify")
                && out.contains("KMATRIX_UBUNTU_KEYRING"),
            "{out}"
        );
    }

    // The index is genuine, the modules package served is not (its size
    // is right: the digest catches it).
    assert_eq!(FORGED.len(), debs[1].2.len());
    let mut files = signed;
    let modules_url = files
        .keys()
        .find(|k| k.contains("/linux-modules-"))
        .unwrap()
        .clone();
    files.insert(modules_url, FORGED.to_vec());
    let mirror = Server::start(files);
    let pins: Vec<(&str, [u8; 32])> = debs
        .iter()
        .map(|(name, _, deb)| (name.as_str(), Sha256::digest(deb).into()))
        .collect();
    let matrix = matrix_file(dir.path(), &mirror.url, &image, &pins);
    let output = kmatrix_ubuntu(&matrix, &cache, &["kernels", "fetch"])
        .output()
        .unwrap();
    let out = exited(&output, 3);
    assert!(
        out.contains(&format!(
            "has sha256 {}, but kernels.toml pins {}; the download was discarded",
            hex::encode(Sha256::digest(FORGED)),
            hex::encode(Sha256::digest(&debs[1].2))
        )),
        "{out}"
    );
    let kept: BTreeMap<_, _> = std::fs::read_dir(cache.join("blobs/sha256"))
        .map(|d| d.flatten().map(|e| (e.file_name(), ())).collect())
        .unwrap_or_default();
    assert!(
        !kept.contains_key(std::ffi::OsStr::new(&hex::encode(Sha256::digest(FORGED)))),
        "{kept:?}"
    );
    assert!(cache_entries(&cache) <= 1, "at most the image package");
}

/// The stand-in kernel (Debian's 6.1 under Ubuntu's names and split),
/// pinned by `update`, boots and passes the example suite; then again with
/// `--offline` and the mirror unreachable, from the cache.
fn the_ubuntu_stand_in_boots_and_runs_the_example_suite() {
    let kernel = kernel();
    let mirror = serve();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = matrix_file(dir.path(), &mirror.url, &kernel.older, &[]);
    let updated = kmatrix_ubuntu(&matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(updated.status.success(), "{}", text(&updated));
    let suite = example("kmatrix-suite.toml");
    let run = |matrix: &std::path::Path, offline: bool| {
        let mut args = vec!["test", "--kernels", "ubuntu-6.1", "--suite", &suite];
        if offline {
            args.push("--offline");
        }
        kmatrix_ubuntu(matrix, &cache, &args).output().unwrap()
    };
    let first = run(&matrix, false);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("6.1.0-50-cloud-amd64"), "{out}");

    let pinned = std::fs::read_to_string(&matrix)
        .unwrap()
        .replace(&mirror.url, "http://127.0.0.1:9");
    let offline_dir = tempfile::tempdir().unwrap();
    let offline_matrix = offline_dir.path().join("kernels.toml");
    std::fs::write(&offline_matrix, pinned).unwrap();
    let again = run(&offline_matrix, true);
    assert!(again.status.success(), "{}", text(&again));
}

/// An arm64 entry reads the ports archive `[ubuntu] ports_mirror` names,
/// never the main one; without that setting, or with it naming a main
/// archive (which lists no arm64 index), it is refused with the setting
/// named. Pinned and fetched, its gzip-ed `vmlinuz` is unpacked into the
/// plain `Image` QEMU boots.
fn ubuntu_arm64_kernels_come_from_the_ports_archive() {
    let kernel = kernel_for(Arch::Arm64);
    let ports = serve_for(Arch::Arm64);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let main_url = format!("{}/ubuntu", ports.url);
    let ports_url = format!("{}/ubuntu-ports", ports.url);

    let unset = ports_matrix_file(dir.path(), &main_url, None, &kernel.older);
    let output = kmatrix_ubuntu(&unset, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains("no Ubuntu ports mirror configured: set KMATRIX_UBUNTU_PORTS_MIRROR or `[ubuntu] ports_mirror` in kernels.toml"),
        "{out}"
    );

    let amd64_only = crate::support::Server::start(archive(&packages(&[]), &[]));
    let wrong = ports_matrix_file(
        dir.path(),
        &main_url,
        Some(&format!("{}/ubuntu", amd64_only.url)),
        &kernel.older,
    );
    let output = kmatrix_ubuntu(&wrong, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains("the signed InRelease lists no main/binary-arm64/Packages.xz (is `[ubuntu] ports_mirror` a mirror of Ubuntu's ports archive?"),
        "{out}"
    );

    let matrix = ports_matrix_file(dir.path(), &main_url, Some(&ports_url), &kernel.older);
    let updated = kmatrix_ubuntu(&matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(updated.status.success(), "{}", text(&updated));
    let parsed = Matrix::load(&matrix).unwrap();
    let entry = &parsed.kernels[0];
    assert_eq!(entry.arch, Arch::Arm64);
    let pinned: Vec<_> = entry.sha256.keys().cloned().collect();
    assert_eq!(pinned, [kernel.image.clone(), kernel.modules.clone()]);
    for (name, pin) in &entry.sha256 {
        assert_eq!(*pin, pin_in(kernel, name), "{name}");
    }
    let fetched = kmatrix_ubuntu(&matrix, &cache, &["kernels", "fetch"])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched));
    let requests = ports.requests();
    assert!(
        requests.iter().all(|r| r.contains("/ubuntu-ports/")),
        "the main archive was asked: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains(&format!("/pool/main/l/linux-signed/{}_", kernel.image))),
        "{requests:?}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let offline = Fetcher::new(Cache::at(cache).unwrap(), &parsed, true, |_| {});
    let artifacts = runtime.block_on(offline.fetch(entry)).unwrap();
    assert_eq!(artifacts.release, "6.1.0-50-cloud-arm64");
    let image = std::fs::read(&artifacts.image).unwrap();
    assert_eq!(
        &image[..2],
        b"\x1f\x8b",
        "the vmlinuz is kept as shipped, gzip-ed"
    );
    let boot = std::fs::read(&artifacts.boot_image).unwrap();
    assert_eq!(&boot[0x38..0x3c], b"ARMd", "QEMU boots the plain Image");
    assert!(boot.len() > image.len());
}

/// The arm64 stand-in (Debian's 6.1-arm64 under the names Ubuntu's ports
/// archive gives it), pinned by `update`, boots and passes the example
/// suite.
fn the_ubuntu_arm64_stand_in_boots_from_the_ports_archive() {
    let kernel = kernel_for(Arch::Arm64);
    let ports = serve_for(Arch::Arm64);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = ports_matrix_file(
        dir.path(),
        &format!("{}/ubuntu", ports.url),
        Some(&format!("{}/ubuntu-ports", ports.url)),
        &kernel.older,
    );
    let updated = kmatrix_ubuntu(&matrix, &cache, &["kernels", "update"])
        .output()
        .unwrap();
    assert!(updated.status.success(), "{}", text(&updated));
    let suite = example("kmatrix-suite.toml");
    let run = kmatrix_ubuntu(
        &matrix,
        &cache,
        &["test", "--kernels", "ubuntu-6.1-arm64", "--suite", &suite],
    )
    .output()
    .unwrap();
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("6.1.0-50-cloud-arm64"), "{out}");
}
