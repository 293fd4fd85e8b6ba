//! Answering requests, at once or later (deferred replies), and the data a
//! write brings.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Deref;

use mach::ipc::{Ipc, option};
use mach::msg::MsgBuf;
use mach::{KernReturn, PortName};
use mig_bindings::device::{self as dev, ReplyTo};

/// Sends one reply message (never blocking on a full reply queue) and
/// cleans up what it carried if it could not be delivered: its out-of-line
/// region and the reply port right. Returns whether it was delivered.
pub(crate) fn send_reply(ipc: &dyn Ipc, mut msg: MsgBuf, ool: Option<(u64, usize)>) -> bool {
    let len = msg.len() as u32;
    // SAFETY: a complete message buffer; its out-of-line region (if any) was
    // allocated by `vm_allocate` for this reply.
    let r = unsafe {
        ipc.mach_msg(
            msg.as_mut_ptr(),
            option::SEND_MSG | option::SEND_TIMEOUT,
            len,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    };
    if r == KernReturn::SUCCESS {
        return true;
    }
    log::debug!("reply not delivered: {r}");
    if let Some((addr, size)) = ool {
        // SAFETY: the undelivered reply still owns the region.
        let _ = unsafe { ipc.vm_deallocate(addr, size) };
    }
    if let Ok(h) = msg.header()
        && h.remote.is_valid()
    {
        // The reply right was not consumed by the failed send.
        let _ = ipc.port_deallocate(h.remote);
    }
    false
}

/// A region of this task holding a copy of `data`, for an out-of-line
/// reply to give away.
pub(crate) fn region_with(ipc: &dyn Ipc, data: &[u8]) -> Result<u64, KernReturn> {
    // The copy below overwrites all of it.
    let addr = ipc.vm_allocate_for_overwrite(data.len())?;
    // SAFETY: a fresh region of at least `data.len()` bytes.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
    Ok(addr)
}

/// Where and how to answer one request.
pub struct Responder {
    ipc: Arc<dyn Ipc>,
    to: Option<ReplyTo>,
}

impl core::fmt::Debug for Responder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Responder")
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl Responder {
    pub(crate) fn new(ipc: Arc<dyn Ipc>, to: Option<ReplyTo>) -> Self {
        Self { ipc, to }
    }

    /// Sends an error reply.
    pub fn error(mut self, code: KernReturn) {
        if let Some(to) = self.to.take() {
            let _ = send_reply(&*self.ipc, dev::error_reply(&to, code), None);
        }
    }

    fn take(&mut self) -> Option<ReplyTo> {
        self.to.take()
    }

    /// Sends the reply `build` makes (nothing when the request had no
    /// reply port); returns whether one was delivered.
    pub(crate) fn reply_with(mut self, build: impl FnOnce(&ReplyTo) -> MsgBuf) -> bool {
        match self.take() {
            Some(to) => send_reply(&*self.ipc, build(&to), None),
            None => false,
        }
    }

    /// Sends the reply `build` makes around the `len` bytes at `addr` (a
    /// region of this task the reply gives away); the region is freed when
    /// no reply takes it. Returns whether one was delivered.
    pub(crate) fn reply_with_region(
        mut self,
        addr: u64,
        len: usize,
        build: impl FnOnce(&ReplyTo) -> MsgBuf,
    ) -> bool {
        if let Some(to) = self.take() {
            return send_reply(&*self.ipc, build(&to), Some((addr, len)));
        }
        // SAFETY: no reply will carry the region, which is this task's.
        let _ = unsafe { self.ipc.vm_deallocate(addr, len) };
        false
    }
}

/// The answer to `device_read` / `device_read_inband`. Dropping it unsent
/// answers `D_IO_ERROR`, so a client never waits forever.
#[derive(Debug)]
pub struct DataReply {
    responder: Responder,
    inband: bool,
}

impl DataReply {
    pub(crate) fn new(responder: Responder, inband: bool) -> Self {
        Self { responder, inband }
    }

    /// The responder, taken out (the drop's `D_IO_ERROR` no longer sent).
    fn take_responder(&mut self) -> Responder {
        Responder::new(Arc::clone(&self.responder.ipc), self.responder.take())
    }

    /// Sends the data read, or the error.
    pub fn send(mut self, result: Result<Vec<u8>, KernReturn>) {
        let responder = self.take_responder();
        match result {
            Err(e) => responder.error(e),
            Ok(data) if self.inband => {
                let n = data.len().min(dev::INBAND_MAX);
                responder.reply_with(|to| dev::read_inband_reply(to, &data[..n]));
            }
            Ok(data) if data.is_empty() => {
                responder.reply_with(|to| dev::read_reply(to, 0, 0));
            }
            Ok(data) => match region_with(&*responder.ipc, &data) {
                Ok(addr) => {
                    let len = data.len();
                    responder.reply_with_region(addr, len, |to| dev::read_reply(to, addr, len));
                }
                Err(_) => responder.error(KernReturn::D_NO_MEMORY),
            },
        }
    }
}

impl DataReply {
    /// Sends `len` bytes that `fill` writes straight into the reply's
    /// out-of-line region (no intermediate buffer and no copy), or the
    /// error `fill` returns. `fill` must write all `len` bytes; it is not
    /// called when `len` is zero.
    pub fn fill(self, len: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), KernReturn>) {
        if len == 0 {
            return self.send(Ok(Vec::new()));
        }
        if self.inband {
            let mut buf = vec![0u8; len];
            let result = fill(&mut buf).map(|()| buf);
            return self.send(result);
        }
        let ipc = Arc::clone(&self.responder.ipc);
        // `fill` overwrites all of it (on failure it is never sent).
        let Ok(addr) = ipc.vm_allocate_for_overwrite(len) else {
            return self.send(Err(KernReturn::D_NO_MEMORY));
        };
        // SAFETY: a fresh region of at least `len` bytes, this task's alone
        // until it is sent or deallocated below.
        let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
        if let Err(e) = fill(buf) {
            // SAFETY: the region was never sent and nothing refers to it.
            let _ = unsafe { ipc.vm_deallocate(addr, len) };
            return self.send(Err(e));
        }
        let mut this = self;
        this.take_responder()
            .reply_with_region(addr, len, |to| dev::read_reply(to, addr, len));
    }
}

