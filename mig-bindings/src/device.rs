//! GNU Mach's device interface (`device/device.defs`, subsystem 2800).

use alloc::vec::Vec;

use mach::KernReturn;
use mach::ipc::Ipc;
use mach::msg::{self, Builder, HEADER_SIZE, Header, MsgBuf, TypeDesc};
use mach::port::{PortName, type_name as tn};

use crate::net::NET_MAX_FILTER;
use crate::rpc::{INT32, bad, check, int32, reply_body, reply_header, ret_code};
pub use crate::rpc::{
    REPLY_HEADER_SIZE, REPLY_OFFSET, ReplyTo, decode_simple_reply, destroy_request_resources,
    error_reply, reply_to, simple_reply,
};

/// `device_open`.
pub const ID_OPEN: i32 = 2800;
/// `device_close`.
pub const ID_CLOSE: i32 = 2801;
/// `device_write` (out-of-line data).
pub const ID_WRITE: i32 = 2802;
/// `device_write_inband`.
pub const ID_WRITE_INBAND: i32 = 2803;
/// `device_read` (out-of-line data).
pub const ID_READ: i32 = 2804;
/// `device_read_inband`.
pub const ID_READ_INBAND: i32 = 2805;
/// `device_open_new` (name as `c_string[128]` in short form).
pub const ID_OPEN_NEW: i32 = 2806;
/// `device_map`.
pub const ID_MAP: i32 = 2809;
/// `device_set_status`.
pub const ID_SET_STATUS: i32 = 2810;
/// `device_get_status`.
pub const ID_GET_STATUS: i32 = 2811;
/// `device_set_filter`.
pub const ID_SET_FILTER: i32 = 2812;
/// `device_intr_register`.
pub const ID_INTR_REGISTER: i32 = 2813;
/// `device_intr_ack`.
pub const ID_INTR_ACK: i32 = 2814;
/// `IO_INBAND_MAX`: bytes of an inband transfer.
pub const INBAND_MAX: usize = 128;
/// `dev_status_t` holds at most this many words.
pub const STATUS_MAX: usize = 1024;
/// `dev_name_t` capacity (with the terminating NUL).
pub const NAME_MAX: usize = 128;

const MODE: TypeDesc = TypeDesc::inline(tn::INTEGER_32, 32, 1);
const RECNUM: TypeDesc = TypeDesc::inline(tn::INTEGER_64, 64, 1);
/// `dev_name_t`: one 1024-bit C string, long form.
const NAME: TypeDesc = TypeDesc {
    name: tn::STRING_C,
    size: 1024,
    number: 1,
    inline: true,
    longform: true,
    deallocate: false,
};
/// `new_dev_name_t`: 128 characters, short form.
const NAME_NEW: TypeDesc = TypeDesc::inline(tn::STRING_C, 8, NAME_MAX as u32);
/// `mach_port_send_t` as a server receives it: `MACH_MSG_TYPE_PORT_SEND`
/// (the value of `MOVE_SEND`), whatever disposition the client sent.
const PORT_SEND: TypeDesc = TypeDesc::inline(tn::MOVE_SEND, 64, 1);

