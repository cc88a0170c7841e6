//! The results queue ([`kmatrix_protocol::queue`]) in locked pages the host
//! can read from a stopped guest: mapped once, populated and locked, not
//! copied into children (a copy-on-write fault would move a page), and
//! kept in place by telling the kernel not to compact locked pages.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use kmatrix_protocol::queue::{Header, HEADER, SIZE};

/// The queue's mapping.
pub struct Queue {
    area: &'static mut [u8],
    header: Header,
    /// Whether the area is the locked mapping (else plain memory, which
    /// the host is not told about).
    locked: bool,
}

impl Queue {
    /// Maps and locks the queue; in plain memory if that fails.
    pub fn allocate() -> Self {
        let (area, locked) = match Self::map() {
            Ok(area) => (area, true),
            Err(_) => (Box::leak(vec![0; SIZE].into_boxed_slice()), false),
        };
        // Compaction may move locked pages unless told not to; a kernel
        // without compaction has no such file.
        let _ = std::fs::write("/proc/sys/vm/compact_unevictable_allowed", "0");
        let header = Header { base: 0, len: 0 };
        header.write(area);
        Self {
            area,
            header,
            locked,
        }
    }

    fn map() -> io::Result<&'static mut [u8]> {
        // SAFETY: a fresh anonymous mapping, owned by the returned queue for
        // the agent's life (PID 1 never unmaps it).
        Ok(unsafe {
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | libc::MAP_LOCKED,
                -1,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if libc::madvise(ptr, SIZE, libc::MADV_DONTFORK) != 0 {
                return Err(io::Error::last_os_error());
            }
            std::slice::from_raw_parts_mut(ptr.cast::<u8>(), SIZE)
        })
    }

    /// Each page's guest-physical address, from `/proc/self/pagemap`.
    pub fn pages(&self, page_size: usize) -> io::Result<Vec<u64>> {
        if !self.locked {
            return Err(io::Error::other("the queue is not in locked pages"));
        }
        let mut pagemap = File::open("/proc/self/pagemap")?;
        let first = self.area.as_ptr() as usize / page_size;
        (0..SIZE.div_ceil(page_size))
            .map(|i| {
                let mut entry = [0u8; 8];
                pagemap.seek(SeekFrom::Start(((first + i) * 8) as u64))?;
                pagemap.read_exact(&mut entry)?;
                let entry = u64::from_le_bytes(entry);
                let pfn = entry & ((1 << 55) - 1);
                if entry >> 63 == 0 || pfn == 0 {
                    return Err(io::Error::other("a queue page is not resident"));
                }
                Ok(pfn * page_size as u64)
            })
            .collect()
    }

    /// How many bytes are queued.
    #[inline]
    pub fn len(&self) -> usize {
        self.header.len as usize
    }

    /// What is queued.
    pub fn queued(&self) -> &[u8] {
        &self.area[HEADER..HEADER + self.header.len as usize]
    }

    /// Queues what `write` puts at the start of the free space it is
    /// given, returning its length (`None`: it did not fit, nothing is
    /// queued): the bytes first, then the length that makes them part of
    /// the queue.
    #[inline]
    pub fn push_with<E>(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Result<Option<usize>, E>,
    ) -> Result<bool, E> {
        let at = HEADER + self.header.len as usize;
        let Some(len) = write(&mut self.area[at..])? else {
            return Ok(false);
        };
        self.header.len += len as u64;
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        self.header.write_len(self.area);
        Ok(true)
    }

    /// Records that `written` bytes went out past the queue (everything
    /// queued, then a frame too large to queue): the queue empties before
    /// its base moves on.
    pub fn written(&mut self, written: u64) {
        self.header.len = 0;
        self.store();
        self.header.base += written;
        self.store();
    }

    /// Counts what is written from here on from 0 (the queue is empty).
    pub fn restart(&mut self) {
        self.header.base = 0;
        self.store();
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.header.len == 0
    }

    fn store(&mut self) {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        self.header.write(self.area);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}
