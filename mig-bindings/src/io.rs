//! The Hurd's `io` interface (subsystem 21000, `hurd/io.defs`): reading,
//! writing, seeking, open modes and `io_stat` on a file's port — the
//! routines a file server's protid answers.

use alloc::vec::Vec;

use mach::KernReturn;
use mach::msg::{self, Builder, Header, MsgBuf, TypeDesc};
use mach::port::{PortName, type_name as tn};

use crate::fs::{TIMESPEC, timespec};
use crate::rpc::{INT32, ReplyTo, bad, check, int32, reply_body, reply_header, ret_code};

/// `io_write`.
pub const ID_WRITE: i32 = 21000;
/// `io_read`.
pub const ID_READ: i32 = 21001;
/// `io_seek`.
pub const ID_SEEK: i32 = 21002;
/// `io_readable`.
pub const ID_READABLE: i32 = 21003;
/// `io_set_all_openmodes`.
pub const ID_SET_ALL_OPENMODES: i32 = 21004;
/// `io_get_openmodes`.
pub const ID_GET_OPENMODES: i32 = 21005;
/// `io_set_some_openmodes`.
pub const ID_SET_SOME_OPENMODES: i32 = 21006;
/// `io_clear_some_openmodes`.
pub const ID_CLEAR_SOME_OPENMODES: i32 = 21007;
/// `io_select`.
pub const ID_SELECT: i32 = 21012;
/// `io_stat`.
pub const ID_STAT: i32 = 21013;
/// `io_reauthenticate` (a simpleroutine: no reply).
pub const ID_REAUTHENTICATE: i32 = 21014;
/// `io_restrict_auth`.
pub const ID_RESTRICT_AUTH: i32 = 21015;
/// `io_duplicate`.
pub const ID_DUPLICATE: i32 = 21016;
/// `io_server_version`.
pub const ID_SERVER_VERSION: i32 = 21017;
/// `io_pathconf`.
pub const ID_PATHCONF: i32 = 21028;
/// `io_identity`.
pub const ID_IDENTITY: i32 = 21029;
/// `io_select_timeout`.
pub const ID_SELECT_TIMEOUT: i32 = 21031;
/// Last routine of the subsystem (`io_select_timeout`).
pub const ID_LAST: i32 = ID_SELECT_TIMEOUT;

/// `io_select`'s kinds of readiness (`<hurd/io.h>`).
pub mod select {
    /// Reading would not block.
    pub const READ: i32 = 1;
    /// Writing would not block.
    pub const WRITE: i32 = 2;
    /// Urgent data is there.
    pub const URG: i32 = 4;
}

/// Largest `data_t` MIG carries inline (its stubs' 2048-byte buffer);
/// longer data travels out of line.
pub const INLINE_MAX: usize = 2048;

/// `MACH_MSG_TYPE_INTEGER_64`, one element.
pub const INT64: TypeDesc = TypeDesc::inline(tn::INTEGER_64, 64, 1);

/// Bytes of an `io_statbuf_t` (22 64-bit words on `x86_64`).
pub const STATBUF_LEN: usize = 176;

/// Data of a request or reply (`data_t`): inline, or a region MIG mapped
/// into the receiver (whose owner must deallocate it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data<'a> {
    /// In the message.
    Inline(&'a [u8]),
    /// Out of line: `len` bytes at `addr` in the receiver's space.
    OutOfLine {
        /// Address.
        addr: u64,
        /// Length.
        len: usize,
    },
}

/// An `idarray_t` (user or group ids): inline, or out of line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ids<'a> {
    /// In the message (native-endian `u32`s).
    Inline(&'a [u8]),
    /// `count` ids at `addr` in the receiver's space.
    OutOfLine {
        /// Address.
        addr: u64,
        /// Number of ids.
        count: usize,
    },
}

impl Ids<'_> {
    /// The ids, copied; an out-of-line array is deallocated.
    ///
    /// # Safety
    /// An out-of-line array must be a region the kernel mapped into this
    /// task for the message, owned by the caller.
    pub unsafe fn take(self, ipc: &dyn mach::ipc::Ipc) -> Vec<u32> {
        let data = match self {
            Self::Inline(b) => Data::Inline(b),
            Self::OutOfLine { addr, count } => Data::OutOfLine {
                addr,
                len: 4 * count,
            },
        };
        // SAFETY: the caller's promise, for the same region.
        let bytes = unsafe { take_data(ipc, data) };
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes(c.try_into().expect("4 bytes")))
            .collect()
    }
}

