//! Threads, the current LWP and clocks.

use std::ffi::{CStr, c_char, c_int, c_void};

use super::rc;
use crate::clock::{self, Clock};
use crate::errno::nb;
use crate::lwp::{self, Lwp, LwpOp};
use crate::sched;
use crate::thread::{self, JoinHandle, StartFn};

/// `int rumpuser_thread_create(void *(*f)(void *), void *arg, const char
/// *name, int mustjoin, int priority, int cpuidx, void **cookie)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_thread_create(
    f: Option<StartFn>,
    arg: *mut c_void,
    name: *const c_char,
    mustjoin: c_int,
    _priority: c_int,
    _cpuidx: c_int,
    cookie: *mut *mut c_void,
) -> c_int {
    let Some(f) = f else { return nb::EINVAL };
    if mustjoin != 0 && cookie.is_null() {
        return nb::EINVAL;
    }
    // SAFETY: a non-null name is NUL-terminated.
    let name = (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) });
    // SAFETY: the kernel's thread function and argument.
    match unsafe { thread::spawn(f, arg, name, mustjoin != 0) } {
        Ok(Some(h)) => {
            // SAFETY: checked non-null above.
            unsafe { *cookie = h.into_cookie() };
            0
        }
        Ok(None) => 0,
        Err(e) => e.0,
    }
}

/// `void rumpuser_thread_exit(void)`.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn rumpuser_thread_exit() -> ! {
    // SAFETY: kernel threads run the kernel's C function directly; no Rust
    // frame with destructors is below this one.
    unsafe { thread::exit_current() }
}

/// `int rumpuser_thread_join(void *cookie)`: waits with the CPU released.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_thread_join(cookie: *mut c_void) -> c_int {
    // SAFETY: `cookie` came from rumpuser_thread_create with mustjoin.
    rc(unsafe { JoinHandle::from_cookie(cookie) }.join())
}

/// `void rumpuser_curlwpop(int op, struct lwp *l)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_curlwpop(op: c_int, l: *mut Lwp) {
    let Some(op) = LwpOp::from_raw(op) else {
        crate::console::write(format!("rumpuser_curlwpop: unknown operation {op}\n").as_bytes());
        crate::process::exit(crate::process::PANIC);
    };
    lwp::apply(op, l);
}

/// `struct lwp *rumpuser_curlwp(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_curlwp() -> *mut Lwp {
    lwp::current()
}

/// `int rumpuser_clock_gettime(int clock, int64_t *sec, long *nsec)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_clock_gettime(
    clk: c_int,
    sec: *mut i64,
    nsec: *mut libc::c_long,
) -> c_int {
    let Some(clk) = Clock::from_raw(clk) else {
        return nb::EINVAL;
    };
    if sec.is_null() || nsec.is_null() {
        return nb::EINVAL;
    }
    match clock::now(clk) {
        Ok((s, ns)) => {
            // SAFETY: valid out-pointers.
            unsafe {
                *sec = s;
                *nsec = ns as libc::c_long;
            }
            0
        }
        Err(e) => e.0,
    }
}

/// `int rumpuser_clock_sleep(int clock, int64_t sec, long nsec)`: sleeps
/// with the CPU released; RELWALL is relative, ABSMONO absolute.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_clock_sleep(clk: c_int, sec: i64, nsec: libc::c_long) -> c_int {
    let Some(clk) = Clock::from_raw(clk) else {
        return nb::EINVAL;
    };
    rc(sched::released(|| clock::sleep(clk, sec, nsec)))
}
