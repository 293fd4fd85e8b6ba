//! Asynchronous block I/O (`rumpuser_bio`): requests go to a pool of host
//! threads and complete out of order, each with exactly one completion.
//!
//! A synchronous write (`RUMPUSER_BIO_SYNC`: every write the kernel waits
//! for) is stable on the host's storage when it completes, as NetBSD's
//! librumpuser makes it (`fdatasync`) — unless the translator chose
//! [`set_sync_writes_stable`]`(false)`: then the host's page cache is the
//! disk's write cache, a synchronous write completes once the host has it
//! (it survives the translator's death, not the host's), and [`flush`]
//! makes every such write stable, as a disk's cache flush does.

use std::collections::BTreeSet;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use parking_lot::Mutex;

use crate::errno::{NetbsdErrno, nb};
use crate::file;

/// `RUMPUSER_BIO_READ`.
pub const BIO_READ: i32 = 0x01;
/// `RUMPUSER_BIO_WRITE`.
pub const BIO_WRITE: i32 = 0x02;
/// `RUMPUSER_BIO_SYNC`: the data must be stable before completion.
pub const BIO_SYNC: i32 = 0x04;

/// Whether synchronous writes are made stable before they complete.
static SYNC_WRITES_STABLE: AtomicBool = AtomicBool::new(true);

/// Descriptors with synchronous writes that are not stable yet.
static UNSTABLE: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Chooses whether a synchronous write is stable on the host's storage
/// when it completes (the default), or (false) once the host has it,
/// stable at the next [`flush`] or when its descriptor closes.
pub fn set_sync_writes_stable(stable: bool) {
    SYNC_WRITES_STABLE.store(stable, Ordering::Release);
}

/// Makes every synchronous write completed so far stable on the host's
/// storage (`fdatasync`, or the Mach device's flush, of each descriptor
/// that had one). A descriptor that fails stays to be flushed again.
///
/// # Errors
/// The first failure.
pub fn flush() -> Result<(), NetbsdErrno> {
    let fds = std::mem::take(&mut *UNSTABLE.lock());
    let mut first = Ok(());
    for fd in fds {
        if let Err(e) = file::datasync(fd) {
            UNSTABLE.lock().insert(fd);
            first = first.and(Err(e));
        }
    }
    first
}

/// Descriptors with synchronous writes not yet stable on the host's
/// storage (waiting for [`flush`]).
#[must_use]
pub fn unflushed() -> usize {
    UNSTABLE.lock().len()
}

/// `fd` is closing (its data made stable by the close).
pub(crate) fn forget(fd: RawFd) {
    UNSTABLE.lock().remove(&fd);
}

/// One block I/O request on caller-owned memory.
#[derive(Debug)]
pub struct BioRequest {
    /// Host descriptor.
    pub fd: RawFd,
    /// `RUMPUSER_BIO_*` bits.
    pub op: i32,
    /// Start of the caller's buffer.
    pub data: *mut u8,
    /// Its length in bytes.
    pub len: usize,
    /// Byte offset in the file.
    pub off: i64,
}

// SAFETY: the buffer pointer is handed over to exactly one worker; the
// submitter promises (see `BioPool::submit`) not to touch it until the
// completion runs.
unsafe impl Send for BioRequest {}

/// The completion of a request: bytes done and an error (bytes are 0 on
/// error).
pub type Completion = Box<dyn FnOnce(usize, Option<NetbsdErrno>) + Send>;

type Job = (BioRequest, Completion);

/// A pool of I/O threads.
pub struct BioPool {
    tx: Mutex<Sender<Job>>,
}

impl std::fmt::Debug for BioPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BioPool").finish_non_exhaustive()
    }
}

impl BioPool {
    /// Starts `threads` I/O threads; each runs `thread_init` once first
    /// (binding itself to a kernel LWP, for the rump skin).
    pub fn new(threads: usize, thread_init: &Arc<dyn Fn() + Send + Sync>) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let init = Arc::clone(thread_init);
            std::thread::Builder::new()
                .name(format!("rumpuser-bio{i}"))
                .spawn(move || {
                    init();
                    worker(&rx);
                })?;
        }
        Ok(Self { tx: Mutex::new(tx) })
    }

    /// Queues `req`; `done` runs once on an I/O thread when it finished.
    ///
    /// # Safety
    /// `req.data` must be valid for `req.len` bytes (writable for a read)
    /// and not be used by anybody else until `done` runs.
    pub unsafe fn submit(&self, req: BioRequest, done: Completion) {
        if let Err(e) = self.tx.lock().send((req, done)) {
            // All workers are gone (they never exit): complete with EIO
            // rather than lose the request.
            let (_, done) = e.0;
            done(0, Some(NetbsdErrno(nb::EIO)));
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = rx.lock().recv();
        let Ok((req, done)) = job else { return };
        let (n, err) = perform(&req);
        done(n, err);
    }
}

/// Performs one request synchronously.
#[must_use]
pub fn perform(req: &BioRequest) -> (usize, Option<NetbsdErrno>) {
    if req.off < 0 {
        return (0, Some(NetbsdErrno(nb::EINVAL)));
    }
    let res = match req.op & (BIO_READ | BIO_WRITE) {
        BIO_READ => {
            // SAFETY: `submit`'s contract: the buffer is valid and ours.
            let buf = unsafe { std::slice::from_raw_parts_mut(req.data, req.len) };
            file::read_vectored_at(req.fd, &mut [std::io::IoSliceMut::new(buf)], req.off)
        }
        BIO_WRITE => {
            // SAFETY: `submit`'s contract: the buffer is valid and ours.
            let buf = unsafe { std::slice::from_raw_parts(req.data, req.len) };
            file::write_vectored_at(req.fd, &[std::io::IoSlice::new(buf)], req.off).and_then(|n| {
                if req.op & BIO_SYNC != 0 {
                    if SYNC_WRITES_STABLE.load(Ordering::Acquire) {
                        file::datasync(req.fd)?;
                    } else {
                        UNSTABLE.lock().insert(req.fd);
                    }
                }
                Ok(n)
            })
        }
        _ => Err(NetbsdErrno(nb::EINVAL)),
    };
    match res {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e)),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn unstable_sync_writes_wait_for_the_flush() {
        let path = std::env::temp_dir().join(format!("hypercall-bio-{}", std::process::id()));
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let fd = file::open(&c, file::open_flags::RDWR | file::open_flags::CREATE).unwrap();
        let mut data = vec![7u8; 4096];
        let write = |data: &mut Vec<u8>| {
            perform(&BioRequest {
                fd,
                op: BIO_WRITE | BIO_SYNC,
                data: data.as_mut_ptr(),
                len: data.len(),
                off: 0,
            })
        };
        set_sync_writes_stable(false);
        assert_eq!(write(&mut data), (4096, None));
        assert!(UNSTABLE.lock().contains(&fd));
        flush().unwrap();
        assert!(!UNSTABLE.lock().contains(&fd));
        // A close makes them stable itself.
        assert_eq!(write(&mut data), (4096, None));
        file::close(fd).unwrap();
        assert!(!UNSTABLE.lock().contains(&fd));
        // A descriptor that cannot be flushed stays to be flushed.
        UNSTABLE.lock().insert(-7);
        assert_eq!(flush(), Err(NetbsdErrno(nb::EBADF)));
        assert!(UNSTABLE.lock().remove(&-7));
        set_sync_writes_stable(true);
        std::fs::remove_file(&path).unwrap();
    }
}
