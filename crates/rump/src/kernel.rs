//! The safe wrapper over a linked rump kernel.

use std::ffi::{CString, c_int};
use std::sync::OnceLock;

use crate::{RumpError, sys};

/// The booted kernel (one per process).
#[derive(Debug, Clone, Copy)]
pub struct Rump {
    _private: (),
}

pub(crate) fn last_errno() -> i32 {
    // rump_sys_* store the raw NetBSD errno in the host errno through
    // rumpuser_seterrno.
    errno::errno().0
}

pub(crate) fn cvt(op: impl FnOnce() -> String, rc: c_int) -> Result<c_int, RumpError> {
    if rc < 0 {
        Err(RumpError::kernel(op(), last_errno()))
    } else {
        Ok(rc)
    }
}

pub(crate) fn cvt_size(op: impl FnOnce() -> String, rc: isize) -> Result<usize, RumpError> {
    if rc < 0 {
        Err(RumpError::kernel(op(), last_errno()))
    } else {
        Ok(rc as usize)
    }
}

impl Rump {
    /// Boots the kernel on first use (signals from the kernel are ignored
    /// rather than raised in the host process); later calls return the same
    /// kernel, or the first boot's error again.
    pub fn init() -> Result<Self, RumpError> {
        Self::init_with_pci(&[])
    }