/// A decoded request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `device_open(mode, name)`.
    Open {
        /// `D_READ` / `D_WRITE` / `D_NODELAY`.
        mode: u32,
        /// Device name (up to 127 bytes).
        name: &'a str,
    },
    /// `device_open_new(mode, name)`.
    OpenNew {
        /// Mode bits.
        mode: u32,
        /// Device name.
        name: &'a str,
    },
    /// `device_close`.
    Close,
    /// `device_write` with out-of-line data the kernel mapped at `addr`.
    Write {
        /// Mode bits (unused by servers).
        mode: u32,
        /// Record number.
        recnum: u64,
        /// Address of the data in the receiving task.
        addr: u64,
        /// Its length.
        len: usize,
    },
    /// `device_write_inband`.
    WriteInband {
        /// Mode bits.
        mode: u32,
        /// Record number.
        recnum: u64,
        /// The data (at most 128 bytes).
        data: &'a [u8],
    },
    /// `device_read`.
    Read {
        /// Mode bits.
        mode: u32,
        /// Record number.
        recnum: u64,
        /// Bytes wanted.
        len: usize,
    },
    /// `device_read_inband`.
    ReadInband {
        /// Mode bits.
        mode: u32,
        /// Record number.
        recnum: u64,
        /// Bytes wanted.
        len: usize,
    },
    /// `device_get_status(flavor)` with room for `count` words.
    GetStatus {
        /// Flavor.
        flavor: u32,
        /// Words the client has room for.
        count: usize,
    },
    /// `device_set_status(flavor, status)`.
    SetStatus {
        /// Flavor.
        flavor: u32,
        /// Status words.
        status: Vec<i32>,
    },
    /// `device_set_filter(receive_port, priority, filter)`: frames the
    /// program `filter` accepts go to `port` as `net_rcv_msg`s (see
    /// [`crate::net`]).
    SetFilter {
        /// A send right the request carried (now the receiver's).
        port: PortName,
        /// The filter's priority (`NET_HI_PRI` and above: exclusive).
        priority: i32,
        /// The program: NETF words, or BPF instructions after a
        /// `NETF_BPF` header word (at most `NET_MAX_FILTER` words).
        filter: Vec<u16>,
    },
    /// A routine of the interface this decoder does not take apart
    /// (`device_map`, `device_intr_register`, `device_intr_ack`): rights
    /// and memory it carries must be released with
    /// [`destroy_request_resources`].
    Unsupported {
        /// Its id.
        id: i32,
    },
}

impl Request<'_> {
    /// Releases what an unanswered request carried: the out-of-line data
    /// of a write, the send right of a `device_set_filter`.
    pub fn release(&self, ipc: &dyn Ipc) {
        match *self {
            Self::Write { addr, len, .. } if len > 0 => {
                // SAFETY: the region came with the request and nothing else
                // refers to it.
                let _ = unsafe { ipc.vm_deallocate(addr, len) };
            }
            Self::SetFilter { port, .. } if port.is_valid() => {
                let _ = ipc.port_deallocate(port);
            }
            _ => {}
        }
    }
}

fn recnum(r: &mut msg::Reader<'_>) -> Result<u64, KernReturn> {
    check(r, RECNUM)?;
    let b = r.data(8).map_err(|_| bad())?;
    Ok(u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

fn name_str(bytes: &[u8]) -> Result<&str, KernReturn> {
    // MIG forces termination at the last byte.
    let b = &bytes[..bytes.len().min(NAME_MAX - 1)];
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..end]).map_err(|_| KernReturn::D_NO_SUCH_DEVICE)
}

/// Decodes a request with the checks of MIG's server stubs: exact sizes,
/// the complex bit, and every type descriptor. Errors are what those stubs
/// answer (`MIG_BAD_ARGUMENTS`, `MIG_BAD_ID`).
pub fn decode_request(bytes: &[u8]) -> Result<Request<'_>, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| bad())?;
    let size = h.size as usize;
    let complex = h.is_complex();
    let simple_size = |want: usize| {
        if size == want && !complex {
            Ok(())
        } else {
            Err(bad())
        }
    };
    match h.id {
        ID_OPEN | ID_OPEN_NEW => {
            simple_size(184)?;
            let mode = int32(&mut r)? as u32;
            check(&mut r, if h.id == ID_OPEN { NAME } else { NAME_NEW })?;
            let name = name_str(r.data(NAME_MAX).map_err(|_| bad())?)?;
            Ok(if h.id == ID_OPEN {
                Request::Open { mode, name }
            } else {
                Request::OpenNew { mode, name }
            })
        }
        ID_CLOSE => {
            simple_size(HEADER_SIZE)?;
            Ok(Request::Close)
        }
        ID_WRITE => decode_write(size, complex, &mut r),
        ID_WRITE_INBAND => decode_write_inband(size, complex, &mut r),
        ID_READ | ID_READ_INBAND => {
            simple_size(80)?;
            let mode = int32(&mut r)? as u32;
            let recnum = recnum(&mut r)?;
            let len = int32(&mut r)?;
            let len = usize::try_from(len).map_err(|_| KernReturn::D_INVALID_SIZE)?;
            Ok(if h.id == ID_READ {
                Request::Read { mode, recnum, len }
            } else {
                Request::ReadInband { mode, recnum, len }
            })
        }
        ID_GET_STATUS => {
            simple_size(64)?;
            let flavor = int32(&mut r)? as u32;
            let count = int32(&mut r)? as u32 as usize;
            Ok(Request::GetStatus {
                flavor,
                count: count.min(STATUS_MAX),
            })
        }
        ID_SET_STATUS => decode_set_status(size, complex, &mut r),
        ID_SET_FILTER => decode_set_filter(size, complex, &mut r),
        ID_MAP | ID_INTR_REGISTER | ID_INTR_ACK => Ok(Request::Unsupported { id: h.id }),
        _ => Err(KernReturn::MIG_BAD_ID),
    }
}

