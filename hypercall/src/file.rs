//! Host files and synchronous I/O (`rumpuser_open`, `_getfileinfo`,
//! `_iovread`, `_iovwrite`, `_syncfd`, `_close`). Handles are host file
//! descriptors; names are host paths — or the names of block devices the
//! host program serves itself ([`register_device`]: a Mach disk device
//! reached by `device_read`/`device_write`), whose handles are numbers of
//! this layer's own.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::errno::{HyResult, NetbsdErrno, nb};

/// `RUMPUSER_OPEN_*` flags.
pub mod open_flags {
    /// Read only.
    pub const RDONLY: i32 = 0x0000;
    /// Write only.
    pub const WRONLY: i32 = 0x0001;
    /// Read and write.
    pub const RDWR: i32 = 0x0002;
    /// The access-mode bits.
    pub const ACCMODE: i32 = 0x0003;
    /// Create if missing (mode 0644).
    pub const CREATE: i32 = 0x0004;
    /// With `CREATE`: fail if it exists.
    pub const EXCL: i32 = 0x0008;
    /// Will be used with `rumpuser_bio` (advisory).
    pub const BIO: i32 = 0x0010;
    /// Bypass the host's cache (Linux `O_DIRECT`): transfers must follow
    /// [`direct_alignment`](super::direct_alignment). Not a rumpuser flag:
    /// the C interface refuses it; hosts without direct I/O (the Hurd)
    /// answer `EOPNOTSUPP`.
    pub const DIRECT: i32 = 0x1_0000;
}

/// `RUMPUSER_FT_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum FileType {
    /// Anything else.
    Other = 0,
    /// A directory.
    Dir = 1,
    /// A regular file.
    Reg = 2,
    /// A block device.
    Blk = 3,
    /// A character device.
    Chr = 4,
}

