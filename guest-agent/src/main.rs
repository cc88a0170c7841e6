//! The kmatrix guest agent: PID 1 inside every test VM.
//!
//! It prepares what eBPF needs (filesystems, the virtio modules), opens the
//! results port, loads every program of every object packed into the
//! initramfs, streams one result per program to the host, and powers off.
//! It never returns: a PID 1 that exits panics the kernel, so every error is
//! reported where possible and the machine is powered off regardless.

use std::time::Duration;

use kmatrix_guest_agent::channel::Channel;
use kmatrix_guest_agent::{exec, loader, system};
use kmatrix_protocol::layout::{OBJECTS_DIR, PLAN_PATH};
use kmatrix_protocol::{Frame, Hello, Plan, VERSION};

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
    let mut setup_errors = system::mount_filesystems();
    setup_errors.extend(system::load_modules());

    let port = match system::open_port(Duration::from_secs(10)) {
        Ok(port) => port,
        Err(err) => {
            for err in &setup_errors {
                eprintln!("kmatrix-agent: {err}");
            }
            eprintln!("kmatrix-agent: {err}");
            return;
        }
    };
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

    match read_plan() {
        Ok(plan) => {
            loader::run_plan(OBJECTS_DIR.as_ref(), &plan, &mut channel);
            if let Some(exec) = &plan.exec {
                if let Err(err) = system::loopback_up() {
                    channel.send(&Frame::AgentError(err));
                }
                channel.flush();
                exec::run(exec, &mut channel);
            }
        }
        Err(err) => channel.send(&Frame::AgentError(err)),
    }

    if let Err(err) = channel.finish(Duration::from_secs(5)) {
        eprintln!("kmatrix-agent: results port: {err}");
    }
}

fn read_plan() -> Result<Plan, String> {
    let bytes = std::fs::read(PLAN_PATH).map_err(|e| format!("read {PLAN_PATH}: {e}"))?;
    kmatrix_protocol::decode_plan(&bytes).map_err(|e| format!("{PLAN_PATH}: {e}"))
}
