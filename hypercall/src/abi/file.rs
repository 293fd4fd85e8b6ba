//! File and block I/O hypercalls.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::io::{IoSlice, IoSliceMut};
use std::sync::{Arc, OnceLock};

use super::rc;
use crate::bio::{BioPool, BioRequest, Completion};
use crate::errno::{NetbsdErrno, nb};
use crate::{file, param, sched};

/// `struct rumpuser_iovec` (the layout of `struct iovec`).
#[repr(C)]
#[derive(Debug)]
pub struct RumpuserIovec {
    /// Buffer.
    pub iov_base: *mut c_void,
    /// Its length.
    pub iov_len: usize,
}

/// `int rumpuser_open(const char *path, int ruflags, int *fdp)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_open(
    path: *const c_char,
    ruflags: c_int,
    fdp: *mut c_int,
) -> c_int {
    // Direct I/O is the typed API's extension, not a rumpuser flag.
    if path.is_null() || fdp.is_null() || ruflags & file::open_flags::DIRECT != 0 {
        return nb::EINVAL;
    }
    // SAFETY: the kernel passes a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(path) };
    // SAFETY: `fdp` is a valid out-pointer (checked non-null).
    unsafe { super::put(fdp, sched::released(|| file::open(path, ruflags))) }
}

/// `int rumpuser_close(int fd)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_close(fd: c_int) -> c_int {
    rc(sched::released(|| file::close(fd)))
}

/// `int rumpuser_getfileinfo(const char *path, uint64_t *sizep, int *ftp)`;
/// both out-pointers may be null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_getfileinfo(
    path: *const c_char,
    sizep: *mut u64,
    ftp: *mut c_int,
) -> c_int {
    if path.is_null() {
        return nb::EINVAL;
    }
    // SAFETY: the kernel passes a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(path) };
    match file::file_info(path) {
        Ok((size, ft)) => {
            // SAFETY: non-null out-pointers are valid.
            unsafe {
                if let Some(s) = sizep.as_mut() {
                    *s = size;
                }
                if let Some(t) = ftp.as_mut() {
                    *t = ft as c_int;
                }
            }
            0
        }
        Err(e) => e.0,
    }
}

/// `rump_biodone_fn`.
pub type BiodoneFn = unsafe extern "C" fn(*mut c_void, usize, c_int);

struct SendPtr(*mut c_void);
// SAFETY: the kernel's completion argument is handed to exactly one I/O
// thread, which passes it back to the kernel.
unsafe impl Send for SendPtr {}

/// `RUMP_BIO_THREADS`: how many I/O threads carry out `rumpuser_bio`
/// requests (1–64, default 4), or 0 for none: each request is then done in
/// the calling thread, its completion run before `rumpuser_bio` returns.
fn bio_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        param::get("RUMP_BIO_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n <= 64)
            .unwrap_or(4)
    })
}

fn bio_pool() -> &'static BioPool {
    static POOL: OnceLock<BioPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = bio_threads().max(1);
        let init: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {
            if let Err(e) = sched::bind_host_thread() {
                crate::console::write(
                    format!("rumpuser: bio thread cannot get an LWP: error {e}\n").as_bytes(),
                );
                crate::process::exit(crate::process::PANIC);
            }
        });
        BioPool::new(threads, &init).unwrap_or_else(|e| {
            crate::console::write(format!("rumpuser: cannot start bio threads: {e}\n").as_bytes());
            crate::process::exit(crate::process::PANIC)
        })
    })
}

