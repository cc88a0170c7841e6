//! Kernel sources beyond Debian, against real servers on loopback: an OCI
//! registry (Debian's docker-registry, started here) holding images in the
//! cilium/ci-kernels layout built from a Debian kernel (little-vm-helper's
//! layout is `oci_lvh.rs`, on the same registry), and an HTTP server
//! serving a kernel and its modules. The kernels pulled through both boot
//! and pass the example suite.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use kmatrix::kernels::KernelArtifacts;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{ImageIndexEntry, OciImageIndex, Platform};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use crate::support::{self, debian_6_1, repo, run_in, text, Server};

crate::support::tests! {
    vm oci_kernels_pull_by_tag_and_digest_and_boot,
    host oci_pins_hold_when_tags_move_and_indexes_resolve_to_amd64,
    vm url_kernels_boot_and_corruption_is_caught,
    host update_keeps_the_shipped_comments,
    host path_kernels_need_no_pin_and_know_their_version,
    host transient_download_errors_are_retried,
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A gzip tarball in the ci-kernels layout: /boot/vmlinuz and the modules
/// under /lib/modules/<release>/kernel/.
pub(crate) fn ci_kernels_layer(kernel: &KernelArtifacts, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, data).unwrap();
    };
    add("boot/vmlinuz", &std::fs::read(&kernel.image).unwrap());
    for name in &kernel.modules {
        let ko = std::fs::read(kernel.modules_dir.join(format!("{name}.ko"))).unwrap();
        add(
            &format!(
                "lib/modules/{}/kernel/drivers/virtio/{name}.ko",
                kernel.release
            ),
            &ko,
        );
    }
    for (path, data) in extra {
        add(path, data);
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Debian's registry server on a loopback port, stopped on drop.
pub(crate) struct Registry {
    child: Child,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![self.addr.clone()]),
            ..ClientConfig::default()
        })
    }

    /// Pushes a one-layer image; returns its manifest digest.
    fn push(&self, reference: &str, layer: Vec<u8>) -> String {
        self.push_layers(reference, vec![layer])
    }

    /// Pushes an amd64 image of gzip `layers`, in order; returns its
    /// manifest digest.
    pub(crate) fn push_layers(&self, reference: &str, layers: Vec<Vec<u8>>) -> String {
        self.push_platform_layers(reference, "amd64", layers)
    }

    /// Pushes a linux image for `arch` of gzip `layers`, in order; returns
    /// its manifest digest.
    pub(crate) fn push_platform_layers(
        &self,
        reference: &str,
        arch: &str,
        layers: Vec<Vec<u8>>,
    ) -> String {
        let reference: Reference = format!("{}/{reference}", self.addr).parse().unwrap();
        let client = self.client();
        let layers: Vec<_> = layers
            .into_iter()
            .map(|layer| ImageLayer::oci_v1_gzip(layer, None))
            .collect();
        runtime().block_on(async {
            let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#);
            let config = Config::oci_v1(config.into_bytes(), None);
            client
                .push(&reference, &layers, config, &RegistryAuth::Anonymous, None)
                .await
                .unwrap();
            client
                .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
                .await
                .unwrap()
        })
    }

    /// Deletes the blob `digest` (`sha256:…`) from `repository`: images
    /// whose manifest names it can no longer be pulled.
    pub(crate) fn delete_blob(&self, repository: &str, digest: &str) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "DELETE /v2/{repository}/blobs/{digest} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    }

    /// Changes the stored bytes of the blob (or manifest) `digest`
    /// (`sha256:…`) with `tamper`, which keeps their length: the registry
    /// then serves bytes that no longer match their digest.
    pub(crate) fn tamper_blob(&self, digest: &str, tamper: impl FnOnce(&mut [u8])) {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let path = self
            ._dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        tamper(&mut bytes);
        assert_eq!(bytes.len(), len);
        std::fs::write(&path, bytes).unwrap();
    }

    /// Pushes an image index under `reference` naming linux images by
    /// architecture and digest.
    pub(crate) fn push_index(&self, reference: &str, images: &[(&str, &str)]) {
        let reference: Reference = format!("{}/{reference}", self.addr).parse().unwrap();
        let client = self.client();
        runtime().block_on(async {
            let mut manifests = Vec::new();
            for (arch, digest) in images {
                let image = reference.clone_with_digest(digest.to_string());
                let (raw, _) = client
                    .pull_manifest_raw(
                        &image,
                        &RegistryAuth::Anonymous,
                        &["application/vnd.oci.image.manifest.v1+json"],
                    )
                    .await
                    .unwrap();
                manifests.push(ImageIndexEntry {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    digest: digest.to_string(),
                    size: raw.len() as i64,
                    platform: Some(Platform {
                        architecture: arch.to_string(),
                        os: "linux".into(),
                        os_version: None,
                        os_features: None,
                        variant: None,
                        features: None,
                    }),
                    annotations: None,
                });
            }
            let index = OciImageIndex {
                schema_version: 2,
                media_type: Some("application/vnd.oci.image.index.v1+json".into()),
                manifests,
                artifact_type: None,
                annotations: None,
            };
            client
                .push_manifest_list(&reference, &RegistryAuth::Anonymous, index)
                .await
                .unwrap();
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn write_matrix(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("kernels.toml");
    std::fs::write(&path, body).unwrap();
    path
}

pub(crate) fn example_suite() -> String {
    repo()
        .join("tests/example/kmatrix-suite.toml")
        .display()
        .to_string()
}

/// Pull by tag (pinned by `update`), boot, and pass the example suite; then
/// pull by digest.
fn oci_kernels_pull_by_tag_and_digest_and_boot() {
    let kernel = debian_6_1();
    let registry = Registry::start();
    let digest = registry.push("kernels/debian:6.1", ci_kernels_layer(&kernel, &[]));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "# OCI kernels for the test\n[[kernel]]\nlabel = \"oci-6.1\"  # by tag\noci = \"{0}/kernels/debian:6.1\"\n\n[[kernel]]\nlabel = \"oci-digest\"\nversion = \"6.1\"\noci = \"{0}/kernels/debian@{digest}\"\nsha256 = {{ manifest = \"{digest}\" }}\n",
            registry.addr
        ),
    );

    let unpinned = run_in(
        &matrix,
        &cache,
        &["test", "--kernels", "oci-6.1", "--suite", &example_suite()],
    );
    assert_eq!(unpinned.status.code(), Some(2), "{}", text(&unpinned));
    assert!(
        text(&unpinned).contains(
            "kernel `oci-6.1` has no sha256 pins: run `kmatrix kernels update --kernels oci-6.1`"
        ),
        "{}",
        text(&unpinned)
    );

    let update = run_in(
        &matrix,
        &cache,
        &["kernels", "update", "--kernels", "oci-6.1"],
    );
    assert!(update.status.success(), "{}", text(&update));
    let pinned = std::fs::read_to_string(&matrix).unwrap();
    assert!(
        pinned.contains(&format!("manifest = \"{digest}\"")),
        "{pinned}"
    );
    assert!(
        pinned.contains("# OCI kernels for the test") && pinned.contains("# by tag"),
        "{pinned}"
    );

    let run = run_in(
        &matrix,
        &cache,
        &["test", "--kernels", "oci-6.1", "--suite", &example_suite()],
    );
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("oci-6.1  UP    6.1.0-50-cloud-amd64"), "{out}");
    assert!(out.contains("no failures: 15 tests on 1 kernels"), "{out}");

    let by_digest = run_in(
        &matrix,
        &cache,
        &["kernels", "fetch", "--kernels", "oci-digest"],
    );
    assert!(by_digest.status.success(), "{}", text(&by_digest));
}

