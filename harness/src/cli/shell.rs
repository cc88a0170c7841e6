//! `kmatrix shell`: one kernel booted (or restored) with a shell on a
//! terminal in the guest, as `kmatrix exec` would run a program there (the
//! working directory shared read-only, host tools with their libraries).
//! The host's terminal goes raw: every key goes to the guest (Ctrl-C to
//! its foreground job) but Ctrl-], which leaves; a resize follows the
//! host's window. The run layers only forward [`Input`] messages.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kmatrix_protocol::{Input, WindowSize};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Mutex};

use super::args::VmArgs;
use super::noticed;
use super::terminal::{self, RawMode};
use crate::error::{Error, Status};
use crate::event::{KernelOutcome, RunEvent};
use crate::kernels::Selection;
use crate::plan::{PlanError, RunConfig, RunRequest, Tests};
use crate::report::progress;

/// Host tools sent along with the shell when the host has them: what
/// poking at a kernel takes (its logs, /proc and /sys, the BPF file
/// system), and the text tools to sift their output.
const TOOLS: &[&str] = &[
    "bpftool", "ip", "tc", "dmesg", "uname", "mount", "ps", "cat", "ls", "head", "tail", "grep",
    "sed", "awk", "wc", "sort", "find", "stat", "cp", "mkdir", "rm", "sleep", "env",
];

/// Where tools live that a user's PATH may leave out.
const SBIN: &[&str] = &["/usr/sbin", "/sbin"];

/// How long a session may last: a day (the run deadline of a test would
/// end a shell mid-work).
const SESSION: Duration = Duration::from_secs(24 * 60 * 60);

/// How long the guest has to end its shell once the user left, before its
/// VM is stopped regardless.
const HANGUP: Duration = Duration::from_secs(3);

#[derive(Args)]
pub struct ShellArgs {
    /// The kernel to boot, as `--kernels` names one (`5.10`, `6.1`); the
    /// first of several matches.
    #[arg(long, value_name = "KERNEL")]
    kernel: String,
    /// Also pack this file or directory, at the same absolute path.
    #[arg(long, value_name = "PATH")]
    file: Vec<PathBuf>,
    /// Do not share the working directory with the guest.
    #[arg(long)]
    no_share: bool,
    /// Start QEMU's gdbstub on this loopback port [default port: 1234]
    /// and print the gdb command for the kernel: with its ELF image where
    /// kmatrix has one (amd64), which has no symbol table (distributions
    /// strip it), and the kernel is placed at a random address: take
    /// addresses from the guest's /proc/kallsyms (arm64: gdb-multiarch,
    /// without an image).
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "1234")]
    gdb: Option<u16>,
    /// Run this static busybox's shell, its applets on the PATH, instead
    /// of the host's `sh` and tools: for a kernel of another architecture
    /// than the host's (an arm64 kernel on an amd64 host: an arm64
    /// busybox).
    #[arg(long, value_name = "PATH")]
    busybox: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
}

/// Where a busybox shell's applets are linked in the guest, ahead on the
/// PATH.
const APPLETS: &str = "/tmp/kmatrix-busybox";

/// The command line that runs the shell: the host's `sh`, or `busybox`'s
/// with its applets linked first (through busybox alone: the guest has
/// nothing else of its architecture; by `--install` where it was built
/// with it, else one link per `--list`ed applet).
fn shell_command(busybox: Option<&std::path::Path>) -> Vec<String> {
    let Some(busybox) = busybox else {
        return vec!["sh".into(), "-i".into()];
    };
    let busybox = busybox.display().to_string();
    let quoted = crate::report::reproduce::quote(&busybox);
    vec![
        busybox,
        "sh".into(),
        "-c".into(),
        format!(
            "{quoted} mkdir -p {APPLETS} && {{ {quoted} --install -s {APPLETS} 2>/dev/null || \
             for a in $({quoted} --list); do {quoted} ln -sf {quoted} {APPLETS}/$a; done; }}; \
             PATH={APPLETS}:$PATH exec {quoted} sh -i"
        ),
    ]
}

/// What `kmatrix shell` asks for; `later` carries the terminal's input.
fn request(
    matrix: Option<PathBuf>,
    args: &ShellArgs,
    size: WindowSize,
    later: crate::vm::LaterInput,
) -> Result<RunRequest, Error> {
    let kernels: Selection = args
        .kernel
        .parse()
        .map_err(|e| Error::Usage(format!("--kernel {}: {e}", args.kernel)))?;
    let mut files = args.file.clone();
    let busybox = match &args.busybox {
        Some(path) => Some(
            std::path::absolute(path)
                .map_err(|e| Error::Usage(format!("--busybox {}: {e}", path.display())))?,
        ),
        // The host's tools, of the host's architecture, go with its sh.
        None => {
            files.extend(TOOLS.iter().filter_map(|name| tool(name)));
            None
        }
    };
    let mut vm = args.vm.config();
    vm.run_timeout = vm.run_timeout.max(SESSION);
    vm.gdb_port = args.gdb;
    Ok(RunRequest {
        matrix,
        kernels,
        arch: None,
        shard: None,
        tests: Tests::Exec {
            command: shell_command(busybox.as_deref()),
            files,
            env: vec!["TERM".into()],
            share: !args.no_share,
            tty: Some(size),
        },
        offline: false,
        config: RunConfig {
            later_input: Some(later),
            ..RunConfig::new(Some(1), vm)
        },
    })
}