fn decode_write<'a>(
    size: usize,
    complex: bool,
    r: &mut msg::Reader<'a>,
) -> Result<Request<'a>, KernReturn> {
    if size != 80 || !complex {
        return Err(bad());
    }
    let mode = int32(r)? as u32;
    let recnum = recnum(r)?;
    let d = r.desc().map_err(|_| bad())?;
    if d.inline || !d.longform || d.name != tn::INTEGER_8 || d.size != 8 {
        return Err(bad());
    }
    let addr = r.address().map_err(|_| bad())?;
    Ok(Request::Write {
        mode,
        recnum,
        addr,
        len: d.number as usize,
    })
}

fn decode_write_inband<'a>(
    size: usize,
    complex: bool,
    r: &mut msg::Reader<'a>,
) -> Result<Request<'a>, KernReturn> {
    if size < 72 || complex {
        return Err(bad());
    }
    let mode = int32(r)? as u32;
    let recnum = recnum(r)?;
    let n = inline_array(r, tn::CHAR, 8, INBAND_MAX)?;
    if size != 72 + msg::pad(n) {
        return Err(bad());
    }
    let data = r.data(n).map_err(|_| bad())?;
    Ok(Request::WriteInband { mode, recnum, data })
}

/// The element count of an inline array of `name` (`bits` wide) with at
/// most `max` elements, its descriptor checked as MIG's server does.
fn inline_array(
    r: &mut msg::Reader<'_>,
    name: u8,
    bits: u16,
    max: usize,
) -> Result<usize, KernReturn> {
    let d = r.desc().map_err(|_| bad())?;
    let n = d.number as usize;
    if d.name != name || d.size != bits || !d.inline || d.longform || d.deallocate || n > max {
        return Err(bad());
    }
    Ok(n)
}

fn decode_set_status<'a>(
    size: usize,
    complex: bool,
    r: &mut msg::Reader<'a>,
) -> Result<Request<'a>, KernReturn> {
    if size < 56 || complex {
        return Err(bad());
    }
    let flavor = int32(r)? as u32;
    let n = inline_array(r, tn::INTEGER_32, 32, STATUS_MAX)?;
    if size != 56 + msg::pad(4 * n) {
        return Err(bad());
    }
    let raw = r.data(4 * n).map_err(|_| bad())?;
    let status = raw
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok(Request::SetStatus { flavor, status })
}

/// `device_set_filter`, checked as MIG's `_Xdevice_set_filter` does: at
/// least 72 bytes and complex; the port descriptor exactly `PORT_SEND`
/// (a send-once right, a bare name or data there is refused); the priority
/// an `int`; the filter inline, short form, 16-bit `INTEGER_16` (its
/// deallocate bit, meaningless inline, is not looked at); the size exactly
/// 72 plus the padded words. More than `NET_MAX_FILTER` words is refused
/// too: MIG's server never receives them (its buffer holds 128).
fn decode_set_filter<'a>(
    size: usize,
    complex: bool,
    r: &mut msg::Reader<'a>,
) -> Result<Request<'a>, KernReturn> {
    if size < 72 || !complex {
        return Err(bad());
    }
    check(r, PORT_SEND)?;
    let raw = r.data(8).map_err(|_| bad())?;
    let port = PortName(u64::from_ne_bytes(raw.try_into().expect("8 bytes")) as u32);
    let priority = int32(r)?;
    let d = r.desc().map_err(|_| bad())?;
    if !d.inline || d.longform || d.name != tn::INTEGER_16 || d.size != 16 {
        return Err(bad());
    }
    let n = d.number as usize;
    if n > NET_MAX_FILTER || size != 72 + msg::pad(2 * n) {
        return Err(bad());
    }
    let raw = r.data(2 * n).map_err(|_| bad())?;
    let filter = raw
        .chunks_exact(2)
        .map(|c| u16::from_ne_bytes(c.try_into().expect("2 bytes")))
        .collect();
    Ok(Request::SetFilter {
        port,
        priority,
        filter,
    })
}

