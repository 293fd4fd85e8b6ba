//! Memory hypercalls.

use std::ffi::{c_int, c_void};

use crate::errno::nb;
use crate::mem;

/// `int rumpuser_malloc(size_t len, int alignment, void **memp)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_malloc(
    len: usize,
    alignment: c_int,
    memp: *mut *mut c_void,
) -> c_int {
    if memp.is_null() || alignment < 0 {
        return nb::EINVAL;
    }
    // SAFETY: `memp` is a valid out-pointer (checked non-null).
    unsafe { super::put(memp, mem::alloc(len, alignment as usize)) }
}

/// `void rumpuser_free(void *mem, size_t len)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_free(p: *mut c_void, len: usize) {
    // SAFETY: `p` came from rumpuser_malloc of `len` bytes.
    unsafe { mem::free(p, len) };
}

/// `int rumpuser_anonmmap(void *prefaddr, size_t size, int alignbit, int exec, void **memp)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_anonmmap(
    prefaddr: *mut c_void,
    size: usize,
    alignbit: c_int,
    exec: c_int,
    memp: *mut *mut c_void,
) -> c_int {
    if memp.is_null() || alignbit < 0 {
        return nb::EINVAL;
    }
    // SAFETY: `memp` is a valid out-pointer (checked non-null).
    unsafe {
        super::put(
            memp,
            mem::anon_map(prefaddr as usize, size, alignbit as u32, exec != 0),
        )
    }
}

/// `void rumpuser_unmap(void *addr, size_t len)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_unmap(addr: *mut c_void, len: usize) {
    // SAFETY: the range came from rumpuser_anonmmap.
    if let Err(e) = unsafe { mem::unmap(addr, len) } {
        crate::console::write(format!("rumpuser_unmap({addr:p}, {len}): {e}\n").as_bytes());
        crate::process::exit(crate::process::PANIC);
    }
}
