//! The blob store: every download, from HTTP or a registry, goes through
//! [`Blobs::get`], which retries transient failures with backoff, hashes
//! the bytes as they stream, stops at a size limit, and moves the file
//! into the cache only once its sha256 matches its pin.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::error::{FetchError, FetchEvent};
use crate::cache::Cache;
use crate::error_chain::error_chain;

/// How many times a download is tried before its error is final.
const ATTEMPTS: u32 = 3;

/// Every network wait is bounded: connecting, each read, each whole
/// download. Set in seconds by `KMATRIX_CONNECT_TIMEOUT`,
/// `KMATRIX_READ_TIMEOUT` and `KMATRIX_DOWNLOAD_TIMEOUT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP and TLS).
    pub connect: Duration,
    /// A read that brings no byte.
    pub read: Duration,
    /// One whole download, retries not included.
    pub download: Duration,
}

impl Timeouts {
    /// The defaults, overridden by the environment: 15 s to connect, 30 s
    /// without a byte, 20 minutes per download.
    pub fn from_env() -> Self {
        let secs = |var: &str, default: u64| {
            Duration::from_secs(
                std::env::var(var)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .filter(|&s| s > 0)
                    .unwrap_or(default),
            )
        };
        Self {
            connect: secs("KMATRIX_CONNECT_TIMEOUT", 15),
            read: secs("KMATRIX_READ_TIMEOUT", 30),
            download: secs("KMATRIX_DOWNLOAD_TIMEOUT", 20 * 60),
        }
    }
}

/// An opened download: its size when known, and its bytes.
pub struct Body {
    /// The size the server announced.
    pub size: Option<u64>,
    /// The bytes.
    pub stream: BoxStream<'static, std::io::Result<bytes::Bytes>>,
}

/// A failed attempt: worth another, or not.
pub enum Attempt {
    /// A network error or a server error: try again.
    Transient(Box<dyn std::error::Error + Send + Sync>),
    /// Final.
    Fatal(FetchError),
}
use Attempt::{Fatal, Transient};

/// Downloads into the cache, by content digest.
pub struct Blobs {
    cache: Cache,
    client: reqwest::Client,
    timeouts: Timeouts,
    offline: bool,
    progress: Box<dyn Fn(FetchEvent) + Send + Sync>,
}

