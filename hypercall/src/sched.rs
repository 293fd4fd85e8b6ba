//! The rump kernel's upcalls and the virtual-CPU protocol.
//!
//! A thread running kernel code holds one of the kernel's virtual CPUs.
//! Before a hypercall blocks on a host event it gives the CPU back with
//! `hyp_backend_unschedule` and takes one again afterwards with
//! `hyp_backend_schedule` ([`released`]). Host threads the kernel did not
//! create bind themselves to a kernel LWP once ([`bind_host_thread`]) and
//! then bracket each entry into the kernel with [`Kernel::enter`].
//!
//! When no kernel has called `rumpuser_init` (a native back end using the
//! typed core directly), every bracket here is empty.

use std::ffi::{c_char, c_int, c_long, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::lwp::Lwp;

/// `struct rumpuser_hyperup`: the upcalls a rump kernel hands to
/// `rumpuser_init` (13 function pointers and 8 reserved slots, 168 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Hyperup {
    /// `rump_schedule`: enter the kernel from a host thread.
    pub schedule: Option<unsafe extern "C" fn()>,
    /// `rump_unschedule`: leave the kernel.
    pub unschedule: Option<unsafe extern "C" fn()>,
    /// `rump_user_unschedule(nlocks, &nlocks_out, interlock)`.
    pub backend_unschedule: Option<unsafe extern "C" fn(c_int, *mut c_int, *mut c_void)>,
    /// `rump_user_schedule(nlocks, interlock)`.
    pub backend_schedule: Option<unsafe extern "C" fn(c_int, *mut c_void)>,
    /// `rump_lwproc_switch`.
    pub lwproc_switch: Option<unsafe extern "C" fn(*mut Lwp)>,
    /// `rump_lwproc_releaselwp`.
    pub lwproc_release: Option<unsafe extern "C" fn()>,
    /// Syscall proxy: fork a process for a remote client.
    pub lwproc_rfork: Option<unsafe extern "C" fn(*mut c_void, c_int, *const c_char) -> c_int>,
    /// `rump_lwproc_newlwp(pid)`.
    pub lwproc_newlwp: Option<unsafe extern "C" fn(i32) -> c_int>,
    /// `rump_lwproc_curlwp`.
    pub lwproc_curlwp: Option<unsafe extern "C" fn() -> *mut Lwp>,
    /// Syscall proxy: run a system call.
    pub syscall: Option<unsafe extern "C" fn(c_int, *mut c_void, *mut c_long) -> c_int>,
    /// Syscall proxy: the client's other LWPs exit.
    pub lwpexit: Option<unsafe extern "C" fn()>,
    /// Syscall proxy: the client called exec.
    pub execnotify: Option<unsafe extern "C" fn(*const c_char)>,
    /// Syscall proxy: pid of the current process.
    pub getpid: Option<unsafe extern "C" fn() -> i32>,
    /// Reserved.
    pub extra: [*mut c_void; 8],
}

const _: () = assert!(size_of::<Hyperup>() == 168);

static KERNEL: AtomicPtr<Hyperup> = AtomicPtr::new(ptr::null_mut());

/// Installs the upcalls of the kernel this process hosts (a copy is kept
/// for the life of the process; a later call replaces it).
///
/// # Safety
/// Every non-null function pointer in `hyp` must follow the rumpuser(3)
/// upcall contract for the rest of the process's life.
pub unsafe fn install(hyp: &Hyperup) {
    let leaked = Box::into_raw(Box::new(*hyp));
    KERNEL.store(leaked, Ordering::Release);
}

/// The installed kernel, if `rumpuser_init` has run.
#[must_use]
pub fn kernel() -> Option<Kernel> {
    let p = KERNEL.load(Ordering::Acquire);
    // SAFETY: `p` is null or was leaked by `install` and is never freed.
    unsafe { p.as_ref() }.map(|hyp| Kernel { hyp })
}

/// Handle on the upcalls of the hosted kernel.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    hyp: &'static Hyperup,
}

