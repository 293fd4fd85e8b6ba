//! File-system calls on a mounted file system: NetBSD's `struct stat`,
//! `struct statvfs` and `struct dirent` (amd64 layouts, decoded here so the
//! decoding is tested without a kernel), and, with a kernel, the `*at`
//! calls rumpfs serves its clients with. Paths are bytes: names reach the
//! kernel exactly as clients sent them.

/// `AT_SYMLINK_NOFOLLOW`.
pub const AT_SYMLINK_NOFOLLOW: i32 = 0x200;
/// `AT_SYMLINK_FOLLOW` (for `linkat`).
pub const AT_SYMLINK_FOLLOW: i32 = 0x400;
/// `AT_REMOVEDIR` (for `unlinkat`).
pub const AT_REMOVEDIR: i32 = 0x800;
/// `UTIME_NOW` (a `tv_nsec` of `utimensat`).
pub const UTIME_NOW: i64 = (1 << 30) - 1;
/// `UTIME_OMIT`.
pub const UTIME_OMIT: i64 = (1 << 30) - 2;
/// `POSIX_FADV_DONTNEED`: the range's dirty pages are written back
/// (asynchronously, without waiting for stable storage) and deactivated.
pub const POSIX_FADV_DONTNEED: i32 = 4;
/// `ST_WAIT` for `statvfs1`: fresh figures.
pub const ST_WAIT: i32 = 1;
/// `NAME_MAX` of NetBSD: the longest name a directory entry holds.
pub const NAME_MAX: usize = 511;
/// `PATH_MAX` of NetBSD (bytes, with the NUL).
pub const PATH_MAX: usize = 1024;

/// File type bits of `st_mode` (`S_IF*`, the same values as Linux's).
pub mod mode {
    /// Type mask.
    pub const S_IFMT: u32 = 0o170_000;
    /// Named pipe.
    pub const S_IFIFO: u32 = 0o010_000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020_000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040_000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060_000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100_000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120_000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140_000;
}

/// A time stamp.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: i64,
}

/// NetBSD's `struct stat` (`__stat50`), 152 bytes on LP64.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// Device of the file system.
    pub dev: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Inode number.
    pub ino: u64,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last data modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
    /// Creation.
    pub birthtime: Timespec,
    /// Size in bytes.
    pub size: i64,
    /// 512-byte blocks allocated.
    pub blocks: i64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// `chflags(2)` flags.
    pub flags: u32,
    /// Generation number.
    pub gen_: u32,
    spare: [u32; 2],
}

impl Stat {
    /// The `S_IF*` type bits.
    #[must_use]
    pub fn kind(&self) -> u32 {
        self.mode & mode::S_IFMT
    }

    /// Whether this is a directory.
    #[must_use]
    pub fn is_dir(&self) -> bool {
        self.kind() == mode::S_IFDIR
    }
}

/// `_VFS_NAMELEN`.
const VFS_NAMELEN: usize = 32;
/// `_VFS_MNAMELEN`.
const VFS_MNAMELEN: usize = 1024;

/// NetBSD's `struct statvfs`, 2256 bytes on LP64.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StatVfs {
    /// `ST_*` mount flags.
    pub flag: u64,
    /// Block size.
    pub bsize: u64,
    /// Fragment size: the unit of the block counts.
    pub frsize: u64,
    /// Optimal I/O size.
    pub iosize: u64,
    /// Blocks in all.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Blocks reserved for root.
    pub bresvd: u64,
    /// Inodes in all.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Free inodes for unprivileged users.
    pub favail: u64,
    /// Inodes reserved for root.
    pub fresvd: u64,
    counters: [u64; 4],
    fsidx: [i32; 2],
    /// File system id.
    pub fsid: u64,
    /// Longest name.
    pub namemax: u64,
    /// Who mounted it.
    pub owner: u32,
    spare: [u32; 4],
    fstypename: [u8; VFS_NAMELEN],
    mntonname: [u8; VFS_MNAMELEN],
    mntfromname: [u8; VFS_MNAMELEN],
}

