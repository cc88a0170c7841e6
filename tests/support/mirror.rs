//! A loopback Debian mirror: a `Packages.xz` index and the packages it
//! names, and matrix files pinning them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use kmatrix::kernels::Matrix;
use sha2::{Digest, Sha256};

use super::{kmatrix, repo, text, Server};

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

/// A loopback mirror serving the shipped 6.1 kernel package (taken from the
/// user's cache, fetched there first if need be); with its name and pin.
pub fn serve_the_6_1_package() -> (Server, String, [u8; 32]) {
    let matrix = Matrix::load(&repo().join("kernels.toml")).unwrap();
    let entry = matrix.kernels.iter().find(|k| k.label == "6.1").unwrap();
    let (package, pin) = entry.sha256.iter().next().unwrap();
    let fetched = kmatrix(&["kernels", "fetch", "--kernels", "6.1"])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched));
    let user_cache = PathBuf::from(
        String::from_utf8(kmatrix(&["kernels", "cache-dir"]).output().unwrap().stdout)
            .unwrap()
            .trim(),
    );
    let deb = std::fs::read(user_cache.join("blobs/sha256").join(hex::encode(pin))).unwrap();
    let mirror = Server::start(BTreeMap::from([
        (
            "/debian/dists/test/main/binary-amd64/Packages.xz".to_owned(),
            packages_xz(&[(package, "pool/k.deb", &deb)]),
        ),
        ("/debian/pool/k.deb".to_owned(), deb),
    ]));
    (mirror, package.clone(), *pin)
}
