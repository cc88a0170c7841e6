//! Downloads and the cache, against a loopback Debian mirror: pins are
//! checked, failures leave nothing behind, processes share the cache.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::support::mirror::{
    against_mirror, cache_entries, detach_sign, matrix_file, packages_xz, release_for,
    serve_the_6_1_package, signed_index, test_keyring, the_6_1_package,
};
use crate::support::snapshot::{self, Build, SUITE};
use crate::support::{exited, kmatrix_in, run_in, text, Server};

crate::support::tests! {
    host a_corrupt_download_is_caught_by_the_pin_and_not_cached,
    host a_vanished_package_points_to_the_update_command,
    host two_processes_share_a_cache,
    host a_second_fetch_downloads_nothing,
    host a_stalled_mirror_times_out,
    host a_damaged_cache_entry_is_rebuilt,
    host a_tampered_index_is_refused_and_the_pins_stay,
    host an_index_whose_signature_does_not_verify_is_refused,
    host release_with_a_detached_signature_is_verified_too,
    host a_vanished_package_comes_from_the_snapshot_archive,
    host a_debian_build_is_pinned_from_the_snapshot_archive_and_fetched,
}

/// A download that does not match its pin is discarded, named with both
/// digests, and leaves the cache as it was.
fn a_corrupt_download_is_caught_by_the_pin_and_not_cached() {
    let package = "linux-image-6.1.0-99-cloud-amd64";
    let good = b"the kernel package the pin was taken from".to_vec();
    let mut corrupt = good.clone();
    corrupt[0] ^= 1;
    // The index agrees with the pin; the file served is one byte off.
    let index = packages_xz(&[(package, "pool/k.deb", &good)]);
    let mut files: BTreeMap<_, _> = signed_index("test", index).into_iter().collect();
    files.insert("/debian/pool/k.deb".to_owned(), corrupt.clone());
    let mirror = Server::start(files);
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), package, &Sha256::digest(&good));
    let cache = dir.path().join("cache");

    let output = against_mirror(&matrix, &cache, &mirror.url, &["kernels", "fetch"])
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(3), "a failed download: {out}");
    let expected = format!(
        "has sha256 {}, but kernels.toml pins {}; the download was discarded",
        hex::encode(Sha256::digest(&corrupt)),
        hex::encode(Sha256::digest(&good))
    );
    assert!(out.contains(&expected), "{out}");
    assert_eq!(cache_entries(&cache), 0, "the cache must be left clean");
}

/// A pinned package the mirror no longer has is named, with the fix.
fn a_vanished_package_points_to_the_update_command() {
    let index = packages_xz(&[("linux-image-6.1.0-100-cloud-amd64", "pool/new.deb", b"new")]);
    let mirror = Server::start(signed_index("test", index).into_iter().collect());
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), "linux-image-6.1.0-99-cloud-amd64", &[7; 32]);
    let output = against_mirror(
        &matrix,
        &dir.path().join("cache"),
        &mirror.url,
        &["kernels", "fetch"],
    )
    .output()
    .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(3), "a failed download: {out}");
    assert!(
        out.contains("package `linux-image-6.1.0-99-cloud-amd64` is not in `test`")
            && out.contains("Debian drops superseded kernels")
            && out.contains("run `kmatrix kernels update --kernels 6.1`"),
        "{out}"
    );
}

