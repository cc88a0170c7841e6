//! The few `bpf(2)` commands aya has no byte-level API for: reading and
//! writing map entries whose key and value sizes are known only at run time.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
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

fn bpf(cmd: libc::c_long, attr: &mut MapElemAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, fully initialised `bpf_attr` prefix whose
    // pointers outlive the call; the kernel reads at most `size` bytes of it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut MapElemAttr,
            std::mem::size_of::<MapElemAttr>(),
        )
    };
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
