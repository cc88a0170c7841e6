//! OCI kernel images: resolving a tag to the image manifest it names now,
//! and pulling a pinned image's layers into the cache.
//!
//! Registries are spoken to through `oci-client` (the distribution API,
//! anonymous bearer tokens). An image index (one tag for several
//! platforms, as little-vm-helper publishes its kernel images for amd64
//! and arm64) is resolved to the image of the entry's architecture; the
//! pin is that image's manifest. Loopback registries, and those named in
//! [`INSECURE_ENV`], are reached over plain HTTP, as container engines do.

use std::path::PathBuf;

use futures::StreamExt;
use kmatrix_protocol::Arch;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::{self, ImageIndexEntry, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::kernels::blobs::{Attempt, Blobs, Body, Timeouts};
use crate::kernels::error::{FetchError, OciError};
use crate::kernels::{KernelEntry, Pinning};

/// The `sha256` key an OCI entry pins: its image manifest's digest.
pub const PIN: &str = "manifest";

/// Environment variable listing registries (`host:port`, comma separated)
/// to reach over plain HTTP.
pub const INSECURE_ENV: &str = "KMATRIX_INSECURE_REGISTRIES";

/// Whether `registry` (`host:port`) is reached over plain HTTP: a loopback
/// one, or one [`INSECURE_ENV`] lists.
pub fn plain_http(registry: &str) -> bool {
    let host = registry.split(':').next().unwrap_or_default();
    let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    loopback
        || std::env::var(INSECURE_ENV)
            .is_ok_and(|list| list.split(',').any(|r| r.trim() == registry))
}

pub(super) fn parse(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| OciError::Reference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// The digest of the linux image for `arch` among an index's `manifests`;
/// else the platforms it has (`os/architecture[/variant]`, `unknown` for
/// an entry that names none).
fn platform_image(manifests: &[ImageIndexEntry], arch: Arch) -> Result<String, Vec<String>> {
    manifests
        .iter()
        .find(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch.name())
        })
        .map(|entry| entry.digest.clone())
        .ok_or_else(|| {
            manifests
                .iter()
                .map(|entry| match &entry.platform {
                    Some(p) => match &p.variant {
                        Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    },
                    None => "unknown".to_owned(),
                })
                .collect()
        })
}

