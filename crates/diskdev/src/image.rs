//! Host images: a regular file or a block device served as a disk through
//! the hypercall crate's file layer — read-only when the file is — through
//! the host's page cache or past it ([`Cache`]).

#[cfg(target_os = "linux")]
use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(target_os = "linux")]
use parking_lot::Mutex;

use hypercall::file::{self, FileType, open_flags};

use crate::disk::{AlignedBuf, Disk};

/// Sector size of image files.
pub const SECTOR: u32 = 512;

/// How an image uses the host's page cache (QEMU's `cache=` names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cache {
    /// Through the page cache; a flush makes writes stable.
    #[default]
    Writeback,
    /// Past the page cache (Linux `O_DIRECT`), as a driver of the disk
    /// itself would: no second copy of data the client's own cache (ext2fs,
    /// the guest) keeps. A flush still makes writes stable.
    None,
    /// Through the page cache, but the pages go again once used (Linux
    /// only; nbdkit's `cache=none`): a read's pages are dropped after it, a
    /// write starts its writeback at once and its pages are dropped once
    /// written, [`EVICT_WINDOW`] writes later or at a flush. No lasting
    /// second copy, as with `none`, but writes return as they do with
    /// `writeback` (a flush makes them stable).
    Evict,
}

/// With [`Cache::Evict`]: how many written ranges may wait for their
/// writeback before the oldest is waited for and dropped.
pub const EVICT_WINDOW: usize = 16;

impl std::str::FromStr for Cache {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "writeback" => Ok(Self::Writeback),
            "none" => Ok(Self::None),
            "evict" => Ok(Self::Evict),
            _ => Err(format!(
                "cache mode {s:?}: expected writeback, none or evict"
            )),
        }
    }
}

/// A host image.
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
    fd: RawFd,
    read_only: bool,
    /// With [`Cache::None`]: the buffer alignment direct I/O needs.
    direct_align: Option<usize>,
    /// A block device (discards are `BLKDISCARD`), else a regular file
    /// (discards punch holes).
    #[cfg(target_os = "linux")]
    block_device: bool,
    /// With [`Cache::Evict`]: the ranges written lately (offset, length),
    /// oldest first, whose pages are dropped once written back.
    #[cfg(target_os = "linux")]
    evict: Option<Mutex<VecDeque<(u64, usize)>>>,
    /// Buffered writes to a regular file on Linux, which its inode lock
    /// serialises (direct I/O overwrites share it; block devices and
    /// evict's writeback waits run beside each other).
    serialised_writes: bool,
    ops: AtomicU64,
}

fn io_err(e: hypercall::NetbsdErrno) -> io::Error {
    e.to_io()
}

