//! Running the user's program in the guest, its stdout and stderr streamed
//! back as they are written, kept apart.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use kmatrix_protocol::{ExecPlan, ExitInfo, Frame, Stream};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::channel::Channel;

/// Bytes read from a pipe at a time.
const CHUNK: usize = 64 * 1024;

/// Runs `plan`, streaming its output, and reports how it ended.
pub fn run(plan: &ExecPlan, channel: &mut Channel) {
    let Some((program, args)) = plan.argv.split_first() else {
        channel.send(&Frame::Exit(ExitInfo::SpawnFailed(
            "no program given".into(),
        )));
        return;
    };
    let _ = std::fs::create_dir_all(&plan.cwd);
    let spawned = Command::new(program)
        .args(args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            channel.send(&Frame::Exit(ExitInfo::SpawnFailed(format!(
                "{program}: {err}"
            ))));
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
    while pipes.iter().any(|(_, pipe)| pipe.is_some()) {
        let open: Vec<usize> = (0..pipes.len()).filter(|&i| pipes[i].1.is_some()).collect();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .map(|&i| PollFd::new(pipes[i].1.as_ref().expect("open").fd(), PollFlags::POLLIN))
                .collect();
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            fds.iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
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
    }
    let info = match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitInfo::Code(code),
            (None, Some(signal)) => ExitInfo::Signal {
                signal,
                core_dumped: status.core_dumped(),
            },
            (None, None) => ExitInfo::SpawnFailed(format!("unknown exit status {status:?}")),
        },
        Err(err) => ExitInfo::SpawnFailed(format!("wait: {err}")),
    };
    channel.send(&Frame::Exit(info));
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
