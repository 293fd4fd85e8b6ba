//! Host threads for the kernel (`rumpuser_thread_create` and friends).
//!
//! A kernel thread starts in a small trampoline that names the thread and
//! then calls the kernel's function. The trampoline holds nothing that needs
//! dropping when it makes that call, so `rumpuser_thread_exit` can end the
//! thread with `pthread_exit` (a forced unwind) through it safely.

use std::ffi::{CStr, CString, c_void};
use std::time::Duration;

use crate::errno::{HyResult, NetbsdErrno};
use crate::sched;
use crate::sys;

/// The start routine of a kernel thread.
pub type StartFn = extern "C" fn(*mut c_void) -> *mut c_void;

/// A joinable host thread.
#[derive(Debug)]
pub struct JoinHandle(libc::pthread_t);

impl JoinHandle {
    /// The opaque cookie handed to C (`void *`).
    #[must_use]
    pub fn into_cookie(self) -> *mut c_void {
        self.0 as *mut c_void
    }

    /// Rebuilds a handle from [`JoinHandle::into_cookie`].
    ///
    /// # Safety
    /// `cookie` must come from `into_cookie` and be used once.
    #[must_use]
    pub unsafe fn from_cookie(cookie: *mut c_void) -> Self {
        Self(cookie as libc::pthread_t)
    }

    /// Waits for the thread to end, with the CPU released while waiting.
    pub fn join(self) -> HyResult<()> {
        let rc = sched::released(|| {
            // SAFETY: `self.0` is a joinable thread not joined before (the
            // handle is consumed).
            unsafe { libc::pthread_join(self.0, std::ptr::null_mut()) }
        });
        if rc == 0 {
            Ok(())
        } else {
            Err(NetbsdErrno::from_host(rc))
        }
    }
}

/// Starts `f(arg)` on a new host thread named `name` (truncated as the
/// host requires). Priority and CPU binding are advisory in rumpuser(3) and
/// are not applied. `EAGAIN` from the host is retried ten times.
///
/// # Safety
/// `f` must be safe to call with `arg` on another thread, and must end with
/// `pthread_exit` or by returning. The kernel's thread functions qualify.
pub unsafe fn spawn(
    f: StartFn,
    arg: *mut c_void,
    name: Option<&CStr>,
    joinable: bool,
) -> HyResult<Option<JoinHandle>> {
    let start = Box::into_raw(Box::new(Start {
        f,
        arg,
        name: name.map(CStr::to_owned),
    }));
    let mut tid: libc::pthread_t = 0;
    let mut rc = libc::EAGAIN;
    for attempt in 0..10 {
        // SAFETY: `tid` is a valid out-pointer; default attributes; the
        // trampoline takes ownership of `start` once the thread runs.
        rc = unsafe {
            pthread_create_unwind(&raw mut tid, std::ptr::null(), trampoline, start.cast())
        };
        if rc != libc::EAGAIN {
            break;
        }
        std::thread::sleep(Duration::from_millis(1 << attempt.min(6)));
    }
    if rc != 0 {
        // SAFETY: no thread was created, so `start` is still ours.
        drop(unsafe { Box::from_raw(start) });
        return Err(NetbsdErrno::from_host(rc));
    }
    if joinable {
        Ok(Some(JoinHandle(tid)))
    } else {
        // SAFETY: `tid` is a live thread nobody joins.
        unsafe { libc::pthread_detach(tid) };
        Ok(None)
    }
}

/// What the trampoline needs to start a kernel thread.
struct Start {
    f: StartFn,
    arg: *mut c_void,
    name: Option<CString>,
}

/// Names the new thread (before any kernel code runs on it), then becomes
/// the kernel's thread function.
extern "C-unwind" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Start` that `spawn` leaked for this thread.
    let start = unsafe { Box::from_raw(p.cast::<Start>()) };
    let Start { f, arg, name } = *start;
    if let Some(name) = name {
        sys::set_current_thread_name(&name);
    }
    // Nothing left to drop in this frame: a forced unwind may pass it.
    f(arg)
}

unsafe extern "C-unwind" {
    #[link_name = "pthread_exit"]
    fn pthread_exit_unwind(retval: *mut c_void) -> !;
    #[link_name = "pthread_create"]
    fn pthread_create_unwind(
        thread: *mut libc::pthread_t,
        attr: *const libc::pthread_attr_t,
        start: extern "C-unwind" fn(*mut c_void) -> *mut c_void,
        arg: *mut c_void,
    ) -> libc::c_int;
}

/// Ends the calling thread (`rumpuser_thread_exit`).
///
/// # Safety
/// No Rust frame with destructors may be live below the caller on this
/// thread (true for kernel threads started by [`spawn`]).
pub unsafe fn exit_current() -> ! {
    // SAFETY: glibc's pthread_exit is a forced unwind; the caller guarantees
    // nothing on this stack needs dropping.
    unsafe { pthread_exit_unwind(std::ptr::null_mut()) }
}
