//! Running the user's program in the guest, its stdout and stderr streamed
//! back as they are written, kept apart. The program runs in its own
//! process group: once it exits, its output is drained for a moment, then
//! the group is killed (a background child keeping the pipes open cannot
//! hold the run), and its exit is reported. Output is flushed to the host
//! whenever the agent is about to wait, so a line printed before a hang
//! arrives.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kmatrix_protocol::{ExecPlan, ExitInfo, Frame, Stream};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::channel::Channel;
use crate::kmsg::KernelLog;
use crate::loader::send_splat;

/// Bytes read from a pipe at a time.
const CHUNK: usize = 64 * 1024;

/// How long output is still read once the program has exited (from
/// children that still hold its pipes).
const DRAIN: Duration = Duration::from_millis(500);

/// The longest wait for output before checking whether the program ended.
const WAIT: u16 = 100;

/// Runs `plan`, streaming its output and any splat the kernel logs while
/// it runs (in order with the output, so that the host knows which of its
/// tests was running), and reports how it ended.
pub fn run(plan: &ExecPlan, channel: &mut Channel, log: &mut KernelLog) {
    let path = |bytes: &[u8]| Path::new(OsStr::from_bytes(bytes)).to_owned();
    let Some((program, args)) = plan.argv.split_first() else {
        channel.send(&Frame::Exit(ExitInfo::SpawnFailed(
            "no program given".into(),
        )));
        return;
    };
    let (program, cwd) = (path(program), path(&plan.cwd));
    let _ = std::fs::create_dir_all(&cwd);
    for dir in &plan.read_only {
        if let Err(err) = crate::system::make_read_only(&path(dir)) {
            channel.send(&Frame::AgentError(err));
        }
    }
    let mut command = Command::new(&program);
    command
        .args(args.iter().map(|arg| OsStr::from_bytes(arg)))
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cwd);
    if let Some(size) = plan.tty {
        crate::tty::run(command, size, channel, log);
        return;
    }
    // Its own process group, so that whatever it leaves running (a
    // background child holding its pipes) can be ended with it.
    let spawned = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            channel.send(&Frame::Exit(spawn_failed(&command, err)));
            return;
        }
    };
    let mut pipes = [
        (
            Stream::Stdout,
            child.stdout.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
        ),
        (
            Stream::Stderr,
            child.stderr.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
        ),
    ];
    let mut buf = vec![0u8; CHUNK];
    let mut exit = Exit::new(DRAIN);
    while pipes.iter().any(|(_, pipe)| pipe.is_some()) {
        if exit.drained(&mut child) {
            break;
        }
        let open: Vec<usize> = (0..pipes.len()).filter(|&i| pipes[i].1.is_some()).collect();
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|&i| PollFd::new(pipes[i].1.as_ref().expect("open").fd(), PollFlags::POLLIN))
            .chain(log.fd().map(|fd| PollFd::new(fd, PollFlags::POLLIN)))
            .collect();
        // What was printed goes out before the agent waits.
        let ready_now = matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0);
        if !ready_now {
            channel.flush();
            if poll(&mut fds, PollTimeout::from(WAIT)).is_err() {
                continue;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let log_ready = ready.get(open.len()).copied().unwrap_or(false);
        for (&i, ready) in open.iter().zip(ready) {
            if !ready {
                continue;
            }
            let (stream, pipe) = &mut pipes[i];
            match pipe.as_mut().expect("open").read(&mut buf) {
                Ok(0) | Err(_) => *pipe = None,
                Ok(n) => channel.send(&Frame::Output {
                    stream: *stream,
                    data: buf[..n].to_vec(),
                }),
            }
        }
        if log_ready {
            send_splat(log, channel);
        }
    }
    // Whatever the program left behind in its group ends with it.
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let status = exit.wait(&mut child);
    let info = exit_info(status);
    channel.send(&Frame::Exit(info));
    channel.flush();
}

/// A child's exit status once seen, and until when its output is still
/// read after it.
pub(crate) struct Exit {
    status: Option<ExitStatus>,
    drain: Duration,
    drain_until: Option<Instant>,
}

impl Exit {
    /// Output is read for `drain` after the child exits.
    pub(crate) fn new(drain: Duration) -> Self {
        Self {
            status: None,
            drain,
            drain_until: None,
        }
    }

    /// Notes `child`'s exit the first time it is seen; true once the drain
    /// after it is over.
    pub(crate) fn drained(&mut self, child: &mut Child) -> bool {
        if self.status.is_none() {
            self.status = child.try_wait().ok().flatten();
            if self.status.is_some() {
                self.drain_until = Some(Instant::now() + self.drain);
            }
        }
        self.drain_until.is_some_and(|end| Instant::now() >= end)
    }

    /// The status seen, or the one `child` ends with.
    pub(crate) fn wait(self, child: &mut Child) -> std::io::Result<ExitStatus> {
        match self.status {
            Some(status) => Ok(status),
            None => child.wait(),
        }
    }
}

/// How a program ended, or why it could not be waited for.
pub(crate) fn exit_info(status: std::io::Result<std::process::ExitStatus>) -> ExitInfo {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitInfo::Code(code),
            (None, Some(signal)) => ExitInfo::Signal {
                signal,
                core_dumped: status.core_dumped(),
            },
            (None, None) => ExitInfo::SpawnFailed(format!("unknown exit status {status:?}")),
        },
        Err(err) => ExitInfo::SpawnFailed(format!("wait: {err}")),
    }
}

/// The program of `command` could not start.
pub(crate) fn spawn_failed(command: &Command, err: impl std::fmt::Display) -> ExitInfo {
    ExitInfo::SpawnFailed(format!(
        "{}: {err}",
        Path::new(command.get_program()).display()
    ))
}

/// A pipe end that can be read and polled.
trait ReadFd: Read {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl<T: Read + AsFd> ReadFd for T {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}
