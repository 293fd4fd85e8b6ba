//! `rumpuser_component.h`: helpers for host-side component code (PCI
//! hypercalls, interrupt and I/O threads) that calls into the kernel.

use std::ffi::{c_int, c_void};
use std::ptr;

use crate::errno::NetbsdErrno;
use crate::lwp::Lwp;
use crate::sched;

/// `void *rumpuser_component_unschedule(void)`: releases the CPU; the
/// cookie carries the giant-lock count to restore.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_component_unschedule() -> *mut c_void {
    let n = sched::kernel().map_or(0, |k| k.backend_unschedule(ptr::null_mut()));
    n as isize as *mut c_void
}

/// `void rumpuser_component_schedule(void *cookie)`: takes a CPU and the
/// giant-lock levels in `cookie` (null: none).
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_component_schedule(cookie: *mut c_void) {
    if let Some(k) = sched::kernel() {
        k.backend_schedule(cookie as isize as c_int, ptr::null_mut());
    }
}

/// `void rumpuser_component_kthread(void)`: binds the calling host thread
/// to a new LWP of the kernel process.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_component_kthread() {
    if let Err(e) = sched::bind_host_thread() {
        crate::console::write(
            format!("rumpuser: cannot bind a host thread to an LWP: error {e}\n").as_bytes(),
        );
        crate::process::exit(crate::process::PANIC);
    }
}

/// `void rumpuser_component_kthread_release(void)`: releases the LWP
/// bound by `rumpuser_component_kthread`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_component_kthread_release() {
    if let Some(k) = sched::kernel() {
        k.schedule();
        k.release_lwp();
        k.unschedule();
    }
}

/// `struct lwp *rumpuser_component_curlwp(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_component_curlwp() -> *mut Lwp {
    sched::kernel().map_or(ptr::null_mut(), |k| {
        k.schedule();
        let l = k.curlwp();
        k.unschedule();
        l
    })
}

/// `void rumpuser_component_switchlwp(struct lwp *l)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_component_switchlwp(l: *mut Lwp) {
    if let Some(k) = sched::kernel() {
        k.schedule();
        k.switch_lwp(l);
        k.unschedule();
    }
}

/// `int rumpuser_component_errtrans(int hosterr)`: host errno to NetBSD.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_component_errtrans(hosterr: c_int) -> c_int {
    NetbsdErrno::from_host(hosterr).0
}