impl Ids<'_> {
    /// Bytes the array takes in a message body after its descriptor.
    #[must_use]
    pub fn item_len(&self) -> usize {
        match self {
            Self::Inline(b) => msg::pad(b.len()),
            Self::OutOfLine { .. } => 8,
        }
    }

    /// Whether the array came out of line (only real in a complex message).
    #[must_use]
    pub fn is_out_of_line(&self) -> bool {
        matches!(self, Self::OutOfLine { .. })
    }
}

/// Appends an `idarray_t` inline (long form, as MIG sends one).
pub fn put_ids(b: &mut Builder, list: &[u32]) {
    let list: Vec<i32> = list.iter().map(|&id| id as i32).collect();
    b.int32_array(&list, true);
}

/// Reads an `idarray_t` (long-form `INTEGER_32` array).
pub fn ids<'a>(r: &mut msg::Reader<'a>) -> Result<Ids<'a>, KernReturn> {
    let d = r.desc().map_err(|_| bad())?;
    if !d.longform || d.name != tn::INTEGER_32 || d.size != 32 {
        return Err(bad());
    }
    let count = d.number as usize;
    if d.inline {
        Ok(Ids::Inline(r.data(4 * count).map_err(|_| bad())?))
    } else {
        let addr = r.address().map_err(|_| bad())?;
        Ok(Ids::OutOfLine { addr, count })
    }
}

/// A decoded `io` request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `io_write(data, offset)`; offset −1 is the file pointer.
    Write {
        /// The data.
        data: Data<'a>,
        /// Where.
        offset: i64,
    },
    /// `io_read(offset, amount)`.
    Read {
        /// Where; −1 is the file pointer.
        offset: i64,
        /// How much at most.
        amount: u64,
    },
    /// `io_seek(offset, whence)`.
    Seek {
        /// Offset.
        offset: i64,
        /// `SEEK_SET`, `SEEK_CUR`, `SEEK_END`.
        whence: i32,
    },
    /// `io_readable()`.
    Readable,
    /// `io_set_all_openmodes(bits)`.
    SetAllOpenmodes(i32),
    /// `io_get_openmodes()`.
    GetOpenmodes,
    /// `io_set_some_openmodes(bits)`.
    SetSomeOpenmodes(i32),
    /// `io_clear_some_openmodes(bits)`.
    ClearSomeOpenmodes(i32),
    /// `io_stat()`.
    Stat,
    /// `io_duplicate()`.
    Duplicate,
    /// `io_reauthenticate(rendezvous)`: a send right, now the server's.
    Reauthenticate {
        /// The client's rendezvous port, for `auth_server_authenticate`.
        rendezvous: PortName,
    },
    /// `io_restrict_auth(uids, gids)` (out-of-line arrays are ours to
    /// deallocate).
    RestrictAuth {
        /// User ids.
        uids: Ids<'a>,
        /// Group ids.
        gids: Ids<'a>,
    },
    /// `io_server_version()`.
    ServerVersion,
    /// `io_select(select_type)`: the reply port in the header.
    Select {
        /// [`select`] bits asked for.
        select_type: i32,
    },
    /// `io_select_timeout(timeout, select_type)`.
    SelectTimeout {
        /// The deadline (seconds, nanoseconds).
        timeout: (i64, i64),
        /// [`select`] bits asked for.
        select_type: i32,
    },
    /// `io_pathconf(name)`: glibc's `_PC_*` number.
    Pathconf(i32),
    /// `io_identity()`: the node's identity port, the file system's, the
    /// file number.
    Identity,
    /// Another routine of the subsystem (its rights and memory must be
    /// released with `destroy_request_resources`).
    Other {
        /// Its id.
        id: i32,
    },
}

