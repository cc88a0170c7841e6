//! A loopback RPM repository in the real format: packages built with
//! `rpmbuild`, signed with `rpmsign` by an RSA key made for the tests (as
//! distributions sign theirs), metadata written by `createrepo_c`, and
//! optionally `repomd.xml.asc`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kmatrix::kernels::KernelArtifacts;

use super::mirror::{generate_key, gpg, signing, stop_agent};
use super::Server;

/// The packages' signing key: its GnuPG home and its armored public key
/// (as distributions publish an RPM-GPG-KEY file).
pub struct RpmKey {
    home: tempfile::TempDir,
    /// The armored public key.
    pub public: PathBuf,
}

const KEY_NAME: &str = "kmatrix test rpm";

/// The test process's RPM signing key.
pub fn rpm_key() -> &'static RpmKey {
    static KEY: OnceLock<RpmKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let (home, public) = generate_key(KEY_NAME, "rsa2048", "RPM-GPG-KEY-kmatrix-test", true);
        RpmKey { home, public }
    })
}

/// One package to build: its name, version, release, payload compressor
/// (`_binary_payload`, e.g. `w2.xzdio` or `w19.zstdio`) and files.
pub struct Spec<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub release: &'a str,
    pub payload: &'a str,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Builds `spec` for x86_64 with rpmbuild into `out`; signs it with the
/// test key when `sign`. Returns the package's path.
pub fn build(spec: &Spec, out: &Path, sign: bool) -> PathBuf {
    let work = tempfile::tempdir().unwrap();
    let sources = work.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    let mut install = String::new();
    let mut listed = String::new();
    for (i, (path, data)) in spec.files.iter().enumerate() {
        std::fs::write(sources.join(i.to_string()), data).unwrap();
        let dir = Path::new(path).parent().unwrap().display().to_string();
        install +=
            &format!("mkdir -p %{{buildroot}}{dir}\ncp %{{_sourcedir}}/{i} %{{buildroot}}{path}\n");
        listed += &format!("{path}\n");
    }
    let spec_file = work.path().join("kernel.spec");
    std::fs::write(
        &spec_file,
        format!(
            "Name: {}\nVersion: {}\nRelease: {}\nSummary: kmatrix test kernel\nLicense: GPL-2.0-only\nAutoReqProv: no\n%define debug_package %{{nil}}\n%define __os_install_post %{{nil}}\n%description\nA kernel for kmatrix's tests.\n%install\n{install}%files\n{listed}",
            spec.name, spec.version, spec.release
        ),
    )
    .unwrap();
    let built = Command::new("rpmbuild")
        .args(["-bb", "--target", "x86_64", "--quiet"])
        .arg("--define")
        .arg(format!("_topdir {}", work.path().join("top").display()))
        .arg("--define")
        .arg(format!("_sourcedir {}", sources.display()))
        .arg("--define")
        .arg(format!("_binary_payload {}", spec.payload))
        .arg(&spec_file)
        .output()
        .expect("rpmbuild runs (apt-get install rpm)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let file = format!("{}-{}-{}.x86_64.rpm", spec.name, spec.version, spec.release);
    let dest = out.join(&file);
    std::fs::create_dir_all(out).unwrap();
    std::fs::copy(work.path().join("top/RPMS/x86_64").join(&file), &dest).unwrap();
    if sign {
        let key = rpm_key();
        let _signing = signing();
        let signed = Command::new("rpmsign")
            .arg("--addsign")
            .arg("--define")
            .arg("__gpg /usr/bin/gpg")
            .arg("--define")
            .arg(format!("_gpg_name {KEY_NAME}"))
            .arg("--define")
            .arg(format!("_gpg_path {}", key.home.path().display()))
            .arg("--define")
            .arg("_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ''")
            .arg(&dest)
            .output()
            .expect("rpmsign runs (apt-get install rpm)");
        stop_agent(key.home.path());
        assert!(
            signed.status.success(),
            "{}",
            String::from_utf8_lossy(&signed.stderr)
        );
    }
    dest
}

/// Writes the repository's metadata with createrepo_c, compressed with
/// `compress` (`gz` or `xz`: Debian 12's createrepo_c has no zstd); with `sign_metadata`, `repomd.xml.asc`
/// too.
pub fn createrepo(repo: &Path, compress: &str, sign_metadata: bool) {
    let made = Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(format!("--general-compress-type={compress}"))
        .arg(repo)
        .output()
        .expect("createrepo_c runs (apt-get install createrepo-c)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    if sign_metadata {
        let key = rpm_key();
        let repomd = repo.join("repodata/repomd.xml");
        let _signing = signing();
        let signed = gpg(key.home.path())
            .args(["--yes", "--armor", "--detach-sign", "--output"])
            .arg(repo.join("repodata/repomd.xml.asc"))
            .arg(&repomd)
            .output()
            .unwrap();
        stop_agent(key.home.path());
        assert!(
            signed.status.success(),
            "{}",
            String::from_utf8_lossy(&signed.stderr)
        );
    }
}

/// The shipped kernel's files as a RHEL 9-style split: `kernel-core`
/// (vmlinuz and config under /lib/modules/<release>/, xz payload) and
/// `kernel-modules-core` (its modules, `.ko.xz`, zstd payload), version
/// 6.1.0, release `release`.
pub fn kernel_specs<'a>(kernel: &KernelArtifacts, release: &'a str) -> [Spec<'a>; 2] {
    let dir = format!("/lib/modules/{}", kernel.release);
    let core = vec![
        (
            format!("{dir}/vmlinuz"),
            std::fs::read(&kernel.image).unwrap(),
        ),
        (
            format!("{dir}/config"),
            std::fs::read(&kernel.config).unwrap(),
        ),
    ];
    let modules = kernel
        .modules
        .iter()
        .map(|name| {
            let ko = std::fs::read(kernel.module(name)).unwrap();
            let mut xz = Vec::new();
            std::io::Read::read_to_end(&mut xz2::read::XzEncoder::new(&ko[..], 1), &mut xz)
                .unwrap();
            (format!("{dir}/kernel/drivers/virtio/{name}.ko.xz"), xz)
        })
        .collect();
    [
        Spec {
            name: "kernel-core",
            version: "6.1.0",
            release,
            payload: "w2.xzdio",
            files: core,
        },
        Spec {
            name: "kernel-modules-core",
            version: "6.1.0",
            release,
            payload: "w19.zstdio",
            files: modules,
        },
    ]
}

/// Serves every file below `repo` at `/repo/…`.
pub fn serve(repo: &Path) -> Server {
    Server::start(files_below(repo))
}

/// Every file below `repo`, by the path it is served at.
pub fn files_below(repo: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![repo.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(repo).unwrap().display().to_string();
                files.insert(format!("/repo/{relative}"), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// A matrix with one rpm entry, `label`, naming `package` in the
/// repository at `url` (unpinned), checked with the test key.
pub fn matrix(dir: &Path, label: &str, url: &str, package: &str) -> PathBuf {
    let path = dir.join("kernels.toml");
    std::fs::write(
        &path,
        format!(
            "# RPM kernels for the test\n[[kernel]]\nlabel = \"{label}\"\nrpm = {{ repo = \"{url}/repo\", package = \"{package}\", keyring = \"{}\" }}\n",
            rpm_key().public.display()
        ),
    )
    .unwrap();
    path
}