    /// Boots the kernel (as [`Rump::init`]) with host PCI `functions` on its
    /// bus, where its drivers attach them; with none, the bus holds what
    /// `RUMP_PCI_DEVICES` names. What every translator over NetBSD's PCI
    /// drivers does first. The bus is the first boot's: once the kernel
    /// runs, later calls return it (or the first boot's error) and their
    /// functions are not attached.
    ///
    /// # Errors
    /// More than the bus holds, or the kernel's boot error.
    pub fn init_with_pci(functions: &[hypercall::pci::Address]) -> Result<Self, RumpError> {
        static BOOT: OnceLock<Result<(), (&'static str, i32)>> = OnceLock::new();
        let r = BOOT.get_or_init(|| {
            if !functions.is_empty() {
                hypercall::pci::rump::attach(functions)
                    .map_err(|e| ("PCI functions for the bus", e.0))?;
            }
            // SAFETY: called once, before any other kernel call.
            unsafe { sys::rump_boot_setsigmodel(sys::RUMP_SIGMODEL_IGNORE) };
            // SAFETY: as above.
            match unsafe { sys::rump_init() } {
                0 => Ok(()),
                e => Err(("rump_init", e)),
            }
        });
        match r {
            Ok(()) => Ok(Self { _private: () }),
            Err((op, e)) => Err(RumpError::kernel(*op, *e)),
        }
    }

    /// Gives the calling host thread an LWP of its own for the rest of its
    /// life (in `init`, the process whose descriptors every unbound
    /// thread's calls use), released when the thread exits. Without one
    /// each call allocates and frees a temporary LWP, which costs more
    /// than a small call itself: threads that call the kernel for every
    /// frame or block bind first. Later calls do nothing.
    ///
    /// # Errors
    /// The kernel's.
    pub fn bind_thread(self) -> Result<(), RumpError> {
        struct Bound;
        impl Drop for Bound {
            fn drop(&mut self) {
                // SAFETY: this thread's LWP, made by `rump_pub_lwproc_newlwp`.
                unsafe { sys::rump_pub_lwproc_releaselwp() };
            }
        }
        thread_local! {
            static BOUND: std::cell::OnceCell<Bound> = const { std::cell::OnceCell::new() };
        }
        BOUND.with(|b| {
            if b.get().is_some() {
                return Ok(());
            }
            // SAFETY: the kernel is booted (`self` exists); pid 1 is init.
            match unsafe { sys::rump_pub_lwproc_newlwp(1) } {
                0 => {
                    // It may run drivers now, which may touch I/O ports.
                    hypercall::pci::rump::thread_iospace();
                    let _ = b.set(Bound);
                    Ok(())
                }
                e => Err(RumpError::kernel("rump_pub_lwproc_newlwp(1)", e)),
            }
        })
    }

    /// Opens `path` in the kernel with NetBSD `flags` ([`crate::oflags`]).
    pub fn open(self, path: &str, flags: i32, mode: u32) -> Result<Fd, RumpError> {
        let c = CString::new(path)?;
        // SAFETY: `c` is NUL-terminated; the mode is passed as the variadic
        // int argument open(2) reads with O_CREAT.
        let fd = unsafe { sys::rump_sys_open(c.as_ptr(), flags, mode as c_int) };
        cvt(|| format!("open {path}"), fd).map(|fd| Fd { fd })
    }

    /// Creates device node `path` (`mode` with `S_IFCHR`/`S_IFBLK`, `dev`
    /// from [`crate::makedev`]).
    pub fn mknod(self, path: &str, mode: u32, dev: u64) -> Result<(), RumpError> {
        let c = CString::new(path)?;
        // SAFETY: NUL-terminated path.
        cvt(|| format!("mknod {path}"), unsafe {
            sys::rump_sys_mknod(c.as_ptr(), mode, dev)
        })
        .map(drop)
    }

    /// The device number of device node `path` (`st_rdev`).
    pub fn rdev(self, path: &str) -> Result<u64, RumpError> {
        /// NetBSD's `struct stat` on LP64 is 152 bytes; `st_rdev` is at 40.
        #[repr(C, align(8))]
        struct Stat([u8; 256]);
        let c = CString::new(path)?;
        let mut st = Stat([0; 256]);
        // SAFETY: NUL-terminated path; the buffer is larger than a stat.
        cvt(|| format!("stat {path}"), unsafe {
            sys::rump_sys_stat(c.as_ptr(), st.0.as_mut_ptr().cast())
        })?;
        Ok(u64::from_ne_bytes(
            st.0[40..48].try_into().expect("8 bytes"),
        ))
    }

    /// Creates directory `path`.
    pub fn mkdir(self, path: &str, mode: u32) -> Result<(), RumpError> {
        let c = CString::new(path)?;
        // SAFETY: NUL-terminated path.
        cvt(|| format!("mkdir {path}"), unsafe {
            sys::rump_sys_mkdir(c.as_ptr(), mode)
        })
        .map(drop)
    }

    /// Mounts a file system of type `fstype` on `path` with its argument
    /// structure `args`.
    ///
    /// # Safety
    /// `args` must be the argument structure `fstype` expects, with valid
    /// pointers inside.
    pub unsafe fn mount<T>(
        self,
        fstype: &str,
        path: &str,
        flags: i32,
        args: &mut T,
    ) -> Result<(), RumpError> {
        let t = CString::new(fstype)?;
        let p = CString::new(path)?;
        // SAFETY: NUL-terminated strings; the caller vouches for `args`.
        let rc = unsafe {
            sys::rump_sys_mount(
                t.as_ptr(),
                p.as_ptr(),
                flags,
                std::ptr::from_mut(args).cast(),
                size_of::<T>(),
            )
        };
        cvt(|| format!("mount {fstype} on {path}"), rc).map(drop)
    }

    /// Unmounts `path`.
    pub fn unmount(self, path: &str, flags: i32) -> Result<(), RumpError> {
        let c = CString::new(path)?;
        // SAFETY: NUL-terminated path.
        cvt(|| format!("unmount {path}"), unsafe {
            sys::rump_sys_unmount(c.as_ptr(), flags)
        })
        .map(drop)
    }

    /// Flushes all file systems.
    pub fn sync(self) {
        // SAFETY: no arguments.
        unsafe { sys::rump_sys_sync() };
    }

    /// Halts the kernel (`RB_*` flags; the process goes on).
    pub fn reboot(self, howto: i32) -> Result<(), RumpError> {
        // SAFETY: no boot string.
        cvt(|| "reboot".into(), unsafe {
            sys::rump_sys_reboot(howto, std::ptr::null_mut())
        })
        .map(drop)
    }

    /// Opens a socket in the kernel's network stack.
    pub fn socket(self, domain: i32, ty: i32, proto: i32) -> Result<Fd, RumpError> {
        // SAFETY: plain integer arguments.
        let fd = unsafe { sys::rump_sys_socket(domain, ty, proto) };
        cvt(|| "socket".into(), fd).map(|fd| Fd { fd })
    }

    /// Makes host file `host_path` appear in the kernel as `key`
    /// (a block device, character device or regular file); removed again
    /// when the returned guard drops.
    pub fn etfs_register(
        self,
        key: &str,
        host_path: &std::path::Path,
        ty: EtfsType,
    ) -> Result<Etfs, RumpError> {
        self.etfs_register_window(key, host_path, ty, 0, sys::RUMP_ETFS_SIZE_ENDOFF)
    }

    /// Like [`Rump::etfs_register`], for the `size` bytes of `host_path`
    /// from byte `begin` on (a partition of a disk image;
    /// [`sys::RUMP_ETFS_SIZE_ENDOFF`] for all of the rest).
    pub fn etfs_register_window(
        self,
        key: &str,
        host_path: &std::path::Path,
        ty: EtfsType,
        begin: u64,
        size: u64,
    ) -> Result<Etfs, RumpError> {
        use std::os::unix::ffi::OsStrExt;
        let k = CString::new(key)?;
        let h = CString::new(host_path.as_os_str().as_bytes())?;
        // SAFETY: NUL-terminated strings.
        let rc = unsafe {
            sys::rump_pub_etfs_register_withsize(k.as_ptr(), h.as_ptr(), ty as c_int, begin, size)
        };
        if rc != 0 {
            return Err(RumpError::kernel(
                if size == sys::RUMP_ETFS_SIZE_ENDOFF && begin == 0 {
                    format!("etfs register {key} -> {}", host_path.display())
                } else {
                    format!(
                        "etfs register {key} -> {} bytes {begin}..{}",
                        host_path.display(),
                        begin.saturating_add(size)
                    )
                },
                rc,
            ));
        }
        Ok(Etfs { key: k })
    }
}

/// `enum rump_etfs_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum EtfsType {
    /// Regular file.
    Reg = sys::RUMP_ETFS_REG,
    /// Block device.
    Blk = sys::RUMP_ETFS_BLK,
    /// Character device.
    Chr = sys::RUMP_ETFS_CHR,
}

