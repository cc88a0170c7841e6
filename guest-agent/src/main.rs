//! The kmatrix guest agent: PID 1 inside every test VM.
//!
//! It prepares what eBPF needs (filesystems, the virtio modules), opens the
//! results port, says hello, and waits for its input (the host may first ask
//! it to prepare, then save the VM in that state). It writes the files the
//! host sends, sets the clock, loads every program of every object, streams
//! one result per program to the host, and powers off.
//! It never returns: a PID 1 that exits panics the kernel, so every error is
//! reported where possible and the machine is powered off regardless.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use kmatrix_guest_agent::channel::Channel;
use kmatrix_guest_agent::kmsg::KernelLog;
use kmatrix_guest_agent::loader::{send_splat, Loaders};
use kmatrix_guest_agent::{exec, probe, system};
use kmatrix_protocol::layout::OBJECTS_DIR;
use kmatrix_protocol::{AgentTimings, Frame, Hello, Input, Start, VERSION};

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("kmatrix-agent: panic: {info}");
    }));
    if let Err(err) = std::panic::catch_unwind(run) {
        eprintln!("kmatrix-agent: aborted after a panic: {err:?}");
    }
    system::power_off();
}

fn run() {
    // Problems before the port is open can only go to the console; they are
    // sent again once the host can hear them.
    let mut timings = AgentTimings {
        begun: system::boot_us(),
        ..AgentTimings::default()
    };
    // The modules first: their drivers find the port in the background
    // while the agent mounts.
    let mut setup_errors = system::load_modules();
    timings.modules = system::boot_us();
    setup_errors.extend(system::mount_filesystems());
    timings.mounted = system::boot_us();

    let mut log = KernelLog::open();
    let port = match system::open_port(Duration::from_secs(10), || log.read_ahead()) {
        Ok(port) => port,
        Err(err) => {
            for err in &setup_errors {
                eprintln!("kmatrix-agent: {err}");
            }
            eprintln!("kmatrix-agent: {err}");
            return;
        }
    };
    timings.port = system::boot_us();
    let mut channel = Channel::open(port);
    channel.send(&Frame::Hello(Hello {
        version: VERSION,
        kernel_release: system::kernel_release(),
        btf: system::has_btf(),
        boot_ms: system::boot_ms(),
    }));
    for err in setup_errors {
        channel.send(&Frame::AgentError(err));
    }
    channel.flush();
    timings.hello = system::boot_us();

    let mut loaders = Loaders::new();
    match read_input(&mut channel, &mut loaders) {
        Ok(start) => {
            timings.input = system::boot_us();
            for err in system::set_clock(start.unix_nanos)
                .into_iter()
                .chain(system::add_entropy(&start.entropy))
            {
                channel.send(&Frame::AgentError(err));
            }
            channel.send(&Frame::Started {
                kernel_release: system::kernel_release(),
            });
            timings.started = system::boot_us();
            channel.send_queue();
            send_splat(&mut log, &mut channel);
            probe::run(&start.plan, &mut channel);
            loaders.run_plan(OBJECTS_DIR.as_ref(), &start.plan, &mut channel, &mut log);
            if let Some(exec) = &start.plan.exec {
                if let Err(err) = system::loopback_up() {
                    channel.send(&Frame::AgentError(err));
                }
                channel.flush();
                exec::run(exec, &mut channel, &mut log);
            }
            send_splat(&mut log, &mut channel);
        }
        Err(err) => channel.send(&Frame::AgentError(err)),
    }
    timings.done = system::boot_us();
    timings.btf_us = loaders.btf_waited().as_micros() as u64;
    timings.loads_us = loaders.loads().as_micros() as u64;
    channel.send(&Frame::Timings(timings));

    if let Err(err) = channel.finish(Duration::from_secs(5)) {
        eprintln!("kmatrix-agent: results port: {err}");
    }
}

/// Reads the host's input up to its start: prepares when asked, writes
/// each file.
fn read_input(channel: &mut Channel, loaders: &mut Loaders) -> Result<Start, String> {
    loop {
        match channel.read_input() {
            Ok(Input::Prepare) => {
                loaders.prepare();
                channel.send(&Frame::Prepared);
                channel.flush();
            }
            Ok(Input::File { path, mode, len }) => {
                let path = Path::new(OsStr::from_bytes(&path));
                if let Err(err) = channel.receive_file(path, mode, len) {
                    channel.send(&Frame::AgentError(format!(
                        "writing {}: {err}",
                        path.display()
                    )));
                }
            }
            Ok(Input::Start(start)) => return Ok(start),
            // A terminal's input is for a program, and none runs yet.
            Ok(Input::Stdin(_) | Input::Resize(_) | Input::Hangup) => {}
            Err(err) => return Err(format!("reading the host's input: {err}")),
        }
    }
}
