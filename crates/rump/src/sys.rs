//! Raw FFI of the rump kernel API the suite uses (`rump.h`,
//! `rumpkern_if_pub.h`, `rump_syscalls.h`). `rump_sys_*` names are macros
//! over the versioned `rump___sysimpl_*` symbols.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

/// `enum rump_sigmodel`.
pub const RUMP_SIGMODEL_IGNORE: c_int = 1;

/// `enum rump_etfs_type`.
pub const RUMP_ETFS_REG: c_int = 0;
/// Block device.
pub const RUMP_ETFS_BLK: c_int = 1;
/// Character device.
pub const RUMP_ETFS_CHR: c_int = 2;
/// `RUMP_ETFS_SIZE_ENDOFF`: an etfs window reaching the end of the file.
pub const RUMP_ETFS_SIZE_ENDOFF: u64 = u64::MAX;

/// `struct iovec` (NetBSD amd64 layout, same as the host's).
pub type Iovec = libc::iovec;

/// `struct pollfd` (NetBSD layout: int fd, short events, short revents).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Pollfd {
    /// Descriptor.
    pub fd: c_int,
    /// Requested events.
    pub events: i16,
    /// Returned events.
    pub revents: i16,
}

unsafe extern "C" {
    /// Boots the kernel.
    pub fn rump_init() -> c_int;
    /// Chooses what kernel signals do to the host process.
    pub fn rump_boot_setsigmodel(model: c_int);
    /// Makes the `size` bytes of host file `hostpath` from `begin` on
    /// appear in the kernel as `key` (`rump_pub_etfs_register` is this with
    /// 0 and `RUMP_ETFS_SIZE_ENDOFF`).
    pub fn rump_pub_etfs_register_withsize(
        key: *const c_char,
        hostpath: *const c_char,
        ftype: c_int,
        begin: u64,
        size: u64,
    ) -> c_int;
    /// Removes an etfs registration.
    pub fn rump_pub_etfs_remove(key: *const c_char) -> c_int;
    /// Creates an LWP in process `pid` and makes it the calling thread's.
    pub fn rump_pub_lwproc_newlwp(pid: c_int) -> c_int;
    /// Releases the calling thread's LWP (it is freed when unscheduled).
    pub fn rump_pub_lwproc_releaselwp();

    /// `mknod(2)` (NetBSD 5's, with a 64-bit `dev_t`).
    #[link_name = "rump___sysimpl_mknod50"]
    pub fn rump_sys_mknod(path: *const c_char, mode: u32, dev: u64) -> c_int;
    /// `stat(2)` (NetBSD 5's `struct stat`).
    #[link_name = "rump___sysimpl_stat50"]
    pub fn rump_sys_stat(path: *const c_char, st: *mut c_void) -> c_int;
    /// `open(2)`.
    #[link_name = "rump___sysimpl_open"]
    pub fn rump_sys_open(path: *const c_char, flags: c_int, ...) -> c_int;
    /// `close(2)`.
    #[link_name = "rump___sysimpl_close"]
    pub fn rump_sys_close(fd: c_int) -> c_int;
    /// `read(2)`.
    #[link_name = "rump___sysimpl_read"]
    pub fn rump_sys_read(fd: c_int, buf: *mut c_void, n: usize) -> isize;
    /// `write(2)`.
    #[link_name = "rump___sysimpl_write"]
    pub fn rump_sys_write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    /// `pread(2)`.
    #[link_name = "rump___sysimpl_pread"]
    pub fn rump_sys_pread(fd: c_int, buf: *mut c_void, n: usize, off: i64) -> isize;
    /// `pwrite(2)`.
    #[link_name = "rump___sysimpl_pwrite"]
    pub fn rump_sys_pwrite(fd: c_int, buf: *const c_void, n: usize, off: i64) -> isize;
    /// `writev(2)`.
    #[link_name = "rump___sysimpl_writev"]
    pub fn rump_sys_writev(fd: c_int, iov: *const Iovec, n: c_int) -> isize;
    /// `ioctl(2)`.
    #[link_name = "rump___sysimpl_ioctl"]
    pub fn rump_sys_ioctl(fd: c_int, cmd: c_ulong, ...) -> c_int;
    /// `poll(2)`.
    #[link_name = "rump___sysimpl_poll"]
    pub fn rump_sys_poll(fds: *mut Pollfd, n: c_uint, timeout_ms: c_int) -> c_int;
    /// `socket(2)`.
    #[link_name = "rump___sysimpl_socket30"]
    pub fn rump_sys_socket(domain: c_int, ty: c_int, proto: c_int) -> c_int;
    /// `fsync(2)`.
    #[link_name = "rump___sysimpl_fsync"]
    pub fn rump_sys_fsync(fd: c_int) -> c_int;
    /// `sync(2)`.
    #[link_name = "rump___sysimpl_sync"]
    pub fn rump_sys_sync();
    /// `reboot(2)`: halts the kernel (`RB_*` flags).
    #[link_name = "rump___sysimpl_reboot"]
    pub fn rump_sys_reboot(howto: c_int, bootstr: *mut c_char) -> c_int;
    /// `mkdir(2)`.
    #[link_name = "rump___sysimpl_mkdir"]
    pub fn rump_sys_mkdir(path: *const c_char, mode: u32) -> c_int;
    /// `mount(2)` (the NetBSD 5.0 ABI).
    #[link_name = "rump___sysimpl_mount50"]
    pub fn rump_sys_mount(
        fstype: *const c_char,
        path: *const c_char,
        flags: c_int,
        data: *mut c_void,
        len: usize,
    ) -> c_int;
    /// `unmount(2)`.
    #[link_name = "rump___sysimpl_unmount"]
    pub fn rump_sys_unmount(path: *const c_char, flags: c_int) -> c_int;
    /// `lseek(2)`.
    #[link_name = "rump___sysimpl_lseek"]
    pub fn rump_sys_lseek(fd: c_int, off: i64, whence: c_int) -> i64;
}

