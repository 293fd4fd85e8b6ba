//! What every MIG interface shares: reply destinations, return-code
//! replies, request headers, descriptor checks as MIG's stubs make them, the
//! client-side reply checks, and releasing what an unprocessed message
//! carried.

use mach::KernReturn;
use mach::ipc::Ipc;
use mach::msg::{self, Builder, Header, MsgBuf};
use mach::port::{PortName, Right, type_name as tn};
pub use mach::rpc::{
    Array, INT32, RCV_MAX, REPLY_HEADER_SIZE, REPLY_OFFSET, array_reply, bad, call, check,
    decode_simple_reply, int32, reply_body, rpc,
};

/// Where a reply goes: the request's reply port, the right the server got
/// for it, and the request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The reply port (in the server's space).
    pub port: PortName,
    /// The right received for it (`MACH_MSG_TYPE_PORT_SEND[_ONCE]`).
    pub right: u8,
    /// The request's id.
    pub id: i32,
}

/// The reply destination of a request, if it has a reply port.
#[must_use]
pub fn reply_to(h: &Header) -> Option<ReplyTo> {
    h.remote.is_valid().then(|| ReplyTo {
        port: h.remote,
        right: h.remote_bits(),
        id: h.id,
    })
}

/// Releases the rights and out-of-line memory in the body of a received
/// message that will not be processed (`mach_msg_destroy` for the body;
/// the reply port is left for the error reply).
pub fn destroy_request_resources(ipc: &dyn Ipc, bytes: &[u8]) {
    let Ok((h, mut r)) = msg::Reader::new(bytes) else {
        return;
    };
    if !h.is_complex() {
        return;
    }
    while !r.at_end() {
        let Ok(d) = r.desc() else { return };
        if tn::is_port(d.name) && d.inline {
            for _ in 0..d.number {
                let Ok(b) = r.data(8) else { return };
                let name = PortName(u64::from_ne_bytes(b.try_into().expect("8 bytes")) as u32);
                if name.is_valid() {
                    let _ = match d.name {
                        tn::MOVE_RECEIVE => ipc.port_mod_refs(name, Right::Receive, -1),
                        tn::PORT_NAME => KernReturn::SUCCESS,
                        _ => ipc.port_deallocate(name),
                    };
                }
            }
        } else if d.inline {
            let Some(n) = d.data_len() else { return };
            if r.data(n).is_err() {
                return;
            }
        } else {
            let Ok(addr) = r.address() else { return };
            if let Some(n) = d.data_len()
                && n > 0
                && addr != 0
            {
                // SAFETY: the kernel mapped the region into this task for
                // this message, which is being discarded.
                let _ = unsafe { ipc.vm_deallocate(addr, n) };
            }
        }
    }
}

/// The header of a reply to `to`.
#[must_use]
pub fn reply_header(to: &ReplyTo) -> Header {
    Header {
        bits: msg::bits(to.right, 0),
        size: 0,
        remote: to.port,
        local: PortName::NULL,
        seqno: 0,
        id: to.id + REPLY_OFFSET,
    }
}

/// Appends the return code item of a reply.
pub fn ret_code(b: &mut Builder, code: KernReturn) {
    b.desc(INT32).raw(&code.0.to_ne_bytes());
}

/// A reply carrying only a return code (`mig_reply_header_t`, 48 bytes):
/// every error, and success for `device_close` / `device_set_status`.
#[must_use]
pub fn error_reply(to: &ReplyTo, code: KernReturn) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, code);
    b.finish()
}

/// Success with nothing else to say.
#[must_use]
pub fn simple_reply(to: &ReplyTo) -> MsgBuf {
    error_reply(to, KernReturn::SUCCESS)
}
