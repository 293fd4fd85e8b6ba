//! The NetBSD back end: disks driven by the rump kernel's disk drivers,
//! read and written with whole `rump_sys_pread`/`pwrite` transfers (no
//! 4 KiB splitting). Device names map as in the C rumpdisk (`wd0` →
//! `/dev/rwd0d`); host images are attached with etfs.
//!
//! With physical DMA addressing (`hypercall::pci::DmaAddressing`), data
//! goes through a staging buffer in DMA memory: NetBSD's `bus_dma` treats
//! a buffer's virtual contiguity as bus contiguity, which the caller's
//! pages do not have by physical address.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hypercall::pci::{DmaAddressing, DmaBuffer};
use parking_lot::Mutex;
use rump::{Etfs, EtfsType, Fd, Rump, RumpError, oflags};

use crate::disk::Disk;

/// Bytes of the staging buffer (one huge page).
const STAGING: usize = 2 << 20;

/// `DIOCGMEDIASIZE`: `_IOR('d', 132, off_t)`.
pub const DIOCGMEDIASIZE: u64 = 0x4008_6484;
/// `DIOCGSECTORSIZE`: `_IOR('d', 133, u_int)`.
pub const DIOCGSECTORSIZE: u64 = 0x4004_6485;
/// `DIOCCACHESYNC`: `_IOW('d', 118, int)`.
pub const DIOCCACHESYNC: u64 = 0x8004_6476;

/// The raw whole-disk device of a Hurd device name (`wd0` → `/dev/rwd0d`).
#[must_use]
pub fn raw_device(name: &str) -> String {
    format!("/dev/r{name}d")
}

/// A disk in the rump kernel.
pub struct NetbsdDisk {
    fd: Fd,
    sector: u32,
    read_only: bool,
    ops: AtomicU64,
    /// With physical DMA addressing, the DMA memory data passes through
    /// (a kernel device may DMA; an etfs image does not).
    staging: Option<Mutex<DmaBuffer>>,
    _etfs: Option<Etfs>,
}

impl std::fmt::Debug for NetbsdDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetbsdDisk")
            .field("fd", &self.fd.raw())
            .field("sector", &self.sector)
            .finish_non_exhaustive()
    }
}

impl NetbsdDisk {
    /// Opens the kernel's disk device `path`.
    ///
    /// # Errors
    /// The kernel's error, or (physical DMA addressing) no DMA memory for
    /// the staging buffer.
    pub fn open(kernel: Rump, path: &str, read_only: bool) -> io::Result<Self> {
        let mut d = Self::open_with(kernel, path, read_only, None).map_err(io_err)?;
        if hypercall::pci::dma_addressing() == DmaAddressing::Physical {
            let b = DmaBuffer::new(STAGING, 4096, true).map_err(hypercall::NetbsdErrno::to_io)?;
            d.staging = Some(Mutex::new(b));
        }
        Ok(d)
    }

    /// Attaches host image `image` with etfs as block device `/dev/<key>`
    /// and opens it.
    pub fn attach_image(
        kernel: Rump,
        key: &str,
        image: &Path,
        read_only: bool,
    ) -> Result<Self, RumpError> {
        let dev = format!("/dev/{key}");
        let etfs = kernel.etfs_register(&dev, image, EtfsType::Blk)?;
        Self::open_with(kernel, &dev, read_only, Some(etfs))
    }

    fn open_with(
        kernel: Rump,
        path: &str,
        read_only: bool,
        etfs: Option<Etfs>,
    ) -> Result<Self, RumpError> {
        let (fd, read_only) = if read_only {
            (kernel.open(path, oflags::RDONLY, 0)?, true)
        } else {
            match kernel.open(path, oflags::RDWR, 0) {
                Ok(fd) => (fd, false),
                Err(e) if e.errno().is_some_and(|e| e.0 == 30) => {
                    (kernel.open(path, oflags::RDONLY, 0)?, true)
                }
                Err(e) => return Err(e),
            }
        };
        let mut sector: u32 = 0;
        // SAFETY: DIOCGSECTORSIZE writes a u_int.
        let sector = match unsafe { fd.ioctl(DIOCGSECTORSIZE, &mut sector) } {
            Ok(_) if sector >= 512 && sector.is_power_of_two() => sector,
            _ => 512,
        };
        Ok(Self {
            fd,
            sector,
            read_only,
            ops: AtomicU64::new(0),
            staging: None,
            _etfs: etfs,
        })
    }
}

