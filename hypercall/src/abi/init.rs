//! Initialisation, parameters, console, process, randomness, components.

use std::ffi::{CStr, c_char, c_int, c_void};

use super::rc;
use crate::errno::nb;
use crate::sched::{self, Hyperup};
use crate::{console, dl, param, process, random};

/// `RUMPUSER_VERSION`.
pub const RUMPUSER_VERSION: c_int = 17;

/// `int rumpuser_init(int version, const struct rumpuser_hyperup *hyp)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_init(version: c_int, hyp: *const Hyperup) -> c_int {
    if version != RUMPUSER_VERSION {
        console::write(
            format!("rumpuser: kernel wants hypercall version {version}, this host provides {RUMPUSER_VERSION}\n")
                .as_bytes(),
        );
        return nb::EINVAL;
    }
    // SAFETY: the kernel passes a valid upcall table (or null).
    let Some(hyp) = (unsafe { hyp.as_ref() }) else {
        return nb::EINVAL;
    };
    // SAFETY: the upcalls are the kernel's own, valid for the process life.
    unsafe { sched::install(hyp) };
    // Before the kernel's first thread, which inherits it.
    crate::pci::rump::early_iospace_init();
    0
}

/// `int rumpuser_getparam(const char *name, void *buf, size_t buflen)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_getparam(
    name: *const c_char,
    buf: *mut c_void,
    buflen: usize,
) -> c_int {
    if name.is_null() || buf.is_null() {
        return nb::EINVAL;
    }
    // SAFETY: the kernel passes a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    // SAFETY: `buf` is writable for `buflen` bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), buflen) };
    rc(param::get(&name).and_then(|v| param::copy_out(&v, out)))
}

/// `void rumpuser_putchar(int c)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_putchar(c: c_int) {
    console::putchar(c as u8);
}

/// Writes `len` bytes to the console: the C `rumpuser_dprintf` shim formats
/// and calls this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hypercall_console_write(buf: *const c_char, len: usize) {
    if buf.is_null() {
        return;
    }
    // SAFETY: the shim passes its formatted buffer and its length.
    console::write(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) });
}

/// `int rumpuser_kill(int64_t pid, int sig)` (NetBSD signal numbers).
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_kill(pid: i64, sig: c_int) -> c_int {
    rc(process::kill(pid, sig))
}

/// `void rumpuser_exit(int value)`: `RUMPUSER_PANIC` aborts.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_exit(value: c_int) -> ! {
    process::exit(value)
}

/// `void rumpuser_seterrno(int error)`: the raw NetBSD value goes into the
/// calling thread's `errno`, as the kernel's clients expect.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_seterrno(error: c_int) {
    ::errno::set_errno(::errno::Errno(error));
}

/// `int rumpuser_getrandom(void *buf, size_t buflen, int flags, size_t *retp)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_getrandom(
    buf: *mut c_void,
    buflen: usize,
    flags: c_int,
    retp: *mut usize,
) -> c_int {
    if (buf.is_null() && buflen > 0) || retp.is_null() {
        return nb::EINVAL;
    }
    let out: &mut [u8] = if buflen == 0 {
        &mut []
    } else {
        // SAFETY: `buf` is writable for `buflen` bytes.
        unsafe { std::slice::from_raw_parts_mut(buf.cast(), buflen) }
    };
    // SAFETY: `retp` is a valid out-pointer (checked non-null).
    unsafe { super::put(retp, random::fill(out, flags)) }
}

/// `rump_modinit_fn`.
type ModinitFn = unsafe extern "C" fn(*const *const c_void, usize);
/// `rump_symload_fn`.
type SymloadFn = unsafe extern "C" fn(*mut c_void, u64, *mut c_char, u64) -> c_int;
/// `rump_compload_fn`.
type CompvoidFn = unsafe extern "C" fn(*const c_void);

/// `void rumpuser_dl_bootstrap(rump_modinit_fn, rump_symload_fn,
/// rump_compload_fn, rump_evcntattach_fn)`: hands the kernel the module and
/// component link sets of loaded shared objects. The fourth argument
/// (NetBSD ≥ 10) is not used: older kernels do not pass it, so its value
/// cannot be trusted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_dl_bootstrap(
    modinit: Option<ModinitFn>,
    _symload: Option<SymloadFn>,
    compload: Option<CompvoidFn>,
    _evcntattach: *mut c_void,
) {
    if let Some(modinit) = modinit {
        for set in dl::find_link_sets("modules") {
            // SAFETY: the kernel's modinit takes an array of modinfo
            // pointers and its length, which a link set is.
            unsafe { modinit(set.start, set.count) };
        }
    }
    if let Some(compload) = compload {
        for set in dl::find_link_sets("rump_components") {
            // SAFETY: the set belongs to a loaded object.
            for comp in unsafe { dl::entries(set) } {
                // SAFETY: each entry is a `struct rump_component *`.
                unsafe { compload(comp) };
            }
        }
    }
}

/// `int rumpuser_daemonize_begin(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_daemonize_begin() -> c_int {
    rc(process::daemonize_begin())
}

/// `int rumpuser_daemonize_done(int error)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_daemonize_done(error: c_int) -> c_int {
    rc(process::daemonize_done(error))
}
