//! The syscall proxy (`rump_sp(7)`): remote clients reaching the kernel over
//! a socket. The translators serve their clients through Mach device RPCs
//! (or NBD on Linux) instead, and do not link `librumpkern_sysproxy`, the
//! only library that calls these. They are exported so a kernel built with
//! sysproxy still links: `rumpuser_sp_init` refuses with `EOPNOTSUPP` and a
//! console message, so `rump_init_server()` fails cleanly and no client
//! can ever exist; the calls on a client therefore answer `EINVAL`.

use std::ffi::{CStr, c_char, c_int, c_void};

use crate::errno::nb;

/// `int rumpuser_sp_init(const char *url, const char *ostype, const char
/// *osrelease, const char *machine)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_sp_init(
    url: *const c_char,
    _ostype: *const c_char,
    _osrelease: *const c_char,
    _machine: *const c_char,
) -> c_int {
    let url = if url.is_null() {
        "(null)".into()
    } else {
        // SAFETY: a non-null url is NUL-terminated.
        unsafe { CStr::from_ptr(url) }.to_string_lossy()
    };
    crate::console::write(
        format!("rumpuser: syscall proxy server ({url}) is not provided by this host; serve clients through the translator\n")
            .as_bytes(),
    );
    nb::EOPNOTSUPP
}

/// `int rumpuser_sp_copyin(void *arg, const void *raddr, void *laddr, size_t len)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_sp_copyin(
    _arg: *mut c_void,
    _raddr: *const c_void,
    _laddr: *mut c_void,
    _len: usize,
) -> c_int {
    nb::EINVAL
}

/// `int rumpuser_sp_copyinstr(void *arg, const void *raddr, void *laddr, size_t *len)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_sp_copyinstr(
    _arg: *mut c_void,
    _raddr: *const c_void,
    _laddr: *mut c_void,
    _len: *mut usize,
) -> c_int {
    nb::EINVAL
}

/// `int rumpuser_sp_copyout(void *arg, const void *laddr, void *raddr, size_t len)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_sp_copyout(
    _arg: *mut c_void,
    _laddr: *const c_void,
    _raddr: *mut c_void,
    _len: usize,
) -> c_int {
    nb::EINVAL
}

/// `int rumpuser_sp_copyoutstr(void *arg, const void *laddr, void *raddr, size_t *len)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_sp_copyoutstr(
    _arg: *mut c_void,
    _laddr: *const c_void,
    _raddr: *mut c_void,
    _len: *mut usize,
) -> c_int {
    nb::EINVAL
}

/// `int rumpuser_sp_anonmmap(void *arg, size_t howmuch, void **addr)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_sp_anonmmap(
    _arg: *mut c_void,
    _howmuch: usize,
    _addr: *mut *mut c_void,
) -> c_int {
    nb::EINVAL
}

/// `int rumpuser_sp_raise(void *arg, int signo)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_sp_raise(_arg: *mut c_void, _signo: c_int) -> c_int {
    nb::EINVAL
}

/// `void rumpuser_sp_fini(void *arg)`: nothing to shut down.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_sp_fini(_arg: *mut c_void) {}
