//! Asynchronous block I/O (`rumpuser_bio`): requests go to a pool of host
//! threads and complete out of order, each with exactly one completion.

use std::os::fd::RawFd;
use std::sync::Arc;
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
                    file::datasync(req.fd)?;
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
