//! The NetBSD rump kernel, as the translators use it.
//!
//! - [`sys`]: raw FFI (`rump_init`, `rump_sys_*`, etfs), present when the
//!   build found a kernel (`RUMP_PREFIX`, see `netbsd-src`), which sets
//!   `cfg(rump_kernel)`.
//! - [`Rump`], [`Fd`], [`Etfs`]: a safe wrapper, with [`RumpError`]
//!   carrying NetBSD errno values and converting them to host ones.
//! - [`net`]: interface ioctls and bpf(4), for frames in and out of the
//!   kernel's NIC drivers.
//! - [`vfs`]: the file-system calls (`*at`, `struct stat`, `getdents`,
//!   `statvfs1`) on paths in a mounted file system, for rumpfs.
//! - [`audio`]: audio(4)'s `audio_info` and ioctls, for PCM in and out of
//!   the kernel's sound drivers.
//!
//! The rumpuser interface under the kernel is this project's `hypercall`
//! crate; NetBSD's librumpuser is never linked.

use std::ffi::NulError;

pub use hypercall::NetbsdErrno;

pub mod audio;
#[cfg(rump_kernel)]
mod kernel;
pub mod net;
#[cfg(rump_kernel)]
pub mod sys;
pub mod vfs;

#[cfg(rump_kernel)]
pub use kernel::{Etfs, EtfsType, Fd, Rump};

// The hypercall crate must be part of every link that contains the kernel.
use hypercall as _;

/// Whether this build links a rump kernel.
pub const LINKED: bool = cfg!(rump_kernel);

/// Whether the linked kernel's USB stack can drive a real host controller
/// (`netbsd_src::RumpKernel::usb_dma`: the 2016 tree's cannot; its usbdi.c
/// asserts on the first transfer). True when it cannot be told.
pub const USB_DMA: bool = !cfg!(rump_usb_no_dma);

/// Whether the linked kernel's FFS and ext2fs compact directory blocks
/// without corrupting them (`netbsd_src::RumpKernel::dir_compaction_safe`:
/// the 2016 CI kernel, built by gcc 12, does not; removals and renames
/// then break directories). True when it cannot be told.
pub const DIR_COMPACTION_SAFE: bool = !cfg!(rump_dirs_unsafe);

/// The library directory of the kernel linked (empty without one).
pub const LIB_DIR: &str = match option_env!("RUMP_LIB_DIR") {
    Some(d) => d,
    None => "",
};

/// The components linked into this build (space-separated; empty when no
/// kernel is linked).
pub const COMPONENTS: &str = match option_env!("RUMP_COMPONENTS") {
    Some(c) => c,
    None => "",
};

/// Whether `component` (a library name without `lib` and `.a`:
/// `rumpdev_ahcisata`) is linked into this build.
#[must_use]
pub fn linked(component: &str) -> bool {
    COMPONENTS.split(' ').any(|c| c == component)
}

/// An error from the rump kernel or from preparing a call to it.
#[derive(Debug, thiserror::Error)]
pub enum RumpError {
    /// The kernel answered an error.
    #[error("{op}: {errno}")]
    Kernel {
        /// What was attempted.
        op: String,
        /// NetBSD's error number.
        errno: NetbsdErrno,
    },
    /// A path or name held a NUL byte.
    #[error("{0}")]
    Nul(#[from] NulError),
}

impl RumpError {
    /// A kernel error for operation `op`.
    pub fn kernel(op: impl Into<String>, errno: i32) -> Self {
        Self::Kernel {
            op: op.into(),
            errno: NetbsdErrno(errno),
        }
    }

    /// The NetBSD errno, for kernel errors.
    #[must_use]
    pub fn errno(&self) -> Option<NetbsdErrno> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            Self::Nul(_) => None,
        }
    }
}

impl From<RumpError> for std::io::Error {
    fn from(e: RumpError) -> Self {
        match e {
            RumpError::Kernel { op, errno } => {
                let host = errno.to_io();
                std::io::Error::new(host.kind(), format!("{op}: {host}"))
            }
            RumpError::Nul(n) => std::io::Error::new(std::io::ErrorKind::InvalidInput, n),
        }
    }
}

/// NetBSD's `makedev(major, minor)`.
#[must_use]
pub const fn makedev(major: u32, minor: u32) -> u64 {
    ((major as u64) << 8) & 0x000f_ff00
        | (minor as u64 & 0xff)
        | ((minor as u64) << 12) & 0xfff0_0000
}

/// NetBSD's `major(dev)`.
#[must_use]
pub const fn major(dev: u64) -> u32 {
    ((dev & 0x000f_ff00) >> 8) as u32
}

/// `IOC_VOID` of NetBSD's `<sys/ioccom.h>`.
pub(crate) const IOC_VOID: u64 = 0x2000_0000;
/// `IOC_OUT`.
pub(crate) const IOC_OUT: u64 = 0x4000_0000;
/// `IOC_IN`.
pub(crate) const IOC_IN: u64 = 0x8000_0000;

/// `_IOC(dir, group, num, len)` of NetBSD's `<sys/ioccom.h>`.
pub(crate) const fn ioc(dir: u64, group: u8, num: u8, len: usize) -> u64 {
    dir | ((len as u64 & 0x1fff) << 16) | ((group as u64) << 8) | num as u64
}

/// `S_IFCHR`.
pub const S_IFCHR: u32 = 0o020_000;

