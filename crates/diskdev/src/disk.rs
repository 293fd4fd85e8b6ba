//! What a disk back end provides: a byte-addressed store with a sector
//! size. Back ends: host images ([`crate::image`]) and, with a rump kernel,
//! NetBSD's disk drivers (`netbsd.rs`, built when `RUMP_PREFIX` names one).

use std::alloc::Layout;
use std::io;
use std::ptr::NonNull;

/// A disk. Offsets and lengths the device layer passes are multiples of
/// [`Disk::sector_size`] and inside [`Disk::size`].
pub trait Disk: Send + Sync {
    /// Size in bytes (read again on every call: media can change).
    fn size(&self) -> io::Result<u64>;

    /// Bytes per sector (the device interface's record size).
    fn sector_size(&self) -> u32;

    /// Whether writes are refused.
    fn read_only(&self) -> bool;

    /// Reads `buf.len()` bytes at `offset`, whole (one back-end operation).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Writes `data` at `offset`, whole (one back-end operation).
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Makes written data stable (the drive's cache flushed).
    fn flush(&self) -> io::Result<()>;

    /// Whether [`Disk::discard`] frees storage here.
    fn can_discard(&self) -> bool {
        false
    }

    /// Tells the back end `[offset, offset+len)` holds nothing worth
    /// keeping (NBD's TRIM): one back-end operation. Afterwards the range
    /// reads as zeros (an image frees its blocks). Back ends that cannot
    /// answer `Unsupported`.
    fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Whether the host carries out this back end's writes one at a time
    /// whatever the number of writers (Linux holds a regular file's inode
    /// lock through a buffered write): a server then gains nothing from a
    /// second write in progress beside the one a thread is carrying out,
    /// and loses the time writers spin on that lock.
    fn serialises_writes(&self) -> bool {
        false
    }

    /// Moves `len` bytes at `offset` into the empty pipe whose write end is
    /// `pipe` (which holds them all) without copying them through this
    /// process: Linux `splice` from the host's page cache, whole, as one
    /// back-end operation. `None` when this back end cannot (its data is
    /// not in the host's page cache): the caller reads into a buffer.
    #[cfg(target_os = "linux")]
    fn splice_to_pipe(
        &self,
        _offset: u64,
        _len: usize,
        _pipe: std::os::fd::BorrowedFd<'_>,
    ) -> Option<io::Result<()>> {
        None
    }

    /// Writes `len` bytes at `offset` out of the pipe whose read end is
    /// `pipe` (which holds at least them) without copying them through
    /// this process: Linux `splice` into the host's page cache, whole, as
    /// one back-end operation. Back ends that [serialise
    /// writes](Disk::serialises_writes) can; others answer `Unsupported`.
    #[cfg(target_os = "linux")]
    fn splice_from_pipe(
        &self,
        _offset: u64,
        _len: usize,
        _pipe: std::os::fd::BorrowedFd<'_>,
    ) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Back-end operations performed so far (reads, writes, flushes,
    /// discards): the
    /// benchmark checks one per request.
    fn ops(&self) -> u64;
}

/// Moves `len` bytes from descriptor `from` to `to` with Linux `splice`,
/// whole, retrying partial moves and interruptions, at `*from_offset` and
/// `*to_offset` (which advance) where given (a file's side; a pipe's has
/// none); `UnexpectedEof` when `from` ends first.
#[cfg(target_os = "linux")]
pub fn splice_all(
    from: std::os::fd::RawFd,
    from_offset: Option<&mut libc::loff_t>,
    to: std::os::fd::RawFd,
    to_offset: Option<&mut libc::loff_t>,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<()> {
    let off_in = from_offset.map_or(std::ptr::null_mut(), std::ptr::from_mut);
    let off_out = to_offset.map_or(std::ptr::null_mut(), std::ptr::from_mut);
    // SAFETY: splice between two descriptors; each offset is null or the
    // caller's, alive for the call.
    whole(len, |_, left| unsafe {
        libc::splice(from, off_in, to, off_out, left, flags)
    })
}

/// Moves `len` bytes by repeated calls of `step` (given the bytes moved so
/// far and those left, one system call that moves some of them and returns
/// how many, or -1 with `errno`), retrying interruptions;
/// `UnexpectedEof` when a call moves nothing.
#[cfg(target_os = "linux")]
pub(crate) fn whole(len: usize, mut step: impl FnMut(usize, usize) -> isize) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        match step(done, len - done) {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Page size: the alignment [`AlignedBuf`] gives by default.
pub const PAGE: usize = 4096;

/// A zeroed heap buffer whose start is aligned (direct I/O wants aligned
/// buffers); it grows on demand.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain heap memory owned by this value.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` zeroed bytes aligned to `align` (a power of two).
    ///
    /// # Errors
    /// `InvalidInput` for a bad alignment, `OutOfMemory`.
    pub fn new(len: usize, align: usize) -> io::Result<Self> {
        let layout = Layout::from_size_align(len.max(1), align)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(Self { ptr, layout })
    }

    /// The first `len` bytes, reallocating (same alignment, zeroed) when
    /// the buffer is smaller.
    ///
    /// # Errors
    /// `OutOfMemory`.
    pub fn get(&mut self, len: usize) -> io::Result<&mut [u8]> {
        if len > self.layout.size() {
            *self = Self::new(len, self.layout.align())?;
        }
        Ok(&mut self.as_mut_slice()[..len])
    }

    /// The whole buffer.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: an initialized allocation of `layout.size()` bytes, ours
        // alone while borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
