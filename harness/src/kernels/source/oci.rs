//! OCI kernel images: resolving a tag to the image manifest it names now,
//! and pulling a pinned image's layers into the cache.
//!
//! Registries are spoken to through `oci-client` (the distribution API,
//! anonymous bearer tokens, image indexes resolved to linux/amd64). Loopback
//! registries, and those named in [`INSECURE_ENV`], are reached over plain
//! HTTP, as container engines do.

use std::path::PathBuf;

use futures::StreamExt;
use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::kernels::blobs::{Attempt, Blobs, Body, Timeouts};
use crate::kernels::error::{FetchError, OciError};
use crate::kernels::{KernelEntry, Pinning, Version};

/// The `sha256` key an OCI entry pins: its image manifest's digest.
pub const PIN: &str = "manifest";

/// Environment variable listing registries (`host:port`, comma separated)
/// to reach over plain HTTP.
pub const INSECURE_ENV: &str = "KMATRIX_INSECURE_REGISTRIES";

/// The kernel version a tag names: only when it starts with one (`6.6`,
/// `6.6-20250101.012345`); `bpf-next-20250101.012345` and `rhel9.6-…`
/// name none.
pub fn tag_version(tag: &str) -> Option<Version> {
    tag.starts_with(|c: char| c.is_ascii_digit())
        .then(|| Version::find_in(tag))?
}

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

fn client(reference: &Reference) -> Client {
    let timeouts = Timeouts::from_env();
    let registry = reference.resolve_registry().to_owned();
    Client::new(ClientConfig {
        protocol: if plain_http(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        connect_timeout: Some(timeouts.connect),
        read_timeout: Some(timeouts.read),
        ..ClientConfig::default()
    })
}

/// The image manifest `manifest` names for linux/amd64: itself, or the
/// linux/amd64 entry of an index. Returns it with its digest.
async fn image_manifest(
    client: &Client,
    reference: &Reference,
    manifest: OciManifest,
    digest: String,
) -> Result<(OciImageManifest, String), OciError> {
    match manifest {
        OciManifest::Image(image) => Ok((image, digest)),
        OciManifest::ImageIndex(index) => {
            let chosen =
                linux_amd64_resolver(&index.manifests).ok_or_else(|| OciError::NoPlatform {
                    reference: reference.whole(),
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

/// The pin `entry` would have now: the linux/amd64 image manifest its
/// reference names.
pub async fn newest(entry: &KernelEntry, reference: &str) -> Result<Pinning, FetchError> {
    let oci = |source| FetchError::Oci {
        label: entry.label.clone(),
        source,
    };
    let parsed = parse(reference).map_err(oci)?;
    let client = client(&parsed);
    let (manifest, digest) = client
        .pull_manifest(&parsed, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| {
            oci(OciError::Registry {
                reference: reference.to_owned(),
                error: e.to_string(),
            })
        })?;
    let (_, digest) = image_manifest(&client, &parsed, manifest, digest)
        .await
        .map_err(oci)?;
    Ok(Pinning {
        missing: Vec::new(),
        label: entry.label.clone(),
        package: None,
        sha256: [(PIN.to_owned(), digest)].into(),
    })
}

/// Pulls the layers of the image `entry` pins into the cache (each kept by
/// its digest, through the blob store) and returns their paths, in order.
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
    if blobs.offline() {
        return Err(FetchError::Offline {
            label: entry.label.clone(),
            what: pinned.whole(),
        });
    }
    let client = client(&parsed);
    let (manifest, digest) = client
        .pull_manifest(&pinned, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| {
            oci(OciError::Gone {
                label: entry.label.clone(),
                reference: pinned.whole(),
                error: e.to_string(),
            })
        })?;
    let (image, _) = image_manifest(&client, &pinned, manifest, digest)
        .await
        .map_err(oci)?;

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
        let url = format!("{}@{}", pinned.whole(), layer.digest);
        let open = || async {
            let stream = client
                .pull_blob_stream(&pinned, layer)
                .await
                .map_err(|e| Attempt::Transient(e.to_string().into()))?;
            Ok::<_, Attempt>(Body {
                size: stream.content_length,
                stream: stream.stream.boxed(),
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