/// Two kmatrix processes filling one cache at once both succeed and leave
/// one whole entry of each kind.
fn two_processes_share_a_cache() {
    let (mirror, package, pin) = serve_the_6_1_package();
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), &package, &pin);
    let cache = dir.path().join("cache");
    let spawn = || {
        against_mirror(&matrix, &cache, &mirror.url, &["kernels", "fetch"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
    let count = |d: &str| std::fs::read_dir(cache.join(d)).unwrap().count();
    assert_eq!(
        (count("blobs/sha256"), count("kernels"), count("tmp")),
        (1, 1, 0)
    );
    let again = run_in(&matrix, &cache, &["kernels", "list"]);
    assert!(text(&again).contains(" yes "), "{}", text(&again));
}

/// A real kernel package served from a mirror is verified, extracted and
/// cached; the second fetch downloads nothing.
fn a_second_fetch_downloads_nothing() {
    let (mirror, package, pin) = serve_the_6_1_package();
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), &package, &pin);
    let cache = dir.path().join("cache");
    let fetch = || {
        against_mirror(&matrix, &cache, &mirror.url, &["kernels", "fetch"])
            .output()
            .unwrap()
    };
    let first = fetch();
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("sha256 verified"), "{}", text(&first));
    let requests = mirror.requests().len();
    assert_eq!(
        requests,
        3,
        "InRelease, index and package: {:?}",
        mirror.requests()
    );

    let second = fetch();
    assert!(second.status.success(), "{}", text(&second));
    assert!(!text(&second).contains("FETCH"), "{}", text(&second));
    assert_eq!(mirror.requests().len(), requests, "{:?}", mirror.requests());
    assert_eq!(std::fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
}

/// A mirror that accepts the connection and never answers is given up on
/// after the read timeout, with the error named; nothing hangs.
fn a_stalled_mirror_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold connections without a byte, for at most a minute.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < end {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), "linux-image-6.1.0-99-cloud-amd64", &[7; 32]);
    let start = std::time::Instant::now();
    let output = kmatrix_in(&matrix, &dir.path().join("cache"), &["kernels", "fetch"])
        .env("KMATRIX_DEBIAN_MIRROR", format!("http://{addr}/debian"))
        .env("KMATRIX_DEBIAN_KEYRING", test_keyring())
        .env("KMATRIX_READ_TIMEOUT", "2")
        .output()
        .unwrap();
    let out = exited(&output, 3);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(out.contains("timed out"), "{out}");
    assert_eq!(cache_entries(&dir.path().join("cache")), 0, "{out}");
}

/// A cache entry missing a file (a crash mid-way, a disk clean-up) is
/// rebuilt from its cached package, not a dead end.
fn a_damaged_cache_entry_is_rebuilt() {
    let (mirror, package, pin) = serve_the_6_1_package();
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), &package, &pin);
    let cache = dir.path().join("cache");
    let fetch = || {
        against_mirror(&matrix, &cache, &mirror.url, &["kernels", "fetch"])
            .output()
            .unwrap()
    };
    let first = fetch();
    assert!(first.status.success(), "{}", text(&first));
    let entry = std::fs::read_dir(cache.join("kernels"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(entry.join("vmlinuz")).unwrap();
    let requests = mirror.requests().len();

    let second = fetch();
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    assert!(out.contains("REPAIR"), "{out}");
    assert!(entry.join("vmlinuz").is_file(), "{out}");
    assert_eq!(mirror.requests().len(), requests, "the package was cached");
    assert_eq!(std::fs::read_dir(cache.join("kernels")).unwrap().count(), 1);
}

/// A mirror serving a Packages.xz other than the one the archive signed
/// (here with another pin for the package) is refused: `kernels update`
/// writes nothing, and the error says the mirror is at fault.
fn a_tampered_index_is_refused_and_the_pins_stay() {
    let package = "linux-image-6.1.0-99-cloud-amd64";
    let signed = packages_xz(&[(package, "pool/k.deb", b"what the archive published")]);
    let served = packages_xz(&[(package, "pool/k.deb", b"what an attacker would pin")]);
    let mut files: BTreeMap<_, _> = signed_index("test", signed).into_iter().collect();
    files.insert(
        "/debian/dists/test/main/binary-amd64/Packages.xz".to_owned(),
        served,
    );
    let mirror = Server::start(files);
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), package, &[7; 32]);
    let before = std::fs::read_to_string(&matrix).unwrap();
    let output = against_mirror(
        &matrix,
        &dir.path().join("cache"),
        &mirror.url,
        &["kernels", "update"],
    )
    .output()
    .unwrap();
    let out = exited(&output, 3);
    assert!(
        out.contains("the mirror served a Packages.xz for `test` that the archive did not sign"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&matrix).unwrap(), before);
}