/// Reads an `INTEGER_64` item.
pub fn int64(r: &mut msg::Reader<'_>) -> Result<i64, KernReturn> {
    check(r, INT64)?;
    let b = r.data(8).map_err(|_| bad())?;
    Ok(i64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// Reads a `data_t` (a long-form `CHAR` array, inline or out of line);
/// returns it and the bytes the item took in the body.
pub fn data<'a>(r: &mut msg::Reader<'a>) -> Result<(Data<'a>, usize), KernReturn> {
    let d = r.desc().map_err(|_| bad())?;
    if !d.longform || d.name != tn::CHAR || d.size != 8 {
        return Err(bad());
    }
    let n = d.number as usize;
    if d.inline {
        if n > INLINE_MAX {
            return Err(bad());
        }
        let bytes = r.data(n).map_err(|_| bad())?;
        Ok((Data::Inline(bytes), msg::pad(n)))
    } else {
        let addr = r.address().map_err(|_| bad())?;
        Ok((Data::OutOfLine { addr, len: n }, 8))
    }
}

/// Appends a `data_t` inline (at most [`INLINE_MAX`] bytes).
pub fn put_data_inline(b: &mut Builder, data: &[u8]) {
    let mut d = TypeDesc::inline(tn::CHAR, 8, data.len() as u32);
    d.longform = true;
    b.desc(d).raw(data);
}

/// Appends a `data_t` out of line (`dealloc`: the region leaves the sender).
pub fn put_data_ool(b: &mut Builder, addr: u64, len: usize, dealloc: bool) {
    b.ool_of(tn::CHAR, addr, len, dealloc);
}

/// Decodes a request with the checks of MIG's server stubs; `MIG_BAD_ID`
/// outside the subsystem.
pub fn decode_request(bytes: &[u8]) -> Result<Request<'_>, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| bad())?;
    let (size, complex) = (h.size as usize, h.is_complex());
    let simple = |want: usize| {
        if size == want && !complex {
            Ok(())
        } else {
            Err(bad())
        }
    };
    let req = match h.id {
        ID_WRITE => {
            if size < 56 {
                return Err(bad());
            }
            let (data, took) = data(&mut r)?;
            // Out-of-line data is only real in a complex message.
            if size != 56 + took || (!complex && matches!(data, Data::OutOfLine { .. })) {
                return Err(bad());
            }
            Request::Write {
                data,
                offset: int64(&mut r)?,
            }
        }
        ID_READ => {
            simple(64)?;
            let offset = int64(&mut r)?;
            Request::Read {
                offset,
                amount: int64(&mut r)? as u64,
            }
        }
        ID_SEEK => {
            simple(64)?;
            let offset = int64(&mut r)?;
            Request::Seek {
                offset,
                whence: int32(&mut r)?,
            }
        }
        ID_SET_ALL_OPENMODES
        | ID_SET_SOME_OPENMODES
        | ID_CLEAR_SOME_OPENMODES
        | ID_SELECT
        | ID_PATHCONF => {
            simple(48)?;
            let bits = int32(&mut r)?;
            match h.id {
                ID_SET_ALL_OPENMODES => Request::SetAllOpenmodes(bits),
                ID_SET_SOME_OPENMODES => Request::SetSomeOpenmodes(bits),
                ID_SELECT => Request::Select { select_type: bits },
                ID_PATHCONF => Request::Pathconf(bits),
                _ => Request::ClearSomeOpenmodes(bits),
            }
        }
        ID_SELECT_TIMEOUT => {
            simple(72)?;
            Request::SelectTimeout {
                timeout: timespec(&mut r)?,
                select_type: int32(&mut r)?,
            }
        }
        ID_READABLE | ID_GET_OPENMODES | ID_STAT | ID_DUPLICATE | ID_SERVER_VERSION
        | ID_IDENTITY => {
            simple(msg::HEADER_SIZE)?;
            match h.id {
                ID_READABLE => Request::Readable,
                ID_IDENTITY => Request::Identity,
                ID_GET_OPENMODES => Request::GetOpenmodes,
                ID_STAT => Request::Stat,
                ID_SERVER_VERSION => Request::ServerVersion,
                _ => Request::Duplicate,
            }
        }
        ID_REAUTHENTICATE => {
            if size != 48 || !complex {
                return Err(bad());
            }
            Request::Reauthenticate {
                rendezvous: r.port(tn::MOVE_SEND).map_err(|_| bad())?,
            }
        }
        ID_RESTRICT_AUTH => {
            // MIG: 48 bytes with empty arrays, each padded to 8.
            if size < 48 {
                return Err(bad());
            }
            let uids = ids(&mut r)?;
            let gids = ids(&mut r)?;
            let ool = uids.is_out_of_line() || gids.is_out_of_line();
            if size != 48 + uids.item_len() + gids.item_len() || (ool && !complex) {
                return Err(bad());
            }
            Request::RestrictAuth { uids, gids }
        }
        id if (ID_WRITE..=ID_LAST).contains(&id) => return Ok(Request::Other { id }),
        _ => return Err(KernReturn::MIG_BAD_ID),
    };
    if !r.at_end() {
        return Err(bad());
    }
    Ok(req)
}