impl Kernel {
    /// `hyp_backend_unschedule(0, &n, interlock)`: releases the CPU and all
    /// giant-lock levels; returns how many levels were released.
    #[must_use]
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the interlock is opaque here; only the kernel compares it"
    )]
    pub fn backend_unschedule(self, interlock: *mut c_void) -> c_int {
        let mut n = 0;
        if let Some(f) = self.hyp.backend_unschedule {
            // SAFETY: `install`'s contract makes `f` a valid upcall; `n` is a
            // live local the kernel writes the lock count into.
            unsafe { f(0, &raw mut n, interlock) };
        }
        n
    }

    /// `hyp_backend_schedule(nlocks, interlock)`: takes a CPU again and the
    /// giant-lock levels released before.
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the interlock is opaque here; only the kernel compares it"
    )]
    pub fn backend_schedule(self, nlocks: c_int, interlock: *mut c_void) {
        if let Some(f) = self.hyp.backend_schedule {
            // SAFETY: `install`'s contract makes `f` a valid upcall.
            unsafe { f(nlocks, interlock) };
        }
    }

    /// `hyp_schedule()`: heavy kernel entry of a host thread.
    pub fn schedule(self) {
        if let Some(f) = self.hyp.schedule {
            // SAFETY: `install`'s contract makes `f` a valid upcall.
            unsafe { f() };
        }
    }

    /// `hyp_unschedule()`: heavy kernel exit.
    pub fn unschedule(self) {
        if let Some(f) = self.hyp.unschedule {
            // SAFETY: `install`'s contract makes `f` a valid upcall.
            unsafe { f() };
        }
    }

    /// `hyp_lwproc_newlwp(pid)`; the caller must hold a CPU.
    pub fn newlwp(self, pid: i32) -> Result<(), c_int> {
        match self.hyp.lwproc_newlwp {
            // SAFETY: `install`'s contract makes `f` a valid upcall.
            Some(f) => match unsafe { f(pid) } {
                0 => Ok(()),
                e => Err(e),
            },
            None => Ok(()),
        }
    }

    /// `hyp_lwproc_curlwp()`; the caller must hold a CPU.
    #[must_use]
    pub fn curlwp(self) -> *mut Lwp {
        match self.hyp.lwproc_curlwp {
            // SAFETY: `install`'s contract makes `f` a valid upcall.
            Some(f) => unsafe { f() },
            None => ptr::null_mut(),
        }
    }

    /// `hyp_lwproc_switch(l)`; the caller must hold a CPU.
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the LWP is opaque here; only the kernel uses it"
    )]
    pub fn switch_lwp(self, l: *mut Lwp) {
        if let Some(f) = self.hyp.lwproc_switch {
            // SAFETY: `install`'s contract makes `f` a valid upcall.
            unsafe { f(l) };
        }
    }

    /// `hyp_lwproc_release()`; the caller must hold a CPU.
    pub fn release_lwp(self) {
        if let Some(f) = self.hyp.lwproc_release {
            // SAFETY: `install`'s contract makes `f` a valid upcall.
            unsafe { f() };
        }
    }

    /// Runs `f` holding a CPU (no giant lock) from a bound host thread:
    /// `hyp_backend_schedule(0, NULL)` … `hyp_backend_unschedule(0, &n, NULL)`.
    pub fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        self.backend_schedule(0, ptr::null_mut());
        let r = f();
        let _ = self.backend_unschedule(ptr::null_mut());
        r
    }
}

/// A virtual CPU given back by [`release_cpu`], to be taken again with
/// [`Released::reacquire`].
#[must_use = "the CPU must be taken back before returning to the kernel"]
#[derive(Debug)]
pub struct Released {
    kernel: Option<Kernel>,
    nlocks: c_int,
}

/// Gives the calling thread's virtual CPU back before a blocking host call
/// (`interlock` is the mutex a condition wait uses, or null).
pub fn release_cpu(interlock: *mut c_void) -> Released {
    let kernel = kernel();
    let nlocks = kernel.map_or(0, |k| k.backend_unschedule(interlock));
    Released { kernel, nlocks }
}

impl Released {
    /// Takes a CPU and the released giant-lock levels again.
    pub fn reacquire(self, interlock: *mut c_void) {
        if let Some(k) = self.kernel {
            k.backend_schedule(self.nlocks, interlock);
        }
    }
}

/// Runs the blocking host operation `f` with the CPU released around it
/// (the reference host's `KLOCK_WRAP`).
pub fn released<R>(f: impl FnOnce() -> R) -> R {
    let cpu = release_cpu(ptr::null_mut());
    let r = f();
    cpu.reacquire(ptr::null_mut());
    r
}

/// Binds the calling host thread to a new LWP of the kernel process, once,
/// so it can later enter the kernel with [`Kernel::enter`] (bio completion,
/// interrupt threads). Without a kernel this does nothing.
pub fn bind_host_thread() -> Result<(), c_int> {
    let Some(k) = kernel() else { return Ok(()) };
    crate::pci::rump::thread_iospace();
    k.schedule();
    let r = k.newlwp(0);
    k.unschedule();
    r
}
