//! Linux host.

use std::ffi::CStr;

use crate::errno::{HyResult, NetbsdErrno, nb};
use crate::file::DirectAlignment;

/// Names the calling thread (Linux allows 15 bytes; longer names are cut).
pub fn set_current_thread_name(name: &CStr) {
    let bytes = name.to_bytes();
    let cut = &bytes[..bytes.len().min(15)];
    let mut buf = [0u8; 16];
    buf[..cut.len()].copy_from_slice(cut);
    // SAFETY: naming our own thread; `buf` is NUL-terminated.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), buf.as_ptr().cast()) };
}

/// The open flag for direct I/O.
pub const O_DIRECT: Option<i32> = Some(libc::O_DIRECT);

/// Direct-I/O alignments of `fd` from `statx(STATX_DIOALIGN)` (Linux 6.1);
/// a kernel or file system that does not report them answers `EOPNOTSUPP`.
pub fn direct_alignment(fd: std::os::fd::RawFd) -> HyResult<DirectAlignment> {
    // SAFETY: an all-zero `statx` is a valid value to be overwritten.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a descriptor number (a bad one is EBADF), the empty
    // path is NUL-terminated and `st` is a valid out-pointer.
    let r = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &raw mut st,
        )
    };
    if r < 0 {
        return Err(NetbsdErrno::last_os_error());
    }
    if st.stx_mask & libc::STATX_DIOALIGN == 0 || st.stx_dio_offset_align == 0 {
        return Err(NetbsdErrno(nb::EOPNOTSUPP));
    }
    Ok(DirectAlignment {
        memory: st.stx_dio_mem_align,
        offset: st.stx_dio_offset_align,
    })
}
