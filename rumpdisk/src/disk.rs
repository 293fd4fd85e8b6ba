//! What a disk back end provides: a byte-addressed store with a sector
//! size. Back ends: host images ([`crate::image`]) and, with a rump kernel,
//! NetBSD's disk drivers ([`crate::netbsd`]).

use std::io;

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

    /// Back-end operations performed so far (reads, writes, flushes): the
    /// benchmark checks one per request.
    fn ops(&self) -> u64;
}