/// A kernel error as a host one. NetBSD answers `ENXIO` or `ENODEV` for a
/// disk that is not there (not attached, or detached: a USB stick
/// pulled), which is `NotFound` here, so the device layer answers
/// `D_NO_SUCH_DEVICE`.
fn io_err(e: RumpError) -> io::Error {
    /// NetBSD's `ENXIO` and `ENODEV`.
    const GONE: [i32; 2] = [6, 19];
    let gone = e.errno().is_some_and(|n| GONE.contains(&n.0));
    let host: io::Error = e.into();
    if gone {
        io::Error::new(io::ErrorKind::NotFound, host.to_string())
    } else {
        host
    }
}

impl NetbsdDisk {
    fn read_direct(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let n = self.fd.pread(buf, offset).map_err(io_err)?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"))
        }
    }

    fn write_direct(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let n = self.fd.pwrite(data, offset).map_err(io_err)?;
        if n == data.len() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::WriteZero, "short write"))
        }
    }
}

/// Runs `io(offset of the piece, its index in the caller's buffer, the
/// staging piece)` over `len` bytes in pieces of `staging` (one kernel call
/// per piece).
fn staged(
    staging: &Mutex<DmaBuffer>,
    offset: u64,
    len: usize,
    mut io: impl FnMut(u64, usize, &mut [u8]) -> io::Result<()>,
) -> io::Result<()> {
    let b = staging.lock();
    // SAFETY: the staging buffer is ours alone while the lock is held.
    let stage = unsafe { std::slice::from_raw_parts_mut(b.as_ptr(), b.len()) };
    let mut done = 0;
    while done < len {
        let n = (len - done).min(stage.len());
        io(offset + done as u64, done, &mut stage[..n])?;
        done += n;
    }
    Ok(())
}

impl Disk for NetbsdDisk {
    fn size(&self) -> io::Result<u64> {
        let mut size: i64 = 0;
        // SAFETY: DIOCGMEDIASIZE writes an off_t.
        unsafe { self.fd.ioctl(DIOCGMEDIASIZE, &mut size) }.map_err(io_err)?;
        u64::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative media size"))
    }

    fn sector_size(&self) -> u32 {
        self.sector
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if let Some(staging) = &self.staging {
            return staged(staging, offset, buf.len(), |at, from, stage| {
                self.read_direct(at, stage)?;
                buf[from..from + stage.len()].copy_from_slice(stage);
                Ok(())
            });
        }
        self.read_direct(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Some(staging) = &self.staging {
            return staged(staging, offset, data.len(), |at, from, stage| {
                stage.copy_from_slice(&data[from..from + stage.len()]);
                self.write_direct(at, stage)
            });
        }
        self.write_direct(offset, data)
    }

    fn flush(&self) -> io::Result<()> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let mut force: i32 = 1;
        // SAFETY: DIOCCACHESYNC reads an int.
        match unsafe { self.fd.ioctl(DIOCCACHESYNC, &mut force) } {
            Ok(_) => {}
            // A driver without a cache flush (NetBSD 7's virtio ld does not
            // negotiate one, so the device writes through): nothing to
            // flush beyond what fsync does.
            Err(e) if e.errno().is_some_and(|n| matches!(n.0, 19 | 25 | 45)) => {
                log::debug!("DIOCCACHESYNC: {e}; the drive has no cache to flush");
            }
            Err(e) => return Err(io_err(e)),
        }
        self.fd.fsync().map_err(io_err)
    }

    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}
