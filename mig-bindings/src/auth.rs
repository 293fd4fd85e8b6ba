//! The Hurd's `auth` interface (subsystem 25000, `hurd/auth.defs`): the
//! rendezvous by which a server learns a client's ids. The client calls
//! `auth_user_authenticate` and the server `auth_server_authenticate`
//! with the same rendezvous port; the auth server matches the two, hands
//! the server's new port to the client and the client's ids to the
//! server (`io_reauthenticate`, glibc's `_hurd_setauth`).

use alloc::vec::Vec;

use mach::KernReturn;
use mach::msg::{self, Builder, Header, MsgBuf};
use mach::port::{PortName, type_name as tn};

use crate::io::{ids, put_ids};
use crate::rpc::{ReplyTo, bad, reply_body, reply_header, ret_code};

/// `auth_getids`.
pub const ID_GETIDS: i32 = 25000;
/// `auth_makeauth`.
pub const ID_MAKEAUTH: i32 = 25001;
/// `auth_user_authenticate`.
pub const ID_USER_AUTHENTICATE: i32 = 25002;
/// `auth_server_authenticate`.
pub const ID_SERVER_AUTHENTICATE: i32 = 25003;

/// The ids an auth handle stands for: effective and available user and
/// group ids (the first available id is the real one, the second the
/// saved one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthIds {
    /// Effective user ids.
    pub euids: Vec<u32>,
    /// Available user ids.
    pub auids: Vec<u32>,
    /// Effective group ids.
    pub egids: Vec<u32>,
    /// Available group ids.
    pub agids: Vec<u32>,
}

/// `auth_server_authenticate` request: `rendezvous` (the client's port)
/// and `newport` (what the client is to receive), with their
/// dispositions.
#[must_use]
pub fn server_authenticate_request(
    auth: PortName,
    reply: PortName,
    rendezvous: (PortName, u8),
    newport: (PortName, u8),
) -> MsgBuf {
    let mut b = Builder::new(Header::request(auth, reply, ID_SERVER_AUTHENTICATE));
    b.port(rendezvous.0, rendezvous.1);
    b.port(newport.0, newport.1);
    b.finish()
}

/// Decodes an `auth_server_authenticate` reply as MIG's user stub does;
/// out-of-line arrays are copied and deallocated.
pub fn decode_server_authenticate_reply(
    ipc: &dyn mach::ipc::Ipc,
    bytes: &[u8],
) -> Result<AuthIds, KernReturn> {
    let h = Header::read(bytes).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let mut r = reply_body(bytes, ID_SERVER_AUTHENTICATE, None, h.is_complex())?;
    let mut lists = Vec::with_capacity(4);
    let mut took = 0;
    let mut well_formed = true;
    while lists.len() < 4 {
        let Ok(list) = ids(&mut r) else {
            well_formed = false;
            break;
        };
        took += list.item_len();
        well_formed &= h.is_complex() || !list.is_out_of_line();
        lists.push(list);
    }
    well_formed &= h.size as usize == SERVER_REPLY_MIN + took && r.at_end();
    // Out-of-line arrays of this reply are regions the kernel mapped into
    // this task for it, ours to deallocate (all of them, even when the
    // reply is refused).
    let mut taken = lists.into_iter().map(|l| {
        // SAFETY: as said above, for this array.
        unsafe { l.take(ipc) }
    });
    let mut next = || taken.next().unwrap_or_default();
    let ids = AuthIds {
        euids: next(),
        auids: next(),
        egids: next(),
        agids: next(),
    };
    if well_formed {
        Ok(ids)
    } else {
        Err(KernReturn::MIG_TYPE_ERROR)
    }
}

/// Size of an `auth_server_authenticate` reply with four empty arrays.
pub const SERVER_REPLY_MIN: usize = 80;

/// `auth_server_authenticate` reply, the arrays inline.
#[must_use]
pub fn server_authenticate_reply(to: &ReplyTo, ids: &AuthIds) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    for list in [&ids.euids, &ids.auids, &ids.egids, &ids.agids] {
        put_ids(&mut b, list);
    }
    b.finish()
}

/// `auth_user_authenticate` request.
#[must_use]
pub fn user_authenticate_request(
    auth: PortName,
    reply: PortName,
    rendezvous: (PortName, u8),
) -> MsgBuf {
    let mut b = Builder::new(Header::request(auth, reply, ID_USER_AUTHENTICATE));
    b.port(rendezvous.0, rendezvous.1);
    b.finish()
}

/// Decodes an `auth_user_authenticate` reply: the server's new port (a
/// send right).
pub fn decode_user_authenticate_reply(bytes: &[u8]) -> Result<PortName, KernReturn> {
    let mut r = reply_body(bytes, ID_USER_AUTHENTICATE, Some(64), true)?;
    r.port(tn::MOVE_SEND)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// `auth_user_authenticate` reply carrying `newport` with `disp`.
#[must_use]
pub fn user_authenticate_reply(to: &ReplyTo, newport: PortName, disp: u8) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.port(newport, disp);
    b.finish()
}

/// A decoded `auth` request (of the two rendezvous routines an auth
/// server must answer; the others are `Other`).
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `auth_user_authenticate(rendezvous)`: a send right.
    UserAuthenticate {
        /// The rendezvous port.
        rendezvous: PortName,
    },
    /// `auth_server_authenticate(rendezvous, newport)`.
    ServerAuthenticate {
        /// The rendezvous port (a send right).
        rendezvous: PortName,
        /// The port for the user, as received (`newport_disp`).
        newport: PortName,
        /// How `newport` came: `MOVE_SEND` or `MOVE_SEND_ONCE`.
        newport_disp: u8,
    },
    /// Another routine of the subsystem.
    Other {
        /// Its id.
        id: i32,
    },
}

/// Decodes an `auth` request with the checks of MIG's server stubs.
pub fn decode_request(bytes: &[u8]) -> Result<Request, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| bad())?;
    let (size, complex) = (h.size as usize, h.is_complex());
    let req = match h.id {
        ID_USER_AUTHENTICATE => {
            if size != 48 || !complex {
                return Err(bad());
            }
            Request::UserAuthenticate {
                rendezvous: r.port(tn::MOVE_SEND).map_err(|_| bad())?,
            }
        }
        ID_SERVER_AUTHENTICATE => {
            if size != 64 || !complex {
                return Err(bad());
            }
            let rendezvous = r.port(tn::MOVE_SEND).map_err(|_| bad())?;
            let d = r.desc().map_err(|_| bad())?;
            if !tn::is_port(d.name) || d.size != 64 || d.number != 1 || !d.inline || d.longform {
                return Err(bad());
            }
            let raw = r.data(8).map_err(|_| bad())?;
            Request::ServerAuthenticate {
                rendezvous,
                newport: PortName(u64::from_ne_bytes(raw.try_into().expect("8 bytes")) as u32),
                newport_disp: d.name,
            }
        }
        id if (ID_GETIDS..ID_GETIDS + 100).contains(&id) => return Ok(Request::Other { id }),
        _ => return Err(KernReturn::MIG_BAD_ID),
    };
    if !r.at_end() {
        return Err(bad());
    }
    Ok(req)
}
