//! What the integration tests share: the harness ([`trials`]), the
//! repository and its fixtures, the `kmatrix` binary, a loopback HTTP
//! server, and ([`mirror`]) a loopback Debian mirror.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

pub mod mirror;
pub mod records;
pub mod rpmrepo;
pub mod snapshot;
pub mod trials;
pub mod ubuntu;

pub(crate) use trials::tests;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `kmatrix` with `args`, run in the repository, with no step summary.
pub fn kmatrix(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kmatrix"));
    command
        .current_dir(repo())
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY");
    command
}

/// `kmatrix` with `args`, its cache in `cache`.
pub fn kmatrix_cached(cache: &Path, args: &[&str]) -> Command {
    let mut command = kmatrix(args);
    command.env(kmatrix::cache::CACHE_ENV, cache);
    command
}

/// `kmatrix --matrix MATRIX ARGS…`, its cache in `cache`.
pub fn kmatrix_in(matrix: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut command = kmatrix_cached(cache, &["--matrix", matrix.to_str().unwrap()]);
    command.args(args);
    command
}

/// [`kmatrix_in`], run to its end.
pub fn run_in(matrix: &Path, cache: &Path, args: &[&str]) -> Output {
    kmatrix_in(matrix, cache, args).output().unwrap()
}

/// `output`'s text, once its exit code is `code` (else the test fails,
/// showing it).
pub fn exited(output: &Output, code: i32) -> String {
    let out = text(output);
    assert_eq!(output.status.code(), Some(code), "{out}");
    out
}

/// A process's status and output, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A URL nothing listens at: a stand-in, stopped.
pub const GONE: &str = "http://127.0.0.1:9";

/// A loopback HTTP server answering GETs from a map of paths to bodies.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serves `files` (path, with its leading `/`, to body) until the test
    /// process ends.
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> Self {
        Self::flaky(files, 0)
    }

    /// Like [`Server::start`], but answers the first `failures` requests
    /// for each path with `503 Service Unavailable`.
    pub fn flaky(files: BTreeMap<String, Vec<u8>>, failures: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let earlier = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(path.clone());
                    seen.iter().filter(|p| **p == path).count() - 1
                };
                let body = files.get(&path).filter(|_| earlier >= failures);
                let head = match body {
                    None if earlier < failures => {
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
                    }
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .into()
                    }
                };
                let _ = stream.write_all(head.as_bytes());
                if let Some(body) = body {
                    let _ = stream.write_all(body);
                }
            }
        });
        Self { url, requests }
    }

    /// The paths asked for so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/bpf").join(name)
}

pub fn example(name: &str) -> String {
    repo()
        .join("tests/example")
        .join(name)
        .display()
        .to_string()
}

/// The cells of the matrix row for `program`.
pub fn matrix_row<'a>(out: &'a str, program: &str) -> Vec<&'a str> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&program) && words.len() > 1)
        .map(|words| words[1..].to_vec())
        .unwrap_or_default()
}

pub fn stray_vms() -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", "kmatrix-vm-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("qemu"))
        .map(str::to_owned)
        .collect()
}

/// The shipped 6.1 kernel, from the user's cache (fetched if needed): what
/// the stand-ins of other sources repackage.
pub fn debian_6_1() -> kmatrix::kernels::KernelArtifacts {
    shipped_kernel("6.1")
}

/// The shipped kernel `label`, from the user's cache (fetched if needed).
pub fn shipped_kernel(label: &str) -> kmatrix::kernels::KernelArtifacts {
    use kmatrix::kernels::{Fetcher, Matrix};
    let matrix = Matrix::load(&repo().join("kernels.toml")).unwrap();
    let entry = matrix.kernels.iter().find(|k| k.label == label).unwrap();
    let cache = kmatrix::cache::Cache::from_env().unwrap();
    let fetcher = Fetcher::new(cache, &matrix, false, |_| {});
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fetcher.fetch(entry))
        .unwrap()
}

/// `kmatrix test --kernels 6.1 --suite <suite>`.
pub fn test_suite_on_6_1(suite: &Path) -> std::process::Output {
    kmatrix(&[
        "test",
        "--kernels",
        "6.1",
        "--suite",
        suite.to_str().unwrap(),
    ])
    .output()
    .unwrap()
}

pub const SSH_SYN: &str = "02000000000202000000000108004500002800004000400600000a0000010a00000230390016000000000000000050020fff00000000";

/// The `kernels` test binary (tests/kernels.rs), built by the same
/// `cargo test` run next to this one.
pub fn kernels_test_binary() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("kernels-") && p.extension().is_none()
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no kernels test binary in {}: run `cargo test --workspace`, which builds it",
                deps.display()
            )
        })
}

/// The labels of the oldest and the newest shipped amd64 kernels.
pub fn oldest_and_newest_amd64() -> (String, String) {
    let matrix = kmatrix::kernels::Matrix::load(&repo().join("kernels.toml")).unwrap();
    let amd64 = || {
        matrix
            .kernels
            .iter()
            .filter(|k| k.arch == kmatrix_protocol::Arch::Amd64)
    };
    (
        amd64().next().unwrap().label.clone(),
        amd64().next_back().unwrap().label.clone(),
    )
}

/// A cache with the shared cache's kernels (fetched there first), hard
/// linked, and no snapshots.
pub fn private_cache(kernels: &str) -> tempfile::TempDir {
    let fetched = kmatrix(&["kernels", "fetch", "--kernels", kernels])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched));
    let shared = kmatrix::cache::Cache::from_env().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("kmatrix-snapshots-test-")
        .tempdir_in(shared.tmp_dir())
        .unwrap();
    link_tree(&shared.root().join("kernels"), &dir.path().join("kernels"));
    dir
}

fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let (path, dest) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            link_tree(&path, &dest);
        } else {
            std::fs::hard_link(&path, &dest).unwrap();
        }
    }
}

/// The releases `kmatrix bisect` says it booted (its `booted: ` line).
pub fn bisect_booted(out: &str) -> Vec<&str> {
    out.lines()
        .find_map(|l| l.strip_prefix("booted: "))
        .expect("bisect says what it booted")
        .split(", ")
        .collect()
}
