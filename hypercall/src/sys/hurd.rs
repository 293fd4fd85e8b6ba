//! GNU/Hurd host (glibc, libpthread). The Mach-specific services (device
//! ports, PCI arbiter, "irq" device, contiguous memory) arrive here as the
//! translators need them.

use std::ffi::CStr;

/// Names the calling thread. The Hurd's libpthread keeps no thread names,
/// so the name goes to the debug log instead.
pub fn set_current_thread_name(name: &CStr) {
    log::debug!("kernel thread {name:?} started");
}
