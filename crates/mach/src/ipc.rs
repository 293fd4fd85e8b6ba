//! The transport interface: what a task can do with its IPC space. The
//! real GNU Mach (through glibc on the Hurd, or raw traps) and the
//! in-process loopback kernel implement it alike.

use crate::kern::KernReturn;
use crate::port::{PortName, Right};

/// `mach_msg` option bits.
pub mod option {
    /// Send the message.
    pub const SEND_MSG: u32 = 0x0000_0001;
    /// Then receive one.
    pub const RCV_MSG: u32 = 0x0000_0002;
    /// Give up sending after the timeout.
    pub const SEND_TIMEOUT: u32 = 0x0000_0010;
    /// Arm a msg-accepted notification if the queue is full.
    pub const SEND_NOTIFY: u32 = 0x0000_0020;
    /// Return on interruption while sending.
    pub const SEND_INTERRUPT: u32 = 0x0000_0040;
    /// Cancel a pending notification.
    pub const SEND_CANCEL: u32 = 0x0000_0080;
    /// Give up receiving after the timeout.
    pub const RCV_TIMEOUT: u32 = 0x0000_0100;
    /// Reserved.
    pub const RCV_NOTIFY: u32 = 0x0000_0200;
    /// Return on interruption while receiving.
    pub const RCV_INTERRUPT: u32 = 0x0000_0400;
    /// Leave a too-large message queued and report its size.
    pub const RCV_LARGE: u32 = 0x0000_0800;
}

/// An IPC space and the calls on it.
pub trait Ipc: Send + Sync {
    /// `mach_msg`: sends and/or receives on a raw message buffer.
    ///
    /// # Safety
    /// `msg` must be valid for reads of `send_size` bytes (when sending)
    /// and writes of `rcv_size` bytes (when receiving), 8-byte aligned; the
    /// out-of-line regions a sent message names must be readable (and, with
    /// the deallocate bit, owned by this task's VM).
    #[allow(clippy::too_many_arguments)]
    unsafe fn mach_msg(
        &self,
        msg: *mut u8,
        option: u32,
        send_size: u32,
        rcv_size: u32,
        rcv_name: PortName,
        timeout_ms: u32,
        notify: PortName,
    ) -> KernReturn;

    /// `mach_port_allocate` of a receive right or a port set.
    fn port_allocate(&self, right: Right) -> Result<PortName, KernReturn>;

    /// `mach_port_deallocate`: drops one user reference of a send,
    /// send-once or dead-name right.
    fn port_deallocate(&self, name: PortName) -> KernReturn;

    /// `mach_port_mod_refs`.
    fn port_mod_refs(&self, name: PortName, right: Right, delta: i32) -> KernReturn;

    /// `mach_port_insert_right` (e.g. `MAKE_SEND` on one's own receive right).
    fn port_insert_right(&self, name: PortName, poly: PortName, disposition: u8) -> KernReturn;

    /// `mach_port_move_member`: into a port set, or out of any with `NULL`.
    fn port_move_member(&self, member: PortName, set: PortName) -> KernReturn;

    /// `mach_port_request_notification`: `id` is a `notify::*` id; returns
    /// the previously registered notify port (as a send-once right).
    fn request_notification(
        &self,
        name: PortName,
        id: i32,
        sync: u32,
        notify: PortName,
        notify_disposition: u8,
    ) -> Result<PortName, KernReturn>;

    /// The task's own task port (`mach_task_self`), or `NULL` where tasks
    /// have no ports (the loopback kernel).
    fn task_self(&self) -> PortName;

    /// `mach_reply_port`: a new receive right for replies.
    fn reply_port(&self) -> PortName;

    /// `vm_allocate` anywhere, zero-filled.
    fn vm_allocate(&self, size: usize) -> Result<u64, KernReturn>;

    /// A region like [`Ipc::vm_allocate`]'s for a caller that overwrites
    /// all of it before it is read or sent: its bytes need not be zero.
    /// Mach's zero-fill pages cost nothing until touched, so this is
    /// `vm_allocate`; the loopback kernel skips zeroing a reused region
    /// (a memset as long as the copy that then overwrites it).
    fn vm_allocate_for_overwrite(&self, size: usize) -> Result<u64, KernReturn> {
        self.vm_allocate(size)
    }

    /// `vm_deallocate`.
    ///
    /// # Safety
    /// The region must not be used afterwards.
    unsafe fn vm_deallocate(&self, addr: u64, size: usize) -> KernReturn;
}
