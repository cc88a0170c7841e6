//! OCI kernel images in little-vm-helper's layout, on the loopback registry
//! of `sources.rs`: a busybox-like base layer, then the kernel's install
//! tree (what `make tar-pkg` leaves in `tar-install/`) under
//! `/data/kernels/<name>/`, built from the shipped Debian 6.1 kernel. lvh
//! publishes each tag as an image index of linux/amd64 and linux/arm64
//! images; the arm64 one's `boot/vmlinuz-<release>` is the `Image.gz` its
//! build makes (here the shipped 6.1-arm64 kernel, gzip-ed).

use std::io::Write;
use std::path::Path;

use kmatrix::cache::Cache;
use kmatrix::kernels::{FetchError, Fetcher, KernelArtifacts, Matrix};
use kmatrix_protocol::Arch;
use sha2::{Digest, Sha256};

use crate::sources::{example_suite, runtime, write_matrix, Registry};
use crate::support::run_in;
use crate::support::text;
use crate::support::{debian_6_1, shipped_kernel};

crate::support::tests! {
    host lvh_images_pinned_by_digest_are_read_in_their_layout,
    host lvh_images_refuse_tampering_and_work_offline,
    vm lvh_kernels_boot_and_pass_the_example_suite,
    host lvh_indexes_resolve_to_the_entrys_architecture,
    host an_index_without_the_entrys_architecture_is_refused_naming_its_platforms,
    arm64 lvh_arm64_kernels_boot_and_pass_the_example_suite,
}

/// A gzip layer of `files` (path, contents).
pub(crate) fn layer(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, &data[..]).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// What the busybox image lvh's kernel images start from holds, in short.
pub(crate) fn base_layer() -> Vec<u8> {
    layer(&[
        ("bin/busybox".into(), b"\x7fELF busybox".to_vec()),
        (
            "etc/passwd".into(),
            b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        ),
    ])
}

/// `kernel`'s install tree under `/data/kernels/<name>/`, as lvh's
/// Dockerfile copies it: `boot/vmlinuz-<release>`, `boot/config-<release>`,
/// `boot/System.map-<release>`, `lib/modules/<release>/` (without
/// `modules.builtin`: the modules kept in the cache are not all the kernel
/// has, so the built-in ones are left unknown, as for ci-kernels images).
/// An arm64 kernel's vmlinuz is its `Image.gz`, the target lvh builds.
fn lvh_layer(kernel: &KernelArtifacts, name: &str, arch: Arch) -> Vec<u8> {
    let root = format!("data/kernels/{name}");
    let release = &kernel.release;
    let (vmlinuz, text) = match arch {
        Arch::Amd64 => (std::fs::read(&kernel.image).unwrap(), "ffffffff81000000"),
        Arch::Arm64 => (image_gz(kernel), "ffff800008000000"),
    };
    let mut files = vec![
        (format!("{root}/boot/vmlinuz-{release}"), vmlinuz),
        (
            format!("{root}/boot/config-{release}"),
            std::fs::read(&kernel.config).unwrap(),
        ),
        (
            format!("{root}/boot/System.map-{release}"),
            format!("{text} T _text\n").into_bytes(),
        ),
    ];
    for module in &kernel.modules {
        files.push((
            format!("{root}/lib/modules/{release}/kernel/drivers/virtio/{module}.ko"),
            std::fs::read(kernel.module(module)).unwrap(),
        ));
    }
    layer(&files)
}

/// The arm64 `kernel`'s plain `Image`, gzip-ed: `arch/arm64/boot/Image.gz`.
fn image_gz(kernel: &KernelArtifacts) -> Vec<u8> {
    let image = std::fs::read(&kernel.boot_image).unwrap();
    assert_eq!(&image[0x38..0x3c], b"ARMd", "a plain arm64 Image");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&image).unwrap();
    gz.finish().unwrap()
}

/// The shipped 6.1-arm64 kernel, from the user's cache (fetched if needed).
fn debian_6_1_arm64() -> KernelArtifacts {
    shipped_kernel("6.1-arm64")
}

