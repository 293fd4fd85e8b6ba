//! The C memory functions the compiler calls (there is no libc): string
//! instructions, so that no loop here can be turned back into a call to
//! itself.

use core::arch::asm;

/// `memcpy`.
///
/// # Safety
/// As C's: valid, non-overlapping ranges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's ranges; `rep movsb` copies forward.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// `memmove`.
///
/// # Safety
/// As C's: valid ranges, which may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: a forward copy never overwrites bytes still to be read.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: copy backward from the last byte (direction flag set, then
    // cleared as the ABI requires).
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             options(nostack));
    }
    dst
}

/// `memset`.
///
/// # Safety
/// As C's: a valid range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's range.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// `memcmp`.
///
/// # Safety
/// As C's: valid ranges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: within the caller's ranges; volatile keeps this a loop.
        let (l, r) = unsafe { (left.add(i).read_volatile(), right.add(i).read_volatile()) };
        if l != r {
            return i32::from(l) - i32::from(r);
        }
    }
    0
}

/// `bcmp`.
///
/// # Safety
/// As C's: valid ranges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's ranges.
    unsafe { memcmp(a, b, n) }
}

/// The unwinder's personality routine: never called (panics abort), but
/// the precompiled `core` refers to it.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// The unwinder's resume: the precompiled `alloc` has cleanup paths that
/// call it; with `panic = "abort"` no unwind ever starts.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::halt()
}

/// `strlen`.
///
/// # Safety
/// As C's: a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: up to the caller's terminating NUL; volatile keeps this a loop.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}