/// `device_open` reply: the device port with disposition `disp`
/// (`MAKE_SEND` for our own port, `MOVE_SEND` for a forwarded one).
#[must_use]
pub fn open_reply(to: &ReplyTo, port: PortName, disp: u8) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.port(port, disp);
    b.finish()
}

/// `device_read` reply: `len` bytes out of line at `addr` (deallocated
/// from the server when sent).
#[must_use]
pub fn read_reply(to: &ReplyTo, addr: u64, len: usize) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    // Complex even when no data travels, as MIG makes it.
    b.ool(addr, len, true);
    b.finish()
}

/// `device_read_inband` reply.
#[must_use]
pub fn read_inband_reply(to: &ReplyTo, data: &[u8]) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(TypeDesc::inline(tn::CHAR, 8, data.len() as u32))
        .raw(data);
    b.finish()
}

/// `device_write` / `device_write_inband` reply.
#[must_use]
pub fn write_reply(to: &ReplyTo, written: i32) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(INT32).raw(&written.to_ne_bytes());
    b.finish()
}

/// `device_get_status` reply.
#[must_use]
pub fn get_status_reply(to: &ReplyTo, status: &[i32]) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    let mut raw = Vec::with_capacity(status.len() * 4);
    for w in status {
        raw.extend_from_slice(&w.to_ne_bytes());
    }
    b.desc(TypeDesc::inline(tn::INTEGER_32, 32, status.len() as u32))
        .raw(&raw);
    b.finish()
}

/// `device_open` request (name cut to 127 bytes, as MIG's `mig_strncpy`).
#[must_use]
pub fn open_request(master: PortName, reply: PortName, mode: u32, name: &str) -> MsgBuf {
    let mut b = Builder::new(Header::request(master, reply, ID_OPEN));
    b.desc(MODE).raw(&mode.to_ne_bytes());
    let mut field = [0u8; NAME_MAX];
    let n = name.len().min(NAME_MAX - 1);
    field[..n].copy_from_slice(&name.as_bytes()[..n]);
    b.desc(NAME).raw(&field);
    b.finish()
}

/// `device_close` request.
#[must_use]
pub fn close_request(device: PortName, reply: PortName) -> MsgBuf {
    Builder::new(Header::request(device, reply, ID_CLOSE)).finish()
}

/// `device_read` / `device_read_inband` request.
#[must_use]
pub fn read_request(
    device: PortName,
    reply: PortName,
    inband: bool,
    recnum: u64,
    len: i32,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(
        device,
        reply,
        if inband { ID_READ_INBAND } else { ID_READ },
    ));
    b.desc(MODE).raw(&0u32.to_ne_bytes());
    b.desc(RECNUM).raw(&recnum.to_ne_bytes());
    b.desc(INT32).raw(&len.to_ne_bytes());
    b.finish()
}

/// `device_write` request with out-of-line data at `addr`.
#[must_use]
pub fn write_request(
    device: PortName,
    reply: PortName,
    recnum: u64,
    addr: u64,
    len: usize,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(device, reply, ID_WRITE));
    b.desc(MODE).raw(&0u32.to_ne_bytes());
    b.desc(RECNUM).raw(&recnum.to_ne_bytes());
    b.ool(addr, len, false);
    b.finish()
}

/// `device_write_inband` request (at most 128 bytes).
#[must_use]
pub fn write_inband_request(device: PortName, reply: PortName, recnum: u64, data: &[u8]) -> MsgBuf {
    let mut b = Builder::new(Header::request(device, reply, ID_WRITE_INBAND));
    b.desc(MODE).raw(&0u32.to_ne_bytes());
    b.desc(RECNUM).raw(&recnum.to_ne_bytes());
    b.desc(TypeDesc::inline(tn::CHAR, 8, data.len() as u32))
        .raw(data);
    b.finish()
}