impl StatVfs {
    /// The file system's type name (`ffs`, `ext2fs`, `msdos`).
    #[must_use]
    pub fn fstype(&self) -> String {
        let n = self
            .fstypename
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(VFS_NAMELEN);
        String::from_utf8_lossy(&self.fstypename[..n]).into_owned()
    }
}

impl Default for StatVfs {
    fn default() -> Self {
        // SAFETY: every field is an integer or an integer array, for which
        // all-zero bytes are a valid value.
        unsafe { std::mem::zeroed() }
    }
}

/// One directory entry from `getdents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// `DT_*` type (0 when the file system does not say).
    pub kind: u8,
    /// Name bytes.
    pub name: Vec<u8>,
}

/// `DT_*` values of `d_type`.
pub mod dt {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Named pipe.
    pub const FIFO: u8 = 1;
    /// Character device.
    pub const CHR: u8 = 2;
    /// Directory.
    pub const DIR: u8 = 4;
    /// Block device.
    pub const BLK: u8 = 6;
    /// Regular file.
    pub const REG: u8 = 8;
    /// Symbolic link.
    pub const LNK: u8 = 10;
    /// Socket.
    pub const SOCK: u8 = 12;
    /// Whiteout (union mounts; never served).
    pub const WHT: u8 = 14;
}

/// Decodes the `struct dirent` records `getdents` filled `buf` with
/// (`d_fileno` u64, `d_reclen` u16, `d_namlen` u16, `d_type` u8, the
/// name), appending them to `out`. Records with no inode (deleted slots)
/// and whiteouts are skipped. A record that overruns the buffer or claims
/// a name longer than itself ends the decoding with `Err(())`: the kernel
/// never writes one, so it means the buffer is not getdents'.
#[allow(clippy::result_unit_err)]
pub fn parse_dirents(buf: &[u8], out: &mut Vec<DirEntry>) -> Result<(), ()> {
    let mut at = 0;
    while at < buf.len() {
        let rec = buf.get(at..at + 13).ok_or(())?;
        let ino = u64::from_ne_bytes(rec[0..8].try_into().expect("8 bytes"));
        let reclen = usize::from(u16::from_ne_bytes([rec[8], rec[9]]));
        let namlen = usize::from(u16::from_ne_bytes([rec[10], rec[11]]));
        let kind = rec[12];
        if reclen < 13 || at + reclen > buf.len() || 13 + namlen > reclen || namlen > NAME_MAX {
            return Err(());
        }
        if ino != 0 && kind != dt::WHT {
            out.push(DirEntry {
                ino,
                kind,
                name: buf[at + 13..at + 13 + namlen].to_vec(),
            });
        }
        at += reclen;
    }
    Ok(())
}

#[cfg(rump_kernel)]
mod calls {
    use std::ffi::{CString, c_int};

    use super::{DirEntry, PATH_MAX, Stat, StatVfs, Timespec, parse_dirents};
    use crate::kernel::{cvt, cvt_size, last_errno};
    use crate::{Fd, Rump, RumpError, sys};

    /// The directory a relative path starts from.
    #[derive(Debug, Clone, Copy)]
    pub enum At<'a> {
        /// The kernel's current directory (absolute paths use this).
        Cwd,
        /// An open directory.
        Dir(&'a Fd),
    }