/// An etfs registration; removed on drop.
#[derive(Debug)]
pub struct Etfs {
    key: CString,
}

impl Etfs {
    /// Removes the registration now, reporting errors (e.g. `EBUSY` while
    /// the device is open or mounted).
    pub fn remove(self) -> Result<(), RumpError> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `key` is taken out exactly once; `this` is not dropped.
        let key = unsafe { std::ptr::read(&raw const this.key) };
        // SAFETY: NUL-terminated key.
        match unsafe { sys::rump_pub_etfs_remove(key.as_ptr()) } {
            0 => Ok(()),
            e => Err(RumpError::kernel(
                format!("etfs remove {}", key.to_string_lossy()),
                e,
            )),
        }
    }
}

impl Drop for Etfs {
    fn drop(&mut self) {
        // SAFETY: NUL-terminated key.
        let rc = unsafe { sys::rump_pub_etfs_remove(self.key.as_ptr()) };
        if rc != 0 {
            log::warn!("etfs remove {:?}: NetBSD errno {rc}", self.key);
        }
    }
}

/// A kernel file descriptor; closed on drop.
#[derive(Debug)]
pub struct Fd {
    pub(crate) fd: c_int,
}

impl Fd {
    /// The raw descriptor number (in the kernel's table).
    #[must_use]
    pub fn raw(&self) -> c_int {
        self.fd
    }

