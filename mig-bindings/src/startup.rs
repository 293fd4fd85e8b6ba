//! The Hurd's `startup` interface (subsystem 29000), as a client, and
//! `startup_notify` (29500), which a registered task serves.

use mach::KernReturn;
use mach::msg::{self, Builder, Header, MsgBuf};
use mach::port::{PortName, type_name as tn};

use crate::fsys::put_string;
use crate::rpc::bad;

/// `startup_essential_task`.
pub const ID_ESSENTIAL_TASK: i32 = 29000;
/// `startup_request_notification`.
pub const ID_REQUEST_NOTIFICATION: i32 = 29001;
/// `startup_reboot`.
pub const ID_REBOOT: i32 = 29002;
/// `startup_dosync` (`startup_notify`): the system is going down; sync.
pub const ID_DOSYNC: i32 = 29500;

/// `startup_essential_task(task, excpt, name, credential)`: this task must
/// not die; `excpt` is a receive right handed over.
#[must_use]
pub fn essential_task_request(
    startup: PortName,
    reply: PortName,
    task: PortName,
    excpt: PortName,
    name: &str,
    credential: PortName,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(startup, reply, ID_ESSENTIAL_TASK));
    b.port(task, tn::COPY_SEND);
    b.port(excpt, tn::MOVE_RECEIVE);
    put_string(&mut b, name);
    b.port(credential, tn::COPY_SEND);
    b.finish()
}

/// `startup_request_notification(notify_port, name)`: call
/// `startup_dosync` on `notify` at shutdown.
#[must_use]
pub fn request_notification_request(
    startup: PortName,
    reply: PortName,
    notify: PortName,
    disp: u8,
    name: &str,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(startup, reply, ID_REQUEST_NOTIFICATION));
    b.port(notify, disp);
    put_string(&mut b, name);
    b.finish()
}

/// Checks a `startup_dosync` request (a bare header).
pub fn decode_dosync(bytes: &[u8]) -> Result<(), KernReturn> {
    let h = Header::read(bytes).map_err(|_| bad())?;
    if h.id != ID_DOSYNC {
        return Err(KernReturn::MIG_BAD_ID);
    }
    if h.size as usize != msg::HEADER_SIZE || h.is_complex() {
        return Err(bad());
    }
    Ok(())
}