/// A block device served by the host program rather than the host kernel:
/// [`register_device`] names it, and the rump kernel then opens it, sizes
/// it and does block I/O on it as on a host file (e.g. as an etfs key's
/// host path).
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset` (short only at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> HyResult<usize>;
    /// Writes `data` at `offset`; returns the bytes written.
    fn write_at(&self, offset: u64, data: &[u8]) -> HyResult<usize>;
    /// Makes written data stable.
    fn flush(&self) -> HyResult<()>;
}

/// Handles of opened [`BlockDevice`]s start here (far above host
/// descriptors).
const DEVICE_FD_BASE: RawFd = 0x4000_0000;

#[derive(Default)]
struct Devices {
    by_name: HashMap<CString, Arc<dyn BlockDevice>>,
    open: HashMap<RawFd, Arc<dyn BlockDevice>>,
}

fn devices() -> &'static RwLock<Devices> {
    static DEVICES: OnceLock<RwLock<Devices>> = OnceLock::new();
    DEVICES.get_or_init(RwLock::default)
}

/// Serves `device` under `name`: `rumpuser_open` and `_getfileinfo` of
/// that name (instead of a host path) reach it from now on, as a block
/// device. Names should not be host paths (e.g. `mach-device:wd0`).
pub fn register_device(name: &CStr, device: Arc<dyn BlockDevice>) {
    devices().write().by_name.insert(name.to_owned(), device);
}

/// Forgets the name `name`; devices already opened stay open.
pub fn unregister_device(name: &CStr) {
    devices().write().by_name.remove(name);
}

fn device(fd: RawFd) -> Option<Arc<dyn BlockDevice>> {
    if fd < DEVICE_FD_BASE {
        return None;
    }
    devices().read().open.get(&fd).cloned()
}

fn open_device(path: &CStr) -> Option<RawFd> {
    static NEXT: AtomicI32 = AtomicI32::new(DEVICE_FD_BASE);
    let mut d = devices().write();
    let dev = Arc::clone(d.by_name.get(path)?);
    let fd = NEXT.fetch_add(1, Ordering::Relaxed);
    d.open.insert(fd, dev);
    Some(fd)
}

fn cvt(rc: libc::c_int) -> HyResult<libc::c_int> {
    if rc < 0 {
        Err(NetbsdErrno::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens `path` with `RUMPUSER_OPEN_*` flags.
pub fn open(path: &CStr, flags: i32) -> HyResult<RawFd> {
    if let Some(fd) = open_device(path) {
        return Ok(fd);
    }
    let mut host = match flags & open_flags::ACCMODE {
        open_flags::RDONLY => libc::O_RDONLY,
        open_flags::WRONLY => libc::O_WRONLY,
        open_flags::RDWR => libc::O_RDWR,
        _ => return Err(NetbsdErrno(nb::EINVAL)),
    };
    if flags
        & !(open_flags::ACCMODE
            | open_flags::CREATE
            | open_flags::EXCL
            | open_flags::BIO
            | open_flags::DIRECT)
        != 0
    {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    if flags & open_flags::DIRECT != 0 {
        host |= crate::sys::O_DIRECT.ok_or(NetbsdErrno(nb::EOPNOTSUPP))?;
    }
    if flags & open_flags::CREATE != 0 {
        host |= libc::O_CREAT;
    }
    if flags & open_flags::EXCL != 0 {
        host |= libc::O_EXCL;
    }
    host |= libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated; the mode argument is read only with
    // O_CREAT.
    cvt(unsafe { libc::open(path.as_ptr(), host, 0o644 as libc::c_uint) })
}

/// Closes a descriptor from [`open`], flushing written data first.
pub fn close(fd: RawFd) -> HyResult<()> {
    crate::bio::forget(fd);
    if fd >= DEVICE_FD_BASE
        && let Some(dev) = devices().write().open.remove(&fd)
    {
        return dev.flush();
    }
    // SAFETY: fsync/close on a descriptor number; a wrong number is reported
    // by the host as EBADF.
    unsafe {
        libc::fsync(fd);
        cvt(libc::close(fd)).map(drop)
    }
}

/// Size and type of `path`. For block and character devices the size is
/// the media size (found by seeking to the end of the opened device).
pub fn file_info(path: &CStr) -> HyResult<(u64, FileType)> {
    if let Some(dev) = devices().read().by_name.get(path) {
        return Ok((dev.size(), FileType::Blk));
    }
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated; `st` is a valid out-pointer.
    cvt(unsafe { libc::stat(path.as_ptr(), &raw mut st) })?;
    let ft = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Dir,
        libc::S_IFREG => FileType::Reg,
        libc::S_IFBLK => FileType::Blk,
        libc::S_IFCHR => FileType::Chr,
        _ => FileType::Other,
    };
    let size = match ft {
        FileType::Blk | FileType::Chr => device_size(path)?,
        _ => st.st_size as u64,
    };
    Ok((size, ft))
}

fn device_size(path: &CStr) -> HyResult<u64> {
    // SAFETY: `path` is NUL-terminated.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just opened and is closed right after.
    let end = unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
    let err = NetbsdErrno::last_os_error();
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    if end < 0 { Err(err) } else { Ok(end as u64) }
}

/// Size of the open file or device `fd` (its end offset).
pub fn fd_size(fd: RawFd) -> HyResult<u64> {
    if let Some(dev) = device(fd) {
        return Ok(dev.size());
    }
    // SAFETY: lseek on a descriptor number; a bad one is EBADF.
    let end = unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
    if end < 0 {
        Err(NetbsdErrno::last_os_error())
    } else {
        Ok(end as u64)
    }
}

/// What direct I/O on `fd` (opened with [`open_flags::DIRECT`]) needs:
/// the alignment of buffers in memory and of file offsets and lengths.
pub fn direct_alignment(fd: RawFd) -> HyResult<DirectAlignment> {
    crate::sys::direct_alignment(fd)
}

/// Alignments direct I/O requires, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectAlignment {
    /// Of buffer addresses.
    pub memory: u32,
    /// Of file offsets and transfer lengths.
    pub offset: u32,
}

/// `RUMPUSER_IOV_NOSEEK`: use the descriptor's file position.
pub const IOV_NOSEEK: i64 = -1;

/// Reads into `bufs` at `off` (or at the current position when `off` is
/// [`IOV_NOSEEK`]); stops early at end of file. Returns the bytes read.
pub fn read_vectored_at(fd: RawFd, bufs: &mut [IoSliceMut<'_>], off: i64) -> HyResult<usize> {
    if let Some(dev) = device(fd) {
        return on_device(
            off,
            bufs.iter_mut().map(|b| &mut **b),
            |at, b: &mut [u8]| dev.read_at(at, b),
        );
    }
    let mut done = 0usize;
    for buf in bufs.iter_mut() {
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            // SAFETY: `rest` is a valid writable buffer of its length.
            let n = unsafe {
                if off == IOV_NOSEEK {
                    libc::read(fd, rest.as_mut_ptr().cast(), rest.len())
                } else {
                    libc::pread(
                        fd,
                        rest.as_mut_ptr().cast(),
                        rest.len(),
                        off + (done + filled) as i64,
                    )
                }
            };
            match n {
                n if n < 0 => {
                    let e = NetbsdErrno::last_os_error();
                    if e.0 == nb::EINTR {
                        continue;
                    }
                    return if done + filled > 0 {
                        Ok(done + filled)
                    } else {
                        Err(e)
                    };
                }
                0 => return Ok(done + filled),
                n => filled += n as usize,
            }
        }
        done += filled;
    }
    Ok(done)
}

/// Writes `bufs` at `off` (or at the current position). Returns the bytes
/// written.
pub fn write_vectored_at(fd: RawFd, bufs: &[IoSlice<'_>], off: i64) -> HyResult<usize> {
    if let Some(dev) = device(fd) {
        return on_device(off, bufs.iter().map(|b| &**b), |at, b: &[u8]| {
            dev.write_at(at, b)
        });
    }
    let mut done = 0usize;
    for buf in bufs {
        let mut sent = 0;
        while sent < buf.len() {
            let rest = &buf[sent..];
            // SAFETY: `rest` is a valid readable buffer of its length.
            let n = unsafe {
                if off == IOV_NOSEEK {
                    libc::write(fd, rest.as_ptr().cast(), rest.len())
                } else {
                    libc::pwrite(
                        fd,
                        rest.as_ptr().cast(),
                        rest.len(),
                        off + (done + sent) as i64,
                    )
                }
            };
            if n < 0 {
                let e = NetbsdErrno::last_os_error();
                if e.0 == nb::EINTR {
                    continue;
                }
                return if done + sent > 0 {
                    Ok(done + sent)
                } else {
                    Err(e)
                };
            }
            sent += n as usize;
        }
        done += sent;
    }
    Ok(done)
}

/// Vectored I/O on a [`BlockDevice`], one buffer after the other from
/// `off` (a device has no file position), stopping at a short transfer.
fn on_device<B>(
    off: i64,
    bufs: impl Iterator<Item = B>,
    mut io: impl FnMut(u64, B) -> HyResult<usize>,
) -> HyResult<usize>
where
    B: AsRef<[u8]>,
{
    let Ok(mut at) = u64::try_from(off) else {
        return Err(NetbsdErrno(nb::EINVAL));
    };
    let mut done = 0;
    for b in bufs {
        let len = b.as_ref().len();
        match io(at, b) {
            Ok(n) => {
                done += n;
                at += n as u64;
                if n < len {
                    break;
                }
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// `RUMPUSER_SYNCFD_*`.
pub mod sync_flags {
    /// Reads must be coherent.
    pub const READ: i32 = 0x01;
    /// Written data must reach the medium.
    pub const WRITE: i32 = 0x02;
    /// Both.
    pub const BOTH: i32 = 0x03;
    /// Order: earlier writes before later ones.
    pub const BARRIER: i32 = 0x04;
    /// Wait for completion.
    pub const SYNC: i32 = 0x08;
}

/// Makes data of `fd` stable as `RUMPUSER_SYNCFD_*` asks. At least one of
/// READ and WRITE must be given. Reads are always coherent on a host file;
/// WRITE flushes the file's data and metadata (the range is advisory).
pub fn sync(fd: RawFd, flags: i32) -> HyResult<()> {
    if flags & sync_flags::BOTH == 0 || flags & !0x0f != 0 {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    if let Some(dev) = device(fd) {
        return if flags & sync_flags::WRITE != 0 {
            dev.flush()
        } else {
            Ok(())
        };
    }
    if flags & sync_flags::WRITE != 0 {
        // SAFETY: fsync on a descriptor number; a bad one is EBADF.
        cvt(unsafe { libc::fsync(fd) })?;
    }
    Ok(())
}

/// Flushes file data (not necessarily metadata) of `fd`.
pub fn datasync(fd: RawFd) -> HyResult<()> {
    if let Some(dev) = device(fd) {
        return dev.flush();
    }
    // SAFETY: fdatasync on a descriptor number; a bad one is EBADF.
    cvt(unsafe { libc::fdatasync(fd) }).map(drop)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn direct_opens_report_their_alignment() {
        let dir = std::env::temp_dir().join(format!("hypercall-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A file system without direct I/O (tmpfs before Linux 6.6) refuses
        // the open; that is the error callers see, never a cached open.
        let path = CString::new(dir.join("f").to_str().unwrap()).unwrap();
        let fd = open(
            &path,
            open_flags::RDWR | open_flags::CREATE | open_flags::DIRECT,
        );
        if let Ok(fd) = fd {
            // SAFETY: fcntl on the descriptor just opened.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            assert_ne!(fl & libc::O_DIRECT, 0);
            let a = direct_alignment(fd).unwrap();
            assert!(
                a.offset.is_power_of_two() && a.memory.is_power_of_two(),
                "{a:?}"
            );
            close(fd).unwrap();
        } else {
            assert_eq!(fd, Err(NetbsdErrno(nb::EINVAL)));
        }
        assert_eq!(
            open(&path, open_flags::RDWR | 0x2_0000),
            Err(NetbsdErrno(nb::EINVAL))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    /// A RAM disk counting flushes.
    struct Ram(parking_lot::Mutex<Vec<u8>>, AtomicI32);

    impl BlockDevice for Ram {
        fn size(&self) -> u64 {
            self.0.lock().len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> HyResult<usize> {
            let d = self.0.lock();
            let at = (offset as usize).min(d.len());
            let n = buf.len().min(d.len() - at);
            buf[..n].copy_from_slice(&d[at..at + n]);
            Ok(n)
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> HyResult<usize> {
            let mut d = self.0.lock();
            let at = offset as usize;
            if at + data.len() > d.len() {
                return Err(NetbsdErrno(nb::ENOSPC));
            }
            d[at..at + data.len()].copy_from_slice(data);
            Ok(data.len())
        }
        fn flush(&self) -> HyResult<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn registered_devices_open_and_do_io_as_files_do() {
        let ram = Arc::new(Ram(
            parking_lot::Mutex::new(vec![0; 4096]),
            AtomicI32::new(0),
        ));
        let name = c"test-device:ram0";
        register_device(name, Arc::clone(&ram) as Arc<dyn BlockDevice>);
        assert_eq!(file_info(name), Ok((4096, FileType::Blk)));
        let fd = open(name, open_flags::RDWR | open_flags::BIO).unwrap();
        assert!(fd >= DEVICE_FD_BASE);
        let (a, b) = ([1u8; 100], [2u8; 28]);
        let w = write_vectored_at(fd, &[IoSlice::new(&a), IoSlice::new(&b)], 1000).unwrap();
        assert_eq!(w, 128);
        let mut back = [0u8; 128];
        assert_eq!(
            read_vectored_at(fd, &mut [IoSliceMut::new(&mut back)], 1000),
            Ok(128)
        );
        assert_eq!((&back[..100], &back[100..]), (&a[..], &b[..]));
        // Short at the end; errors are the device's; no file position.
        let mut tail = [0u8; 64];
        assert_eq!(
            read_vectored_at(fd, &mut [IoSliceMut::new(&mut tail)], 4064),
            Ok(32)
        );
        assert_eq!(
            write_vectored_at(fd, &[IoSlice::new(&a)], 4090),
            Err(NetbsdErrno(nb::ENOSPC))
        );
        assert_eq!(
            read_vectored_at(fd, &mut [IoSliceMut::new(&mut tail)], IOV_NOSEEK),
            Err(NetbsdErrno(nb::EINVAL))
        );
        assert_eq!(fd_size(fd), Ok(4096));
        sync(fd, sync_flags::WRITE).unwrap();
        datasync(fd).unwrap();
        // The name goes; the open device stays until closed (flushed).
        unregister_device(name);
        assert!(file_info(name).is_err());
        assert_eq!(fd_size(fd), Ok(4096));
        close(fd).unwrap();
        assert_eq!(ram.1.load(Ordering::Relaxed), 3);
        assert!(fd_size(fd).is_err());
    }
}