/// Pushes `tag` as lvh publishes it: an index of a linux/amd64 image of
/// `amd64` and a linux/arm64 one of `arm64` (each built as `name`).
/// Returns the two images' manifest digests.
fn push_two_platforms(
    registry: &Registry,
    tag: &str,
    name: &str,
    amd64: &KernelArtifacts,
    arm64: &KernelArtifacts,
) -> (String, String) {
    let repository = "lvh-images/kernel-images";
    let amd = registry.push_platform_layers(
        &format!("{repository}:{tag}-amd64"),
        "amd64",
        vec![base_layer(), lvh_layer(amd64, name, Arch::Amd64)],
    );
    let arm = registry.push_platform_layers(
        &format!("{repository}:{tag}-arm64"),
        "arm64",
        vec![base_layer(), lvh_layer(arm64, name, Arch::Arm64)],
    );
    registry.push_index(
        &format!("{repository}:{tag}"),
        &[("amd64", &amd), ("arm64", &arm)],
    );
    (amd, arm)
}

fn fetch(matrix: &Path, cache: &Path, label: &str) -> KernelArtifacts {
    let matrix = Matrix::load(matrix).unwrap();
    let entry = matrix.kernels.iter().find(|k| k.label == label).unwrap();
    let fetcher = Fetcher::new(Cache::at(cache.to_owned()).unwrap(), &matrix, false, |_| {});
    runtime().block_on(fetcher.fetch(entry)).unwrap()
}

