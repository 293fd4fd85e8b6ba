//! What every MIG client and server shares, for any transport: the
//! return-code reply, descriptor checks as MIG's stubs make them, the
//! checks MIG's user stubs make on a reply, and one send-and-receive call.

use crate::KernReturn;
use crate::ipc::{Ipc, option};
use crate::msg::{self, MsgBuf, TypeDesc};
use crate::port::{PortName, notify, type_name as tn};

/// Replies carry the request id plus this.
pub const REPLY_OFFSET: i32 = 100;

/// Size of `mig_reply_header_t` (a reply carrying only a return code).
pub const REPLY_HEADER_SIZE: usize = 48;

/// An inline 32-bit integer (`int`, `kern_return_t`, ...).
pub const INT32: TypeDesc = TypeDesc::inline(tn::INTEGER_32, 32, 1);

/// What MIG server stubs answer to a malformed request.
#[must_use]
pub fn bad() -> KernReturn {
    KernReturn::MIG_BAD_ARGUMENTS
}

/// Checks a descriptor as MIG's `BAD_TYPECHECK` does: all 8 bytes.
pub fn check(r: &mut msg::Reader<'_>, want: TypeDesc) -> Result<(), KernReturn> {
    let d = r.desc().map_err(|_| bad())?;
    if d.encode() == want.encode() {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Reads an inline `int` checked as MIG does.
pub fn int32(r: &mut msg::Reader<'_>) -> Result<i32, KernReturn> {
    check(r, INT32)?;
    let b = r.data(4).map_err(|_| bad())?;
    Ok(i32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

/// Checks a reply as MIG's user stubs do and returns its body reader once
/// the return code is `KERN_SUCCESS`. A reply of only a return code is
/// that code, or `MIG_TYPE_ERROR` when it is a success (the body is
/// missing).
pub fn reply_body(
    bytes: &[u8],
    request_id: i32,
    ok_size: Option<usize>,
    complex: bool,
) -> Result<msg::Reader<'_>, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    check_reply_id(h.id, request_id)?;
    let size = h.size as usize;
    let code = int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if size == REPLY_HEADER_SIZE && !h.is_complex() {
        // Only the return code: an error, or a success without the body
        // the caller expects.
        return Err(if code == 0 {
            KernReturn::MIG_TYPE_ERROR
        } else {
            KernReturn(code)
        });
    }
    if ok_size.is_some_and(|s| s != size) || h.is_complex() != complex {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    if code != 0 {
        return Err(KernReturn(code));
    }
    Ok(r)
}

/// Decodes a reply carrying only a return code (`device_close`,
/// `device_set_status`).
pub fn decode_simple_reply(bytes: &[u8], request_id: i32) -> Result<(), KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    check_reply_id(h.id, request_id)?;
    if h.is_complex() {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    match int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)? {
        0 => Ok(()),
        code => Err(KernReturn(code)),
    }
}

/// The reply to `request_id`, or what MIG's user stubs answer to another
/// message: a send-once notification means the server died.
fn check_reply_id(id: i32, request_id: i32) -> Result<(), KernReturn> {
    if id == request_id + REPLY_OFFSET {
        Ok(())
    } else if id == notify::SEND_ONCE {
        Err(KernReturn::MIG_SERVER_DIED)
    } else {
        Err(KernReturn::MIG_REPLY_MISMATCH)
    }
}

/// The one array a reply carries after its return code.
#[derive(Debug, PartialEq, Eq)]
pub enum Array<'a> {
    /// In the message.
    Inline(&'a [u8]),
    /// In a region the kernel mapped into the task (`addr` is 0 when
    /// `bytes` is), which the caller reads and deallocates.
    OutOfLine {
        /// Where the region is.
        addr: u64,
        /// Its length.
        bytes: usize,
    },
}

/// Checks a reply carrying one array of `name` items of `bits` bits as
/// MIG's user stubs do (a simple reply when it is inline, a complex one
/// when it is out of line) and returns the array.
pub fn array_reply(
    bytes: &[u8],
    request_id: i32,
    name: u8,
    bits: u16,
) -> Result<Array<'_>, KernReturn> {
    let complex = msg::Header::read(bytes).is_ok_and(|h| h.is_complex());
    let mut r = reply_body(bytes, request_id, None, complex)?;
    let d = r.desc().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if !d.longform || d.name != name || d.size != bits {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    let n = d.number as usize * usize::from(bits / 8);
    if d.inline {
        Ok(Array::Inline(
            r.data(n).map_err(|_| KernReturn::MIG_TYPE_ERROR)?,
        ))
    } else {
        let addr = r.address().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
        Ok(Array::OutOfLine { addr, bytes: n })
    }
}

/// Largest reply a client RPC accepts.
pub const RCV_MAX: usize = 8192;

/// One RPC from `ipc`: builds the request with a fresh reply port, sends
/// it and waits for the reply (in the same buffer).
pub fn rpc<I: Ipc + ?Sized>(
    ipc: &I,
    build: impl FnOnce(PortName) -> MsgBuf,
) -> Result<MsgBuf, KernReturn> {
    let reply = ipc.port_allocate(crate::port::Right::Receive)?;
    let r = call(ipc, reply, build);
    let _ = ipc.port_mod_refs(reply, crate::port::Right::Receive, -1);
    r
}

/// One RPC with the caller's reply port `reply` (a receive right).
pub fn call<I: Ipc + ?Sized>(
    ipc: &I,
    reply: PortName,
    build: impl FnOnce(PortName) -> MsgBuf,
) -> Result<MsgBuf, KernReturn> {
    let mut m = build(reply);
    let len = m.len() as u32;
    m.resize(RCV_MAX.max(m.len()));
    // SAFETY: a complete request in a buffer that also takes the reply.
    let r = unsafe {
        ipc.mach_msg(
            m.as_mut_ptr(),
            option::SEND_MSG | option::RCV_MSG,
            len,
            m.len() as u32,
            reply,
            0,
            PortName::NULL,
        )
    };
    r.result()?;
    Ok(m)
}
