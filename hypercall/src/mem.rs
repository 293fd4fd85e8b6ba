//! Kernel memory (`rumpuser_malloc`, `rumpuser_anonmmap` and their frees).

use std::ffi::c_void;
use std::ptr;

use crate::errno::{HyResult, NetbsdErrno, nb};

/// Allocates `len` bytes aligned to `align` (0: pointer alignment).
/// Returns `ENOMEM` when the host has no memory, `EINVAL` for an alignment
/// that is not a power of two.
pub fn alloc(len: usize, align: usize) -> HyResult<*mut c_void> {
    if align != 0 && !align.is_power_of_two() {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    let align = align.max(size_of::<*mut c_void>());
    let mut p = ptr::null_mut();
    // SAFETY: `p` is a valid out-pointer; `align` is a power of two and a
    // multiple of the pointer size.
    match unsafe { libc::posix_memalign(&raw mut p, align, len.max(1)) } {
        0 => Ok(p),
        e => Err(NetbsdErrno::from_host(e)),
    }
}

/// Frees memory from [`alloc`].
///
/// # Safety
/// `p` must come from [`alloc`] and not be used afterwards.
pub unsafe fn free(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { libc::free(p) };
}

/// Maps `size` bytes of anonymous private memory, read-write (and
/// executable if `exec`), aligned to `1 << alignbit`, near `hint`.
pub fn anon_map(hint: usize, size: usize, alignbit: u32, exec: bool) -> HyResult<*mut c_void> {
    if size == 0 || alignbit >= usize::BITS {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    let align = 1usize << alignbit;
    let prot = libc::PROT_READ | libc::PROT_WRITE | if exec { libc::PROT_EXEC } else { 0 };
    let page = crate::sys::page_size();
    let extra = if align > page { align } else { 0 };
    let total = size.checked_add(extra).ok_or(NetbsdErrno(nb::ENOMEM))?;
    // SAFETY: an anonymous mapping touches no existing memory; `hint` is
    // only a hint (no MAP_FIXED).
    let p = unsafe {
        libc::mmap(
            hint as *mut c_void,
            total,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANON,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(NetbsdErrno::last_os_error());
    }
    if extra == 0 {
        return Ok(p);
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(align);
    let head = aligned - start;
    let tail = extra - head;
    // SAFETY: both ranges lie inside the mapping made above and are not
    // handed out.
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut c_void, tail);
        }
    }
    Ok(aligned as *mut c_void)
}

/// Unmaps memory from [`anon_map`].
///
/// # Safety
/// `[p, p+len)` must be a mapping from [`anon_map`] not used afterwards.
pub unsafe fn unmap(p: *mut c_void, len: usize) -> HyResult<()> {
    // SAFETY: the caller's contract.
    if unsafe { libc::munmap(p, len) } == 0 {
        Ok(())
    } else {
        Err(NetbsdErrno::last_os_error())
    }
}
