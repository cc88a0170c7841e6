//! `kmatrix shell` on a real terminal: tmux gives it one, types into it and
//! reads its screen; `--gdb`'s command run against it; an arm64 kernel's
//! shell from an arm64 busybox.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{repo, stray_vms};

crate::support::tests! {
    vm a_shell_in_tmux_answers_and_ctrl_bracket_leaves,
    vm gdb_attaches_with_the_printed_command_and_reads_the_kernel,
    arm64 an_arm64_kernel_gets_a_shell_from_an_arm64_busybox,
}

/// How long the kernel has to boot and the shell to answer.
const BOOT: Duration = Duration::from_secs(180);

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("tmux runs")
}

/// The pane's text.
fn screen(session: &str) -> String {
    // `-N` keeps the spaces that end a line, as the prompt's; `-J` joins
    // the lines the window wrapped.
    let shown = tmux(&["capture-pane", "-p", "-N", "-J", "-t", session]);
    String::from_utf8_lossy(&shown.stdout).into_owned()
}

/// Waits until the pane shows `text`; the screen when it does not.
fn wait_for(session: &str, text: &str, within: Duration) -> Result<(), String> {
    let end = Instant::now() + within;
    loop {
        let shown = screen(session);
        if shown.contains(text) {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(shown);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `name` on the PATH.
fn on_path(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not on the PATH"))
}

fn session_alive(session: &str) -> bool {
    tmux(&["has-session", "-t", session]).status.success()
}

/// The shell answers `uname -r` with the guest's release, and Ctrl-] ends
/// the session and its VM.
fn a_shell_in_tmux_answers_and_ctrl_bracket_leaves() {
    // `stty` and `sleep` are not among the tools a shell gets: given.
    let shell = Tmux::start(
        "shell",
        &[
            "shell".into(),
            "--kernel".into(),
            "6.1".into(),
            "--no-share".into(),
            "--file".into(),
            on_path("stty").display().to_string(),
            "--file".into(),
            on_path("sleep").display().to_string(),
        ],
    );
    // The prompt, then the release the guest answers (the host's may
    // differ; the guest's 6.1 is Debian's 6.1.0-…).
    shell.expect("# ", BOOT, "no prompt");
    shell.type_line("uname -r");
    shell.expect("\n6.1.0-", Duration::from_secs(30), "no release");
    // The window's size reached the guest's terminal.
    shell.type_line("stty size");
    shell.expect(
        "40 120",
        Duration::from_secs(30),
        "the guest's terminal is not 40x120",
    );
    // Ctrl-C reaches the guest's foreground job, not kmatrix.
    shell.type_line("sleep 1000");
    std::thread::sleep(Duration::from_secs(1));
    tmux(&["send-keys", "-t", &shell.session, "C-c"]);
    shell.type_line("echo still-$((40+2))");
    shell.expect(
        "still-42",
        Duration::from_secs(30),
        "Ctrl-C did not leave the shell running",
    );
    // Ctrl-] leaves: kmatrix ends, successfully, and with it its VM.
    shell.leave();
}

/// A `kmatrix shell` running in a tmux session of 120x40; the session is
/// killed when dropped.
struct Tmux {
    session: String,
    status: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts kmatrix with `args` (after `kmatrix`, each quoted), keeping
    /// its exit status, and the pane for a minute after it ends.
    fn start(name: &str, args: &[String]) -> Tmux {
        let session = format!("kmatrix-{name}-{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        let words: Vec<String> = args
            .iter()
            .map(|a| kmatrix::report::reproduce::quote(a))
            .collect();
        let command = format!(
            "KMATRIX_KERNELS='{}' '{}' {}; echo $? > '{}'; sleep 60",
            repo().join("kernels.toml").display(),
            env!("CARGO_BIN_EXE_kmatrix"),
            words.join(" "),
            status.display(),
        );
        let started = tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "120",
            "-y",
            "40",
            &command,
        ]);
        assert!(started.status.success(), "{started:?}");
        Tmux {
            session,
            status,
            _dir: dir,
        }
    }

    fn screen(&self) -> String {
        screen(&self.session)
    }

    /// Waits for `text` on the screen; panics with the screen and `what`
    /// when it does not come.
    fn expect(&self, text: &str, within: Duration, what: &str) {
        if let Err(shown) = wait_for(&self.session, text, within) {
            panic!("{what}:\n{shown}");
        }
    }

    /// Types `keys` and Enter.
    fn type_line(&self, keys: &str) {
        tmux(&["send-keys", "-t", &self.session, keys, "Enter"]);
    }

    /// Leaves with Ctrl-] and checks kmatrix ended with 0, no VM left.
    fn leave(&self) {
        tmux(&["send-keys", "-t", &self.session, "C-]"]);
        let end = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Ok(code) = std::fs::read_to_string(&self.status) {
                break code;
            }
            assert!(
                Instant::now() < end,
                "kmatrix still runs after Ctrl-]:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(code.trim(), "0", "{}", self.screen());
        assert!(session_alive(&self.session), "the pane ended early");
        assert!(stray_vms().is_empty(), "{:?}", stray_vms());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.session]);
    }
}

/// `kmatrix shell --gdb` prints a gdb command; run in batch mode against
/// the running guest it attaches and reads the kernel: the string at
/// `linux_banner` (its address from the guest's /proc/kallsyms: the
/// image has no symbol table and the kernel is placed at a random
/// address) is the banner of the release the guest runs. The shell goes on
/// once gdb detached.
fn gdb_attaches_with_the_printed_command_and_reads_the_kernel() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shell = Tmux::start(
        "gdb",
        &[
            "shell".into(),
            "--kernel".into(),
            "6.1".into(),
            "--no-share".into(),
            "--file".into(),
            on_path("grep").display().to_string(),
            format!("--gdb={port}"),
        ],
    );
    shell.expect("# ", BOOT, "no prompt");
    let screen = shell.screen();
    let gdb = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("kmatrix: gdb: "))
        .unwrap_or_else(|| panic!("no gdb command:\n{screen}"))
        .to_owned();
    assert!(
        gdb.starts_with("gdb ") && gdb.ends_with(&format!("-ex 'target remote 127.0.0.1:{port}'")),
        "{gdb}"
    );

    shell.type_line("uname -r; grep -w linux_banner /proc/kallsyms");
    shell.expect(
        " linux_banner\n",
        Duration::from_secs(60),
        "no linux_banner",
    );
    let screen = shell.screen();
    let release = screen
        .lines()
        .find(|l| l.starts_with("6.1.0-"))
        .unwrap_or_else(|| panic!("no release:\n{screen}"))
        .trim()
        .to_owned();
    let address = screen
        .lines()
        .filter_map(|l| l.trim().strip_suffix(" linux_banner"))
        .filter_map(|l| l.split_once(' ').map(|(address, _kind)| address))
        .find(|a| a.len() == 16 && a.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no address of linux_banner:\n{screen}"))
        .to_owned();

    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 120 {gdb} -batch -ex 'x/s 0x{address}' -ex 'info registers rip'"
        ))
        .output()
        .expect("sh runs gdb");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        out.contains(&format!("\"Linux version {release} ")),
        "gdb read no banner of {release}:\n{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("rip ")), "{out}");

    // Detached, the guest runs on.
    shell.type_line("echo alive-$((2+3))");
    shell.expect(
        "alive-5",
        Duration::from_secs(30),
        "the shell did not go on",
    );
    shell.leave();
}

