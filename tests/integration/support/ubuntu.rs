//! A loopback stand-in for Ubuntu's archive, in its format: a suite's
//! `dists/<suite>/` with `Release`, `Release.gpg` and `InRelease` (signed
//! by the test key) listing `main/binary-amd64/Packages`, `.gz` and `.xz`
//! with their MD5Sum, SHA1 and SHA256; stanzas with Ubuntu's fields; and
//! `.deb`s (zstd members, as Ubuntu builds them) made from the shipped
//! Debian 6.1 kernel under Ubuntu's names and split:
//! `linux-image-unsigned-<abi>-generic` holds `/boot/vmlinuz-…` and depends
//! on `linux-modules-<abi>-generic`, which holds the config and
//! `/lib/modules/…`; `linux-modules-extra-…` depends on both, and an older
//! ABI (`-49`) is listed too, for `kernels update` to move from.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::mirror::{clearsign, detach_sign, test_keyring, the_6_1_package};
use super::{kmatrix_in, Server};

/// The suite the stand-in serves.
pub const SUITE: &str = "jammy-updates";

/// The stand-in's packages: names and contents.
pub struct Kernel {
    /// `linux-image-unsigned-6.1.0-50-generic`.
    pub image: String,
    /// `linux-modules-6.1.0-50-generic`.
    pub modules: String,
    /// `linux-modules-extra-6.1.0-50-generic`.
    pub extra: String,
    /// The image package the entries start from (`-49`, older).
    pub older: String,
    /// Every package: name, `Depends`, `.deb`.
    pub debs: Vec<(String, String, Vec<u8>)>,
}

/// The stand-in kernel, repackaged once per test process.
pub fn kernel() -> &'static Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let (debian, _, deb) = the_6_1_package();
        // linux-image-6.1.0-50-cloud-amd64 → 6.1.0-50.
        let abi = debian
            .strip_prefix("linux-image-")
            .and_then(|r| r.strip_suffix("-cloud-amd64"))
            .unwrap()
            .to_owned();
        let older_abi = abi.replace("-50", "-49");
        let name = |kind: &str, abi: &str| format!("linux-{kind}-{abi}-generic");
        let depends = |abi: &str| {
            format!(
                "kmod, linux-base (>= 4.5ubuntu1~16.04.1), {}",
                name("modules", abi)
            )
        };
        let (image_tar, modules_tar) = split(&deb);
        let extra_tar = tar_of(&[(
            format!("./usr/share/doc/{}/copyright", name("modules-extra", &abi)),
            b"stand-in".to_vec(),
        )]);
        let debs = vec![
            (name("image-unsigned", &abi), depends(&abi), image_tar),
            (name("modules", &abi), String::new(), modules_tar),
            (
                name("modules-extra", &abi),
                format!(
                    "{}, {} | {}, wireless-regdb",
                    name("modules", &abi),
                    name("image", &abi),
                    name("image-unsigned", &abi)
                ),
                extra_tar,
            ),
            (
                name("image-unsigned", &older_abi),
                depends(&older_abi),
                tar_of(&[("./boot/vmlinuz-old".into(), b"older".to_vec())]),
            ),
            (
                name("modules", &older_abi),
                String::new(),
                tar_of(&[("./boot/config-old".into(), b"older".to_vec())]),
            ),
        ]
        .into_iter()
        .map(|(package, depends, data)| {
            let deb = deb_of(&package, &depends, &data);
            (package, depends, deb)
        })
        .collect();
        Kernel {
            image: name("image-unsigned", &abi),
            modules: name("modules", &abi),
            extra: name("modules-extra", &abi),
            older: name("image-unsigned", &older_abi),
            debs,
        }
    })
}