/// NetBSD `open(2)` flags.
pub mod oflags {
    /// Read only.
    pub const RDONLY: i32 = 0x0000_0000;
    /// Write only.
    pub const WRONLY: i32 = 0x0000_0001;
    /// Read and write.
    pub const RDWR: i32 = 0x0000_0002;
    /// Create if missing.
    pub const CREAT: i32 = 0x0000_0200;
    /// Truncate.
    pub const TRUNC: i32 = 0x0000_0400;
    /// With `CREAT`: fail if it exists.
    pub const EXCL: i32 = 0x0000_0800;
    /// The access mode bits.
    pub const ACCMODE: i32 = 0x0000_0003;
    /// Non-blocking.
    pub const NONBLOCK: i32 = 0x0000_0004;
    /// Writes append.
    pub const APPEND: i32 = 0x0000_0008;
    /// Synchronous writes.
    pub const SYNC: i32 = 0x0000_0080;
    /// Do not follow a final symbolic link.
    pub const NOFOLLOW: i32 = 0x0000_0100;
    /// Data-synchronous writes.
    pub const DSYNC: i32 = 0x0001_0000;
    /// Fail unless a directory.
    pub const DIRECTORY: i32 = 0x0020_0000;
}

/// NetBSD `mount(2)` arguments for the file systems the suite mounts.
pub mod mount {
    use std::ffi::c_char;

    /// `MNT_RDONLY`.
    pub const MNT_RDONLY: i32 = 0x0000_0001;
    /// `MNT_SYNCHRONOUS`: every write reaches the medium before it returns.
    pub const MNT_SYNCHRONOUS: i32 = 0x0000_0002;
    /// `MNT_NOATIME`.
    pub const MNT_NOATIME: i32 = 0x0400_0000;
    /// `MNT_FORCE` (for unmount).
    pub const MNT_FORCE: i32 = 0x0008_0000;

    /// `struct ufs_args` (FFS, ext2fs).
    #[repr(C)]
    #[derive(Debug)]
    pub struct UfsArgs {
        /// Block device holding the file system.
        pub fspec: *const c_char,
    }

    /// `struct uucred` (inside the old export arguments).
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct Uucred {
        /// Unused.
        pub cr_unused: u16,
        /// User.
        pub cr_uid: u32,
        /// Group.
        pub cr_gid: u32,
        /// Number of groups.
        pub cr_ngroups: i16,
        /// Groups.
        pub cr_groups: [u32; 16],
    }

    /// `struct export_args30` (kept in msdosfs arguments for compatibility).
    #[repr(C)]
    #[derive(Debug)]
    pub struct ExportArgs30 {
        /// Flags.
        pub ex_flags: i32,
        /// Root mapping.
        pub ex_root: u32,
        /// Anonymous mapping.
        pub ex_anon: Uucred,
        /// Address.
        pub ex_addr: *mut u8,
        /// Its length.
        pub ex_addrlen: i32,
        /// Mask.
        pub ex_mask: *mut u8,
        /// Its length.
        pub ex_masklen: i32,
        /// `WebNFS` index file.
        pub ex_indexfile: *mut c_char,
    }

    /// `MSDOSFSMNT_VERSION`.
    pub const MSDOSFSMNT_VERSION: i32 = 3;

    /// `struct msdosfs_args`.
    #[repr(C)]
    #[derive(Debug)]
    pub struct MsdosfsArgs {
        /// Block device holding the file system.
        pub fspec: *const c_char,
        /// Unused export arguments.
        pub pad1: ExportArgs30,
        /// Owner of the files.
        pub uid: u32,
        /// Their group.
        pub gid: u32,
        /// File permission mask.
        pub mask: u32,
        /// `MSDOSFSMNT_*` flags.
        pub flags: i32,
        /// [`MSDOSFSMNT_VERSION`].
        pub version: i32,
        /// Directory permission mask.
        pub dirmask: u32,
        /// Offset from UTC in seconds.
        pub gmtoff: i32,
    }

    impl MsdosfsArgs {
        /// Arguments for mounting `fspec` owned by root with `mask` modes.
        #[must_use]
        pub fn new(fspec: *const c_char, mask: u32) -> Self {
            Self {
                fspec,
                pad1: ExportArgs30 {
                    ex_flags: 0,
                    ex_root: 0,
                    ex_anon: Uucred::default(),
                    ex_addr: std::ptr::null_mut(),
                    ex_addrlen: 0,
                    ex_mask: std::ptr::null_mut(),
                    ex_masklen: 0,
                    ex_indexfile: std::ptr::null_mut(),
                },
                uid: 0,
                gid: 0,
                mask,
                flags: 0,
                version: MSDOSFSMNT_VERSION,
                dirmask: mask,
                gmtoff: 0,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn argument_layouts_match_netbsd_amd64() {
            assert_eq!(size_of::<super::Uucred>(), 80);
            assert_eq!(size_of::<super::ExportArgs30>(), 128);
            assert_eq!(size_of::<super::MsdosfsArgs>(), 168);
            assert_eq!(size_of::<super::UfsArgs>(), 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_are_netbsds() {
        assert_eq!(makedev(4, 19), 0x413);
        assert_eq!(makedev(13, 0x1234), 0x0120_0d34);
        assert_eq!(major(makedev(13, 0x1234)), 13);
    }

    #[test]
    fn kernel_errors_map_to_host_errors() {
        let e: std::io::Error = RumpError::kernel("open /dev/x", 2).into();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e: std::io::Error = RumpError::kernel("read", 35).into();
        assert_eq!(e.raw_os_error(), None);
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(RumpError::kernel("x", 30).errno(), Some(NetbsdErrno(30)));
        let e: std::io::Error = RumpError::kernel("ioctl", 25).into();
        assert!(e.to_string().starts_with("ioctl: "), "{e}");
    }
}