/// An arm64 kernel on an amd64 host: the host's sh is refused with what
/// to do, and an arm64 busybox (Debian's static one, downloaded and
/// unpacked here) gives the shell, its applets standing for the tools.
fn an_arm64_kernel_gets_a_shell_from_an_arm64_busybox() {
    let dir = tempfile::tempdir().unwrap();
    let downloaded = Command::new("apt-get")
        .args(["download", "busybox-static:arm64"])
        .current_dir(dir.path())
        .output()
        .expect("apt-get runs");
    assert!(
        downloaded.status.success(),
        "apt-get download busybox-static:arm64 (the arm64 architecture added, as .ci/run does): {}",
        String::from_utf8_lossy(&downloaded.stderr)
    );
    let deb = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("the downloaded package");
    let root = dir.path().join("root");
    let unpacked = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let busybox = ["usr/bin/busybox", "bin/busybox"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .expect("busybox in the package");

    let refused = Tmux::start(
        "arm64-sh",
        &[
            "shell".into(),
            "--kernel".into(),
            "5.10-arm64".into(),
            "--no-share".into(),
        ],
    );
    refused.expect(
        "give a static arm64 busybox with --busybox PATH",
        Duration::from_secs(30),
        "the host's sh was not refused for an arm64 kernel",
    );
    drop(refused);

    let shell = Tmux::start(
        "arm64",
        &[
            "shell".into(),
            "--kernel".into(),
            "5.10-arm64".into(),
            "--no-share".into(),
            "--busybox".into(),
            busybox.display().to_string(),
        ],
    );
    shell.expect("# ", BOOT * 2, "no prompt");
    for (line, answer) in [
        ("uname -m", "\naarch64"),
        ("cat /proc/version", "Linux version 5.10."),
        ("ls /proc/1/ >/dev/null && echo ls-ok", "\nls-ok"),
        ("ip link show lo | head -1", "lo: <LOOPBACK"),
        ("dmesg | head -1 | sed s/^/dmesg:/", "\ndmesg:["),
    ] {
        shell.type_line(line);
        shell.expect(answer, Duration::from_secs(60), line);
    }
    shell.leave();
}
