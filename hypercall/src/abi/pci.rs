//! The rumpcomp PCI hypercalls (`sys/rump/dev/lib/libpci/pci_user.h`, with
//! `RUMPCOMP_USERFEATURE_PCI_IOSPACE` and `_DMAFREE`) over
//! [`crate::pci::rump`].

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::ptr;

use crate::errno::nb;
use crate::pci::rump::{self, Handler};

/// `void *rumpcomp_pci_map(unsigned long addr, unsigned long len)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpcomp_pci_map(addr: c_ulong, len: c_ulong) -> *mut c_void {
    let Ok(len) = usize::try_from(len) else {
        return ptr::null_mut();
    };
    rump::map(addr, len).map_or(ptr::null_mut(), <*mut u8>::cast)
}

/// `void bus_space_unmap(bus_space_tag_t, bus_space_handle_t, bus_size_t)`
/// in place of the rump PCI glue's own, which panics ("unimplemented") for
/// memory space and which drivers call when they map a BAR to look at it
/// (ahcisata's match, detach paths): the translators link with
/// `--wrap=rumpns_bus_space_unmap` (`netbsd_src::binary_link_args`), so
/// every driver's call lands here. A BAR's mapping is made once and kept for
/// every later `rumpcomp_pci_map` of it, so there is nothing to undo.
#[unsafe(no_mangle)]
pub extern "C" fn __wrap_rumpns_bus_space_unmap(_tag: c_ulong, _handle: c_ulong, _size: c_ulong) {}

/// `int rumpcomp_pci_confread(unsigned bus, unsigned dev, unsigned fun,
/// int reg, unsigned int *valp)`: an absent function reads all ones.
///
/// # Safety
/// `valp` is null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpcomp_pci_confread(
    bus: c_uint,
    dev: c_uint,
    fun: c_uint,
    reg: c_int,
    valp: *mut c_uint,
) -> c_int {
    let (v, r) = match u32::try_from(reg).map(|reg| rump::conf_read(bus, dev, fun, reg)) {
        Ok(Ok(v)) => (v, 0),
        Ok(Err(e)) => (u32::MAX, e.0),
        Err(_) => (u32::MAX, nb::EINVAL),
    };
    if !valp.is_null() {
        // SAFETY: non-null and valid for a write (the caller's contract).
        unsafe { valp.write(v) };
    }
    r
}

/// `int rumpcomp_pci_confwrite(unsigned bus, unsigned dev, unsigned fun,
/// int reg, unsigned int val)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpcomp_pci_confwrite(
    bus: c_uint,
    dev: c_uint,
    fun: c_uint,
    reg: c_int,
    val: c_uint,
) -> c_int {
    match u32::try_from(reg) {
        Ok(reg) => rump::conf_write(bus, dev, fun, reg, val).map_or_else(|e| e.0, |()| 0),
        Err(_) => nb::EINVAL,
    }
}

/// `int rumpcomp_pci_irq_map(unsigned bus, unsigned dev, unsigned fun,
/// int intrline, unsigned cookie)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpcomp_pci_irq_map(
    bus: c_uint,
    dev: c_uint,
    fun: c_uint,
    _intrline: c_int,
    cookie: c_uint,
) -> c_int {
    rump::irq_map(bus, dev, fun, cookie).map_or_else(|e| e.0, |()| 0)
}

/// `void *rumpcomp_pci_irq_establish(unsigned cookie, int (*handler)(void *),
/// void *arg)`: non-null on success.
#[unsafe(no_mangle)]
pub extern "C" fn rumpcomp_pci_irq_establish(
    cookie: c_uint,
    handler: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    arg: *mut c_void,
) -> *mut c_void {
    let Some(func) = handler else {
        return ptr::null_mut();
    };
    // Starting the thread and registering the line wait on the host: not
    // while holding a CPU other threads may need.
    let r = crate::sched::released(|| rump::irq_establish(cookie, Handler { func, arg }));
    match r {
        // Any non-null cookie; the kernel never dereferences it.
        Ok(()) => (cookie as usize | 1) as *mut c_void,
        Err(e) => {
            log::error!("rumpcomp_pci_irq_establish({cookie}): {e}");
            ptr::null_mut()
        }
    }
}