/// `device_get_status` request.
#[must_use]
pub fn get_status_request(device: PortName, reply: PortName, flavor: u32, count: u32) -> MsgBuf {
    let mut b = Builder::new(Header::request(device, reply, ID_GET_STATUS));
    b.desc(INT32).raw(&flavor.to_ne_bytes());
    b.desc(INT32).raw(&count.to_ne_bytes());
    b.finish()
}

/// `device_intr_register(id, flags, receive_port)`: interrupts of line
/// `id` arrive as messages on `receive_port` (sent with `disp`, usually
/// `MAKE_SEND`).
#[must_use]
pub fn intr_register_request(
    device: PortName,
    reply: PortName,
    id: i32,
    flags: i32,
    receive_port: PortName,
    disp: u8,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(device, reply, ID_INTR_REGISTER));
    b.desc(INT32).raw(&id.to_ne_bytes());
    b.desc(INT32).raw(&flags.to_ne_bytes());
    b.port(receive_port, disp);
    b.finish()
}

/// `device_intr_ack(receive_port)`: the interrupt delivered on
/// `receive_port` was handled; the line is unmasked.
#[must_use]
pub fn intr_ack_request(
    device: PortName,
    reply: PortName,
    receive_port: PortName,
    disp: u8,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(device, reply, ID_INTR_ACK));
    b.port(receive_port, disp);
    b.finish()
}

/// `device_set_status` request.
#[must_use]
pub fn set_status_request(
    device: PortName,
    reply: PortName,
    flavor: u32,
    status: &[i32],
) -> MsgBuf {
    let mut b = Builder::new(Header::request(device, reply, ID_SET_STATUS));
    b.desc(INT32).raw(&flavor.to_ne_bytes());
    let mut raw = Vec::with_capacity(status.len() * 4);
    for w in status {
        raw.extend_from_slice(&w.to_ne_bytes());
    }
    b.desc(TypeDesc::inline(tn::INTEGER_32, 32, status.len() as u32))
        .raw(&raw);
    b.finish()
}

/// `device_set_filter(receive_port, priority, filter)` request, laid out
/// as MIG's user stub lays it out: `port` goes with `disposition`
/// (usually `MAKE_SEND` on a receive right of the caller), and the message
/// is complex only when that is a right (a `PORT_NAME` is sent as data,
/// and MIG's server refuses it). The word count is not checked here (a
/// server refuses more than `NET_MAX_FILTER`); [`Client::set_filter`]
/// checks it as the stub does.
#[must_use]
pub fn set_filter_request(
    device: PortName,
    reply: PortName,
    port: PortName,
    disposition: u8,
    priority: i32,
    filter: &[u16],
) -> MsgBuf {
    let mut b = Builder::new(Header::request(device, reply, ID_SET_FILTER));
    if (tn::MOVE_RECEIVE..=tn::MAKE_SEND_ONCE).contains(&disposition) {
        b.port(port, disposition);
    } else {
        b.desc(TypeDesc::inline(disposition, 64, 1))
            .raw(&u64::from(port.0).to_ne_bytes());
    }
    b.desc(INT32).raw(&priority.to_ne_bytes());
    let mut raw = Vec::with_capacity(filter.len() * 2);
    for w in filter {
        raw.extend_from_slice(&w.to_ne_bytes());
    }
    b.desc(TypeDesc::inline(tn::INTEGER_16, 16, filter.len() as u32))
        .raw(&raw);
    b.finish()
}

