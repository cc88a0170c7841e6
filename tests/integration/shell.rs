//! `kmatrix shell` on a real terminal: tmux gives it one, types into it and
//! reads its screen.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{repo, stray_vms};

crate::support::tests! {
    vm a_shell_in_tmux_answers_and_ctrl_bracket_leaves,
}

/// How long the kernel has to boot and the shell to answer.
const BOOT: Duration = Duration::from_secs(180);

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("tmux runs")
}

/// The pane's text.
fn screen(session: &str) -> String {
    // `-N` keeps the spaces that end a line, as the prompt's.
    let shown = tmux(&["capture-pane", "-p", "-N", "-t", session]);
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
    let session = format!("kmatrix-shell-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    // kmatrix's exit status is kept, and the pane with it for a while.
    // `stty` and `sleep` are not among the tools a shell gets: given.
    let command = format!(
        "KMATRIX_KERNELS='{}' '{}' shell --kernel 6.1 --no-share --file '{}' --file '{}'; \
         echo $? > '{}'; sleep 30",
        repo().join("kernels.toml").display(),
        env!("CARGO_BIN_EXE_kmatrix"),
        on_path("stty").display(),
        on_path("sleep").display(),
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
    // The session is killed whatever the assertions say.
    struct Kill<'a>(&'a str);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            tmux(&["kill-session", "-t", self.0]);
        }
    }
    let _kill = Kill(&session);

    // The prompt, then the release the guest answers (the host's may
    // differ; the guest's 6.1 is Debian's 6.1.0-…).
    if let Err(shown) = wait_for(&session, "# ", BOOT) {
        panic!("no prompt:\n{shown}");
    }
    tmux(&["send-keys", "-t", &session, "uname -r", "Enter"]);
    if let Err(shown) = wait_for(&session, "\n6.1.0-", Duration::from_secs(30)) {
        panic!("no release:\n{shown}");
    }
    // The window's size reached the guest's terminal.
    tmux(&["send-keys", "-t", &session, "stty size", "Enter"]);
    if let Err(shown) = wait_for(&session, "40 120", Duration::from_secs(30)) {
        panic!("the guest's terminal is not 40x120:\n{shown}");
    }
    // Ctrl-C reaches the guest's foreground job, not kmatrix.
    tmux(&["send-keys", "-t", &session, "sleep 1000", "Enter"]);
    std::thread::sleep(Duration::from_secs(1));
    tmux(&["send-keys", "-t", &session, "C-c"]);
    tmux(&["send-keys", "-t", &session, "echo still-$((40+2))", "Enter"]);
    if let Err(shown) = wait_for(&session, "still-42", Duration::from_secs(30)) {
        panic!("Ctrl-C did not leave the shell running:\n{shown}");
    }

    // Ctrl-] leaves: kmatrix ends, successfully, and with it its VM.
    tmux(&["send-keys", "-t", &session, "C-]"]);
    let end = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Ok(code) = std::fs::read_to_string(&status) {
            break code;
        }
        assert!(
            Instant::now() < end,
            "kmatrix still runs after Ctrl-]:\n{}",
            screen(&session)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(code.trim(), "0", "{}", screen(&session));
    assert!(session_alive(&session), "the pane ended early");
    assert!(stray_vms().is_empty(), "{:?}", stray_vms());
}