fn client(reference: &Reference, arch: Arch) -> Client {
    let timeouts = Timeouts::from_env();
    let registry = reference.resolve_registry().to_owned();
    Client::new(ClientConfig {
        protocol: if plain_http(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: Some(Box::new(move |manifests: &[ImageIndexEntry]| {
            platform_image(manifests, arch).ok()
        })),
        connect_timeout: Some(timeouts.connect),
        read_timeout: Some(timeouts.read),
        ..ClientConfig::default()
    })
}

/// The image manifest `manifest` names for linux on `arch`: itself, or
/// that platform's entry of an index. Returns it with its digest.
async fn image_manifest(
    client: &Client,
    reference: &Reference,
    manifest: OciManifest,
    digest: String,
    arch: Arch,
) -> Result<(OciImageManifest, String), OciError> {
    match manifest {
        OciManifest::Image(image) => Ok((image, digest)),
        OciManifest::ImageIndex(index) => {
            let chosen =
                platform_image(&index.manifests, arch).map_err(|found| OciError::NoPlatform {
                    reference: reference.whole(),
                    arch,
                    found,
                })?;
            let platform = reference.clone_with_digest(chosen.clone());
            let (image, _) = client
                .pull_image_manifest(&platform, &RegistryAuth::Anonymous)
                .await
                .map_err(|e| OciError::Registry {
                    reference: platform.whole(),
                    error: e.to_string(),
                })?;
            Ok((image, chosen))
        }
    }
}

/// The pin `entry` would have now: the image manifest its reference names
/// for the entry's architecture.
pub async fn newest(entry: &KernelEntry, reference: &str) -> Result<Pinning, FetchError> {
    let oci = |source| FetchError::Oci {
        label: entry.label.clone(),
        source,
    };
    let parsed = parse(reference).map_err(oci)?;
    let client = client(&parsed, entry.arch);
    let (manifest, digest) = client
        .pull_manifest(&parsed, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| {
            oci(OciError::Registry {
                reference: reference.to_owned(),
                error: e.to_string(),
            })
        })?;
    let (_, digest) = image_manifest(&client, &parsed, manifest, digest, entry.arch)
        .await
        .map_err(oci)?;
    Ok(Pinning {
        missing: Vec::new(),
        label: entry.label.clone(),
        package: None,
        sha256: [(PIN.to_owned(), digest)].into(),
    })
}

/// The media types a pinned manifest is asked for in.
const MANIFEST_TYPES: &[&str] = &[
    manifest::OCI_IMAGE_MEDIA_TYPE,
    manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// The most bytes a manifest may have.
const MANIFEST_LIMIT: u64 = 4 << 20;

/// `stream` without oci-client's own digest check, an error at its end:
/// the blob store checks the same digest and refuses a mismatch as
/// tampering, where a stream error is retried as a broken connection.
fn unverified(
    stream: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
    stream
        .take_while(|item| {
            let digest = item
                .as_ref()
                .err()
                .and_then(|e| e.get_ref())
                .is_some_and(|e| e.is::<DigestError>());
            futures::future::ready(!digest)
        })
        .boxed()
}

/// A digest's hex, without its `sha256:`.
fn bare(digest: String) -> String {
    digest
        .strip_prefix("sha256:")
        .map_or(digest.clone(), str::to_owned)
}

/// The pinned manifest's bytes as the registry sends them, or why not: a
/// digest other than the pin is refused as tampered, anything else as gone.
async fn open_manifest(
    client: &Client,
    entry: &KernelEntry,
    pinned: &Reference,
) -> Result<Body, Attempt> {
    let (raw, _) = client
        .pull_manifest_raw(pinned, &RegistryAuth::Anonymous, MANIFEST_TYPES)
        .await
        .map_err(|e| match e {
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => Attempt::Fatal(FetchError::DigestMismatch {
                label: entry.label.clone(),
                what: "image manifest".into(),
                url: pinned.whole(),
                expected: bare(expected),
                actual: bare(actual),
            }),
            // The network or the registry failing: worth another try, and
            // no reason to move the pin.
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
                Attempt::Transient(e.to_string().into())
            }
            OciDistributionError::ServerError { code, .. } if code >= 500 => {
                Attempt::Transient(e.to_string().into())
            }
            other => Attempt::Fatal(FetchError::Oci {
                label: entry.label.clone(),
                source: OciError::Gone {
                    label: entry.label.clone(),
                    reference: pinned.whole(),
                    error: other.to_string(),
                },
            }),
        })?;
    Ok(Body {
        size: Some(raw.len() as u64),
        stream: futures::stream::once(futures::future::ready(Ok(raw.into()))).boxed(),
    })
}

/// Pulls the layers of the image `entry` pins into the cache (each kept by
/// its digest, through the blob store, as is the manifest, under the pin)
/// and returns their paths, in order. Offline, all of them come from the
/// cache.
pub async fn pull(
    blobs: &Blobs,
    entry: &KernelEntry,
    reference: &str,
) -> Result<Vec<PathBuf>, FetchError> {
    let pin = super::pin(entry, PIN)?;
    let oci = |source| FetchError::Oci {
        label: entry.label.clone(),
        source,
    };
    let parsed = parse(reference).map_err(oci)?;
    let pinned = parsed.clone_with_digest(format!("sha256:{}", hex::encode(pin)));
    let client = client(&parsed, entry.arch);
    let path = blobs
        .get(
            &entry.label,
            "image manifest",
            &pinned.whole(),
            pin,
            Some(MANIFEST_LIMIT),
            || open_manifest(&client, entry, &pinned),
        )
        .await?;
    let raw = std::fs::read(&path).map_err(|source| FetchError::Io {
        path: path.clone(),
        source,
    })?;
    let manifest: OciManifest = serde_json::from_slice(&raw).map_err(|e| {
        oci(OciError::Registry {
            reference: pinned.whole(),
            error: format!("the manifest does not parse: {e}"),
        })
    })?;
    let image = match manifest {
        OciManifest::Image(image) => image,
        // An index (pinned before pins named the platform's image) has
        // that image uncached under this pin.
        OciManifest::ImageIndex(_) if blobs.offline() => {
            return Err(FetchError::Offline {
                label: entry.label.clone(),
                what: format!(
                    "the linux/{} image of {}",
                    entry.arch.name(),
                    pinned.whole()
                ),
            });
        }
        index => {
            client
                .store_auth_if_needed(pinned.resolve_registry(), &RegistryAuth::Anonymous)
                .await;
            image_manifest(&client, &pinned, index, pinned.whole(), entry.arch)
                .await
                .map_err(oci)?
                .0
        }
    };

    let mut layers = Vec::new();
    for layer in &image.layers {
        let mut expected = [0u8; 32];
        let hex = layer.digest.strip_prefix("sha256:").unwrap_or_default();
        if hex::decode_to_slice(hex, &mut expected).is_err() {
            return Err(oci(OciError::Registry {
                reference: pinned.whole(),
                error: format!("layer digest `{}` is not sha256", layer.digest),
            }));
        }
        let what = format!("layer {}", &layer.digest[..19.min(layer.digest.len())]);
        let url = format!(
            "{}/{}@{}",
            pinned.registry(),
            pinned.repository(),
            layer.digest
        );
        let open = || async {
            client
                .store_auth_if_needed(pinned.resolve_registry(), &RegistryAuth::Anonymous)
                .await;
            let stream = client
                .pull_blob_stream(&pinned, layer)
                .await
                .map_err(|e| Attempt::Transient(e.to_string().into()))?;
            Ok::<_, Attempt>(Body {
                size: stream.content_length,
                stream: unverified(stream.stream),
            })
        };
        let limit = u64::try_from(layer.size).ok();
        layers.push(
            blobs
                .get(&entry.label, &what, &url, &expected, limit, open)
                .await?,
        );
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::cache::Cache;
    use crate::kernels::Matrix;
    use oci_client::manifest::Platform;

    fn entry(digest: &str, platform: Option<(&str, &str, Option<&str>)>) -> ImageIndexEntry {
        ImageIndexEntry {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.into(),
            size: 1,
            platform: platform.map(|(os, architecture, variant)| Platform {
                architecture: architecture.into(),
                os: os.into(),
                os_version: None,
                os_features: None,
                variant: variant.map(str::to_owned),
                features: None,
            }),
            annotations: None,
        }
    }

    #[test]
    fn an_index_resolves_to_the_entrys_architecture_or_names_what_it_has() {
        let index = [
            entry("sha256:a", Some(("linux", "amd64", None))),
            entry("sha256:w", Some(("windows", "arm64", None))),
            entry("sha256:b", Some(("linux", "arm64", Some("v8")))),
        ];
        assert_eq!(
            platform_image(&index, Arch::Amd64).as_deref(),
            Ok("sha256:a")
        );
        assert_eq!(
            platform_image(&index, Arch::Arm64).as_deref(),
            Ok("sha256:b")
        );
        let amd64_only = [
            entry("sha256:a", Some(("linux", "amd64", None))),
            entry("sha256:s", Some(("linux", "arm", Some("v7")))),
            entry("sha256:u", None),
        ];
        let found = platform_image(&amd64_only, Arch::Arm64).unwrap_err();
        assert_eq!(found, ["linux/amd64", "linux/arm/v7", "unknown"]);
        let message = OciError::NoPlatform {
            reference: "r/k:6.6".into(),
            arch: Arch::Arm64,
            found,
        }
        .to_string();
        assert_eq!(message, "r/k:6.6 is an image index with no linux/arm64 image: it has linux/amd64, linux/arm/v7, unknown; name an image built for arm64, or give the entry the `arch` of one it has");
    }

    #[test]
    fn the_blob_store_not_the_stream_judges_a_digest() {
        let mismatch = DigestError::VerificationError {
            expected: "sha256:00".into(),
            actual: "sha256:11".into(),
        };
        let items = vec![
            Ok(bytes::Bytes::from_static(b"layer")),
            Err(std::io::Error::other(mismatch)),
        ];
        let read: Vec<_> = futures::executor::block_on(
            unverified(futures::stream::iter(items)).collect::<Vec<_>>(),
        );
        assert_eq!(read.len(), 1, "the digest error ends the stream");
        assert_eq!(read[0].as_ref().unwrap(), &b"layer"[..]);

        let broken = vec![Err(std::io::Error::other("connection reset"))];
        let read: Vec<_> = futures::executor::block_on(
            unverified(futures::stream::iter(broken)).collect::<Vec<_>>(),
        );
        assert!(read[0].is_err(), "other errors stay errors");
    }

    #[test]
    fn offline_a_cached_manifest_and_its_layers_are_enough() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("cache")).unwrap();
        let layer = b"a layer".to_vec();
        let layer_digest = hex::encode(Sha256::digest(&layer));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"sha256:{layer_digest}","size":7}},"layers":[{{"mediaType":"{}","digest":"sha256:{layer_digest}","size":7}}]}}"#,
            manifest::OCI_IMAGE_MEDIA_TYPE,
            manifest::IMAGE_CONFIG_MEDIA_TYPE,
            manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE,
        );
        let pin: [u8; 32] = Sha256::digest(manifest.as_bytes()).into();
        let blobs_dir = dir.path().join("cache/blobs/sha256");
        std::fs::create_dir_all(&blobs_dir).unwrap();
        std::fs::write(blobs_dir.join(hex::encode(pin)), &manifest).unwrap();
        // Nothing listens at the registry: asking it would fail.
        let reference = "127.0.0.1:9/kernels/image:6.1";
        let text = format!(
            "[[kernel]]\nlabel = \"6.1\"\noci = \"{reference}\"\nsha256 = {{ manifest = \"sha256:{}\" }}\n",
            hex::encode(pin)
        );
        let matrix = Matrix::parse(&text, &dir.path().join("kernels.toml")).unwrap();
        let entry = &matrix.kernels[0];
        let blobs = Blobs::new(cache, true, |_| {});
        let runtime = tokio::runtime::Runtime::new().unwrap();

        match runtime.block_on(pull(&blobs, entry, reference)) {
            Err(err @ FetchError::Offline { .. }) => assert_eq!(
                err.to_string(),
                format!("kernel `6.1` is not cached (layer sha256:{}) and --offline forbids downloading it; run `kmatrix kernels fetch --kernels 6.1` while online", &layer_digest[..12])
            ),
            other => panic!("expected an offline error, got {other:?}"),
        }
        std::fs::write(blobs_dir.join(&layer_digest), &layer).unwrap();
        let layers = runtime.block_on(pull(&blobs, entry, reference)).unwrap();
        assert_eq!(layers, [blobs_dir.join(&layer_digest)]);
    }
}