/// Decodes a `device_open` reply: the device port received.
pub fn decode_open_reply(bytes: &[u8]) -> Result<PortName, KernReturn> {
    let mut r = reply_body(bytes, ID_OPEN, Some(64), true)?;
    r.port(tn::MOVE_SEND)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// Decodes a `device_read` reply: address and length of the data, now
/// mapped in the receiving task.
pub fn decode_read_reply(bytes: &[u8]) -> Result<(u64, usize), KernReturn> {
    let mut r = reply_body(bytes, ID_READ, Some(64), true)?;
    let d = r.desc().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if d.inline || !d.longform || d.name != tn::INTEGER_8 || d.size != 8 {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    let addr = r.address().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok((addr, d.number as usize))
}

/// Decodes a `device_read_inband` reply.
pub fn decode_read_inband_reply(bytes: &[u8]) -> Result<Vec<u8>, KernReturn> {
    let mut r = reply_body(bytes, ID_READ_INBAND, None, false)?;
    let d = r.desc().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if d.name != tn::CHAR || d.size != 8 || !d.inline || d.number as usize > INBAND_MAX {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    Ok(r.data(d.number as usize)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)?
        .to_vec())
}

/// Decodes a `device_write[_inband]` reply: bytes written.
pub fn decode_write_reply(bytes: &[u8], request_id: i32) -> Result<i32, KernReturn> {
    let mut r = reply_body(bytes, request_id, Some(64), false)?;
    int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// Decodes a `device_get_status` reply.
pub fn decode_get_status_reply(bytes: &[u8]) -> Result<Vec<i32>, KernReturn> {
    let mut r = reply_body(bytes, ID_GET_STATUS, None, false)?;
    let d = r.desc().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if d.name != tn::INTEGER_32 || d.size != 32 || !d.inline || d.number as usize > STATUS_MAX {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    let raw = r
        .data(4 * d.number as usize)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok(raw
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// A device-interface client over an [`Ipc`]. Like MIG's stubs it keeps
/// one reply port for its RPCs, made on first use and replaced after an
/// RPC that failed at the transport.
#[derive(Debug)]
pub struct Client<'a, I: Ipc + ?Sized> {
    ipc: &'a I,
    reply: core::cell::Cell<PortName>,
}

impl<I: Ipc + ?Sized> Drop for Client<'_, I> {
    fn drop(&mut self) {
        let r = self.reply.get();
        if r.is_valid() {
            let _ = self.ipc.port_mod_refs(r, mach::port::Right::Receive, -1);
        }
    }
}

/// Out-of-line data received by this task: `len` bytes at `addr`, given
/// back with `vm_deallocate` on drop.
pub struct Region<'a, I: Ipc + ?Sized> {
    ipc: &'a I,
    addr: u64,
    len: usize,
}

impl<I: Ipc + ?Sized> core::ops::Deref for Region<'_, I> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the kernel mapped `len` bytes at `addr` into this task and
        // they stay mapped until `drop` deallocates them.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl<I: Ipc + ?Sized> Drop for Region<'_, I> {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: the region is this task's and no slice of it outlives
            // `self`.
            let _ = unsafe { self.ipc.vm_deallocate(self.addr, self.len) };
        }
    }
}

impl<'a, I: Ipc + ?Sized> Client<'a, I> {
    /// A client on `ipc`.
    pub fn new(ipc: &'a I) -> Self {
        Self {
            ipc,
            reply: core::cell::Cell::new(PortName::NULL),
        }
    }

    /// A client on `ipc` receiving its replies on `reply` (a receive right
    /// of this task, or null for one of its own); [`Client::into_reply`]
    /// gives it back for the next client.
    pub fn with_reply(ipc: &'a I, reply: PortName) -> Self {
        Self {
            ipc,
            reply: core::cell::Cell::new(reply),
        }
    }

    /// The reply port, now the caller's (null if there is none: never
    /// made, or destroyed after a failed call).
    #[must_use]
    pub fn into_reply(self) -> PortName {
        self.reply.replace(PortName::NULL)
    }

    fn rpc(&self, build: impl FnOnce(PortName) -> MsgBuf) -> Result<MsgBuf, KernReturn> {
        let mut reply = self.reply.get();
        if !reply.is_valid() {
            reply = self.ipc.port_allocate(mach::port::Right::Receive)?;
            self.reply.set(reply);
        }
        let r = crate::rpc::call(self.ipc, reply, build);
        if r.is_err() {
            // Whatever may still arrive on it belongs to the failed call.
            let _ = self
                .ipc
                .port_mod_refs(reply, mach::port::Right::Receive, -1);
            self.reply.set(PortName::NULL);
        }
        r
    }

    /// `device_open`: a send right to the device.
    pub fn open(&self, master: PortName, mode: u32, name: &str) -> Result<PortName, KernReturn> {
        decode_open_reply(
            self.rpc(|r| open_request(master, r, mode, name))?
                .as_bytes(),
        )
    }

    /// `device_close`.
    pub fn close(&self, device: PortName) -> Result<(), KernReturn> {
        decode_simple_reply(self.rpc(|r| close_request(device, r))?.as_bytes(), ID_CLOSE)
    }