/// `AT_FDCWD`: `*at` calls relative to the current directory.
pub const AT_FDCWD: c_int = -100;

unsafe extern "C" {
    /// `fstat(2)` (NetBSD 5's `struct stat`).
    #[link_name = "rump___sysimpl_fstat50"]
    pub fn rump_sys_fstat(fd: c_int, st: *mut c_void) -> c_int;
    /// `fstatat(2)`.
    #[link_name = "rump___sysimpl_fstatat"]
    pub fn rump_sys_fstatat(
        dir: c_int,
        path: *const c_char,
        st: *mut c_void,
        flags: c_int,
    ) -> c_int;
    /// `openat(2)`.
    #[link_name = "rump___sysimpl_openat"]
    pub fn rump_sys_openat(dir: c_int, path: *const c_char, flags: c_int, ...) -> c_int;
    /// `mkdirat(2)`.
    #[link_name = "rump___sysimpl_mkdirat"]
    pub fn rump_sys_mkdirat(dir: c_int, path: *const c_char, mode: u32) -> c_int;
    /// `mknodat(2)`.
    #[link_name = "rump___sysimpl_mknodat"]
    pub fn rump_sys_mknodat(dir: c_int, path: *const c_char, mode: u32, dev: u64) -> c_int;
    /// `mkfifoat(2)`.
    #[link_name = "rump___sysimpl_mkfifoat"]
    pub fn rump_sys_mkfifoat(dir: c_int, path: *const c_char, mode: u32) -> c_int;
    /// `unlinkat(2)`.
    #[link_name = "rump___sysimpl_unlinkat"]
    pub fn rump_sys_unlinkat(dir: c_int, path: *const c_char, flags: c_int) -> c_int;
    /// `renameat(2)`.
    #[link_name = "rump___sysimpl_renameat"]
    pub fn rump_sys_renameat(
        from_dir: c_int,
        from: *const c_char,
        to_dir: c_int,
        to: *const c_char,
    ) -> c_int;
    /// `linkat(2)`.
    #[link_name = "rump___sysimpl_linkat"]
    pub fn rump_sys_linkat(
        from_dir: c_int,
        from: *const c_char,
        to_dir: c_int,
        to: *const c_char,
        flags: c_int,
    ) -> c_int;
    /// `symlinkat(2)`.
    #[link_name = "rump___sysimpl_symlinkat"]
    pub fn rump_sys_symlinkat(target: *const c_char, dir: c_int, path: *const c_char) -> c_int;
    /// `readlinkat(2)`.
    #[link_name = "rump___sysimpl_readlinkat"]
    pub fn rump_sys_readlinkat(
        dir: c_int,
        path: *const c_char,
        buf: *mut c_char,
        len: usize,
    ) -> isize;
    /// `fchmodat(2)`.
    #[link_name = "rump___sysimpl_fchmodat"]
    pub fn rump_sys_fchmodat(dir: c_int, path: *const c_char, mode: u32, flags: c_int) -> c_int;
    /// `fchownat(2)`.
    #[link_name = "rump___sysimpl_fchownat"]
    pub fn rump_sys_fchownat(
        dir: c_int,
        path: *const c_char,
        uid: u32,
        gid: u32,
        flags: c_int,
    ) -> c_int;
    /// `utimensat(2)`.
    #[link_name = "rump___sysimpl_utimensat"]
    pub fn rump_sys_utimensat(
        dir: c_int,
        path: *const c_char,
        times: *const [i64; 2],
        flags: c_int,
    ) -> c_int;
    /// `ftruncate(2)`.
    #[link_name = "rump___sysimpl_ftruncate"]
    pub fn rump_sys_ftruncate(fd: c_int, len: i64) -> c_int;
    /// `fdatasync(2)`.
    #[link_name = "rump___sysimpl_fdatasync"]
    pub fn rump_sys_fdatasync(fd: c_int) -> c_int;
    /// `getdents(2)` (`struct dirent` of NetBSD 3.0 on).
    #[link_name = "rump___sysimpl_getdents30"]
    pub fn rump_sys_getdents(fd: c_int, buf: *mut c_char, len: usize) -> c_int;
    /// `posix_fadvise(2)` (answers the error number itself).
    #[link_name = "rump___sysimpl_posix_fadvise50"]
    pub fn rump_sys_posix_fadvise(fd: c_int, off: i64, len: i64, advice: c_int) -> c_int;
    /// `statvfs1(2)`.
    #[link_name = "rump___sysimpl_statvfs1"]
    pub fn rump_sys_statvfs1(path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int;
}
