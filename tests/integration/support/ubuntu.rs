//! A loopback stand-in for Ubuntu's archive, in its format: a suite's
//! `dists/<suite>/` with `Release`, `Release.gpg` and `InRelease` (signed
//! by the test key) listing `main/binary-<arch>/Packages`, `.gz` and `.xz`
//! with their MD5Sum, SHA1 and SHA256; stanzas with Ubuntu's fields; and
//! `.deb`s (zstd members, as Ubuntu builds them) made from the shipped
//! Debian 6.1 kernel under Ubuntu's names and split:
//! `linux-image-unsigned-<abi>-generic` holds `/boot/vmlinuz-…` and depends
//! on `linux-modules-<abi>-generic`, which holds the config and
//! `/lib/modules/…`; `linux-modules-extra-…` depends on both, and an older
//! ABI (`-49`) is listed too, for `kernels update` to move from.
//!
//! amd64 is served below `/ubuntu/`, as Ubuntu's main archive; arm64 below
//! `/ubuntu-ports/`, as its ports archive, from the shipped Debian
//! 6.1-arm64 kernel, under the name of the signed image Ubuntu builds for
//! arm64 (`linux-image-<abi>-generic`, from the `linux-signed` source) and
//! with its `vmlinuz` a gzip-ed `Image`, as Ubuntu ships it there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use super::mirror::{clearsign, detach_sign, shipped_package, test_keyring};
use super::{kmatrix_in, Server};

/// The suite the stand-in serves.
pub const SUITE: &str = "jammy-updates";

/// The stand-in's packages: names and contents.
pub struct Kernel {
    /// `linux-image-unsigned-6.1.0-50-generic` (amd64),
    /// `linux-image-6.1.0-50-generic` (arm64).
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

/// The amd64 stand-in kernel, repackaged once per test process.
pub fn kernel() -> &'static Kernel {
    kernel_for(Arch::Amd64)
}

/// The stand-in kernel for `arch`, repackaged once per test process.
pub fn kernel_for(arch: Arch) -> &'static Kernel {
    static KERNELS: [OnceLock<Kernel>; 2] = [OnceLock::new(), OnceLock::new()];
    KERNELS[usize::from(arch == Arch::Arm64)].get_or_init(|| repackage(arch))
}

/// The shipped Debian 6.1 kernel for `arch` under Ubuntu's names and split.
fn repackage(arch: Arch) -> Kernel {
    let label = match arch {
        Arch::Amd64 => "6.1".to_owned(),
        Arch::Arm64 => format!("6.1-{arch}"),
    };
    let (debian, _, deb) = shipped_package(&label);
    // linux-image-6.1.0-50-cloud-amd64 → 6.1.0-50.
    let abi = debian
        .strip_prefix("linux-image-")
        .and_then(|r| r.strip_suffix(&format!("-cloud-{arch}")))
        .unwrap()
        .to_owned();
    // amd64: the unsigned image; arm64: the signed one.
    let image_kind = match arch {
        Arch::Amd64 => "image-unsigned",
        Arch::Arm64 => "image",
    };
    let older_abi = abi.replace("-50", "-49");
    let name = |kind: &str, abi: &str| format!("linux-{kind}-{abi}-generic");
    let depends = |abi: &str| {
        format!(
            "kmod, linux-base (>= 4.5ubuntu1~16.04.1), {}",
            name("modules", abi)
        )
    };
    let (image_tar, modules_tar) = split(&deb, arch);
    let extra_tar = tar_of(&[(
        format!("./usr/share/doc/{}/copyright", name("modules-extra", &abi)),
        b"stand-in".to_vec(),
    )]);
    let debs = vec![
        (name(image_kind, &abi), depends(&abi), image_tar),
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
            name(image_kind, &older_abi),
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
        let deb = deb_of(&package, &depends, &data, arch);
        (package, depends, deb)
    })
    .collect();
    Kernel {
        image: name(image_kind, &abi),
        modules: name("modules", &abi),
        extra: name("modules-extra", &abi),
        older: name(image_kind, &older_abi),
        debs,
    }
}