/// `void rumpuser_bio(int fd, int op, void *data, size_t dlen, int64_t off,
/// rump_biodone_fn biodone, void *bioarg)`: queues the request and returns;
/// `biodone` runs exactly once on an I/O thread holding a CPU, with the
/// bytes done and a NetBSD errno (bytes 0 on error). With
/// `RUMP_BIO_THREADS=0` the request is done at once, the CPU released
/// around the host I/O, and `biodone` runs in the caller before return.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_bio(
    fd: c_int,
    op: c_int,
    data: *mut c_void,
    dlen: usize,
    off: i64,
    biodone: Option<BiodoneFn>,
    bioarg: *mut c_void,
) {
    let Some(biodone) = biodone else {
        crate::console::write(b"rumpuser_bio: no completion function\n");
        return;
    };
    let req = BioRequest {
        fd,
        op,
        data: data.cast(),
        len: dlen,
        off,
    };
    if bio_threads() == 0 {
        let (n, err) = sched::released(|| crate::bio::perform(&req));
        // SAFETY: the kernel's completion with its own argument, once; the
        // calling thread holds the CPU it called in with.
        unsafe { biodone(bioarg, n, err.map_or(0, |e: NetbsdErrno| e.0)) };
        return;
    }
    let arg = SendPtr(bioarg);
    let done: Completion = Box::new(move |n, err| {
        let arg = arg;
        let call = || {
            // SAFETY: the kernel's completion with its own argument, once.
            unsafe { biodone(arg.0, n, err.map_or(0, |e: NetbsdErrno| e.0)) };
        };
        match sched::kernel() {
            Some(k) => k.enter(call),
            None => call(),
        }
    });
    // SAFETY: the kernel keeps `data` valid and untouched until biodone.
    unsafe { bio_pool().submit(req, done) };
}

/// The (base, length) pairs of a C iovec array, empty ones dropped.
///
/// # Safety
/// `iov` must point to `n` valid iovecs (or `n` must be 0).
unsafe fn iovec_parts(iov: *const RumpuserIovec, n: usize) -> Vec<(*mut u8, usize)> {
    if n == 0 || iov.is_null() {
        return Vec::new();
    }
    // SAFETY: caller's contract.
    let iov = unsafe { std::slice::from_raw_parts(iov, n) };
    iov.iter()
        .filter(|v| v.iov_len > 0)
        .map(|v| (v.iov_base.cast(), v.iov_len))
        .collect()
}

/// `int rumpuser_iovread(int fd, struct rumpuser_iovec *, size_t iovlen,
/// int64_t off, size_t *retv)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_iovread(
    fd: c_int,
    ruiov: *mut RumpuserIovec,
    iovlen: usize,
    off: i64,
    retv: *mut usize,
) -> c_int {
    if retv.is_null() || (off < 0 && off != file::IOV_NOSEEK) {
        return nb::EINVAL;
    }
    // SAFETY: the kernel passes `iovlen` valid iovecs over writable memory.
    let mut bufs: Vec<IoSliceMut<'_>> = unsafe { iovec_parts(ruiov, iovlen) }
        .into_iter()
        // SAFETY: as above, each base is writable for its length.
        .map(|(p, n)| IoSliceMut::new(unsafe { std::slice::from_raw_parts_mut(p, n) }))
        .collect();
    // SAFETY: `retv` is a valid out-pointer (checked non-null).
    unsafe {
        super::put(
            retv,
            sched::released(|| file::read_vectored_at(fd, &mut bufs, off)),
        )
    }
}

/// `int rumpuser_iovwrite(int fd, const struct rumpuser_iovec *, size_t
/// iovlen, int64_t off, size_t *retv)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rumpuser_iovwrite(
    fd: c_int,
    ruiov: *const RumpuserIovec,
    iovlen: usize,
    off: i64,
    retv: *mut usize,
) -> c_int {
    if retv.is_null() || (off < 0 && off != file::IOV_NOSEEK) {
        return nb::EINVAL;
    }
    // SAFETY: the kernel passes `iovlen` valid iovecs over readable memory.
    let bufs: Vec<IoSlice<'_>> = unsafe { iovec_parts(ruiov, iovlen) }
        .into_iter()
        // SAFETY: as above, each base is readable for its length.
        .map(|(p, n)| IoSlice::new(unsafe { std::slice::from_raw_parts(p, n) }))
        .collect();
    // SAFETY: `retv` is a valid out-pointer (checked non-null).
    unsafe {
        super::put(
            retv,
            sched::released(|| file::write_vectored_at(fd, &bufs, off)),
        )
    }
}

/// `int rumpuser_syncfd(int fd, int flags, uint64_t start, uint64_t len)`.
#[unsafe(no_mangle)]
pub extern "C" fn rumpuser_syncfd(fd: c_int, flags: c_int, _start: u64, _len: u64) -> c_int {
    rc(sched::released(|| file::sync(fd, flags)))
}
