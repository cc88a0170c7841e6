//! A program on a pseudo-terminal (`kmatrix shell`): it runs as a session
//! leader with the terminal as its controlling terminal, so job control
//! and Ctrl-C work as on any console. What it writes goes to the host as
//! [`Stream::Stdout`] output, flushed at once; the host's
//! [`Input::Stdin`] is written to the terminal, [`Input::Resize`] sets its
//! size (the kernel signals the foreground job) and [`Input::Hangup`], or
//! the host going away, ends the session.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use kmatrix_protocol::{ExitInfo, Frame, Input, Stream, WindowSize};
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::channel::Channel;
use crate::exec::{exit_info, spawn_failed, Exit};
use crate::kmsg::KernelLog;
use crate::loader::send_splat;

/// Where the terminals' filesystem is mounted.
const PTS: &str = "/dev/pts";

/// How long output is still read once the program has exited.
const DRAIN: Duration = Duration::from_millis(200);

/// The longest wait before checking whether the program ended.
const WAIT: u16 = 100;

/// Runs `command` on a new terminal of `size` until it exits or the host
/// hangs up, then reports how it ended.
pub fn run(mut command: Command, size: WindowSize, channel: &mut Channel, log: &mut KernelLog) {
    let (master, slave) = match open(size) {
        Ok(pair) => pair,
        Err(err) => {
            channel.send(&Frame::Exit(ExitInfo::SpawnFailed(format!(
                "opening a terminal: {err}"
            ))));
            channel.flush();
            return;
        }
    };
    let stdio = || slave.try_clone().map(Stdio::from);
    let spawned = stdio().and_then(|stdin| {
        command.stdin(stdin).stdout(stdio()?).stderr(stdio()?);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn()
    });
    drop(slave);
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            channel.send(&Frame::Exit(spawn_failed(&command, err)));
            channel.flush();
            return;
        }
    };
    let session = Pid::from_raw(child.id() as i32);
    let mut master = master;
    let mut buf = vec![0u8; 64 * 1024];
    let mut exit = Exit::new(DRAIN);
    let mut open = true;
    while open {
        if exit.drained(&mut child) {
            break;
        }
        let input_now = channel.input_ready();
        let (output, input, kernel) = {
            let mut fds: Vec<PollFd> = [master.as_fd(), channel.port_fd()]
                .into_iter()
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .chain(log.fd().map(|fd| PollFd::new(fd, PollFlags::POLLIN)))
                .collect();
            let wait = if input_now {
                PollTimeout::ZERO
            } else {
                PollTimeout::from(WAIT)
            };
            if poll(&mut fds, wait).is_err() {
                continue;
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|fd| fd.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (ready(0), input_now || ready(1), ready(2))
        };
        if output {
            match master.read(&mut buf) {
                // EIO: every process holding the terminal has gone.
                Ok(0) | Err(_) => open = false,
                Ok(n) => {
                    channel.send(&Frame::Output {
                        stream: Stream::Stdout,
                        data: buf[..n].to_vec(),
                    });
                    channel.flush();
                }
            }
        }
        if input && !take_input(channel, &mut master) {
            break;
        }
        if kernel {
            send_splat(log, channel);
            channel.flush();
        }
    }
    let _ = killpg(session, Signal::SIGHUP);
    let _ = killpg(session, Signal::SIGKILL);
    let status = exit.wait(&mut child);
    channel.send(&Frame::Exit(exit_info(status)));
    channel.flush();
}

/// Handles one input message; false when the session is to end.
fn take_input(channel: &mut Channel, master: &mut PtyMaster) -> bool {
    match channel.read_input() {
        Ok(Input::Stdin(bytes)) => {
            let _ = master.write_all(&bytes);
            true
        }
        Ok(Input::Resize(size)) => {
            resize(master, size);
            true
        }
        Ok(Input::Hangup) | Err(_) => false,
        Ok(other) => {
            channel.send(&Frame::AgentError(format!(
                "unexpected input while a terminal runs: {other:?}"
            )));
            true
        }
    }
}