impl Image {
    /// Opens `path` read-write, or read-only when `read_only` is asked or
    /// the file cannot be written. With [`Cache::None`], a host or file
    /// system without direct I/O for 512-byte sectors is an error.
    pub fn open(path: &Path, read_only: bool, cache: Cache) -> io::Result<Self> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let (_, ft) = file::file_info(&c).map_err(|e| with_path(path, &io_err(e)))?;
        if !matches!(ft, FileType::Reg | FileType::Blk) {
            return Err(with_path(
                path,
                &io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a regular file or block device",
                ),
            ));
        }
        if cache == Cache::Evict && !cfg!(target_os = "linux") {
            return Err(with_path(
                path,
                &io::Error::new(io::ErrorKind::Unsupported, "cache=evict needs Linux"),
            ));
        }
        let extra = open_flags::BIO
            | match cache {
                Cache::Writeback | Cache::Evict => 0,
                Cache::None => open_flags::DIRECT,
            };
        let (fd, ro) = if read_only {
            (file::open(&c, open_flags::RDONLY | extra), true)
        } else {
            match file::open(&c, open_flags::RDWR | extra) {
                Ok(fd) => (Ok(fd), false),
                Err(e) if matches!(e.0, 13 | 30) => {
                    (file::open(&c, open_flags::RDONLY | extra), true)
                }
                Err(e) => (Err(e), false),
            }
        };
        let fd = fd.map_err(|e| {
            let e = io_err(e);
            if cache == Cache::None {
                with_path(path, &io::Error::new(e.kind(), format!("cache=none: {e}")))
            } else {
                with_path(path, &e)
            }
        })?;
        let direct_align = match cache {
            Cache::Writeback | Cache::Evict => None,
            Cache::None => match Self::direct_align(fd) {
                Ok(a) => Some(a),
                Err(e) => {
                    let _ = file::close(fd);
                    return Err(with_path(path, &e));
                }
            },
        };
        if ro && !read_only {
            log::warn!("{}: not writable, serving it read-only", path.display());
        }
        Ok(Self {
            path: path.to_owned(),
            fd,
            read_only: ro,
            direct_align,
            #[cfg(target_os = "linux")]
            block_device: ft == FileType::Blk,
            #[cfg(target_os = "linux")]
            evict: (cache == Cache::Evict).then(|| Mutex::new(VecDeque::new())),
            serialised_writes: cfg!(target_os = "linux")
                && ft == FileType::Reg
                && cache == Cache::Writeback,
            ops: AtomicU64::new(0),
        })
    }

    /// The buffer alignment direct I/O on `fd` needs, once sure sector-sized
    /// offsets and lengths are allowed.
    fn direct_align(fd: RawFd) -> io::Result<usize> {
        let a = file::direct_alignment(fd).map_err(|e| {
            io::Error::new(
                e.to_io().kind(),
                format!(
                    "cache=none: direct I/O alignment unknown ({}); use cache=writeback",
                    e.to_io()
                ),
            )
        })?;
        if a.offset > SECTOR || !SECTOR.is_multiple_of(a.offset) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cache=none: direct I/O here needs {}-byte aligned offsets, \
                     more than the {SECTOR}-byte sectors; use cache=writeback",
                    a.offset
                ),
            ));
        }
        Ok((a.memory as usize).max(1))
    }

    /// With [`Cache::Evict`], drops the page cache's (clean) pages of a
    /// range (advice: a failure only leaves them cached).
    #[cfg(target_os = "linux")]
    fn drop_pages(&self, offset: u64, len: usize) {
        // SAFETY: advice on our descriptor; no memory is passed.
        unsafe {
            libc::posix_fadvise(
                self.fd,
                offset as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }

    /// With [`Cache::Evict`], after a write: starts its writeback, and
    /// waits for the oldest of the window's and drops its pages.
    #[cfg(target_os = "linux")]
    fn written(&self, offset: u64, len: usize) {
        let Some(window) = &self.evict else {
            return;
        };
        // SAFETY: sync_file_range on our descriptor; no memory is passed.
        unsafe {
            libc::sync_file_range(
                self.fd,
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        let oldest = {
            let mut w = window.lock();
            w.push_back((offset, len));
            (w.len() > EVICT_WINDOW).then(|| w.pop_front()).flatten()
        };
        if let Some((off, n)) = oldest {
            // SAFETY: as above.
            unsafe {
                libc::sync_file_range(
                    self.fd,
                    off as libc::off64_t,
                    n as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
            self.drop_pages(off, n);
        }
    }

    /// A read at `offset` that found the image ending earlier: it shrank
    /// under us, so the device ends earlier now.
    fn short_read(&self, offset: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{}: short read at {offset}", self.path.display()),
        )
    }

    /// A bounce buffer for `buf` when direct I/O cannot use its address.
    fn bounce(&self, buf: &[u8]) -> io::Result<Option<AlignedBuf>> {
        match self.direct_align {
            Some(align) if !buf.is_empty() && !(buf.as_ptr() as usize).is_multiple_of(align) => {
                AlignedBuf::new(buf.len(), align).map(Some)
            }
            _ => Ok(None),
        }
    }
}

fn with_path(path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Disk for Image {
    fn size(&self) -> io::Result<u64> {
        // From the open file, so an image unlinked under us still serves;
        // a shrunk one ends earlier.
        let size = file::fd_size(self.fd).map_err(io_err)?;
        Ok(size - size % u64::from(SECTOR))
    }

    fn sector_size(&self) -> u32 {
        SECTOR
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if let Some(mut b) = self.bounce(buf)? {
            self.read_at(offset, b.as_mut_slice())?;
            buf.copy_from_slice(b.as_mut_slice());
            return Ok(());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let off =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let n = file::read_vectored_at(self.fd, &mut [io::IoSliceMut::new(buf)], off)
            .map_err(io_err)?;
        if n < buf.len() {
            return Err(self.short_read(offset));
        }
        #[cfg(target_os = "linux")]
        if self.evict.is_some() {
            self.drop_pages(offset, buf.len());
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if let Some(mut b) = self.bounce(data)? {
            b.as_mut_slice().copy_from_slice(data);
            return self.write_at(offset, b.as_mut_slice());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let off =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let n = file::write_vectored_at(self.fd, &[io::IoSlice::new(data)], off).map_err(io_err)?;
        if n < data.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{}: short write at {offset}", self.path.display()),
            ));
        }
        #[cfg(target_os = "linux")]
        self.written(offset, data.len());
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        file::sync(self.fd, file::sync_flags::WRITE).map_err(io_err)?;
        // Everything written is clean now: its pages can go.
        #[cfg(target_os = "linux")]
        if let Some(window) = &self.evict {
            let written = std::mem::take(&mut *window.lock());
            for (off, n) in written {
                self.drop_pages(off, n);
            }
        }
        Ok(())
    }

    fn serialises_writes(&self) -> bool {
        self.serialised_writes
    }

    #[cfg(target_os = "linux")]
    fn can_discard(&self) -> bool {
        !self.read_only
    }

    /// A hole punched in a file (its size kept), `BLKDISCARD` on a block
    /// device.
    #[cfg(target_os = "linux")]
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        /// `_IO(0x12, 119)` of `<linux/fs.h>`.
        const BLKDISCARD: libc::c_ulong = 0x1277;
        if self.read_only {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        if len == 0 {
            return Ok(());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let bad = || io::Error::from(io::ErrorKind::InvalidInput);
        let r = if self.block_device {
            let range = [offset, len];
            // SAFETY: BLKDISCARD reads two u64s (start, length) at the pointer.
            unsafe { libc::ioctl(self.fd, BLKDISCARD, range.as_ptr()) }
        } else {
            let off = i64::try_from(offset).map_err(|_| bad())?;
            let n = i64::try_from(len).map_err(|_| bad())?;
            // SAFETY: fallocate on our descriptor; no memory is passed.
            unsafe {
                libc::fallocate(
                    self.fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off,
                    n,
                )
            }
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{}: discard of {len} bytes at {offset}: {e}",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    /// Through the page cache only (direct I/O has no pages to give).
    #[cfg(target_os = "linux")]
    fn splice_to_pipe(
        &self,
        offset: u64,
        len: usize,
        pipe: std::os::fd::BorrowedFd<'_>,
    ) -> Option<io::Result<()>> {
        use std::os::fd::AsRawFd;
        // Pages in a pipe or socket could not be dropped after the read.
        if self.direct_align.is_some() || self.evict.is_some() {
            return None;
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let Ok(mut off) = libc::loff_t::try_from(offset) else {
            return Some(Err(io::ErrorKind::InvalidInput.into()));
        };
        // The pipe never blocks (the caller made room for `len`), so
        // EAGAIN means it did not.
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        let r =
            crate::disk::splice_all(self.fd, Some(&mut off), pipe.as_raw_fd(), None, len, flags);
        Some(r.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.short_read(offset),
            _ => e,
        }))
    }

    /// Page-cache writes to a regular file only (the writes that are
    /// serialised): direct I/O takes no pipe's pages, and evict's
    /// writeback waits would run in the NBD reader's turn.
    #[cfg(target_os = "linux")]
    fn splice_from_pipe(
        &self,
        offset: u64,
        len: usize,
        pipe: std::os::fd::BorrowedFd<'_>,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if self.read_only {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        if !self.serialised_writes {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let mut off = libc::loff_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        crate::disk::splice_all(
            pipe.as_raw_fd(),
            None,
            self.fd,
            Some(&mut off),
            len,
            libc::SPLICE_F_MOVE,
        )
        .map_err(|e| with_path(&self.path, &e))
    }

    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = file::close(self.fd);
    }
}
