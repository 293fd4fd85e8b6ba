//! The `extern "C"` skin: every function of the rumpuser(3) interface,
//! version 17, with the exact C prototype, each a thin conversion onto the
//! typed core. `int` results are 0 or a NetBSD errno.
//!
//! Every `unsafe` block here relies on the rumpuser(3) calling contract:
//! pointers the kernel passes are valid for the documented use, and the
//! opaque handles are ones this skin handed out.

mod component;
mod file;
mod init;
mod mem;
pub mod pci;
mod sp;
mod sync;
mod thread;

use crate::errno::HyResult;

/// 0 or the NetBSD errno.
fn rc(r: HyResult<()>) -> libc::c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.0,
    }
}

/// Stores a successful result through a kernel out-pointer; 0 or the
/// NetBSD errno.
///
/// # Safety
/// `out` must be valid for a write of `T` (checked non-null by callers).
unsafe fn put<T>(out: *mut T, r: HyResult<T>) -> libc::c_int {
    match r {
        Ok(v) => {
            // SAFETY: caller's contract.
            unsafe { out.write(v) };
            0
        }
        Err(e) => e.0,
    }
}

/// Every function the skin exports, for checks against a linked binary.
pub const EXPORTED: &[&str] = &[
    "rumpcomp_pci_map",
    "rumpcomp_pci_confread",
    "rumpcomp_pci_confwrite",
    "rumpcomp_pci_irq_map",
    "rumpcomp_pci_irq_establish",
    "rumpcomp_pci_dmalloc",
    "rumpcomp_pci_dmafree",
    "rumpcomp_pci_dmamem_map",
    "rumpcomp_pci_virt_to_mach",
    "rumpcomp_pci_iospace_init",
    "__wrap_rumpns_bus_space_unmap",
    "rumpuser_init",
    "rumpuser_malloc",
    "rumpuser_free",
    "rumpuser_anonmmap",
    "rumpuser_unmap",
    "rumpuser_open",
    "rumpuser_close",
    "rumpuser_getfileinfo",
    "rumpuser_bio",
    "rumpuser_iovread",
    "rumpuser_iovwrite",
    "rumpuser_syncfd",
    "rumpuser_clock_gettime",
    "rumpuser_clock_sleep",
    "rumpuser_getparam",
    "rumpuser_putchar",
    "rumpuser_dprintf",
    "rumpuser_kill",
    "rumpuser_exit",
    "rumpuser_seterrno",
    "rumpuser_getrandom",
    "rumpuser_thread_create",
    "rumpuser_thread_exit",
    "rumpuser_thread_join",
    "rumpuser_curlwpop",
    "rumpuser_curlwp",
    "rumpuser_mutex_init",
    "rumpuser_mutex_enter",
    "rumpuser_mutex_enter_nowrap",
    "rumpuser_mutex_tryenter",
    "rumpuser_mutex_exit",
    "rumpuser_mutex_destroy",
    "rumpuser_mutex_owner",
    "rumpuser_mutex_spin_p",
    "rumpuser_rw_init",
    "rumpuser_rw_enter",
    "rumpuser_rw_tryenter",
    "rumpuser_rw_tryupgrade",
    "rumpuser_rw_downgrade",
    "rumpuser_rw_exit",
    "rumpuser_rw_destroy",
    "rumpuser_rw_held",
    "rumpuser_cv_init",
    "rumpuser_cv_destroy",
    "rumpuser_cv_wait",
    "rumpuser_cv_wait_nowrap",
    "rumpuser_cv_timedwait",
    "rumpuser_cv_signal",
    "rumpuser_cv_broadcast",
    "rumpuser_cv_has_waiters",
    "rumpuser_dl_bootstrap",
    "rumpuser_daemonize_begin",
    "rumpuser_daemonize_done",
    "rumpuser_sp_init",
    "rumpuser_sp_copyin",
    "rumpuser_sp_copyinstr",
    "rumpuser_sp_copyout",
    "rumpuser_sp_copyoutstr",
    "rumpuser_sp_anonmmap",
    "rumpuser_sp_raise",
    "rumpuser_sp_fini",
    "rumpuser_component_schedule",
    "rumpuser_component_unschedule",
    "rumpuser_component_kthread",
    "rumpuser_component_kthread_release",
    "rumpuser_component_errtrans",
    "rumpuser_component_curlwp",
    "rumpuser_component_switchlwp",
];