impl Blobs {
    /// A store in `cache`, reporting to `progress`; `offline` forbids
    /// downloads.
    pub fn new(
        cache: Cache,
        offline: bool,
        progress: impl Fn(FetchEvent) + Send + Sync + 'static,
    ) -> Self {
        let timeouts = Timeouts::from_env();
        Self {
            cache,
            client: reqwest::Client::builder()
                .user_agent(concat!("kmatrix/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(timeouts.connect)
                .read_timeout(timeouts.read)
                .timeout(timeouts.download)
                .build()
                .expect("the HTTP client builds"),
            timeouts,
            offline,
            progress: Box::new(progress),
        }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The network bounds.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The HTTP client (for indexes, which are not pinned blobs).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Whether downloads are forbidden.
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// Reports progress.
    pub fn progress(&self, event: FetchEvent) {
        (self.progress)(event)
    }

    /// Whether the blob pinned by `pin` (`what` of kernel `label`) must be
    /// downloaded: `false` when it is cached, an error when it is not and
    /// downloads are forbidden.
    pub fn needs_download(
        &self,
        label: &str,
        what: &str,
        pin: &[u8; 32],
    ) -> Result<bool, FetchError> {
        if self.cache.blob(pin).exists() {
            return Ok(false);
        }
        if self.offline {
            return Err(FetchError::Offline {
                label: label.to_owned(),
                what: what.to_owned(),
            });
        }
        Ok(true)
    }

    /// The cached blob pinned by `pin`, downloaded from `url` if missing.
    pub async fn get_url(
        &self,
        label: &str,
        what: &str,
        url: &str,
        pin: &[u8; 32],
        limit: Option<u64>,
    ) -> Result<PathBuf, FetchError> {
        self.get(label, what, url, pin, limit, || self.open_url(url))
            .await
    }

    /// The cached blob pinned by `pin`, its bytes taken from `open` (tried
    /// again on transient failures) if missing. `url` names the source in
    /// errors; more than `limit` bytes is an error. Nothing is left in the
    /// cache if the download fails or does not match.
    pub async fn get<F, Fut>(
        &self,
        label: &str,
        what: &str,
        url: &str,
        pin: &[u8; 32],
        limit: Option<u64>,
        open: F,
    ) -> Result<PathBuf, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Body, Attempt>>,
    {
        let dest = self.cache.blob(pin);
        if !self.needs_download(label, what, pin)? {
            return Ok(dest);
        }
        let start = Instant::now();
        let mut attempt = 1;
        let (file, hasher, bytes) = loop {
            let attempt_result = tokio::time::timeout(
                self.timeouts.download,
                self.try_get(label, what, url, limit, &open),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Transient(
                    format!(
                        "no end after {} s (KMATRIX_DOWNLOAD_TIMEOUT)",
                        self.timeouts.download.as_secs()
                    )
                    .into(),
                ))
            });
            match attempt_result {
                Ok(done) => break done,
                Err(Transient(err)) if attempt < ATTEMPTS => {
                    let wait = Duration::from_secs(1 << (attempt - 1));
                    self.progress(FetchEvent::Retrying {
                        label: label.to_owned(),
                        what: what.to_owned(),
                        error: error_chain(&*err),
                        wait,
                    });
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(Transient(source)) => {
                    return Err(FetchError::Download {
                        url: url.to_owned(),
                        source,
                    })
                }
                Err(Fatal(err)) => return Err(err),
            }
        };
        let actual: [u8; 32] = hasher.finalize().into();
        if &actual != pin {
            return Err(FetchError::DigestMismatch {
                label: label.to_owned(),
                what: what.to_owned(),
                url: url.to_owned(),
                expected: hex::encode(pin),
                actual: hex::encode(actual),
            });
        }
        let io = |source| FetchError::Io {
            path: dest.clone(),
            source,
        };
        file.as_file().sync_all().map_err(io)?;
        file.persist(&dest).map_err(|e| io(e.error))?;
        self.progress(FetchEvent::Downloaded {
            label: label.to_owned(),
            what: what.to_owned(),
            bytes,
            seconds: start.elapsed().as_secs_f64(),
        });
        Ok(dest)
    }

    /// One attempt: the temporary file, its running hash, its size.
    async fn try_get<F, Fut>(
        &self,
        label: &str,
        what: &str,
        url: &str,
        limit: Option<u64>,
        open: &F,
    ) -> Result<(tempfile::NamedTempFile, Sha256, u64), Attempt>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Body, Attempt>>,
    {
        let io = |source| {
            Fatal(FetchError::Io {
                path: self.cache.root().join("tmp"),
                source,
            })
        };
        let mut body = open().await?;
        let total = body.size.or(limit);
        self.progress(FetchEvent::Downloading {
            label: label.to_owned(),
            what: what.to_owned(),
            bytes: total,
        });
        let mut file = self.cache.temp_file().map_err(io)?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = body.stream.next().await {
            let chunk = chunk.map_err(|e| Transient(e.into()))?;
            bytes += chunk.len() as u64;
            if let Some(limit) = limit.filter(|&limit| bytes > limit) {
                return Err(Fatal(FetchError::Oversize {
                    what: what.to_owned(),
                    url: url.to_owned(),
                    limit,
                }));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io)?;
            self.progress(FetchEvent::Progress {
                label: label.to_owned(),
                what: what.to_owned(),
                done: bytes,
                total,
            });
        }
        Ok((file, hasher, bytes))
    }

    /// Opens `url` over HTTP.
    async fn open_url(&self, url: &str) -> Result<Body, Attempt> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| Transient(e.into()))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Transient(format!("HTTP {status}").into()));
        }
        let response = response.error_for_status().map_err(|e| {
            Fatal(FetchError::Download {
                url: url.to_owned(),
                source: e.into(),
            })
        })?;
        Ok(Body {
            size: response.content_length(),
            stream: response
                .bytes_stream()
                .map_err(std::io::Error::other)
                .boxed(),
        })
    }
}
