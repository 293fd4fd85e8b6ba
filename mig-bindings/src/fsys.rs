//! The Hurd's `fsys` interface (subsystem 22000): the routines of the
//! bootstrap chain a translator's control port answers and forwards.

use alloc::string::String;

use mach::KernReturn;
use mach::msg::{self, Builder, Header, MsgBuf, TypeDesc};
use mach::port::{PortName, type_name as tn};

use crate::rpc::{INT32, ReplyTo, bad, int32, reply_body, reply_header, ret_code};

/// `fsys_startup`.
pub const ID_STARTUP: i32 = 22000;
/// `fsys_goaway`.
pub const ID_GOAWAY: i32 = 22001;
/// `fsys_getroot`.
pub const ID_GETROOT: i32 = 22002;
/// `fsys_syncfs`.
pub const ID_SYNCFS: i32 = 22004;
/// `fsys_getpriv`.
pub const ID_GETPRIV: i32 = 22006;
/// `fsys_init`.
pub const ID_INIT: i32 = 22007;
/// Last routine of the subsystem (`fsys_get_source`).
pub const ID_LAST: i32 = 22011;

/// A decoded `fsys` request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `fsys_startup(openflags, control_port)`: a translator below asks for
    /// its underlying node.
    Startup {
        /// Open flags.
        openflags: i32,
        /// The caller's control port (a send right now ours).
        control: PortName,
    },
    /// `fsys_goaway(flags)`.
    Goaway {
        /// `FSYS_GOAWAY_*`.
        flags: i32,
    },
    /// `fsys_syncfs(wait, do_children)`.
    Syncfs {
        /// Wait for completion.
        wait: bool,
        /// Sync child translators too.
        do_children: bool,
    },
    /// `fsys_getpriv()`: host privileged port, device master, task.
    Getpriv,
    /// `fsys_getroot(dotdot, uids, gids, flags)`: a lookup of the node this
    /// translator sits on. The request's rights and arrays are not kept;
    /// release them with `destroy_request_resources`.
    Getroot {
        /// `O_*` open flags of the lookup.
        flags: i32,
    },
    /// `fsys_init(proc_server, auth_handle)`.
    Init {
        /// The proc server (a send right now ours).
        proc_server: PortName,
        /// The auth handle (a send right now ours).
        auth: PortName,
    },
    /// Another routine of the subsystem (rights and memory it carried must
    /// be released with `destroy_request_resources`).
    Other {
        /// Its id.
        id: i32,
    },
}

fn port(r: &mut msg::Reader<'_>) -> Result<PortName, KernReturn> {
    r.port(tn::MOVE_SEND).map_err(|_| bad())
}

/// Decodes a request with the checks of MIG's server stubs; `MIG_BAD_ID`
/// for ids outside the subsystem.
pub fn decode_request(bytes: &[u8]) -> Result<Request, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| bad())?;
    let (size, complex) = (h.size as usize, h.is_complex());
    let shape = |want: usize, want_complex: bool| {
        if size == want && complex == want_complex {
            Ok(())
        } else {
            Err(bad())
        }
    };
    match h.id {
        ID_STARTUP => {
            shape(64, true)?;
            let openflags = int32(&mut r)?;
            Ok(Request::Startup {
                openflags,
                control: port(&mut r)?,
            })
        }
        ID_GOAWAY => {
            shape(48, false)?;
            Ok(Request::Goaway {
                flags: int32(&mut r)?,
            })
        }
        ID_SYNCFS => {
            shape(64, false)?;
            let wait = int32(&mut r)? != 0;
            Ok(Request::Syncfs {
                wait,
                do_children: int32(&mut r)? != 0,
            })
        }
        ID_GETROOT => {
            if size < 80 || !complex {
                return Err(bad());
            }
            let _dotdot = port(&mut r)?;
            for _ in 0..2 {
                crate::io::ids(&mut r)?;
            }
            let flags = int32(&mut r)?;
            if !r.at_end() {
                return Err(bad());
            }
            Ok(Request::Getroot { flags })
        }
        ID_GETPRIV => {
            shape(msg::HEADER_SIZE, false)?;
            Ok(Request::Getpriv)
        }
        ID_INIT => {
            shape(64, true)?;
            let proc_server = port(&mut r)?;
            Ok(Request::Init {
                proc_server,
                auth: port(&mut r)?,
            })
        }
        id if (ID_STARTUP..=ID_LAST).contains(&id) => Ok(Request::Other { id }),
        _ => Err(KernReturn::MIG_BAD_ID),
    }
}

/// The arguments of an `fsys_getroot` request, for a server that serves
/// the lookup (a file system): the `..` port (a send right now ours, or
/// null) and the client's ids (out-of-line arrays are ours to deallocate).
#[derive(Debug, PartialEq, Eq)]
pub struct Getroot<'a> {
    /// The node's parent, for lookups of `..` at the root.
    pub dotdot: PortName,
    /// The user ids.
    pub uids: crate::io::Ids<'a>,
    /// The group ids.
    pub gids: crate::io::Ids<'a>,
    /// `O_*` open flags of the lookup.
    pub flags: i32,
}

/// Decodes an `fsys_getroot` request with MIG's checks.
pub fn decode_getroot(bytes: &[u8]) -> Result<Getroot<'_>, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| bad())?;
    if h.id != ID_GETROOT {
        return Err(KernReturn::MIG_BAD_ID);
    }
    if (h.size as usize) < 80 || !h.is_complex() {
        return Err(bad());
    }
    let dotdot = port(&mut r)?;
    let uids = crate::io::ids(&mut r)?;
    let gids = crate::io::ids(&mut r)?;
    let flags = int32(&mut r)?;
    if !r.at_end() {
        return Err(bad());
    }
    Ok(Getroot {
        dotdot,
        uids,
        gids,
        flags,
    })
}

