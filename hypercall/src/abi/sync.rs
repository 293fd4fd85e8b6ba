//! Mutexes, rwlocks and condition variables. Handles are boxed core
//! objects; the pointer the kernel holds is the object's address, which is
//! also what the kernel compares interlocks against.

use std::ffi::c_int;
use std::time::Duration;

use crate::errno::nb;
use crate::lwp::Lwp;
use crate::sync::{KernelCondvar, KernelMutex, KernelRwLock, RwMode, WaitOutcome};

/// Turns a kernel-held handle back into a reference.
///
/// # Safety
/// `p` must be a live handle from the matching `*_init`.
unsafe fn obj<'a, T>(p: *mut T) -> &'a T {
    // SAFETY: caller's contract.
    unsafe { &*p }
}

fn mode(v: c_int) -> RwMode {
    RwMode::from_raw(v).unwrap_or_else(|| {
        crate::console::write(format!("rumpuser: bad rwlock mode {v}\n").as_bytes());
        crate::process::exit(crate::process::PANIC)
    })
}

/// `void rumpuser_mutex_init(struct rumpuser_mtx **, int flags)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_init(mtxp: *mut *mut KernelMutex, flags: c_int) {
    // SAFETY: `mtxp` is a valid out-pointer.
    unsafe { *mtxp = Box::into_raw(Box::new(KernelMutex::new(flags))) };
}

/// `void rumpuser_mutex_enter(struct rumpuser_mtx *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_enter(m: *mut KernelMutex) {
    // SAFETY: live handle.
    unsafe { obj(m) }.enter();
}

/// `void rumpuser_mutex_enter_nowrap(struct rumpuser_mtx *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_enter_nowrap(m: *mut KernelMutex) {
    // SAFETY: live handle.
    unsafe { obj(m) }.enter_nowrap();
}

/// `int rumpuser_mutex_tryenter(struct rumpuser_mtx *)`: 0 or `EBUSY`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_tryenter(m: *mut KernelMutex) -> c_int {
    // SAFETY: live handle.
    if unsafe { obj(m) }.try_enter() {
        0
    } else {
        nb::EBUSY
    }
}

/// `void rumpuser_mutex_exit(struct rumpuser_mtx *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_exit(m: *mut KernelMutex) {
    // SAFETY: live handle, held by the caller (kernel contract).
    unsafe { obj(m).exit() };
}

/// `void rumpuser_mutex_destroy(struct rumpuser_mtx *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_destroy(m: *mut KernelMutex) {
    // SAFETY: a live handle from rumpuser_mutex_init, not used again.
    drop(unsafe { Box::from_raw(m) });
}

/// `void rumpuser_mutex_owner(struct rumpuser_mtx *, struct lwp **)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_owner(m: *mut KernelMutex, lp: *mut *mut Lwp) {
    // SAFETY: live handle and valid out-pointer.
    unsafe { *lp = obj(m).owner() };
}

/// `int rumpuser_mutex_spin_p(struct rumpuser_mtx *)` (NetBSD ≥ 9).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_mutex_spin_p(m: *mut KernelMutex) -> c_int {
    // SAFETY: live handle.
    c_int::from(unsafe { obj(m) }.is_spin())
}

/// `void rumpuser_rw_init(struct rumpuser_rw **)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_init(rwp: *mut *mut KernelRwLock) {
    // SAFETY: valid out-pointer.
    unsafe { *rwp = Box::into_raw(Box::new(KernelRwLock::new())) };
}

/// `void rumpuser_rw_enter(int enum_rumprwlock, struct rumpuser_rw *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_enter(m: c_int, rw: *mut KernelRwLock) {
    // SAFETY: live handle.
    unsafe { obj(rw) }.enter(mode(m));
}

/// `int rumpuser_rw_tryenter(int enum_rumprwlock, struct rumpuser_rw *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_tryenter(m: c_int, rw: *mut KernelRwLock) -> c_int {
    // SAFETY: live handle.
    if unsafe { obj(rw) }.try_enter(mode(m)) {
        0
    } else {
        nb::EBUSY
    }
}

