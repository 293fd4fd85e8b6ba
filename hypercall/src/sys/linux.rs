//! Linux host.

use std::ffi::CStr;

/// Names the calling thread (Linux allows 15 bytes; longer names are cut).
pub fn set_current_thread_name(name: &CStr) {
    let bytes = name.to_bytes();
    let cut = &bytes[..bytes.len().min(15)];
    let mut buf = [0u8; 16];
    buf[..cut.len()].copy_from_slice(cut);
    // SAFETY: naming our own thread; `buf` is NUL-terminated.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), buf.as_ptr().cast()) };
}