/// `fsys_getpriv` reply: three rights with their dispositions.
#[must_use]
pub fn getpriv_reply(to: &ReplyTo, rights: [(PortName, u8); 3]) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    for (name, disp) in rights {
        b.port(name, disp);
    }
    b.finish()
}

/// `fsys_getroot` reply: `file` with disposition `disp`, no retry (the
/// shape of a `dir_lookup` reply).
#[must_use]
pub fn getroot_reply(to: &ReplyTo, file: PortName, disp: u8) -> MsgBuf {
    crate::fs::lookup_reply(to, crate::fs::FS_RETRY_NORMAL, "", file, disp)
}

/// `fsys_getroot` request with no credentials (tests and simple clients).
#[must_use]
pub fn getroot_request(
    dest: PortName,
    reply: PortName,
    dotdot: (PortName, u8),
    flags: i32,
) -> MsgBuf {
    getroot_request_as(dest, reply, dotdot, &[], &[], flags)
}

/// `fsys_getroot` request as the user with `uids` and `gids` (inline).
#[must_use]
pub fn getroot_request_as(
    dest: PortName,
    reply: PortName,
    dotdot: (PortName, u8),
    uids: &[u32],
    gids: &[u32],
    flags: i32,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_GETROOT));
    b.port(dotdot.0, dotdot.1);
    for ids in [uids, gids] {
        crate::io::put_ids(&mut b, ids);
    }
    b.desc(INT32).raw(&flags.to_ne_bytes());
    b.finish()
}

/// Decodes an `fsys_getroot` reply: retry kind, retry name, and the node.
pub fn decode_getroot_reply(bytes: &[u8]) -> Result<(i32, String, PortName), KernReturn> {
    crate::fs::decode_retry_reply(bytes, ID_GETROOT)
}

/// `fsys_startup` reply: the real node.
#[must_use]
pub fn startup_reply(to: &ReplyTo, realnode: PortName, disp: u8) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.port(realnode, disp);
    b.finish()
}

/// `fsys_getpriv` request.
#[must_use]
pub fn getpriv_request(dest: PortName, reply: PortName) -> MsgBuf {
    Builder::new(Header::request(dest, reply, ID_GETPRIV)).finish()
}

/// `fsys_startup` request (forwarding a control port up the chain).
#[must_use]
pub fn startup_request(
    dest: PortName,
    reply: PortName,
    openflags: i32,
    control: PortName,
    disp: u8,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_STARTUP));
    b.desc(INT32).raw(&openflags.to_ne_bytes());
    b.port(control, disp);
    b.finish()
}

/// `fsys_init` request.
#[must_use]
pub fn init_request(
    dest: PortName,
    reply: PortName,
    proc_server: (PortName, u8),
    auth: (PortName, u8),
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_INIT));
    b.port(proc_server.0, proc_server.1);
    b.port(auth.0, auth.1);
    b.finish()
}

/// `fsys_syncfs` request.
#[must_use]
pub fn syncfs_request(dest: PortName, reply: PortName, wait: bool, do_children: bool) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_SYNCFS));
    b.desc(INT32).raw(&i32::from(wait).to_ne_bytes());
    b.desc(INT32).raw(&i32::from(do_children).to_ne_bytes());
    b.finish()
}

/// Decodes an `fsys_getpriv` reply: host privileged port, device master,
/// file system task (send rights now ours).
pub fn decode_getpriv_reply(bytes: &[u8]) -> Result<[PortName; 3], KernReturn> {
    let mut r = reply_body(bytes, ID_GETPRIV, Some(96), true)?;
    let mut out = [PortName::NULL; 3];
    for slot in &mut out {
        *slot = r
            .port(tn::MOVE_SEND)
            .map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    }
    Ok(out)
}

/// Decodes an `fsys_startup` reply: the real node.
pub fn decode_startup_reply(bytes: &[u8]) -> Result<PortName, KernReturn> {
    let mut r = reply_body(bytes, ID_STARTUP, Some(64), true)?;
    r.port(tn::MOVE_SEND)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// The `STRING_C` descriptor of a Hurd `string_t` (1024 bytes inline).
pub const STRING: TypeDesc = TypeDesc::inline(tn::STRING_C, 8, 1024);

/// Reads a `string_t`: the bytes before its NUL (MIG's server stubs end
/// it at its last byte).
pub fn read_string<'a>(r: &mut msg::Reader<'a>) -> Result<&'a [u8], KernReturn> {
    crate::rpc::check(r, STRING)?;
    let raw = r.data(1024).map_err(|_| bad())?;
    let raw = &raw[..1023];
    Ok(&raw[..raw.iter().position(|&c| c == 0).unwrap_or(raw.len())])
}

/// Appends a `string_t` (cut to 1023 bytes, NUL-padded).
pub fn put_string(b: &mut Builder, s: &str) {
    let mut field = [0u8; 1024];
    let n = s.len().min(1023);
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
    b.desc(STRING).raw(&field);
}

/// `fsys_goaway` request.
#[must_use]
pub fn goaway_request(dest: PortName, reply: PortName, flags: i32) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_GOAWAY));
    b.desc(INT32).raw(&flags.to_ne_bytes());
    b.finish()
}