/// A terminal's two ends, the terminal `size` big.
fn open(size: WindowSize) -> std::io::Result<(PtyMaster, File)> {
    // Mounted on first use (its `ptmx` shows it is there).
    if !std::path::Path::new(PTS).join("ptmx").exists() {
        let _ = std::fs::create_dir_all(PTS);
        let _ = mount(
            Some("devpts"),
            PTS,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=620,ptmxmode=666"),
        );
    }
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(name)?;
    resize(&master, size);
    Ok((master, slave))
}

/// Sets the terminal's size; the kernel signals its foreground job.
fn resize(master: &impl AsRawFd, size: WindowSize) {
    let size = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, which outlives the call.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    use kmatrix_protocol::input::encode_input;
    use kmatrix_protocol::Decoder;

    use super::*;
    use crate::kmsg::tests::fake_log;

    /// Runs `sh` on a terminal of 24x80 through a port whose host end is
    /// returned, on a thread of its own.
    fn shell() -> (UnixStream, std::thread::JoinHandle<()>) {
        let (port, host) = UnixStream::pair().expect("socket pair");
        let agent = std::thread::spawn(move || {
            let mut channel = Channel::open(File::from(OwnedFd::from(port)));
            let (mut log, _kernel) = fake_log();
            let mut command = Command::new("sh");
            command.env_clear().env("PATH", "/usr/bin:/bin");
            run(
                command,
                WindowSize { rows: 24, cols: 80 },
                &mut channel,
                &mut log,
            );
        });
        (host, agent)
    }

    fn send(host: &mut UnixStream, input: &Input) {
        let mut bytes = Vec::new();
        encode_input(input, &mut bytes);
        host.write_all(&bytes).unwrap();
    }

    /// Reads frames until `until` holds of the output so far or the
    /// program exits; gives the output and the exit.
    fn read(
        host: &mut UnixStream,
        decoder: &mut Decoder,
        until: impl Fn(&str) -> bool,
    ) -> (String, Option<ExitInfo>) {
        let mut output = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            while let Some(frame) = decoder.next_frame().unwrap() {
                match frame {
                    Frame::Output { data, .. } => output.extend(data),
                    Frame::Exit(info) => {
                        return (String::from_utf8_lossy(&output).into_owned(), Some(info))
                    }
                    _ => {}
                }
            }
            let text = String::from_utf8_lossy(&output).into_owned();
            if until(&text) {
                return (text, None);
            }
            let n = host.read(&mut buf).unwrap();
            assert!(n > 0, "the port closed; output so far: {text}");
            decoder.extend(&buf[..n]);
        }
    }

    #[test]
    fn typed_input_runs_on_a_terminal_of_the_size_sent_and_a_hangup_ends_it() {
        let (mut host, agent) = shell();
        host.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut decoder = Decoder::new();
        send(
            &mut host,
            &Input::Resize(WindowSize {
                rows: 33,
                cols: 101,
            }),
        );
        send(
            &mut host,
            &Input::Stdin(b"stty size; test -t 0 && echo tty-$((20+1))\n".to_vec()),
        );
        let (output, exit) = read(&mut host, &mut decoder, |out| out.contains("tty-21"));
        assert_eq!(exit, None, "{output}");
        assert!(output.contains("33 101"), "{output}");
        send(&mut host, &Input::Hangup);
        let (output, exit) = read(&mut host, &mut decoder, |_| false);
        assert!(
            matches!(exit, Some(ExitInfo::Signal { .. } | ExitInfo::Code(_))),
            "{exit:?}: {output}"
        );
        agent.join().unwrap();
    }

    #[test]
    fn a_program_that_exits_is_reported_with_its_code() {
        let (mut host, agent) = shell();
        host.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut decoder = Decoder::new();
        send(&mut host, &Input::Stdin(b"exit 7\n".to_vec()));
        let (output, exit) = read(&mut host, &mut decoder, |_| false);
        assert_eq!(exit, Some(ExitInfo::Code(7)), "{output}");
        agent.join().unwrap();
    }
}