/// The Debian package's `data.tar` split as Ubuntu splits a kernel: the
/// image (on arm64 gzip-ed, as Ubuntu ships it: Debian ships the plain
/// `Image`), and everything else the kernel needs (config, System.map,
/// modules and their lists); documentation is left out.
fn split(deb: &[u8], arch: Arch) -> (Vec<u8>, Vec<u8>) {
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
        let mut header = entry.header().clone();
        if plain.starts_with("boot/vmlinuz-") && arch == Arch::Arm64 {
            let mut plain_image = Vec::new();
            entry.read_to_end(&mut plain_image).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&plain_image).unwrap();
            let gzipped = gz.finish().unwrap();
            header.set_size(gzipped.len() as u64);
            header.set_cksum();
            image.append_data(&mut header, &path, &gzipped[..]).unwrap();
            continue;
        }
        let to = if plain.starts_with("boot/vmlinuz-") {
            &mut image
        } else if plain.starts_with("boot/") || plain.starts_with("lib/modules/") {
            &mut modules
        } else {
            continue;
        };
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
fn deb_of(package: &str, depends: &str, data_tar: &[u8], arch: Arch) -> Vec<u8> {
    let mut control = format!(
        "Package: {package}\nVersion: 6.1.0-50.50\nArchitecture: {arch}\nMaintainer: kmatrix tests\nSection: kernel\n"
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

/// The amd64 `Packages` text for `debs`.
pub fn packages(debs: &[(String, String, Vec<u8>)]) -> String {
    packages_for(Arch::Amd64, debs)
}

/// The `Packages` text for `arch`'s `debs`, with the fields Ubuntu's
/// archive writes.
pub fn packages_for(arch: Arch, debs: &[(String, String, Vec<u8>)]) -> String {
    let mut text = String::new();
    for (package, depends, deb) in debs {
        text += &format!(
            "Package: {package}\nArchitecture: {arch}\nVersion: 6.1.0-50.50\nPriority: optional\nSection: kernel\nSource: {}\nOrigin: Ubuntu\nMaintainer: Canonical Kernel Team <kernel-team@lists.ubuntu.com>\nBugs: https://bugs.launchpad.net/ubuntu/+filebug\nInstalled-Size: {}\n",
            source_of(package),
            deb.len() / 1024
        );
        if !depends.is_empty() {
            text += &format!("Depends: {depends}\n");
        }
        text += &format!(
            "Filename: {}\nSize: {}\nMD5sum: {}\nSHA1: {}\nSHA256: {}\nDescription: stand-in for Ubuntu's {package}\n\n",
            pool_path(package, arch),
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

/// The source package `package` is built from: the signed images from
/// `linux-signed`, the rest from `linux`.
fn source_of(package: &str) -> &'static str {
    if package.starts_with("linux-image-") && !package.starts_with("linux-image-unsigned-") {
        "linux-signed"
    } else {
        "linux"
    }
}

/// Where Launchpad puts `package`, by its source.
fn pool_path(package: &str, arch: Arch) -> String {
    let version = "6.1.0-50.50";
    let source = source_of(package);
    format!("pool/main/l/{source}/{package}_{version}_{arch}.deb")
}

/// Where the stand-in serves `arch`'s archive: Ubuntu's main archive
/// (amd64) or its ports archive.
pub fn root(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "/ubuntu",
        Arch::Arm64 => "/ubuntu-ports",
    }
}

/// A compressed file and its three digests as a `Release` lists them.
struct Listed {
    path: String,
    data: Vec<u8>,
}

/// The suite's `Release` text (Ubuntu's fields) for `files`: the main
/// archive's architectures, or the ports archive's.
fn release(files: &[Listed], arch: Arch) -> String {
    let architectures = match arch {
        Arch::Amd64 => "amd64 i386",
        Arch::Arm64 => "arm64 armhf ppc64el riscv64 s390x",
    };
    let mut text = format!(
        "Origin: Ubuntu\nLabel: Ubuntu\nSuite: {SUITE}\nVersion: 22.04\nCodename: jammy\nDate: Thu, 04 Dec 2025 12:00:00 UTC\nArchitectures: {architectures}\nComponents: main restricted universe multiverse\nDescription: Ubuntu Jammy Updates\n"
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

/// The files of the amd64 stand-in below `/ubuntu/`: the suite's signed
/// index of `packages` and the pool with `debs`.
pub fn archive(packages: &str, debs: &[(String, String, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    archive_for(Arch::Amd64, packages, debs)
}

/// The files of `arch`'s stand-in below [`root`]: the suite's signed index
/// of `packages` and the pool with `debs`.
pub fn archive_for(
    arch: Arch,
    packages: &str,
    debs: &[(String, String, Vec<u8>)],
) -> BTreeMap<String, Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(packages.as_bytes()).unwrap();
    let mut xz = Vec::new();
    xz2::read::XzEncoder::new(packages.as_bytes(), 6)
        .read_to_end(&mut xz)
        .unwrap();
    let component_release = format!("Archive: jammy-updates\nVersion: 22.04\nComponent: main\nOrigin: Ubuntu\nLabel: Ubuntu\nArchitecture: {arch}\n");
    let dir = format!("main/binary-{arch}");
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
    let release = release(&listed, arch);
    let root = root(arch);
    let dists = format!("{root}/dists/{SUITE}");
    let mut files: BTreeMap<String, Vec<u8>> = listed
        .into_iter()
        .map(|file| (format!("{dists}/{}", file.path), file.data))
        .collect();
    files.insert(format!("{dists}/InRelease"), clearsign(&release));
    files.insert(format!("{dists}/Release.gpg"), detach_sign(&release));
    files.insert(format!("{dists}/Release"), release.into_bytes());
    for (package, _, deb) in debs {
        files.insert(format!("{root}/{}", pool_path(package, arch)), deb.clone());
    }
    files
}

/// The stand-in serving [`kernel`]'s packages.
pub fn serve() -> Server {
    serve_for(Arch::Amd64)
}

/// The stand-in serving `arch`'s kernel's packages.
pub fn serve_for(arch: Arch) -> Server {
    let debs = &kernel_for(arch).debs;
    Server::start(archive_for(arch, &packages_for(arch, debs), debs))
}

/// A matrix with one entry, `ubuntu-6.1`, naming `package` in [`SUITE`] of
/// the mirror at `mirror_url` (`[ubuntu] mirror`), pinned by `pins`.
pub fn matrix_file(
    dir: &Path,
    mirror_url: &str,
    package: &str,
    pins: &[(&str, [u8; 32])],
) -> PathBuf {
    let text = format!(
        "[ubuntu]\nmirror = \"{mirror_url}/ubuntu\"\n\n[[kernel]]\nlabel = \"ubuntu-6.1\"\nubuntu = {{ suite = \"{SUITE}\", package = \"{package}\" }}\n"
    );
    write_matrix(dir, text, pins)
}

/// A matrix with one arm64 entry, `ubuntu-6.1-arm64`, naming `package` in
/// [`SUITE`]; `[ubuntu] mirror` is `main`, `[ubuntu] ports_mirror` `ports`
/// (archive URLs, such as `<server>/ubuntu-ports`).
pub fn ports_matrix_file(dir: &Path, main: &str, ports: Option<&str>, package: &str) -> PathBuf {
    let mut text = format!("[ubuntu]\nmirror = \"{main}\"\n");
    if let Some(url) = ports {
        text += &format!("ports_mirror = \"{url}\"\n");
    }
    text += &format!(
        "\n[[kernel]]\nlabel = \"ubuntu-6.1-arm64\"\narch = \"arm64\"\nubuntu = {{ suite = \"{SUITE}\", package = \"{package}\" }}\n"
    );
    write_matrix(dir, text, &[])
}

fn write_matrix(dir: &Path, mut text: String, pins: &[(&str, [u8; 32])]) -> PathBuf {
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
        .env_remove("KMATRIX_UBUNTU_PORTS_MIRROR")
        .env("KMATRIX_UBUNTU_KEYRING", test_keyring());
    command
}

/// The sha256 of `package`'s `.deb` in the amd64 stand-in.
pub fn pin_of(package: &str) -> [u8; 32] {
    pin_in(kernel(), package)
}

/// The sha256 of `package`'s `.deb` in `kernel`.
pub fn pin_in(kernel: &Kernel, package: &str) -> [u8; 32] {
    let (_, _, deb) = kernel.debs.iter().find(|(p, _, _)| p == package).unwrap();
    Sha256::digest(deb).into()
}