/// An lvh image pinned by digest is fetched and its kernel read from
/// `/data/kernels/<name>/`, whatever the tag (a version, or `bpf-next-…`
/// with `version` given); an image holding no kernel in either layout is
/// refused, naming what it holds.
fn lvh_images_pinned_by_digest_are_read_in_their_layout() {
    let kernel = debian_6_1();
    let registry = Registry::start();
    let addr = &registry.addr;
    let versioned = registry.push_layers(
        "lvh-images/kernel-images:6.1-20250101.012345",
        vec![base_layer(), lvh_layer(&kernel, "6.1", Arch::Amd64)],
    );
    let named = registry.push_layers(
        "lvh-images/kernel-images:bpf-next-20250101.012345",
        vec![base_layer(), lvh_layer(&kernel, "bpf-next", Arch::Amd64)],
    );
    let misplaced = registry.push_layers(
        "lvh-images/kernel-images:6.1-misplaced",
        vec![
            base_layer(),
            layer(&[(
                "data/kernels/6.1/vmlinuz".into(),
                std::fs::read(&kernel.image).unwrap(),
            )]),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\noci = \"{addr}/lvh-images/kernel-images@{versioned}\"\nversion = \"6.1\"\nsha256 = {{ manifest = \"{versioned}\" }}\n\n\
             [[kernel]]\nlabel = \"bpf-next\"\nversion = \"6.1\"\noci = \"{addr}/lvh-images/kernel-images:bpf-next-20250101.012345\"\nsha256 = {{ manifest = \"{named}\" }}\n\n\
             [[kernel]]\nlabel = \"misplaced\"\noci = \"{addr}/lvh-images/kernel-images:6.1-misplaced\"\nsha256 = {{ manifest = \"{misplaced}\" }}\n"
        ),
    );

    for label in ["6.1", "bpf-next"] {
        let fetched = fetch(&matrix, &cache, label);
        assert_eq!(fetched.release, kernel.release, "{label}");
        assert_eq!(fetched.modules, kernel.modules, "{label}");
        assert_eq!(
            std::fs::read(&fetched.image).unwrap(),
            std::fs::read(&kernel.image).unwrap(),
            "{label}"
        );
        assert_eq!(
            std::fs::read(&fetched.config).unwrap(),
            std::fs::read(&kernel.config).unwrap(),
            "{label}"
        );
    }

    let refused = run_in(
        &matrix,
        &cache,
        &["kernels", "fetch", "--kernels", "misplaced"],
    );
    let out = text(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(out.contains("kernel `misplaced`"), "{out}");
    assert!(
        out.contains("the image is in no layout kmatrix reads"),
        "{out}"
    );
    assert!(
        out.contains("it holds 3 files: /bin (1), /data/kernels/6.1 (1), /etc (1)"),
        "{out}"
    );
}

/// Flips a digit of the first digest in a manifest (or the middle byte of
/// a layer): same length, still JSON, another sha256. Twice restores it.
fn flip(bytes: &mut [u8]) {
    let at = match bytes.windows(7).position(|w| w == b"sha256:") {
        Some(start) => (start + 7..bytes.len())
            .find(|&i| bytes[i].is_ascii_digit())
            .unwrap(),
        None => bytes.len() / 2,
    };
    bytes[at] ^= 1;
}

/// Whether `cache` holds the blob `digest` (`sha256:…`), and what is left
/// in its temporary and kernel directories.
fn kept(cache: &Path, digest: &str) -> (bool, usize) {
    let blob = cache
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let count = |dir: &str| std::fs::read_dir(cache.join(dir)).map_or(0, |d| d.count());
    (blob.exists(), count("tmp") + count("kernels"))
}

/// A pinned lvh image whose manifest or kernel layer the registry serves
/// with other bytes is refused, naming what and what to do, and nothing of
/// it is kept; once fetched, a fetcher with `offline` set rebuilds the
/// kernel from the cached manifest and layers with the registry gone, and
/// without the cache is refused, naming the kernel.
fn lvh_images_refuse_tampering_and_work_offline() {
    let kernel = debian_6_1();
    let registry = Registry::start();
    let kernel_layer = lvh_layer(&kernel, "6.1", Arch::Amd64);
    let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&kernel_layer)));
    let manifest = registry.push_layers(
        "lvh-images/kernel-images:6.1-20250101.012345",
        vec![base_layer(), kernel_layer],
    );
    let dir = tempfile::tempdir().unwrap();
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\nlabel = \"lvh-6.1\"\noci = \"{}/lvh-images/kernel-images:6.1-20250101.012345\"\nsha256 = {{ manifest = \"{manifest}\" }}\n",
            registry.addr
        ),
    );
    let refused = |cache: &Path, what: &str, digest: &str| {
        let run = run_in(&matrix, cache, &["kernels", "fetch"]);
        let out = text(&run);
        assert!(!run.status.success(), "{out}");
        assert!(out.contains(what), "{out}");
        assert!(
            out.contains(&format!("but kernels.toml pins {}", &digest[7..])),
            "{out}"
        );
        assert!(
            out.contains("kmatrix kernels update --kernels lvh-6.1"),
            "{out}"
        );
        assert_eq!(
            kept(cache, digest),
            (false, 0),
            "a tampered {what} was kept"
        );
    };

    registry.tamper_blob(&manifest, flip);
    refused(&dir.path().join("manifest"), "image manifest", &manifest);
    registry.tamper_blob(&manifest, flip);

    let cache = dir.path().join("cache");
    registry.tamper_blob(&layer_digest, flip);
    refused(
        &cache,
        &format!("layer {}", &layer_digest[..19]),
        &layer_digest,
    );
    registry.tamper_blob(&layer_digest, flip);

    let fetched = run_in(&matrix, &cache, &["kernels", "fetch"]);
    assert!(fetched.status.success(), "{}", text(&fetched));
    assert!(kept(&cache, &manifest).0, "the manifest is cached");

    // The registry is gone and the extracted kernel dropped: the manifest
    // and layers in the cache are enough.
    drop(registry);
    std::fs::remove_dir_all(cache.join("kernels")).unwrap();
    let parsed = Matrix::load(&matrix).unwrap();
    let offline = |cache: &Path| {
        let fetcher = Fetcher::new(Cache::at(cache.to_owned()).unwrap(), &parsed, true, |_| {});
        runtime().block_on(fetcher.fetch(&parsed.kernels[0]))
    };
    let artifacts = offline(&cache).unwrap();
    assert_eq!(artifacts.release, kernel.release);
    assert_eq!(
        std::fs::read(&artifacts.image).unwrap(),
        std::fs::read(&kernel.image).unwrap()
    );
    match offline(&dir.path().join("empty")) {
        Err(err @ FetchError::Offline { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("kernel `lvh-6.1` is not cached (image manifest)")
                    && message.contains("kmatrix kernels fetch --kernels lvh-6.1"),
                "{message}"
            );
        }
        other => panic!("expected an offline error, got {other:?}"),
    }
}

/// An lvh image, pinned by `kernels update`, boots and passes the example
/// suite.
fn lvh_kernels_boot_and_pass_the_example_suite() {
    let kernel = debian_6_1();
    let registry = Registry::start();
    registry.push_layers(
        "lvh-images/kernel-images:6.1-20250101.012345",
        vec![base_layer(), lvh_layer(&kernel, "6.1", Arch::Amd64)],
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\nlabel = \"lvh-6.1\"\noci = \"{}/lvh-images/kernel-images:6.1-20250101.012345\"\n",
            registry.addr
        ),
    );
    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    assert!(update.status.success(), "{}", text(&update));

    let run = run_in(&matrix, &cache, &["test", "--suite", &example_suite()]);
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("lvh-6.1  UP    6.1.0-50-cloud-amd64"), "{out}");
    assert!(out.contains("no failures: 15 tests on 1 kernels"), "{out}");
}