/// `int rumpcomp_pci_dmalloc(size_t size, size_t align, unsigned long *pap,
/// unsigned long *vap)`.
///
/// # Safety
/// `pap` and `vap` are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpcomp_pci_dmalloc(
    size: usize,
    align: usize,
    pap: *mut c_ulong,
    vap: *mut c_ulong,
) -> c_int {
    if pap.is_null() || vap.is_null() {
        return nb::EINVAL;
    }
    match rump::dmalloc(size, align) {
        Ok((bus, va)) => {
            // SAFETY: both valid for writes (checked non-null; the caller's
            // contract).
            unsafe {
                pap.write(bus);
                vap.write(va as c_ulong);
            }
            0
        }
        Err(e) => e.0,
    }
}

/// `void rumpcomp_pci_dmafree(unsigned long va, size_t size)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpcomp_pci_dmafree(va: c_ulong, _size: usize) {
    if let Ok(va) = usize::try_from(va) {
        rump::dmafree(va);
    }
}

/// `struct rumpcomp_pci_dmaseg`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DmaSeg {
    /// `ds_pa`.
    pub pa: c_ulong,
    /// `ds_len`.
    pub len: c_ulong,
    /// `ds_vacookie`: the `vap` of `dmalloc`.
    pub vacookie: c_ulong,
}

/// `int rumpcomp_pci_dmamem_map(struct rumpcomp_pci_dmaseg *, size_t nseg,
/// size_t totlen, void **vap)`: one segment (as every host supports).
///
/// # Safety
/// `segs` points to `nseg` segments; `vap` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpcomp_pci_dmamem_map(
    segs: *const DmaSeg,
    nseg: usize,
    _totlen: usize,
    vap: *mut *mut c_void,
) -> c_int {
    if segs.is_null() || vap.is_null() {
        return nb::EINVAL;
    }
    if nseg != 1 {
        return nb::EOPNOTSUPP;
    }
    // SAFETY: one readable segment and a writable `vap` (the caller's
    // contract).
    unsafe { vap.write((*segs).vacookie as *mut c_void) };
    0
}

/// `unsigned long rumpcomp_pci_virt_to_mach(void *va)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpcomp_pci_virt_to_mach(va: *mut c_void) -> c_ulong {
    rump::virt_to_mach(va as usize)
}

/// `int rumpcomp_pci_iospace_init(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpcomp_pci_iospace_init() -> c_int {
    rump::iospace_init().map_or_else(|e| e.0, |()| 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bus_reads_all_ones_and_bad_calls_are_errors() {
        rump::attach(&[]).unwrap();
        let mut v = 0;
        // SAFETY: a valid out-pointer.
        let r = unsafe { rumpcomp_pci_confread(0, 0, 0, 0, &raw mut v) };
        assert_ne!(r, 0);
        assert_eq!(v, u32::MAX);
        // SAFETY: as above.
        let r = unsafe { rumpcomp_pci_confread(1, 0, 0, 0, &raw mut v) };
        assert_eq!((r, v), (nb::ENXIO, u32::MAX));
        // SAFETY: as above.
        let r = unsafe { rumpcomp_pci_confread(0, 40, 0, -4, &raw mut v) };
        assert_eq!((r, v), (nb::EINVAL, u32::MAX));
        assert_ne!(rumpcomp_pci_confwrite(0, 3, 0, 4, 6), 0);
        assert_eq!(rumpcomp_pci_irq_map(0, 0, 0, 11, 1), nb::ENXIO);
        assert!(rumpcomp_pci_irq_establish(1, None, ptr::null_mut()).is_null());
        assert!(rumpcomp_pci_map(0xfebf_0000, 4096).is_null());
        let (mut pa, mut va) = (0, 0);
        // SAFETY: valid out-pointers.
        let r = unsafe { rumpcomp_pci_dmalloc(4096, 4096, &raw mut pa, &raw mut va) };
        assert_eq!(r, nb::ENXIO, "DMA memory needs an open device");
        let segs = [DmaSeg {
            pa: 0,
            len: 4096,
            vacookie: 0x1000,
        }; 2];
        let mut out = ptr::null_mut();
        // SAFETY: two readable segments, a writable out-pointer.
        let r = unsafe { rumpcomp_pci_dmamem_map(segs.as_ptr(), 2, 8192, &raw mut out) };
        assert_eq!(r, nb::EOPNOTSUPP);
        // SAFETY: as above, one segment.
        let r = unsafe { rumpcomp_pci_dmamem_map(segs.as_ptr(), 1, 4096, &raw mut out) };
        assert_eq!((r, out as usize), (0, 0x1000));
        rumpcomp_pci_dmafree(0x1234_5000, 4096);
    }
}