/// A reply carrying one 64-bit result (`io_write`'s amount, `io_seek`'s
/// new position, `io_readable`'s amount).
#[must_use]
pub fn int64_reply(to: &ReplyTo, value: i64) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(INT64).raw(&value.to_ne_bytes());
    b.finish()
}

/// A reply carrying one `int` (`io_get_openmodes`, `io_select`,
/// `io_pathconf`).
#[must_use]
pub fn int32_reply(to: &ReplyTo, value: i32) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(INT32).raw(&value.to_ne_bytes());
    b.finish()
}

/// `io_read` reply with the data inline (at most [`INLINE_MAX`] bytes).
#[must_use]
pub fn read_reply_inline(to: &ReplyTo, data: &[u8]) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    put_data_inline(&mut b, data);
    b.finish()
}

/// `io_read` reply with `len` bytes out of line at `addr` (deallocated
/// from the server when sent).
#[must_use]
pub fn read_reply_ool(to: &ReplyTo, addr: u64, len: usize) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    put_data_ool(&mut b, addr, len, true);
    b.finish()
}

/// `io_server_version` reply.
#[must_use]
pub fn server_version_reply(to: &ReplyTo, name: &str, version: [i32; 3]) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    crate::fsys::put_string(&mut b, name);
    for v in version {
        b.desc(INT32).raw(&v.to_ne_bytes());
    }
    b.finish()
}

/// `io_restrict_auth` request with the ids inline.
#[must_use]
pub fn restrict_auth_request(
    file: PortName,
    reply: PortName,
    uids: &[u32],
    gids: &[u32],
) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_RESTRICT_AUTH));
    for list in [uids, gids] {
        put_ids(&mut b, list);
    }
    b.finish()
}

/// `io_reauthenticate` request (no reply port: a simpleroutine), the
/// rendezvous port given with `disp` (glibc: `MAKE_SEND` of a fresh
/// receive right).
#[must_use]
pub fn reauthenticate_request(file: PortName, rendezvous: PortName, disp: u8) -> MsgBuf {
    let header = Header {
        bits: msg::bits(tn::COPY_SEND, 0),
        ..Header::request(file, PortName::NULL, ID_REAUTHENTICATE)
    };
    let mut b = Builder::new(header);
    b.port(rendezvous, disp);
    b.finish()
}

/// `io_stat` reply.
#[must_use]
pub fn stat_reply(to: &ReplyTo, st: &[u8; STATBUF_LEN]) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(TypeDesc::inline(tn::INTEGER_64, 64, 22)).raw(st);
    b.finish()
}

/// A reply carrying one port (`io_duplicate`).
#[must_use]
pub fn port_reply(to: &ReplyTo, port: PortName, disp: u8) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.port(port, disp);
    b.finish()
}

/// `io_write` request with the data inline (at most [`INLINE_MAX`] bytes)
/// or, if longer, out of line from `data` (not deallocated).
#[must_use]
pub fn write_request(file: PortName, reply: PortName, data: &[u8], offset: i64) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_WRITE));
    if data.len() <= INLINE_MAX {
        put_data_inline(&mut b, data);
    } else {
        put_data_ool(&mut b, data.as_ptr() as u64, data.len(), false);
    }
    b.desc(INT64).raw(&offset.to_ne_bytes());
    b.finish()
}