    /// Reads at `off` (one call; may be short).
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, RumpError> {
        // SAFETY: `buf` is writable for its length.
        let n =
            unsafe { sys::rump_sys_pread(self.fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) };
        cvt_size(|| format!("pread {} bytes at {off}", buf.len()), n)
    }

    /// Writes at `off` (one call; may be short).
    pub fn pwrite(&self, buf: &[u8], off: u64) -> Result<usize, RumpError> {
        // SAFETY: `buf` is readable for its length.
        let n =
            unsafe { sys::rump_sys_pwrite(self.fd, buf.as_ptr().cast(), buf.len(), off as i64) };
        cvt_size(|| format!("pwrite {} bytes at {off}", buf.len()), n)
    }

    /// Reads at the file position.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, RumpError> {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { sys::rump_sys_read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        cvt_size(|| "read".into(), n)
    }

    /// Writes at the file position.
    pub fn write(&self, buf: &[u8]) -> Result<usize, RumpError> {
        // SAFETY: `buf` is readable for its length.
        let n = unsafe { sys::rump_sys_write(self.fd, buf.as_ptr().cast(), buf.len()) };
        cvt_size(|| "write".into(), n)
    }

    /// Gathers `bufs` into one write at the file position.
    pub fn writev(&self, bufs: &[std::io::IoSlice<'_>]) -> Result<usize, RumpError> {
        let n = c_int::try_from(bufs.len()).map_err(|_| RumpError::kernel("writev", 22))?;
        // SAFETY: IoSlice is ABI-compatible with struct iovec.
        let rc = unsafe { sys::rump_sys_writev(self.fd, bufs.as_ptr().cast(), n) };
        cvt_size(|| "writev".into(), rc)
    }

    /// Sets the file position (`whence`: 0 set, 1 current, 2 end).
    pub fn seek(&self, off: i64, whence: i32) -> Result<u64, RumpError> {
        // SAFETY: plain integer arguments.
        let rc = unsafe { sys::rump_sys_lseek(self.fd, off, whence) };
        if rc < 0 {
            Err(RumpError::kernel("lseek", last_errno()))
        } else {
            Ok(rc as u64)
        }
    }

    /// Issues ioctl `cmd` with `arg` as its in/out argument.
    ///
    /// # Safety
    /// `T` must be the argument type the ioctl `cmd` encodes.
    pub unsafe fn ioctl<T>(&self, cmd: u64, arg: &mut T) -> Result<c_int, RumpError> {
        // SAFETY: the caller matches `T` to `cmd`.
        let rc =
            unsafe { sys::rump_sys_ioctl(self.fd, cmd as libc::c_ulong, std::ptr::from_mut(arg)) };
        cvt(|| format!("ioctl {cmd:#x}"), rc)
    }

    /// Waits up to `timeout_ms` for `events` (`POLLIN` 1, `POLLOUT` 4);
    /// returns the events that occurred (0 on timeout).
    pub fn poll(&self, events: i16, timeout_ms: i32) -> Result<i16, RumpError> {
        let mut p = sys::Pollfd {
            fd: self.fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { sys::rump_sys_poll(&raw mut p, 1, timeout_ms) };
        cvt(|| "poll".into(), rc).map(|_| p.revents)
    }

    /// Flushes the file's data to its medium.
    pub fn fsync(&self) -> Result<(), RumpError> {
        // SAFETY: plain descriptor.
        cvt(|| "fsync".into(), unsafe { sys::rump_sys_fsync(self.fd) }).map(drop)
    }

    /// Closes, reporting errors.
    pub fn close(self) -> Result<(), RumpError> {
        let fd = std::mem::ManuallyDrop::new(self).fd;
        // SAFETY: our descriptor, closed once.
        cvt(|| "close".into(), unsafe { sys::rump_sys_close(fd) }).map(drop)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: our descriptor, closed once.
        unsafe { sys::rump_sys_close(self.fd) };
    }
}
