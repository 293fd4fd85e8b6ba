//! What both dispatch targets do to a fuzzed complex body before sending
//! it: port slots and out-of-line addresses mapped onto real rights and
//! memory, so that messages get past the kernel's own checks.

use mach::PortName;
use mach::msg::{self, HEADER_SIZE, TypeDesc};
use mach::port::type_name as tn;

/// Rewrites the port and out-of-line items of `bytes`: a right the
/// harness would give away (moved, or made from a receive right) is made
/// from `own` instead; other rights become copies of one of `copies`
/// (slot values pick null or one of them); out-of-line data points at
/// `ool`, never deallocated, at most its length.
pub fn patch_body(bytes: &mut [u8], own: PortName, copies: [PortName; 3], ool: &[u8]) {
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