/// The Debian package's `data.tar` split as Ubuntu splits a kernel: the
/// image, and everything else the kernel needs (config, System.map,
/// modules and their lists); documentation is left out.
fn split(deb: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut ar = ar::Archive::new(deb);
    let data = loop {
        let mut member = ar.next_entry().expect("a data.tar member").unwrap();
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if let Some(compression) = name.strip_prefix("data.tar") {
            assert_eq!(compression, ".xz", "Debian's 6.1 package uses xz");
            let mut data = Vec::new();
            xz2::read::XzDecoder::new(&mut member)
                .read_to_end(&mut data)
                .unwrap();
            break data;
        }
    };
    let mut image = tar::Builder::new(Vec::new());
    let mut modules = tar::Builder::new(Vec::new());
    let mut tar = tar::Archive::new(&data[..]);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let plain = path.trim_start_matches("./");
        let to = if plain.starts_with("boot/vmlinuz-") {
            &mut image
        } else if plain.starts_with("boot/") || plain.starts_with("lib/modules/") {
            &mut modules
        } else {
            continue;
        };
        let mut header = entry.header().clone();
        to.append_data(&mut header, &path, &mut entry).unwrap();
    }
    (image.into_inner().unwrap(), modules.into_inner().unwrap())
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, &data[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

/// A `.deb` as Ubuntu builds them: `debian-binary`, `control.tar.zst`,
/// `data.tar.zst`.
fn deb_of(package: &str, depends: &str, data_tar: &[u8]) -> Vec<u8> {
    let mut control = format!(
        "Package: {package}\nVersion: 6.1.0-50.50\nArchitecture: amd64\nMaintainer: kmatrix tests\nSection: kernel\n"
    );
    if !depends.is_empty() {
        control += &format!("Depends: {depends}\n");
    }
    control += "Description: stand-in for Ubuntu's kernel packages\n";
    let control_tar = tar_of(&[("./control".into(), control.into_bytes())]);
    let mut deb = ar::Builder::new(Vec::new());
    for (name, data) in [
        ("debian-binary", b"2.0\n".to_vec()),
        (
            "control.tar.zst",
            zstd::encode_all(&control_tar[..], 1).unwrap(),
        ),
        ("data.tar.zst", zstd::encode_all(data_tar, 1).unwrap()),
    ] {
        let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        deb.append(&header, &data[..]).unwrap();
    }
    deb.into_inner().unwrap()
}

/// The `Packages` text for `debs`, with the fields Ubuntu's archive writes.
pub fn packages(debs: &[(String, String, Vec<u8>)]) -> String {
    let mut text = String::new();
    for (package, depends, deb) in debs {
        text += &format!(
            "Package: {package}\nArchitecture: amd64\nVersion: 6.1.0-50.50\nPriority: optional\nSection: kernel\nSource: linux\nOrigin: Ubuntu\nMaintainer: Canonical Kernel Team <kernel-team@lists.ubuntu.com>\nBugs: https://bugs.launchpad.net/ubuntu/+filebug\nInstalled-Size: {}\n",
            deb.len() / 1024
        );
        if !depends.is_empty() {
            text += &format!("Depends: {depends}\n");
        }
        text += &format!(
            "Filename: {}\nSize: {}\nMD5sum: {}\nSHA1: {}\nSHA256: {}\nDescription: stand-in for Ubuntu's {package}\n\n",
            pool_path(package),
            deb.len(),
            coreutils_digest("md5sum", deb),
            coreutils_digest("sha1sum", deb),
            hex::encode(Sha256::digest(deb)),
        );
    }
    text
}

/// A coreutils digest (`md5sum`, `sha1sum`) of `data`, for the fields
/// Ubuntu's indexes carry beside SHA256.
fn coreutils_digest(tool: &str, data: &[u8]) -> String {
    let mut child = Command::new(tool)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Where Launchpad puts a package of the `linux` source.
fn pool_path(package: &str) -> String {
    let version = "6.1.0-50.50";
    format!("pool/main/l/linux/{package}_{version}_amd64.deb")
}

/// A compressed file and its three digests as a `Release` lists them.
struct Listed {
    path: String,
    data: Vec<u8>,
}

/// The suite's `Release` text (Ubuntu's fields) for `files`.
fn release(files: &[Listed]) -> String {
    let mut text = format!(
        "Origin: Ubuntu\nLabel: Ubuntu\nSuite: {SUITE}\nVersion: 22.04\nCodename: jammy\nDate: Thu, 04 Dec 2025 12:00:00 UTC\nArchitectures: amd64 arm64 armhf i386 ppc64el riscv64 s390x\nComponents: main restricted universe multiverse\nDescription: Ubuntu Jammy Updates\n"
    );
    for (field, digest) in [
        (
            "MD5Sum",
            &(|d: &[u8]| coreutils_digest("md5sum", d)) as &dyn Fn(&[u8]) -> String,
        ),
        ("SHA1", &|d: &[u8]| coreutils_digest("sha1sum", d)),
        ("SHA256", &|d: &[u8]| hex::encode(Sha256::digest(d))),
    ] {
        text += &format!("{field}:\n");
        for file in files {
            text += &format!(
                " {} {:>16} {}\n",
                digest(&file.data),
                file.data.len(),
                file.path
            );
        }
    }
    text + "Acquire-By-Hash: yes\n"
}

/// The files of the stand-in below `/ubuntu/`: the suite's signed index
/// of `packages` and the pool with `debs`.
pub fn archive(packages: &str, debs: &[(String, String, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(packages.as_bytes()).unwrap();
    let mut xz = Vec::new();
    xz2::read::XzEncoder::new(packages.as_bytes(), 6)
        .read_to_end(&mut xz)
        .unwrap();
    let component_release = "Archive: jammy-updates\nVersion: 22.04\nComponent: main\nOrigin: Ubuntu\nLabel: Ubuntu\nArchitecture: amd64\n";
    let dir = "main/binary-amd64";
    let listed = [
        Listed {
            path: format!("{dir}/Packages"),
            data: packages.as_bytes().to_vec(),
        },
        Listed {
            path: format!("{dir}/Packages.gz"),
            data: gz.finish().unwrap(),
        },
        Listed {
            path: format!("{dir}/Packages.xz"),
            data: xz,
        },
        Listed {
            path: format!("{dir}/Release"),
            data: component_release.as_bytes().to_vec(),
        },
    ];
    let release = release(&listed);
    let dists = format!("/ubuntu/dists/{SUITE}");
    let mut files: BTreeMap<String, Vec<u8>> = listed
        .into_iter()
        .map(|file| (format!("{dists}/{}", file.path), file.data))
        .collect();
    files.insert(format!("{dists}/InRelease"), clearsign(&release));
    files.insert(format!("{dists}/Release.gpg"), detach_sign(&release));
    files.insert(format!("{dists}/Release"), release.into_bytes());
    for (package, _, deb) in debs {
        files.insert(format!("/ubuntu/{}", pool_path(package)), deb.clone());
    }
    files
}

/// The stand-in serving [`kernel`]'s packages.
pub fn serve() -> Server {
    let debs = &kernel().debs;
    Server::start(archive(&packages(debs), debs))
}

/// A matrix with one entry, `ubuntu-6.1`, naming `package` in [`SUITE`] of
/// the mirror at `mirror_url` (`[ubuntu] mirror`), pinned by `pins`.
pub fn matrix_file(
    dir: &Path,
    mirror_url: &str,
    package: &str,
    pins: &[(&str, [u8; 32])],
) -> PathBuf {
    let mut text = format!(
        "[ubuntu]\nmirror = \"{mirror_url}/ubuntu\"\n\n[[kernel]]\nlabel = \"ubuntu-6.1\"\nubuntu = {{ suite = \"{SUITE}\", package = \"{package}\" }}\n"
    );
    if !pins.is_empty() {
        text += "[kernel.sha256]\n";
        for (name, pin) in pins {
            text += &format!("\"{name}\" = \"{}\"\n", hex::encode(pin));
        }
    }
    let path = dir.join("kernels.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `kmatrix --matrix MATRIX ARGS…` with its cache in `cache`, trusting the
/// test key for Ubuntu's archive.
pub fn kmatrix_ubuntu(matrix: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut command = kmatrix_in(matrix, cache, args);
    command
        .env_remove("KMATRIX_UBUNTU_MIRROR")
        .env("KMATRIX_UBUNTU_KEYRING", test_keyring());
    command
}

/// The sha256 of `package`'s `.deb` in the stand-in.
pub fn pin_of(package: &str) -> [u8; 32] {
    let (_, _, deb) = kernel().debs.iter().find(|(p, _, _)| p == package).unwrap();
    Sha256::digest(deb).into()
}