/// `int rumpuser_rw_tryupgrade(struct rumpuser_rw *)`: 0 or `EBUSY`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_tryupgrade(rw: *mut KernelRwLock) -> c_int {
    // SAFETY: live handle.
    if unsafe { obj(rw) }.try_upgrade() {
        0
    } else {
        nb::EBUSY
    }
}

/// `void rumpuser_rw_downgrade(struct rumpuser_rw *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_downgrade(rw: *mut KernelRwLock) {
    // SAFETY: live handle.
    unsafe { obj(rw) }.downgrade();
}

/// `void rumpuser_rw_exit(struct rumpuser_rw *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_exit(rw: *mut KernelRwLock) {
    // SAFETY: live handle.
    unsafe { obj(rw) }.exit();
}

/// `void rumpuser_rw_destroy(struct rumpuser_rw *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_destroy(rw: *mut KernelRwLock) {
    // SAFETY: a live handle from rumpuser_rw_init, not used again.
    drop(unsafe { Box::from_raw(rw) });
}

/// `void rumpuser_rw_held(int enum_rumprwlock, struct rumpuser_rw *, int *heldp)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_rw_held(m: c_int, rw: *mut KernelRwLock, heldp: *mut c_int) {
    // SAFETY: live handle and valid out-pointer.
    unsafe { *heldp = c_int::from(obj(rw).held(mode(m))) };
}

/// `void rumpuser_cv_init(struct rumpuser_cv **)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_init(cvp: *mut *mut KernelCondvar) {
    // SAFETY: valid out-pointer.
    unsafe { *cvp = Box::into_raw(Box::new(KernelCondvar::new())) };
}

/// `void rumpuser_cv_destroy(struct rumpuser_cv *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_destroy(cv: *mut KernelCondvar) {
    // SAFETY: a live handle from rumpuser_cv_init, not used again.
    drop(unsafe { Box::from_raw(cv) });
}

/// `void rumpuser_cv_wait(struct rumpuser_cv *, struct rumpuser_mtx *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_wait(cv: *mut KernelCondvar, m: *mut KernelMutex) {
    // SAFETY: live handles; the kernel holds `m` or passes its scheduler
    // interlock (the wait's contract).
    unsafe { obj(cv).wait(obj(m)) };
}

/// `void rumpuser_cv_wait_nowrap(struct rumpuser_cv *, struct rumpuser_mtx *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_wait_nowrap(cv: *mut KernelCondvar, m: *mut KernelMutex) {
    // SAFETY: live handles; the caller holds `m`.
    unsafe { obj(cv).wait_nowrap(obj(m)) };
}

/// `int rumpuser_cv_timedwait(struct rumpuser_cv *, struct rumpuser_mtx *,
/// int64_t sec, int64_t nsec)`: relative timeout; `ETIMEDOUT` when it
/// passed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_timedwait(
    cv: *mut KernelCondvar,
    m: *mut KernelMutex,
    sec: i64,
    nsec: i64,
) -> c_int {
    let timeout = Duration::from_secs(sec.max(0) as u64)
        .saturating_add(Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64));
    // SAFETY: live handles; the kernel holds `m`.
    match unsafe { obj(cv).timed_wait(obj(m), timeout) } {
        WaitOutcome::Woken => 0,
        WaitOutcome::TimedOut => nb::ETIMEDOUT,
    }
}

/// `void rumpuser_cv_signal(struct rumpuser_cv *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_signal(cv: *mut KernelCondvar) {
    // SAFETY: live handle.
    unsafe { obj(cv) }.signal();
}

/// `void rumpuser_cv_broadcast(struct rumpuser_cv *)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_broadcast(cv: *mut KernelCondvar) {
    // SAFETY: live handle.
    unsafe { obj(cv) }.broadcast();
}

/// `void rumpuser_cv_has_waiters(struct rumpuser_cv *, int *waitersp)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_cv_has_waiters(cv: *mut KernelCondvar, waitersp: *mut c_int) {
    // SAFETY: live handle and valid out-pointer.
    unsafe { *waitersp = c_int::try_from(obj(cv).waiters()).unwrap_or(c_int::MAX) };
}