/// An InRelease whose signed text was changed, or that no key of the
/// keyring signed, is not used.
fn an_index_whose_signature_does_not_verify_is_refused() {
    let package = "linux-image-6.1.0-99-cloud-amd64";
    let index = packages_xz(&[(package, "pool/k.deb", b"package")]);
    let mut files: BTreeMap<_, _> = signed_index("test", index).into_iter().collect();
    let inrelease = files.get_mut("/debian/dists/test/InRelease").unwrap();
    let signed = String::from_utf8(inrelease.clone()).unwrap();
    *inrelease = signed.replace("Suite: test", "Suite: tset").into_bytes();
    let mirror = Server::start(files);
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), package, &[7; 32]);
    for keyring in [
        test_keyring(),
        std::path::Path::new("/nonexistent/keyring.gpg"),
    ] {
        let output = kmatrix_in(&matrix, &dir.path().join("cache"), &["kernels", "update"])
            .env("KMATRIX_DEBIAN_MIRROR", format!("{}/debian", mirror.url))
            .env("KMATRIX_DEBIAN_KEYRING", keyring)
            .output()
            .unwrap();
        let out = exited(&output, 3);
        assert!(
            out.contains("the index of `test` at")
                && out.contains("could not be verified, so kmatrix uses none of it")
                && out.contains("its signature does not verify"),
            "{out}"
        );
    }
}

