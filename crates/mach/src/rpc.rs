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
/// the return code is `KERN_SUCCESS`.
pub fn reply_body(
    bytes: &[u8],
    request_id: i32,
    ok_size: Option<usize>,
    complex: bool,
) -> Result<msg::Reader<'_>, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if h.id != request_id + REPLY_OFFSET {
        return Err(if h.id == notify::SEND_ONCE {
            KernReturn::MIG_SERVER_DIED
        } else {
            KernReturn::MIG_REPLY_MISMATCH
        });
    }
    let size = h.size as usize;
    if size == REPLY_HEADER_SIZE && !h.is_complex() {
        check(&mut r, INT32).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
        let code = i32::from_ne_bytes(
            r.data(4)
                .map_err(|_| KernReturn::MIG_TYPE_ERROR)?
                .try_into()
                .expect("4 bytes"),
        );
        return Err(if code == 0 && ok_size.is_some() {
            KernReturn::MIG_TYPE_ERROR
        } else {
            KernReturn(code)
        });
    }
    if ok_size.is_some_and(|s| s != size) || h.is_complex() != complex {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    let code = int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if code != 0 {
        return Err(KernReturn(code));
    }
    Ok(r)
}

/// Decodes a reply carrying only a return code (`device_close`,
/// `device_set_status`).
pub fn decode_simple_reply(bytes: &[u8], request_id: i32) -> Result<(), KernReturn> {
    match reply_body(bytes, request_id, None, false) {
        Err(KernReturn::SUCCESS) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Largest reply a client RPC accepts.
pub const RCV_MAX: usize = 8192;

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
