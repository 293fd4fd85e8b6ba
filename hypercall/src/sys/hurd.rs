//! GNU/Hurd host (glibc, libpthread). The Mach-specific services (device
//! ports, PCI arbiter, "irq" device, contiguous memory) arrive here as the
//! translators need them.

use std::ffi::CStr;

/// Names a thread. The Hurd's libpthread keeps no thread names, so the
/// name is recorded in the debug log instead.
pub fn set_thread_name(tid: libc::pthread_t, name: &CStr) {
    log::debug!("thread {tid:?} is {name:?}");
}