    /// `device_read` (out of line), copied into a vector.
    pub fn read(&self, device: PortName, recnum: u64, len: i32) -> Result<Vec<u8>, KernReturn> {
        Ok(self.read_region(device, recnum, len)?.to_vec())
    }

    /// `device_read` (out of line) without a copy: the pages the kernel
    /// mapped into this task, deallocated when the [`Region`] drops.
    pub fn read_region(
        &self,
        device: PortName,
        recnum: u64,
        len: i32,
    ) -> Result<Region<'a, I>, KernReturn> {
        let m = self.rpc(|r| read_request(device, r, false, recnum, len))?;
        let (addr, len) = decode_read_reply(m.as_bytes())?;
        Ok(Region {
            ipc: self.ipc,
            addr,
            len,
        })
    }

    /// `device_read_inband`.
    pub fn read_inband(
        &self,
        device: PortName,
        recnum: u64,
        len: i32,
    ) -> Result<Vec<u8>, KernReturn> {
        decode_read_inband_reply(
            self.rpc(|r| read_request(device, r, true, recnum, len))?
                .as_bytes(),
        )
    }

    /// `device_write` (out of line, not deallocated).
    pub fn write(&self, device: PortName, recnum: u64, data: &[u8]) -> Result<i32, KernReturn> {
        let m = self.rpc(|r| write_request(device, r, recnum, data.as_ptr() as u64, data.len()))?;
        decode_write_reply(m.as_bytes(), ID_WRITE)
    }

    /// `device_write_inband` (at most 128 bytes).
    pub fn write_inband(
        &self,
        device: PortName,
        recnum: u64,
        data: &[u8],
    ) -> Result<i32, KernReturn> {
        let m = self.rpc(|r| write_inband_request(device, r, recnum, data))?;
        decode_write_reply(m.as_bytes(), ID_WRITE_INBAND)
    }

    /// `device_get_status`.
    pub fn get_status(
        &self,
        device: PortName,
        flavor: u32,
        count: u32,
    ) -> Result<Vec<i32>, KernReturn> {
        decode_get_status_reply(
            self.rpc(|r| get_status_request(device, r, flavor, count))?
                .as_bytes(),
        )
    }

    /// `device_intr_register` on the "irq" device.
    pub fn intr_register(
        &self,
        device: PortName,
        id: i32,
        flags: i32,
        receive_port: PortName,
    ) -> Result<(), KernReturn> {
        let m =
            self.rpc(|r| intr_register_request(device, r, id, flags, receive_port, tn::MAKE_SEND))?;
        decode_simple_reply(m.as_bytes(), ID_INTR_REGISTER)
    }

    /// `device_intr_ack` on the "irq" device.
    pub fn intr_ack(&self, device: PortName, receive_port: PortName) -> Result<(), KernReturn> {
        let m = self.rpc(|r| intr_ack_request(device, r, receive_port, tn::MAKE_SEND))?;
        decode_simple_reply(m.as_bytes(), ID_INTR_ACK)
    }

    /// `device_set_filter`: frames `filter` accepts go to `port`, sent with
    /// `disposition` (`MAKE_SEND` on a receive right of this task). More
    /// than `NET_MAX_FILTER` words is `MIG_ARRAY_TOO_LARGE` without a
    /// message, as MIG's stub answers.
    pub fn set_filter(
        &self,
        device: PortName,
        port: PortName,
        disposition: u8,
        priority: i32,
        filter: &[u16],
    ) -> Result<(), KernReturn> {
        if filter.len() > NET_MAX_FILTER {
            return Err(KernReturn::MIG_ARRAY_TOO_LARGE);
        }
        let m = self.rpc(|r| set_filter_request(device, r, port, disposition, priority, filter))?;
        decode_simple_reply(m.as_bytes(), ID_SET_FILTER)
    }

    /// `device_set_status`.
    pub fn set_status(
        &self,
        device: PortName,
        flavor: u32,
        status: &[i32],
    ) -> Result<(), KernReturn> {
        decode_simple_reply(
            self.rpc(|r| set_status_request(device, r, flavor, status))?
                .as_bytes(),
            ID_SET_STATUS,
        )
    }
}
