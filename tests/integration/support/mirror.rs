//! A loopback Debian mirror: a `Packages.xz` index and the packages it
//! names, its `InRelease` signed with a key made for the tests, and matrix
//! files pinning them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use kmatrix::kernels::Matrix;
use sha2::{Digest, Sha256};

use super::{kmatrix, kmatrix_in, repo, text, Server};

pub fn packages_xz(entries: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut text = String::new();
    for (package, filename, data) in entries {
        text += &format!(
            "Package: {package}\nFilename: {filename}\nSize: {}\nSHA256: {}\n\n",
            data.len(),
            hex::encode(Sha256::digest(data))
        );
    }
    let mut xz = Vec::new();
    xz2::read::XzEncoder::new(text.as_bytes(), 1)
        .read_to_end(&mut xz)
        .unwrap();
    xz
}

pub fn matrix_file(dir: &Path, package: &str, pin: &[u8]) -> PathBuf {
    let path = dir.join("kernels.toml");
    std::fs::write(
        &path,
        format!(
            "[[kernel]]\nlabel = \"6.1\"\ndebian = {{ suite = \"test\", package = \"{package}\" }}\n[kernel.sha256]\n\"{package}\" = \"{}\"\n",
            hex::encode(pin)
        ),
    )
    .unwrap();
    path
}

pub fn cache_entries(cache: &Path) -> usize {
    ["blobs/sha256", "kernels", "tmp"]
        .iter()
        .map(|d| std::fs::read_dir(cache.join(d)).map_or(0, |e| e.count()))
        .sum()
}

/// The shipped 6.1 kernel package: its name, pin and bytes.
pub fn the_6_1_package() -> (String, [u8; 32], Vec<u8>) {
    shipped_package("6.1")
}

/// The first package of the shipped kernel `label` (from the user's
/// cache, fetched there first if need be): its name, pin and bytes.
pub fn shipped_package(label: &str) -> (String, [u8; 32], Vec<u8>) {
    let matrix = Matrix::load(&repo().join("kernels.toml")).unwrap();
    let entry = matrix.kernels.iter().find(|k| k.label == label).unwrap();
    let (package, pin) = entry.sha256.iter().next().unwrap();
    let fetched = kmatrix(&["kernels", "fetch", "--kernels", label])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched));
    let user_cache = PathBuf::from(
        String::from_utf8(kmatrix(&["kernels", "cache-dir"]).output().unwrap().stdout)
            .unwrap()
            .trim(),
    );
    let deb = std::fs::read(user_cache.join("blobs/sha256").join(hex::encode(pin))).unwrap();
    (package.clone(), *pin, deb)
}

/// A loopback mirror serving the shipped 6.1 kernel package; with its name
/// and pin.
pub fn serve_the_6_1_package() -> (Server, String, [u8; 32]) {
    let (package, pin, deb) = the_6_1_package();
    let mut files: BTreeMap<String, Vec<u8>> =
        signed_index("test", packages_xz(&[(&package, "pool/k.deb", &deb)]))
            .into_iter()
            .collect();
    files.insert("/debian/pool/k.deb".to_owned(), deb);
    let mirror = Server::start(files);
    (mirror, package, pin)
}

/// A signing key made for this test process: its GnuPG home and the
/// keyring that verifies it.
struct TestKey {
    home: tempfile::TempDir,
    keyring: PathBuf,
}

pub fn gpg(home: &Path) -> Command {
    let mut command = Command::new("gpg");
    command.arg("--homedir").arg(home).args([
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    command
}

/// Held while a test key signs: each signer ends the key's gpg-agent after
/// it, which would break another test's signing with the same key midway.
pub fn signing() -> MutexGuard<'static, ()> {
    static SIGNING: Mutex<()> = Mutex::new(());
    SIGNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Ends the key's gpg-agent, so that no test leaves one running.
pub fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home)
        .args(["--kill", "gpg-agent"])
        .status();
}

/// A signing key made for the tests: a new GnuPG home holding `name`'s
/// `algo` key, its public key exported to `public` in that home (armored
/// when `armor`), and no gpg-agent left running.
pub fn generate_key(
    name: &str,
    algo: &str,
    public: &str,
    armor: bool,
) -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
    let made = gpg(home.path())
        .args(["--quick-gen-key", name, algo, "sign", "never"])
        .output()
        .expect("gpg runs (apt-get install gnupg)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = home.path().join(public);
    let mut export = gpg(home.path());
    if armor {
        export.arg("--armor");
    }
    let exported = export
        .arg("--output")
        .arg(&public)
        .arg("--export")
        .output()
        .unwrap();
    assert!(exported.status.success());
    stop_agent(home.path());
    (home, public)
}

fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let (home, keyring) = generate_key(
            "kmatrix test archive",
            "ed25519",
            "archive-keyring.gpg",
            false,
        );
        TestKey { home, keyring }
    })
}

/// The keyring that verifies [`signed_index`] (for `KMATRIX_DEBIAN_KEYRING`).
pub fn test_keyring() -> &'static Path {
    &test_key().keyring
}

/// `text`, clearsigned with the test key (an `InRelease`).
pub fn clearsign(text: &str) -> Vec<u8> {
    sign(text, "--clearsign")
}

/// `text`'s detached signature by the test key (a `Release.gpg`).
pub fn detach_sign(text: &str) -> Vec<u8> {
    sign(text, "--detach-sign")
}

fn sign(text: &str, how: &str) -> Vec<u8> {
    let key = test_key();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("Release");
    let output = dir.path().join("signed");
    std::fs::write(&input, text).unwrap();
    let _signing = signing();
    let signed = gpg(key.home.path())
        .arg("--output")
        .arg(&output)
        .arg(how)
        .arg(&input)
        .output()
        .unwrap();
    stop_agent(key.home.path());
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    std::fs::read(output).unwrap()
}

/// `kmatrix --matrix MATRIX ARGS…` with its cache in `cache` and the
/// loopback mirror at `mirror_url`, trusted through the test keyring.
pub fn against_mirror(matrix: &Path, cache: &Path, mirror_url: &str, args: &[&str]) -> Command {
    let mut command = kmatrix_in(matrix, cache, args);
    command
        .env("KMATRIX_DEBIAN_MIRROR", format!("{mirror_url}/debian"))
        .env("KMATRIX_DEBIAN_KEYRING", test_keyring());
    command
}

/// A `Release` naming `packages_xz`'s digest and size.
pub fn release_for(packages_xz: &[u8]) -> String {
    format!(
        "Origin: kmatrix tests\nSuite: test\nSHA256:\n {} {} main/binary-amd64/Packages.xz\n",
        hex::encode(Sha256::digest(packages_xz)),
        packages_xz.len()
    )
}

/// The files of `suite`'s index below `/debian/dists/`: `Packages.xz` and
/// an `InRelease` that signs it.
pub fn signed_index(suite: &str, packages_xz: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            format!("/debian/dists/{suite}/InRelease"),
            clearsign(&release_for(&packages_xz)),
        ),
        (
            format!("/debian/dists/{suite}/main/binary-amd64/Packages.xz"),
            packages_xz,
        ),
    ]
}