/// A mirror without InRelease is read the older way: Release with its
/// detached Release.gpg, verified the same; update then writes the new pin.
fn release_with_a_detached_signature_is_verified_too() {
    let old = "linux-image-6.1.0-99-cloud-amd64";
    let new = "linux-image-6.1.0-100-cloud-amd64";
    let index = packages_xz(&[(new, "pool/new.deb", b"the newer package")]);
    let release = release_for(&index);
    let mirror = Server::start(BTreeMap::from([
        (
            "/debian/dists/test/Release".to_owned(),
            release.clone().into_bytes(),
        ),
        (
            "/debian/dists/test/Release.gpg".to_owned(),
            detach_sign(&release),
        ),
        (
            "/debian/dists/test/main/binary-amd64/Packages.xz".to_owned(),
            index,
        ),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), old, &[7; 32]);
    let output = against_mirror(
        &matrix,
        &dir.path().join("cache"),
        &mirror.url,
        &["kernels", "update"],
    )
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let updated = std::fs::read_to_string(&matrix).unwrap();
    assert!(
        updated.contains(&format!("package = \"{new}\"")),
        "{updated}"
    );
}

/// A pinned package the mirror no longer has comes from the snapshot
/// archive (a loopback stand-in here): every build of it there is tried
/// until one matches the pin, and the line says where it came from.
fn a_vanished_package_comes_from_the_snapshot_archive() {
    let (package, pin, deb) = the_6_1_package();
    let mirror = Server::start(
        signed_index(
            "test",
            packages_xz(&[("linux-image-6.1.0-100-cloud-amd64", "pool/new.deb", b"new")]),
        )
        .into_iter()
        .collect(),
    );
    let (older, newer) = ("6.1.100-1", "6.1.101-1");
    let snapshot = Server::start(BTreeMap::from([
        (
            format!("/mr/binary/{package}/"),
            format!(
                r#"{{"binary":"{package}","result":[{{"binary_version":"{newer}","name":"linux","source":"linux","version":"{newer}"}},{{"binary_version":"{older}","name":"linux","source":"linux","version":"{older}"}}]}}"#
            )
            .into_bytes(),
        ),
        (
            format!("/mr/binary/{package}/{newer}/binfiles"),
            br#"{"result":[{"architecture":"amd64","hash":"aaaa"}]}"#.to_vec(),
        ),
        (
            format!("/mr/binary/{package}/{older}/binfiles"),
            br#"{"result":[{"architecture":"amd64","hash":"bbbb"}]}"#.to_vec(),
        ),
        // The newer build is another package; the older is the pinned one.
        ("/file/aaaa".to_owned(), b"another build".to_vec()),
        ("/file/bbbb".to_owned(), deb),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_file(dir.path(), &package, &pin);
    let output = against_mirror(
        &matrix,
        &dir.path().join("cache"),
        &mirror.url,
        &["kernels", "fetch"],
    )
    .env("KMATRIX_DEBIAN_SNAPSHOT", &snapshot.url)
    .output()
    .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("gone from the mirror; from the snapshot archive"),
        "{out}"
    );
    assert!(
        snapshot.requests().contains(&"/file/bbbb".to_owned()),
        "{out}"
    );
}

/// A `debian = { suite, build }` entry is pinned from the signed index the
/// snapshot archive kept when it first saw the build (a tampered one is
/// refused and pins nothing), then fetched from the archive by its pin.
fn a_debian_build_is_pinned_from_the_snapshot_archive_and_fetched() {
    let (package, pin, deb) = the_6_1_package();
    let build = package
        .strip_prefix("linux-image-")
        .and_then(|p| p.strip_suffix("-cloud-amd64"))
        .expect("the shipped 6.1 kernel is a cloud-amd64 image")
        .to_owned();
    let build = Build::new(&build, "6.1.85+1", deb);
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("kernels.toml");
    let entry = format!(
        "[[kernel]]\ndebian = {{ suite = \"{SUITE}\", build = \"{}\" }}\n",
        build.name
    );
    std::fs::write(&matrix, &entry).unwrap();
    let run = |snapshot: &Server, args: &[&str]| {
        kmatrix_in(&matrix, &dir.path().join("cache"), args)
            .env("KMATRIX_DEBIAN_KEYRING", test_keyring())
            .env("KMATRIX_DEBIAN_SNAPSHOT", &snapshot.url)
            .output()
            .unwrap()
    };

    // The Packages.xz served is not the one the InRelease signs.
    let mut files = snapshot::archive(std::slice::from_ref(&build));
    files.insert(
        format!(
            "/archive/debian/{}/dists/{SUITE}/main/binary-amd64/Packages.xz",
            snapshot::first_seen(0)
        ),
        packages_xz(&[(&package, "k.deb", b"other")]),
    );
    let tampered = Server::start(files);
    let output = run(&tampered, &["kernels", "update"]);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("did not sign"), "{out}");
    assert_eq!(std::fs::read_to_string(&matrix).unwrap(), entry);

    let snapshot = Server::start(snapshot::archive(std::slice::from_ref(&build)));
    let output = run(&snapshot, &["kernels", "update"]);
    assert!(output.status.success(), "{}", text(&output));
    let updated = std::fs::read_to_string(&matrix).unwrap();
    assert!(updated.contains(&hex::encode(pin)), "{updated}");

    let output = run(&snapshot, &["kernels", "fetch"]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("from the snapshot archive"), "{out}");
    assert!(snapshot.requests().contains(&build.file()), "{out}");

    // A build whose file no longer matches the pin is refused.
    let mut files = snapshot::archive(std::slice::from_ref(&build));
    files.insert(build.file(), b"another build".to_vec());
    let other = Server::start(files);
    let output = run(&other, &["kernels", "fetch"]);
    let _ = std::fs::remove_dir_all(dir.path().join("cache"));
    let output_again = run(&other, &["kernels", "fetch"]);
    let out = text(&output_again);
    assert!(
        output.status.success(),
        "the cached build is used: {}",
        text(&output)
    );
    assert!(!output_again.status.success(), "{out}");
    assert!(out.contains("matches the pin"), "{out}");
}
