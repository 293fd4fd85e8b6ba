//! What both dispatch targets share: the fuzzed message built from the
//! input (reply disposition and complex bit from byte 1, the body from byte
//! 4 on), its port slots and out-of-line addresses mapped onto real rights
//! and memory so that it gets past the kernel's own checks, sending it,
//! and draining what comes back.

use mach::ipc::{Ipc, option};
use mach::loopback::Task;
use mach::msg::{self, HEADER_SIZE, Header, MsgBuf, TypeDesc};
use mach::port::type_name as tn;
use mach::{KernReturn, PortName};

/// The rights and memory a fuzzed message may name.
pub struct Targets<'a> {
    /// The client's own receive right (rights that would be given away
    /// are made from it) and where replies go.
    pub own: PortName,
    /// The reply port.
    pub reply: PortName,
    /// Rights copied into port slots.
    pub copies: [PortName; 3],
    /// What out-of-line data points at.
    pub ool: &'a [u8],
}

/// Sends `input` (at least 4 bytes) to `dest` as message `id` from
/// `client`; returns what the send answered.
pub fn send(client: &Task, input: &[u8], dest: PortName, id: i32, t: &Targets<'_>) -> KernReturn {
    let reply_disp = [0, tn::MAKE_SEND_ONCE, tn::MAKE_SEND, tn::COPY_SEND][usize::from(input[1] % 4)];
    let complex = input[1] & 0x80 != 0;
    let body = &input[4..];
    let len = (HEADER_SIZE + body.len()).next_multiple_of(4);
    let mut m = MsgBuf::zeroed(len);
    let h = Header {
        bits: msg::bits(tn::COPY_SEND, reply_disp) | if complex { msg::BITS_COMPLEX } else { 0 },
        size: len as u32,
        remote: dest,
        local: if reply_disp == 0 { PortName::NULL } else { t.reply },
        seqno: 0,
        id,
    };
    h.write(m.as_bytes_mut());
    m.as_bytes_mut()[HEADER_SIZE..HEADER_SIZE + body.len()].copy_from_slice(body);
    if complex {
        patch_body(m.as_bytes_mut(), t.own, t.copies, t.ool);
    }
    // SAFETY: a complete message whose out-of-line data points at `t.ool`.
    unsafe { client.mach_msg(m.as_mut_ptr(), option::SEND_MSG | option::SEND_TIMEOUT, len as u32, 0, PortName::NULL, 0, PortName::NULL) }
}

/// One RPC of the fixture's own, on this thread: sends `m`, runs `serve`
/// (the server handling it), and returns the reply waiting on `reply`.
pub fn call(client: &Task, mut m: MsgBuf, reply: PortName, serve: impl FnOnce()) -> MsgBuf {
    let len = m.len() as u32;
    // SAFETY: a complete request.
    unsafe { client.mach_msg(m.as_mut_ptr(), option::SEND_MSG, len, 0, PortName::NULL, 0, PortName::NULL) }.result().unwrap();
    serve();
    let mut r = MsgBuf::zeroed(8192);
    // SAFETY: a valid buffer of 8192 bytes.
    unsafe { client.mach_msg(r.as_mut_ptr(), option::RCV_MSG | option::RCV_TIMEOUT, 0, 8192, reply, 1000, PortName::NULL) }.result().unwrap();
    r
}

/// Receives (into `buf`) and releases everything waiting on `ports`.
pub fn drain(client: &Task, ports: &[PortName], buf: &mut MsgBuf) {
    for &port in ports {
        loop {
            // SAFETY: a valid buffer of 8192 bytes.
            let got = unsafe { client.mach_msg(buf.as_mut_ptr(), option::RCV_MSG | option::RCV_TIMEOUT, 0, 8192, port, 0, PortName::NULL) };
            if got != KernReturn::SUCCESS {
                break;
            }
            mig_bindings::rpc::destroy_request_resources(client, buf.as_bytes());
        }
    }
}

/// Rewrites the port and out-of-line items of `bytes`: a right the
/// harness would give away (moved, or made from a receive right) is made
/// from `own` instead; other rights become copies of one of `copies`
/// (slot values pick null or one of them); out-of-line data points at
/// `ool`, never deallocated, at most its length.
fn patch_body(bytes: &mut [u8], own: PortName, copies: [PortName; 3], ool: &[u8]) {
    let mut pos = HEADER_SIZE;
    while pos + 8 <= bytes.len() {
        let Ok(mut d) = TypeDesc::read(&bytes[pos..]) else { return };
        let data = pos + 8;
        if tn::is_port(d.name) && d.inline {
            if d.size != 64 {
                return;
            }
            let made = matches!(d.name, tn::MOVE_SEND | tn::MOVE_SEND_ONCE | tn::MOVE_RECEIVE | tn::MAKE_SEND | tn::MAKE_SEND_ONCE);
            d.name = match d.name {
                tn::MOVE_SEND_ONCE | tn::MAKE_SEND_ONCE => tn::MAKE_SEND_ONCE,
                _ if made => tn::MAKE_SEND,
                _ => tn::COPY_SEND,
            };
            bytes[pos..pos + 8].copy_from_slice(&d.encode());
            for i in 0..d.number as usize {
                let at = data + i * 8;
                if at + 8 > bytes.len() {
                    return;
                }
                let name = match bytes[at] % 4 {
                    0 => PortName::NULL,
                    _ if made => own,
                    k => copies[usize::from(k) - 1],
                };
                bytes[at..at + 8].copy_from_slice(&u64::from(name.0).to_ne_bytes());
            }
            pos = data + msg::pad(d.number as usize * 8);
        } else if d.inline {
            let Some(n) = d.data_len() else { return };
            pos = data.saturating_add(msg::pad(n));
        } else {
            if data + 8 > bytes.len() {
                return;
            }
            d.deallocate = false;
            if d.data_len().is_none_or(|n| n > ool.len()) {
                // As many elements as fit in the buffer.
                d.number = if d.size == 0 { 0 } else { (ool.len() * 8 / usize::from(d.size)) as u32 };
            }
            bytes[pos..pos + 8].copy_from_slice(&d.encode());
            bytes[data..data + 8].copy_from_slice(&(ool.as_ptr() as u64).to_ne_bytes());
            pos = data + 8;
        }
    }
}