/// A tag moved after pinning: runs keep the pinned image; `update` moves
/// the pin. An image index resolves to its linux/amd64 image.
fn oci_pins_hold_when_tags_move_and_indexes_resolve_to_amd64() {
    let kernel = debian_6_1();
    let registry = Registry::start();
    let first = registry.push("kernels/moving:6.1", ci_kernels_layer(&kernel, &[]));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\noci = \"{}/kernels/moving:6.1\"\n",
            registry.addr
        ),
    );
    assert!(run_in(&matrix, &cache, &["kernels", "update"])
        .status
        .success());
    let pinned = std::fs::read_to_string(&matrix).unwrap();

    let moved_layer = ci_kernels_layer(&kernel, &[("etc/moved", b"a rebuilt image")]);
    let moved_layer_digest = hex::encode(Sha256::digest(&moved_layer));
    let second = registry.push("kernels/moving:6.1", moved_layer);
    assert_ne!(first, second);

    let fetch = run_in(&matrix, &cache, &["kernels", "fetch"]);
    assert!(fetch.status.success(), "{}", text(&fetch));
    assert!(
        !cache
            .join("blobs/sha256")
            .join(&moved_layer_digest)
            .exists(),
        "the moved tag's layer was pulled"
    );
    assert_eq!(std::fs::read_to_string(&matrix).unwrap(), pinned);

    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    assert!(update.status.success(), "{}", text(&update));
    assert!(
        std::fs::read_to_string(&matrix)
            .unwrap()
            .contains(second.trim_start_matches("sha256:")),
        "{}",
        text(&update)
    );

    // Two platforms under one tag: amd64 is chosen.
    let arm = registry.push(
        "kernels/multi:arm64-only",
        ci_kernels_layer(&kernel, &[("etc/arch", b"arm64")]),
    );
    let amd = registry.push("kernels/multi:amd64-only", ci_kernels_layer(&kernel, &[]));
    assert_eq!(amd, first, "the same content has the same digest");
    registry.push_index("kernels/multi:6.1", &[("arm64", &arm), ("amd64", &amd)]);
    let multi = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\noci = \"{}/kernels/multi:6.1\"\n",
            registry.addr
        ),
    );
    let update = run_in(&multi, &cache, &["kernels", "update"]);
    assert!(update.status.success(), "{}", text(&update));
    let pinned = std::fs::read_to_string(&multi).unwrap();
    assert!(
        pinned.contains(first.trim_start_matches("sha256:")),
        "{pinned}"
    );
    let fetch = run_in(&multi, &cache, &["kernels", "fetch"]);
    assert!(fetch.status.success(), "{}", text(&fetch));
}

