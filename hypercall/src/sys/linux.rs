//! Linux host.

use std::ffi::CStr;

/// Names a thread (the kernel allows 15 bytes; longer names are cut).
pub fn set_thread_name(tid: libc::pthread_t, name: &CStr) {
    let bytes = name.to_bytes();
    let cut = &bytes[..bytes.len().min(15)];
    let mut buf = [0u8; 16];
    buf[..cut.len()].copy_from_slice(cut);
    // SAFETY: `tid` is a live thread; `buf` is NUL-terminated.
    unsafe { libc::pthread_setname_np(tid, buf.as_ptr().cast()) };
}