/// The gdb command that attaches to the gdbstub on `port`: with the
/// kernel's ELF image where there is one (amd64); else without a file, gdb
/// taking the architecture from QEMU (an arm64 kernel, with
/// gdb-multiarch).
fn gdb_command(elf: Option<&std::path::Path>, port: u16) -> String {
    let remote = format!("-ex 'target remote 127.0.0.1:{port}'");
    match elf {
        Some(elf) => format!(
            "gdb {} {remote}",
            crate::report::reproduce::quote(&elf.display().to_string())
        ),
        None => format!("gdb-multiarch {remote}"),
    }
}

/// `name` on the host's PATH, or in an sbin directory.
fn tool(name: &str) -> Option<PathBuf> {
    crate::tools::which(name).or_else(|| {
        SBIN.iter()
            .map(|dir| PathBuf::from(dir).join(name))
            .find(|path| path.is_file())
    })
}

pub async fn shell(matrix: Option<PathBuf>, args: ShellArgs) -> Result<Status, Error> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(
            "kmatrix shell needs a terminal on stdin; for a program without one, use kmatrix exec"
                .into(),
        ));
    }
    let size = terminal::size_of(stdin.as_fd())
        .as_ref()
        .and_then(terminal::window_size)
        .unwrap_or(WindowSize { rows: 24, cols: 80 });
    let (keys, later) = mpsc::unbounded_channel();
    let later = std::sync::Arc::new(Mutex::new(later));
    let resolved = request(matrix, &args, size, later)?.resolve(progress::on_stderr());
    let mut plan = noticed(resolved).map_err(|err| match err {
        PlanError::ArchMismatch {
            program_arch,
            kernel_arch,
            ..
        } if args.busybox.is_none() => Error::Usage(format!(
            "--kernel {}: the kernel is {kernel_arch}, the host's sh and tools are \
             {program_arch}: give a static {kernel_arch} busybox with --busybox PATH (on \
             Debian: `apt-get download busybox-static:{kernel_arch}`, then `dpkg-deb -x` it)",
            args.kernel
        )),
        err => err.into(),
    })?;
    plan.kernels.truncate(1);
    let Some(kernel) = plan.kernels.first().cloned() else {
        return Err(Error::Usage(format!(
            "--kernel {} selects no kernel of the matrix",
            args.kernel
        )));
    };
    if let Some(port) = args.gdb {
        let artifacts = plan.fetcher.fetch(&kernel).await?;
        eprintln!(
            "kmatrix: gdb: {}",
            gdb_command(artifacts.vmlinux().as_deref(), port)
        );
    }
    eprintln!("kmatrix: booting {}; Ctrl-] leaves", kernel.label);

    let (left, mut leave) = mpsc::unbounded_channel();
    read_keys(keys.clone(), left);
    let mut session = Session::default();
    // Dropped before the terminal is restored: that stops the VM.
    let mut run = Box::pin(crate::runner::run(&plan, |event| session.event(&event)));
    let mut broke = None;
    let mut winch = signal(SignalKind::window_change()).ok();
    // Ctrl-C before the shell starts (the terminal is not raw yet) stops
    // the boot; once it is, it is a key for the guest.
    let (mut int, mut term, mut hup) = (
        signal(SignalKind::interrupt()).ok(),
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::hangup()).ok(),
    );
    loop {
        tokio::select! {
            ended = &mut run => {
                broke = ended.err();
                break;
            }
            _ = leave.recv() => {
                let _ = keys.send(Input::Hangup);
                let _ = tokio::time::timeout(HANGUP, &mut run).await;
                break;
            }
            _ = received(&mut winch) => {
                if let Some(resize) = terminal::size_of(stdin.as_fd()).as_ref().and_then(terminal::resize) {
                    let _ = keys.send(resize);
                }
            }
            _ = received(&mut int) => break,
            _ = received(&mut term) => break,
            _ = received(&mut hup) => break,
        }
    }
    drop(run);
    drop(session.raw.take());
    eprintln!();
    if let Some(err) = broke {
        eprintln!("kmatrix: writing the guest's output: {err}");
    }
    Ok(match session.failure {
        Some(failure) => {
            eprintln!("kmatrix: {}: {failure}", kernel.label);
            Status::Infrastructure
        }
        None => Status::Passed,
    })
}

/// What the run has shown so far.
#[derive(Default)]
struct Session {
    /// The terminal, raw once the shell started.
    raw: Option<RawMode<std::io::Stdin>>,
    /// Why the kernel failed, if it did.
    failure: Option<String>,
}