/// `io_read` request.
#[must_use]
pub fn read_request(file: PortName, reply: PortName, offset: i64, amount: u64) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_READ));
    b.desc(INT64).raw(&offset.to_ne_bytes());
    b.desc(INT64).raw(&amount.to_ne_bytes());
    b.finish()
}

/// `io_seek` request.
#[must_use]
pub fn seek_request(file: PortName, reply: PortName, offset: i64, whence: i32) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_SEEK));
    b.desc(INT64).raw(&offset.to_ne_bytes());
    b.desc(INT32).raw(&whence.to_ne_bytes());
    b.finish()
}

/// A request with one `int` argument (`io_set_*_openmodes`, `io_select`,
/// `io_pathconf`).
#[must_use]
pub fn int32_request(file: PortName, reply: PortName, id: i32, value: i32) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, id));
    b.desc(INT32).raw(&value.to_ne_bytes());
    b.finish()
}

/// `io_select_timeout` request.
#[must_use]
pub fn select_timeout_request(
    file: PortName,
    reply: PortName,
    timeout: (i64, i64),
    select_type: i32,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_SELECT_TIMEOUT));
    b.desc(TIMESPEC)
        .raw(&timeout.0.to_ne_bytes())
        .raw(&timeout.1.to_ne_bytes());
    b.desc(INT32).raw(&select_type.to_ne_bytes());
    b.finish()
}

/// A request with no arguments (`io_stat`, `io_readable`, ...).
#[must_use]
pub fn bare_request(file: PortName, reply: PortName, id: i32) -> MsgBuf {
    Builder::new(Header::request(file, reply, id)).finish()
}

/// `io_identity` reply: send rights made of the node's identity port and
/// the file system's, and the file number.
#[must_use]
pub fn identity_reply(to: &ReplyTo, id: PortName, fsid: PortName, fileno: u64) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.port(id, tn::MAKE_SEND).port(fsid, tn::MAKE_SEND);
    b.desc(INT64).raw(&fileno.to_ne_bytes());
    b.finish()
}

