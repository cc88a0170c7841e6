//! Tests that need a kernel of their own: run them with `kmatrix exec` or
//! with kmatrix as cargo's runner, never on the host.

use std::path::Path;
use std::time::Duration;

use aya::maps::Array;
use aya::programs::{Xdp, XdpMode};
use aya::{include_bytes_aligned, Ebpf};

static XDP_FILTER: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_filter.o"));

/// Loads the example filter, attaches it to `lo`, sends a SYN to port 22
/// over loopback, and reads the drop counter.
#[test]
fn xdp_filter_counts_ssh_syns_on_lo() {
    let mut ebpf = Ebpf::load(XDP_FILTER).expect("the object loads");
    let program: &mut Xdp = ebpf.program_mut("xdp_filter").unwrap().try_into().unwrap();
    program.load().expect("the verifier accepts xdp_filter");
    program.attach("lo", XdpMode::Skb).expect("attach to lo");

    let target = "127.0.0.1:22".parse().unwrap();
    let connected = std::net::TcpStream::connect_timeout(&target, Duration::from_millis(300));
    assert!(
        connected.is_err(),
        "the filter lets no SYN to port 22 through"
    );

    let drops: Array<_, u64> = Array::try_from(ebpf.map("drops").unwrap()).unwrap();
    let dropped = drops.get(&0, 0).unwrap();
    assert!(dropped >= 1, "{dropped} drops counted");
}

/// The guest has what eBPF tests expect.
#[test]
fn the_guest_has_bpffs_tracefs_and_cgroup2() {
    for path in [
        "/sys/fs/bpf",
        "/sys/kernel/tracing/trace_pipe",
        "/sys/fs/cgroup/cgroup.controllers",
    ] {
        assert!(Path::new(path).exists(), "{path} is missing");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
}
