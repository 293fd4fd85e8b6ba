//! GNU/Hurd host (glibc, libpthread). The Mach-specific services (device
//! ports, PCI arbiter, "irq" device, contiguous memory) arrive here as the
//! translators need them.

use std::ffi::CStr;

use crate::errno::{HyResult, NetbsdErrno, nb};
use crate::file::DirectAlignment;

/// Names the calling thread. The Hurd's libpthread keeps no thread names,
/// so the name goes to the debug log instead.
pub fn set_current_thread_name(name: &CStr) {
    log::debug!("kernel thread {name:?} started");
}

/// The Hurd has no direct I/O: the open fails with `EOPNOTSUPP`.
pub const O_DIRECT: Option<i32> = None;

/// The Hurd has no direct I/O.
pub fn direct_alignment(_fd: std::os::fd::RawFd) -> HyResult<DirectAlignment> {
    Err(NetbsdErrno(nb::EOPNOTSUPP))
}