impl Drop for DataReply {
    fn drop(&mut self) {
        if let Some(to) = self.responder.take() {
            let _ = send_reply(
                &*self.responder.ipc,
                dev::error_reply(&to, KernReturn::D_IO_ERROR),
                None,
            );
        }
    }
}

/// The answer to `device_write` / `device_write_inband`. Dropping it unsent
/// answers `D_IO_ERROR`.
#[derive(Debug)]
pub struct WriteReply {
    responder: Responder,
}

impl WriteReply {
    pub(crate) fn new(responder: Responder) -> Self {
        Self { responder }
    }

    /// Sends the byte count written, or the error.
    pub fn send(mut self, result: Result<usize, KernReturn>) {
        let Some(to) = self.responder.take() else {
            return;
        };
        let msg = match result {
            Ok(n) => match i32::try_from(n) {
                Ok(n) => dev::write_reply(&to, n),
                Err(_) => dev::error_reply(&to, KernReturn::D_INVALID_SIZE),
            },
            Err(e) => dev::error_reply(&to, e),
        };
        let _ = send_reply(&*self.responder.ipc, msg, None);
    }
}

impl Drop for WriteReply {
    fn drop(&mut self) {
        if let Some(to) = self.responder.take() {
            let _ = send_reply(
                &*self.responder.ipc,
                dev::error_reply(&to, KernReturn::D_IO_ERROR),
                None,
            );
        }
    }
}

/// Data a client wrote: inline bytes, or an out-of-line region the kernel
/// mapped into this task (released on drop).
pub struct Data {
    inner: DataInner,
}

enum DataInner {
    Inline(Vec<u8>),
    Ool {
        ipc: Arc<dyn Ipc>,
        addr: u64,
        len: usize,
    },
}

impl core::fmt::Debug for Data {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Data({} bytes)", self.len())
    }
}

impl Data {
    pub(crate) fn inline(v: Vec<u8>) -> Self {
        Self {
            inner: DataInner::Inline(v),
        }
    }

    /// # Safety
    /// `[addr, addr+len)` must be a region the kernel delivered to this task
    /// in a message, owned by nobody else.
    pub(crate) unsafe fn ool(ipc: Arc<dyn Ipc>, addr: u64, len: usize) -> Self {
        Self {
            inner: DataInner::Ool { ipc, addr, len },
        }
    }
}

impl Deref for Data {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            DataInner::Inline(v) => v,
            DataInner::Ool { len: 0, .. } => &[],
            // SAFETY: the region is mapped and ours until drop.
            DataInner::Ool { addr, len, .. } => unsafe {
                core::slice::from_raw_parts(*addr as *const u8, *len)
            },
        }
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        if let DataInner::Ool { ipc, addr, len } = &self.inner
            && *len > 0
        {
            // SAFETY: the region is ours and no longer borrowed.
            let _ = unsafe { ipc.vm_deallocate(*addr, *len) };
        }
    }
}