/// One tag, two platforms (as lvh publishes its kernel images): an amd64
/// entry and an arm64 entry naming it are each pinned to their platform's
/// image, and the arm64 one's `Image.gz` is unpacked into the plain
/// `Image` QEMU boots.
fn lvh_indexes_resolve_to_the_entrys_architecture() {
    let (amd64, arm64) = (debian_6_1(), debian_6_1_arm64());
    let registry = Registry::start();
    let tag = "6.1-20250101.012345";
    let (amd, arm) = push_two_platforms(&registry, tag, "6.1", &amd64, &arm64);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let reference = format!("{}/lvh-images/kernel-images:{tag}", registry.addr);
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\noci = \"{reference}\"\n\n[[kernel]]\narch = \"arm64\"\noci = \"{reference}\"\n"
        ),
    );
    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    assert!(update.status.success(), "{}", text(&update));
    let pinned = Matrix::load(&matrix).unwrap();
    let pins: Vec<_> = pinned
        .kernels
        .iter()
        .map(|k| {
            (
                k.label.as_str(),
                format!("sha256:{}", hex::encode(k.sha256["manifest"])),
            )
        })
        .collect();
    assert_eq!(pins, [("6.1", amd), ("6.1-arm64", arm)]);

    let fetched = fetch(&matrix, &cache, "6.1");
    assert_eq!(fetched.release, amd64.release);
    let fetched = fetch(&matrix, &cache, "6.1-arm64");
    assert_eq!(fetched.release, arm64.release);
    assert_eq!(fetched.modules, arm64.modules);
    assert_eq!(
        std::fs::read(&fetched.image).unwrap(),
        image_gz(&arm64),
        "the vmlinuz is kept as the image holds it"
    );
    assert_eq!(
        std::fs::read(&fetched.boot_image).unwrap(),
        std::fs::read(&arm64.boot_image).unwrap(),
        "QEMU boots the plain Image"
    );
}

/// An arm64 entry naming an index that has no linux/arm64 image (as lvh's
/// RHEL kernel images, built for amd64 only) is refused by `update` and by
/// a fetch of a pin, naming the platforms the index has; kernels.toml is
/// left as it was.
fn an_index_without_the_entrys_architecture_is_refused_naming_its_platforms() {
    let kernel = debian_6_1();
    let registry = Registry::start();
    let amd = registry.push_layers(
        "lvh-images/kernel-images:rhel9.6-amd64",
        vec![base_layer(), lvh_layer(&kernel, "rhel9.6", Arch::Amd64)],
    );
    registry.push_index(
        "lvh-images/kernel-images:rhel9.6-20250101.012345",
        &[("amd64", &amd), ("s390x", &amd)],
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let reference = format!(
        "{}/lvh-images/kernel-images:rhel9.6-20250101.012345",
        registry.addr
    );
    let body = format!(
        "[[kernel]]\nlabel = \"rhel\"\nversion = \"5.14\"\narch = \"arm64\"\noci = \"{reference}\"\n"
    );
    let matrix = write_matrix(dir.path(), &body);
    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    let out = text(&update);
    assert!(!update.status.success(), "{out}");
    assert!(
        out.contains(&format!("{reference} is an image index with no linux/arm64 image: it has linux/amd64, linux/s390x; name an image built for arm64, or give the entry the `arch` of one it has")),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&matrix).unwrap(), body);
}

/// An lvh tag of two platforms, named by an arm64 entry and pinned by
/// `kernels update`, boots its arm64 image and passes the example suite.
fn lvh_arm64_kernels_boot_and_pass_the_example_suite() {
    let (amd64, arm64) = (debian_6_1(), debian_6_1_arm64());
    let registry = Registry::start();
    let tag = "6.1-20250101.012345";
    push_two_platforms(&registry, tag, "6.1", &amd64, &arm64);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let matrix = write_matrix(
        dir.path(),
        &format!(
            "[[kernel]]\nlabel = \"lvh-6.1-arm64\"\narch = \"arm64\"\noci = \"{}/lvh-images/kernel-images:{tag}\"\n",
            registry.addr
        ),
    );
    let update = run_in(&matrix, &cache, &["kernels", "update"]);
    assert!(update.status.success(), "{}", text(&update));

    let run = run_in(&matrix, &cache, &["test", "--suite", &example_suite()]);
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("lvh-6.1-arm64") && l.contains("6.1.0-50-cloud-arm64")),
        "{out}"
    );
}