impl Session {
    fn event(&mut self, event: &RunEvent) -> Result<(), std::io::Error> {
        let mut out = std::io::stdout().lock();
        match event {
            RunEvent::KernelBooted { .. } => {
                self.raw = RawMode::enter(std::io::stdin()).ok();
            }
            RunEvent::Output { data, .. } => {
                out.write_all(data)?;
                out.flush()?;
            }
            RunEvent::Notice { message, .. } => eprint!("kmatrix: {message}\r\n"),
            RunEvent::AgentError { message, .. } => eprint!("kmatrix: agent: {message}\r\n"),
            RunEvent::Splat { lines, .. } => {
                for line in lines {
                    eprint!("{line}\r\n");
                }
            }
            RunEvent::KernelFinished {
                outcome: KernelOutcome::Failed(err),
                ..
            } => self.failure = Some(crate::error_chain::error_chain(err)),
            _ => {}
        }
        Ok(())
    }
}

/// Reads the terminal on a thread of its own (a read blocks), sending what
/// is typed as `keys` and telling `left` once Ctrl-] is pressed or stdin
/// ends.
fn read_keys(keys: mpsc::UnboundedSender<Input>, left: mpsc::UnboundedSender<()>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let typed = terminal::keys(&buf[..n]);
            if !typed.send.is_empty() && keys.send(Input::Stdin(typed.send.to_vec())).is_err() {
                return;
            }
            if typed.leave {
                break;
            }
        }
        let _ = left.send(());
    });
}

/// Waits for `signal`; forever when its handler could not be installed.
async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        shell: ShellArgs,
    }

    fn request_of(args: &[&str]) -> RunRequest {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        let (_, later) = mpsc::unbounded_channel();
        let size = WindowSize {
            rows: 40,
            cols: 120,
        };
        request(
            None,
            &cli.shell,
            size,
            std::sync::Arc::new(Mutex::new(later)),
        )
        .unwrap()
    }

    #[test]
    fn a_shell_runs_on_a_terminal_without_the_test_deadline() {
        let request = request_of(&["shell", "--kernel", "6.1", "--no-share"]);
        let Tests::Exec {
            command,
            files,
            share,
            tty,
            env,
        } = &request.tests
        else {
            panic!("not an exec request")
        };
        assert_eq!(command, &["sh", "-i"]);
        // The tools the host has go along (this host has `cat`).
        let cat = tool("cat").expect("cat on the host");
        assert!(files.contains(&cat), "{files:?}");
        assert!(!share);
        assert_eq!(
            *tty,
            Some(WindowSize {
                rows: 40,
                cols: 120
            })
        );
        assert!(env.contains(&"TERM".to_owned()));
        assert!(request.config.vm.run_timeout >= SESSION);
        assert!(request.config.later_input.is_some());
        assert_eq!(request.config.vm.gdb_port, None);
        assert_eq!(request.kernels, "6.1".parse().unwrap());
    }

    #[test]
    fn a_busybox_shell_takes_no_host_tool() {
        let request = request_of(&["shell", "--kernel", "6.1-arm64", "--busybox", "/bb/busybox"]);
        let Tests::Exec { command, files, .. } = &request.tests else {
            panic!("not an exec request")
        };
        assert_eq!(command[..3], ["/bb/busybox", "sh", "-c"]);
        assert!(
            command[3].contains("/bb/busybox --install -s "),
            "{command:?}"
        );
        let parsed = std::process::Command::new("sh")
            .args(["-n", "-c", &command[3]])
            .status()
            .unwrap();
        assert!(parsed.success(), "{command:?}");
        assert!(files.is_empty(), "{files:?}");
        // Nothing of the host's is found in the command line either.
        assert_eq!(crate::tools::of_command(command), Vec::<PathBuf>::new());
    }

    #[test]
    fn the_gdb_command_names_the_elf_image_when_there_is_one() {
        assert_eq!(
            gdb_command(Some("/c/k 1/vmlinux".as_ref()), 1234),
            "gdb '/c/k 1/vmlinux' -ex 'target remote 127.0.0.1:1234'"
        );
        assert_eq!(
            gdb_command(None, 4321),
            "gdb-multiarch -ex 'target remote 127.0.0.1:4321'"
        );
    }

    #[test]
    fn gdb_takes_a_port_or_defaults_to_1234() {
        let port = |args: &[&str]| request_of(args).config.vm.gdb_port;
        assert_eq!(port(&["shell", "--kernel", "6.1", "--gdb"]), Some(1234));
        assert_eq!(
            port(&["shell", "--kernel", "6.1", "--gdb", "4321"]),
            Some(4321)
        );
    }

    #[test]
    fn a_kernel_that_is_no_selection_is_a_usage_error() {
        let cli = Cli::try_parse_from(["shell", "--kernel", "6.1..5.4.x.."]).unwrap();
        let (_, later) = mpsc::unbounded_channel();
        let size = WindowSize::default();
        let made = request(
            None,
            &cli.shell,
            size,
            std::sync::Arc::new(Mutex::new(later)),
        );
        assert!(matches!(made, Err(Error::Usage(message)) if message.contains("--kernel")));
    }
}