/// A kernel and its modules over HTTP boot and pass the example suite; a
/// corrupted byte in the served image is caught by the pin.
fn url_kernels_boot_and_corruption_is_caught() {
    let kernel = debian_6_1();
    let image = std::fs::read(&kernel.image).unwrap();
    let mut modules = tar::Builder::new(Vec::new());
    for name in &kernel.modules {
        let ko = std::fs::read(kernel.modules_dir.join(format!("{name}.ko"))).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(ko.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let path = format!("lib/modules/{}/kernel/{name}.ko", kernel.release);
        modules.append_data(&mut header, path, &ko[..]).unwrap();
    }
    let modules = modules.into_inner().unwrap();
    let mut corrupt = image.clone();
    corrupt[4096] ^= 0x55;
    let server = Server::start(BTreeMap::from([
        ("/vmlinuz-6.1.158".to_owned(), image.clone()),
        ("/corrupt/vmlinuz-6.1.158".to_owned(), corrupt.clone()),
        ("/modules.tar".to_owned(), modules.clone()),
    ]));
    let url = &server.url;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let entry = |label: &str, path: &str| {
        format!(
            "[[kernel]]\nlabel = \"{label}\"\nurl = {{ image = \"{url}{path}\", modules = \"{url}/modules.tar\" }}\nsha256 = {{ image = \"{}\", modules = \"{}\" }}\n",
            hex::encode(Sha256::digest(&image)),
            hex::encode(Sha256::digest(&modules))
        )
    };
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "{}\n{}",
            entry("url-6.1", "/vmlinuz-6.1.158"),
            entry("url-corrupt", "/corrupt/vmlinuz-6.1.158")
        ),
    );

    let run = run_in(
        &matrix,
        &cache,
        &["test", "--kernels", "url-6.1", "--suite", &example_suite()],
    );
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("url-6.1  UP    6.1.0-50-cloud-amd64"), "{out}");

    // A cache that has not seen the good image: content-addressed, the
    // first one would serve the pin without downloading anything.
    let cache = dir.path().join("fresh-cache");
    let corrupt_run = run_in(
        &matrix,
        &cache,
        &["kernels", "fetch", "--kernels", "url-corrupt"],
    );
    let out = text(&corrupt_run);
    assert_eq!(
        corrupt_run.status.code(),
        Some(3),
        "a failed download: {out}"
    );
    assert!(
        out.contains(&format!(
            "has sha256 {}, but kernels.toml pins {}",
            hex::encode(Sha256::digest(&corrupt)),
            hex::encode(Sha256::digest(&image))
        )),
        "{out}"
    );
    let image_pin = hex::encode(Sha256::digest(&image));
    assert!(!cache.join("blobs/sha256").join(image_pin).exists());
    assert_eq!(std::fs::read_dir(cache.join("kernels")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
}

/// `kmatrix kernels update` on the shipped kernels.toml keeps every comment.
fn update_keeps_the_shipped_comments() {
    let shipped = std::fs::read_to_string(repo().join("kernels.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let matrix = write_matrix(dir.path(), &shipped);
    // A mirror whose bookworm has a newer 6.1 than the pin.
    let newer = "linux-image-6.1.0-99-cloud-amd64";
    let index = format!(
        "Package: {newer}\nFilename: pool/k.deb\nSize: 3\nSHA256: {}\n\n",
        "ab".repeat(32)
    );
    let mut xz = Vec::new();
    xz2::read::XzEncoder::new(index.as_bytes(), 1)
        .read_to_end(&mut xz)
        .unwrap();
    let server = Server::start(
        support::mirror::signed_index("bookworm", xz)
            .into_iter()
            .collect(),
    );
    let url = &server.url;
    let cache = dir.path().join("cache");
    let args = ["kernels", "update", "--kernels", "6.1"];
    let output = support::mirror::against_mirror(&matrix, &cache, url, &args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let updated = std::fs::read_to_string(&matrix).unwrap();
    for line in shipped.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(updated.contains(line), "lost `{line}`:\n{updated}");
    }
    assert!(
        updated.contains(&format!("package = \"{newer}\"")),
        "{updated}"
    );
    assert!(
        updated.contains(&format!("\"{newer}\" = \"{}\"", "ab".repeat(32))),
        "{updated}"
    );
    assert_eq!(
        updated.lines().count(),
        shipped.lines().count(),
        "{updated}"
    );
}

/// A kernel on disk needs no pin, and its version comes from its header.
fn path_kernels_need_no_pin_and_know_their_version() {
    let kernel = debian_6_1();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\npath = {{ image = \"{}\", modules = \"{}\" }}\n",
            kernel.image.display(),
            kernel.modules_dir.display()
        ),
    );
    let list = run_in(&matrix, &cache, &["kernels", "list"]);
    let out = text(&list);
    assert!(list.status.success(), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("6.1 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("6.1.0") && row.contains("(none)") && row.contains("path:"),
        "{row}"
    );
    let fetch = run_in(&matrix, &cache, &["kernels", "fetch"]);
    assert!(fetch.status.success(), "{}", text(&fetch));
    assert!(
        text(&fetch).contains("cached 6.1.0-50-cloud-amd64"),
        "{}",
        text(&fetch)
    );
}

/// A server that fails once is retried, and the download completes.
fn transient_download_errors_are_retried() {
    let image = b"not really a kernel, but pinned".to_vec();
    let server = Server::flaky(
        BTreeMap::from([("/vmlinuz-6.1.0".to_owned(), image.clone())]),
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\nurl = {{ image = \"{}/vmlinuz-6.1.0\" }}\nsha256 = {{ image = \"{}\" }}\n",
            server.url,
            hex::encode(Sha256::digest(&image))
        ),
    );
    let cache = dir.path().join("cache");
    let output = run_in(&matrix, &cache, &["kernels", "fetch"]);
    let out = text(&output);
    assert!(
        out.contains("RETRY vmlinuz") || out.contains("RETRY image"),
        "{out}"
    );
    assert!(out.contains("HTTP 503"), "{out}");
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
    // The download itself succeeded: what fails now is that the bytes are
    // no kernel, which extraction says.
    assert!(
        cache
            .join("blobs/sha256")
            .join(hex::encode(Sha256::digest(&image)))
            .exists(),
        "{out}"
    );
    assert!(
        out.contains("no kernel release") || out.contains("holds no"),
        "{out}"
    );
}
