//! Host-specific pieces, one module per host (selected by `target_os`).

#[cfg(target_os = "hurd")]
mod hurd;
#[cfg(target_os = "hurd")]
pub use hurd::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(any(target_os = "linux", target_os = "hurd")))]
compile_error!("hypercall supports Linux and GNU/Hurd hosts only");

/// The host's page size.
#[must_use]
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as usize } else { 4096 }
}
