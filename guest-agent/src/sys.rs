//! The few `bpf(2)` commands the agent issues itself, on the fds either
//! loader gives it: reading and writing map entries whose key and value
//! sizes are known only at run time, and `BPF_PROG_TEST_RUN`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_ANY: u64 = 0;

/// `union bpf_attr` as the map element commands use it.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` as `BPF_PROG_TEST_RUN` uses it.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, so that the tail the kernel checks for zeros is zero.
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a valid, fully initialised `bpf_attr` prefix whose
    // pointers outlive the call; the kernel reads at most `size` bytes of it.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `value` at `key`.
pub fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags: BPF_ANY,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
}

/// Reads the `value_size`-byte value at `key`; `None` if there is no entry.
pub fn map_lookup(
    map: BorrowedFd<'_>,
    key: &[u8],
    value_size: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; value_size];
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(()) => Ok(Some(value)),
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(err) => Err(err),
    }
}

/// What one `BPF_PROG_TEST_RUN` gave.
pub struct TestRunResult {
    /// The program's return value.
    pub retval: u32,
    /// The mean duration of one run, in nanoseconds.
    pub duration_ns: u32,
    /// Bytes of `data_out` the kernel wrote.
    pub data_size_out: u32,
}

/// `BPF_PROG_TEST_RUN` on a loaded program, the same for every loader:
/// `data` and `ctx` in, the output packet into `data_out` when given.
pub fn prog_test_run(
    prog: BorrowedFd<'_>,
    data: Option<&[u8]>,
    data_out: Option<&mut [u8]>,
    ctx: Option<&[u8]>,
    repeat: u32,
) -> io::Result<TestRunResult> {
    let data = data.unwrap_or_default();
    let ctx = ctx.unwrap_or_default();
    let (out, out_len) = match data_out {
        Some(out) => (out.as_mut_ptr() as u64, out.len() as u32),
        None => (0, 0),
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: if data.is_empty() {
            0
        } else {
            data.as_ptr() as u64
        },
        data_out: out,
        data_size_out: out_len,
        repeat,
        ctx_size_in: ctx.len() as u32,
        ctx_in: if ctx.is_empty() {
            0
        } else {
            ctx.as_ptr() as u64
        },
        ..TestRunAttr::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(TestRunResult {
        retval: attr.retval,
        duration_ns: attr.duration,
        data_size_out: attr.data_size_out,
    })
}

/// `union bpf_attr` as `BPF_OBJ_GET_INFO_BY_FD` uses it.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// A loaded program's size after verification and, from Linux 5.16, how
/// many instructions the verifier processed (`bpf_prog_info`).
pub fn prog_stats(prog: BorrowedFd<'_>) -> io::Result<kmatrix_protocol::ProgramStats> {
    // SAFETY: bpf_prog_info is plain data; all zeroes is a valid value.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let nonzero = |v: u64| (v > 0).then_some(v);
    Ok(kmatrix_protocol::ProgramStats {
        insns_processed: nonzero(u64::from(info.verified_insns)),
        // One instruction is 8 bytes.
        xlated_insns: nonzero(u64::from(info.xlated_prog_len) / 8),
        jited_bytes: nonzero(u64::from(info.jited_prog_len)),
        ..Default::default()
    })
}