    impl At<'_> {
        fn raw(self) -> c_int {
            match self {
                At::Cwd => sys::AT_FDCWD,
                At::Dir(fd) => fd.fd,
            }
        }
    }

    fn cpath(path: &[u8]) -> Result<CString, RumpError> {
        if path.len() >= PATH_MAX {
            return Err(RumpError::kernel(
                format!("path of {} bytes", path.len()),
                hypercall::errno::nb::ENAMETOOLONG,
            ));
        }
        Ok(CString::new(path)?)
    }

    fn show(path: &[u8]) -> String {
        String::from_utf8_lossy(path).into_owned()
    }

    /// Runs kernel call `call` on `path` made a C string; a negative
    /// answer is the errno, reported as `"{op} {path}"`.
    fn on_path(
        op: &str,
        path: &[u8],
        call: impl FnOnce(*const std::ffi::c_char) -> c_int,
    ) -> Result<c_int, RumpError> {
        let c = cpath(path)?;
        cvt(|| format!("{op} {}", show(path)), call(c.as_ptr()))
    }

    impl Rump {
        /// `fstatat`: the status of `path` (of a symbolic link itself
        /// unless `follow`).
        pub fn stat_at(self, at: At<'_>, path: &[u8], follow: bool) -> Result<Stat, RumpError> {
            let mut st = Stat::default();
            let flags = if follow {
                0
            } else {
                super::AT_SYMLINK_NOFOLLOW
            };
            on_path("stat", path, |c| {
                // SAFETY: NUL-terminated path; `st` has NetBSD's layout.
                unsafe { sys::rump_sys_fstatat(at.raw(), c, (&raw mut st).cast(), flags) }
            })
            .map(|_| st)
        }

        /// `openat` with NetBSD `flags` ([`crate::oflags`]).
        pub fn open_at(
            self,
            at: At<'_>,
            path: &[u8],
            flags: i32,
            mode: u32,
        ) -> Result<Fd, RumpError> {
            let c = cpath(path)?;
            // SAFETY: NUL-terminated path; the mode is the variadic int
            // openat reads with O_CREAT.
            let fd = unsafe { sys::rump_sys_openat(at.raw(), c.as_ptr(), flags, mode as c_int) };
            cvt(|| format!("open {}", show(path)), fd).map(|fd| Fd { fd })
        }

        /// `mkdirat`.
        pub fn mkdir_at(self, at: At<'_>, path: &[u8], mode: u32) -> Result<(), RumpError> {
            on_path("mkdir", path, |c| {
                // SAFETY: NUL-terminated path.
                unsafe { sys::rump_sys_mkdirat(at.raw(), c, mode) }
            })
            .map(drop)
        }

        /// `mknodat` (`mode` carries the `S_IF*` type).
        pub fn mknod_at(
            self,
            at: At<'_>,
            path: &[u8],
            mode: u32,
            dev: u64,
        ) -> Result<(), RumpError> {
            on_path("mknod", path, |c| {
                // SAFETY: NUL-terminated path.
                unsafe { sys::rump_sys_mknodat(at.raw(), c, mode, dev) }
            })
            .map(drop)
        }

        /// `mkfifoat(2)` (NetBSD's `mknod` makes no FIFOs).
        ///
        /// # Errors
        /// The kernel's.
        pub fn mkfifo_at(self, at: At<'_>, path: &[u8], mode: u32) -> Result<(), RumpError> {
            on_path("mkfifo", path, |c| {
                // SAFETY: NUL-terminated path.
                unsafe { sys::rump_sys_mkfifoat(at.raw(), c, mode) }
            })
            .map(drop)
        }

        /// `unlinkat` (a directory with `dir`).
        pub fn unlink_at(self, at: At<'_>, path: &[u8], dir: bool) -> Result<(), RumpError> {
            let flags = if dir { super::AT_REMOVEDIR } else { 0 };
            on_path("unlink", path, |c| {
                // SAFETY: NUL-terminated path.
                unsafe { sys::rump_sys_unlinkat(at.raw(), c, flags) }
            })
            .map(drop)
        }

        /// `renameat`.
        pub fn rename_at(
            self,
            from_at: At<'_>,
            from: &[u8],
            to_at: At<'_>,
            to: &[u8],
        ) -> Result<(), RumpError> {
            let f = cpath(from)?;
            let t = cpath(to)?;
            // SAFETY: NUL-terminated paths.
            let rc = unsafe {
                sys::rump_sys_renameat(from_at.raw(), f.as_ptr(), to_at.raw(), t.as_ptr())
            };
            cvt(|| format!("rename {} to {}", show(from), show(to)), rc).map(drop)
        }

        /// `linkat`: a new name `to` for the file `from` names.
        pub fn link_at(
            self,
            from_at: At<'_>,
            from: &[u8],
            to_at: At<'_>,
            to: &[u8],
        ) -> Result<(), RumpError> {
            let f = cpath(from)?;
            let t = cpath(to)?;
            // SAFETY: NUL-terminated paths.
            let rc = unsafe {
                sys::rump_sys_linkat(from_at.raw(), f.as_ptr(), to_at.raw(), t.as_ptr(), 0)
            };
            cvt(|| format!("link {} to {}", show(from), show(to)), rc).map(drop)
        }

        /// `symlinkat`: `path` becomes a symbolic link to `target`.
        pub fn symlink_at(self, target: &[u8], at: At<'_>, path: &[u8]) -> Result<(), RumpError> {
            let t = cpath(target)?;
            on_path("symlink", path, |c| {
                // SAFETY: NUL-terminated strings.
                unsafe { sys::rump_sys_symlinkat(t.as_ptr(), at.raw(), c) }
            })
            .map(drop)
        }

        /// `readlinkat`: the target of symbolic link `path`.
        pub fn readlink_at(self, at: At<'_>, path: &[u8]) -> Result<Vec<u8>, RumpError> {
            let c = cpath(path)?;
            let mut buf = vec![0u8; PATH_MAX];
            // SAFETY: NUL-terminated path; `buf` is writable for its length.
            let n = unsafe {
                sys::rump_sys_readlinkat(at.raw(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            let n = cvt_size(|| format!("readlink {}", show(path)), n)?;
            buf.truncate(n);
            Ok(buf)
        }

        /// `fchmodat` (following symbolic links: their own modes mean
        /// nothing to NetBSD).
        pub fn chmod_at(self, at: At<'_>, path: &[u8], mode: u32) -> Result<(), RumpError> {
            on_path("chmod", path, |c| {
                // SAFETY: NUL-terminated path.
                unsafe { sys::rump_sys_fchmodat(at.raw(), c, mode, 0) }
            })
            .map(drop)
        }

        /// `fchownat` of `path` itself (`u32::MAX` leaves an id as it is).
        pub fn chown_at(
            self,
            at: At<'_>,
            path: &[u8],
            uid: u32,
            gid: u32,
        ) -> Result<(), RumpError> {
            on_path("chown", path, |c| {
                // SAFETY: NUL-terminated path.
                unsafe { sys::rump_sys_fchownat(at.raw(), c, uid, gid, super::AT_SYMLINK_NOFOLLOW) }
            })
            .map(drop)
        }

        /// `utimensat` of `path` itself: access and modification times
        /// ([`super::UTIME_OMIT`] / [`super::UTIME_NOW`] in `nsec`).
        pub fn utimens_at(
            self,
            at: At<'_>,
            path: &[u8],
            atime: Timespec,
            mtime: Timespec,
        ) -> Result<(), RumpError> {
            let times = [[atime.sec, atime.nsec], [mtime.sec, mtime.nsec]];
            on_path("utimens", path, |c| {
                // SAFETY: NUL-terminated path; two timespecs.
                unsafe {
                    sys::rump_sys_utimensat(at.raw(), c, times.as_ptr(), super::AT_SYMLINK_NOFOLLOW)
                }
            })
            .map(drop)
        }

        /// `statvfs1` of the file system holding `path`.
        pub fn statvfs(self, path: &[u8]) -> Result<StatVfs, RumpError> {
            let mut st = StatVfs::default();
            on_path("statvfs", path, |c| {
                // SAFETY: NUL-terminated path; `st` has NetBSD's layout.
                unsafe { sys::rump_sys_statvfs1(c, (&raw mut st).cast(), super::ST_WAIT) }
            })
            .map(|_| st)
        }
    }

    impl Fd {
        /// `fstat`.
        pub fn stat(&self) -> Result<Stat, RumpError> {
            let mut st = Stat::default();
            // SAFETY: our descriptor; `st` has NetBSD's layout.
            let rc = unsafe { sys::rump_sys_fstat(self.fd, (&raw mut st).cast()) };
            cvt(|| "fstat".into(), rc).map(|_| st)
        }

        /// `ftruncate`.
        pub fn truncate(&self, len: u64) -> Result<(), RumpError> {
            let len = i64::try_from(len).map_err(|_| RumpError::kernel("ftruncate", 27))?;
            // SAFETY: plain arguments.
            let rc = unsafe { sys::rump_sys_ftruncate(self.fd, len) };
            cvt(|| format!("ftruncate to {len}"), rc).map(drop)
        }

        /// `fdatasync`.
        pub fn datasync(&self) -> Result<(), RumpError> {
            // SAFETY: our descriptor.
            cvt(|| "fdatasync".into(), unsafe {
                sys::rump_sys_fdatasync(self.fd)
            })
            .map(drop)
        }

        /// `posix_fadvise` of `len` bytes from `off` (`advice`:
        /// [`super::POSIX_FADV_DONTNEED`]).
        pub fn advise(&self, off: u64, len: u64, advice: i32) -> Result<(), RumpError> {
            let (o, l) = (off as i64, len as i64);
            if o < 0 || l < 0 {
                return Err(RumpError::kernel("posix_fadvise", 22));
            }
            // SAFETY: plain arguments.
            match unsafe { sys::rump_sys_posix_fadvise(self.fd, o, l, advice) } {
                0 => Ok(()),
                e => Err(RumpError::kernel(format!("posix_fadvise {advice}"), e)),
            }
        }

        /// Reads the next directory entries (`getdents` into a buffer of
        /// `size` bytes), appending them to `out`; false at the end.
        pub fn read_dir(&self, size: usize, out: &mut Vec<DirEntry>) -> Result<bool, RumpError> {
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { sys::rump_sys_getdents(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                return Err(RumpError::kernel("getdents", last_errno()));
            }
            let n = n as usize;
            parse_dirents(&buf[..n], out)
                .map_err(|()| RumpError::kernel("getdents: malformed record", 5))?;
            Ok(n > 0)
        }
    }
}

#[cfg(rump_kernel)]
pub use calls::At;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ino: u64, kind: u8, name: &[u8]) -> Vec<u8> {
        let reclen = (13 + name.len() + 1).next_multiple_of(8);
        let mut r = vec![0u8; reclen];
        r[0..8].copy_from_slice(&ino.to_ne_bytes());
        r[8..10].copy_from_slice(&(reclen as u16).to_ne_bytes());
        r[10..12].copy_from_slice(&(name.len() as u16).to_ne_bytes());
        r[12] = kind;
        r[13..13 + name.len()].copy_from_slice(name);
        r
    }

    #[test]
    fn layouts_are_netbsd_amd64s() {
        assert_eq!(size_of::<Stat>(), 152);
        assert_eq!(std::mem::offset_of!(Stat, ino), 16);
        assert_eq!(std::mem::offset_of!(Stat, rdev), 40);
        assert_eq!(std::mem::offset_of!(Stat, size), 112);
        assert_eq!(std::mem::offset_of!(Stat, gen_), 136);
        assert_eq!(size_of::<StatVfs>(), 2256);
        assert_eq!(std::mem::offset_of!(StatVfs, fsidx), 128);
        assert_eq!(std::mem::offset_of!(StatVfs, namemax), 144);
        assert_eq!(std::mem::offset_of!(StatVfs, fstypename), 172);
    }

    #[test]
    fn dirents_decode_and_skip_empty_slots() {
        let mut buf = record(2, dt::DIR, b".");
        buf.extend(record(0, dt::REG, b"gone"));
        buf.extend(record(12, dt::REG, &[b'x'; 511]));
        buf.extend(record(13, dt::WHT, b"w"));
        let mut out = Vec::new();
        parse_dirents(&buf, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, b".");
        assert_eq!(out[1].ino, 12);
        assert_eq!(out[1].name.len(), 511);
    }

    #[test]
    fn malformed_dirents_are_refused() {
        let mut out = Vec::new();
        let mut buf = record(5, dt::REG, b"name");
        buf[10] = 200; // name longer than the record
        assert_eq!(parse_dirents(&buf, &mut out), Err(()));
        let mut buf = record(5, dt::REG, b"name");
        buf[8] = 0; // reclen 0 would loop
        buf[9] = 0;
        assert_eq!(parse_dirents(&buf, &mut out), Err(()));
        let buf = record(5, dt::REG, b"name");
        assert_eq!(parse_dirents(&buf[..buf.len() - 1], &mut out), Err(()));
        assert!(out.is_empty());
    }

    #[test]
    fn statvfs_names_its_type() {
        let mut s = StatVfs::default();
        s.fstypename[..6].copy_from_slice(b"ext2fs");
        assert_eq!(s.fstype(), "ext2fs");
    }
}