/// Decodes an `io_identity` reply: (identity, file system identity, file
/// number).
pub fn decode_identity_reply(bytes: &[u8]) -> Result<(PortName, PortName, u64), KernReturn> {
    let mut r = reply_body(bytes, ID_IDENTITY, Some(96), true)?;
    let bad = |_| KernReturn::MIG_TYPE_ERROR;
    let id = r.port(tn::MOVE_SEND).map_err(bad)?;
    let fsid = r.port(tn::MOVE_SEND).map_err(bad)?;
    let fileno = int64(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok((id, fsid, fileno as u64))
}

/// Decodes a reply carrying one 64-bit result.
pub fn decode_int64_reply(bytes: &[u8], request_id: i32) -> Result<i64, KernReturn> {
    let mut r = reply_body(bytes, request_id, Some(64), false)?;
    int64(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// Decodes a reply carrying one `int`.
pub fn decode_int32_reply(bytes: &[u8], request_id: i32) -> Result<i32, KernReturn> {
    let mut r = reply_body(bytes, request_id, Some(64), false)?;
    int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// Decodes an `io_read` reply: the data (an out-of-line region is the
/// caller's to deallocate).
pub fn decode_read_reply(bytes: &[u8]) -> Result<Data<'_>, KernReturn> {
    decode_data_reply(bytes, ID_READ)
}

/// Decodes a reply carrying one `data_t` (`io_read`'s,
/// `file_get_translator`'s), inline or out of line.
pub fn decode_data_reply(bytes: &[u8], request_id: i32) -> Result<Data<'_>, KernReturn> {
    let complex = Header::read(bytes).is_ok_and(|h| h.is_complex());
    let mut r = reply_body(bytes, request_id, None, complex)?;
    let (d, _) = data(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if complex != matches!(d, Data::OutOfLine { .. }) {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    Ok(d)
}

/// Decodes an `io_server_version` reply: name, major, minor, edit.
pub fn decode_server_version_reply(
    bytes: &[u8],
) -> Result<(alloc::string::String, [i32; 3]), KernReturn> {
    let mut r = reply_body(bytes, ID_SERVER_VERSION, Some(1128), false)?;
    let name = crate::fsys::read_string(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let name = alloc::string::String::from_utf8_lossy(name).into_owned();
    let mut v = [0; 3];
    for n in &mut v {
        *n = int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    }
    Ok((name, v))
}

/// Decodes an `io_stat` reply.
pub fn decode_stat_reply(bytes: &[u8]) -> Result<[u8; STATBUF_LEN], KernReturn> {
    let mut r = reply_body(bytes, ID_STAT, Some(232), false)?;
    let raw = r
        .expect(tn::INTEGER_64, 64, 22)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok(raw.try_into().expect("176 bytes"))
}

/// Decodes a reply carrying one port (now the caller's send right).
pub fn decode_port_reply(bytes: &[u8], request_id: i32) -> Result<PortName, KernReturn> {
    let mut r = reply_body(bytes, request_id, Some(64), true)?;
    r.port(tn::MOVE_SEND)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// The fields of an `io_statbuf_t` (glibc's `struct stat` on `x86_64`
/// GNU/Hurd).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Stat {
    pub fstype: i32,
    pub fsid: u64,
    pub ino: u64,
    pub generation: u32,
    pub rdev: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: i64,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub blksize: i64,
    pub blocks: i64,
    pub author: u32,
    pub flags: u32,
}

impl Stat {
    /// The wire bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; STATBUF_LEN] {
        let mut b = [0u8; STATBUF_LEN];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.fstype.to_ne_bytes());
        put(8, &self.fsid.to_ne_bytes());
        put(16, &self.ino.to_ne_bytes());
        put(24, &self.generation.to_ne_bytes());
        put(32, &self.rdev.to_ne_bytes());
        put(40, &self.mode.to_ne_bytes());
        put(48, &self.nlink.to_ne_bytes());
        put(56, &self.uid.to_ne_bytes());
        put(60, &self.gid.to_ne_bytes());
        put(64, &self.size.to_ne_bytes());
        for (off, (s, ns)) in [(72, self.atime), (88, self.mtime), (104, self.ctime)] {
            put(off, &s.to_ne_bytes());
            put(off + 8, &ns.to_ne_bytes());
        }
        put(120, &self.blksize.to_ne_bytes());
        put(128, &self.blocks.to_ne_bytes());
        put(136, &self.author.to_ne_bytes());
        put(140, &self.flags.to_ne_bytes());
        b
    }

    /// Decodes the wire bytes.
    #[must_use]
    pub fn decode(b: &[u8; STATBUF_LEN]) -> Self {
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().expect("4"));
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().expect("8"));
        let ts = |o: usize| (u64_at(o) as i64, u64_at(o + 8) as i64);
        Self {
            fstype: u32_at(0) as i32,
            fsid: u64_at(8),
            ino: u64_at(16),
            generation: u32_at(24),
            rdev: u64_at(32),
            mode: u32_at(40),
            nlink: u64_at(48),
            uid: u32_at(56),
            gid: u32_at(60),
            size: u64_at(64) as i64,
            atime: ts(72),
            mtime: ts(88),
            ctime: ts(104),
            blksize: u64_at(120) as i64,
            blocks: u64_at(128) as i64,
            author: u32_at(136),
            flags: u32_at(140),
        }
    }
}

/// Copies the out-of-line data of a reply or request out of this task's
/// space and deallocates it; inline data is copied.
///
/// # Safety
/// An out-of-line `d` must be a region the kernel mapped into this task
/// for the message, owned by the caller.
pub unsafe fn take_data(ipc: &dyn mach::ipc::Ipc, d: Data<'_>) -> Vec<u8> {
    match d {
        Data::Inline(b) => b.to_vec(),
        Data::OutOfLine { len: 0, .. } => Vec::new(),
        Data::OutOfLine { addr, len } => {
            // SAFETY: the caller's promise.
            let v = unsafe { core::slice::from_raw_parts(addr as *const u8, len) }.to_vec();
            // SAFETY: the region is the caller's and nothing refers to it.
            let _ = unsafe { ipc.vm_deallocate(addr, len) };
            v
        }
    }
}
