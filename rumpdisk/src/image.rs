//! Host images: a regular file or a block device served as a disk through
//! the hypercall crate's file layer — read-only when the file is.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hypercall::file::{self, FileType, open_flags};

use crate::disk::Disk;

/// Sector size of image files.
pub const SECTOR: u32 = 512;

/// A host image.
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
    fd: RawFd,
    read_only: bool,
    ops: AtomicU64,
}

fn io_err(e: hypercall::NetbsdErrno) -> io::Error {
    e.to_io()
}

impl Image {
    /// Opens `path` read-write, or read-only when `read_only` is asked or
    /// the file cannot be written.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
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
        let (fd, ro) = if read_only {
            (file::open(&c, open_flags::RDONLY | open_flags::BIO), true)
        } else {
            match file::open(&c, open_flags::RDWR | open_flags::BIO) {
                Ok(fd) => (Ok(fd), false),
                Err(e) if matches!(e.0, 13 | 30) => {
                    (file::open(&c, open_flags::RDONLY | open_flags::BIO), true)
                }
                Err(e) => (Err(e), false),
            }
        };
        let fd = fd.map_err(|e| with_path(path, &io_err(e)))?;
        if ro && !read_only {
            log::warn!("{}: not writable, serving it read-only", path.display());
        }
        Ok(Self {
            path: path.to_owned(),
            fd,
            read_only: ro,
            ops: AtomicU64::new(0),
        })
    }

    /// The image's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
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
        self.ops.fetch_add(1, Ordering::Relaxed);
        let off =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let n = file::read_vectored_at(self.fd, &mut [io::IoSliceMut::new(buf)], off)
            .map_err(io_err)?;
        if n < buf.len() {
            // The image shrank under us: the device ends earlier now.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: short read at {offset}", self.path.display()),
            ));
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
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
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        file::sync(self.fd, file::sync_flags::WRITE).map_err(io_err)
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
