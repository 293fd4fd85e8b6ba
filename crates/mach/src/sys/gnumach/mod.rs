//! The raw-trap transport: GNU Mach without glibc, for `no_std` bootstrap
//! tasks (the GNU Mach test bed, `tests/gnumach`). `mach_msg` and the
//! port/VM calls GNU Mach has traps for go straight to the kernel
//! ([`trap`]); the rest are kernel RPCs on the task or host port, built by
//! [`kernel`] with this crate's message code — the same code the Hurd and
//! loopback transports carry.

mod trap;

use core::sync::atomic::{AtomicU32, Ordering};

use crate::ipc::{Ipc, option};
use crate::kern::KernReturn;
use crate::kernel_rpc::{self as kernel, KernelRpc};
use crate::msg::MsgBuf;
use crate::port::{PortName, Right, type_name as tn};
use crate::rpc;

pub use crate::kernel_rpc::TASK_BOOTSTRAP_PORT;

/// `host_reboot` options (`sys/reboot.h`): reboot at once.
pub const RB_AUTOBOOT: i32 = 0;

/// The calling task's IPC space on GNU Mach, through traps.
#[derive(Debug, Default)]
pub struct GnuMach {
    /// One cached reply port for kernel RPCs (taken while in use).
    reply: AtomicU32,
    task: AtomicU32,
}

impl GnuMach {
    /// The transport (nothing is allocated until first use).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            reply: AtomicU32::new(0),
            task: AtomicU32::new(0),
        }
    }

    fn task(&self) -> u32 {
        match self.task.load(Ordering::Relaxed) {
            0 => {
                // SAFETY: a trap without arguments. Every call adds a user
                // reference, so the name is asked for once and kept.
                let t = unsafe { trap::gnumach_mach_task_self() };
                self.task.store(t, Ordering::Relaxed);
                t
            }
            t => t,
        }
    }

    fn put_reply_port(&self, reply: u32) {
        if self
            .reply
            .compare_exchange(0, reply, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.destroy_receive(PortName(reply));
        }
    }

    /// Drops a receive right without needing a reply port: a
    /// `mach_port_mod_refs` request with no reply port (the kernel discards
    /// the reply).
    fn destroy_receive(&self, name: PortName) {
        let mut m = kernel::port_mod_refs_request(
            PortName(self.task()),
            PortName::NULL,
            name,
            Right::Receive as u32,
            -1,
        );
        let len = m.len() as u32;
        // SAFETY: a complete request; nothing is received.
        let _ = unsafe {
            self.mach_msg(
                m.as_mut_ptr(),
                option::SEND_MSG,
                len,
                0,
                PortName::NULL,
                0,
                PortName::NULL,
            )
        };
    }

    /// `task_terminate` (on this task, it does not return).
    pub fn task_terminate(&self, task: PortName) -> KernReturn {
        // SAFETY: a trap on a port name.
        KernReturn(unsafe { trap::gnumach_task_terminate(task.0) })
    }

    /// `task_set_special_port(task, which, port)` (the port is copied as a
    /// send right).
    pub fn task_set_special_port(&self, task: PortName, which: i32, port: PortName) -> KernReturn {
        // SAFETY: a trap on port names.
        KernReturn(unsafe { trap::gnumach_task_set_special_port(task.0, which, port.0) })
    }
}

/// Kernel RPCs through the cached reply port.
impl KernelRpc for GnuMach {
    fn kernel_rpc(&self, build: impl FnOnce(PortName) -> MsgBuf) -> Result<MsgBuf, KernReturn> {
        let reply = match self.reply.swap(0, Ordering::Acquire) {
            0 => self.reply_port(),
            r => PortName(r),
        };
        let r = rpc::call(self, reply, build);
        match r {
            Ok(_) | Err(KernReturn::RCV_TOO_LARGE) => self.put_reply_port(reply.0),
            // The port's state is unknown (a send that failed half-way may
            // leave a reply queued): drop it, fire and forget.
            Err(_) => self.destroy_receive(reply),
        }
        r
    }
}

impl Ipc for GnuMach {
    unsafe fn mach_msg(
        &self,
        msg: *mut u8,
        option: u32,
        send_size: u32,
        rcv_size: u32,
        rcv_name: PortName,
        timeout_ms: u32,
        notify: PortName,
    ) -> KernReturn {
        // SAFETY: forwarded contract of `Ipc::mach_msg`.
        KernReturn(unsafe {
            trap::gnumach_mach_msg_trap(
                msg, option, send_size, rcv_size, rcv_name.0, timeout_ms, notify.0,
            )
        })
    }

    fn port_allocate(&self, right: Right) -> Result<PortName, KernReturn> {
        let mut name = 0;
        // SAFETY: a trap with a valid out-pointer.
        KernReturn(unsafe {
            trap::gnumach_mach_port_allocate(self.task(), right as u32, &raw mut name)
        })
        .result()?;
        Ok(PortName(name))
    }

    fn port_deallocate(&self, name: PortName) -> KernReturn {
        // SAFETY: a trap on our own space.
        KernReturn(unsafe { trap::gnumach_mach_port_deallocate(self.task(), name.0) })
    }

    fn port_mod_refs(&self, name: PortName, right: Right, delta: i32) -> KernReturn {
        let task = PortName(self.task());
        self.simple_kernel_rpc(kernel::PORT_MOD_REFS, |r| {
            kernel::port_mod_refs_request(task, r, name, right as u32, delta)
        })
    }

    fn port_insert_right(&self, name: PortName, poly: PortName, disposition: u8) -> KernReturn {
        // SAFETY: a trap on our own space.
        KernReturn(unsafe {
            trap::gnumach_mach_port_insert_right(
                self.task(),
                name.0,
                poly.0,
                u32::from(disposition),
            )
        })
    }

    fn port_move_member(&self, member: PortName, set: PortName) -> KernReturn {
        let task = PortName(self.task());
        self.simple_kernel_rpc(kernel::PORT_MOVE_MEMBER, |r| {
            kernel::port_move_member_request(task, r, member, set)
        })
    }

    fn request_notification(
        &self,
        name: PortName,
        id: i32,
        sync: u32,
        notify: PortName,
        notify_disposition: u8,
    ) -> Result<PortName, KernReturn> {
        let task = PortName(self.task());
        let m = self.kernel_rpc(|r| {
            kernel::request_notification_request(
                task,
                r,
                name,
                id,
                sync,
                notify,
                notify_disposition,
            )
        })?;
        kernel::decode_port_reply(
            m.as_bytes(),
            kernel::PORT_REQUEST_NOTIFICATION,
            tn::MOVE_SEND_ONCE,
        )
    }

    fn task_self(&self) -> PortName {
        PortName(self.task())
    }

    fn reply_port(&self) -> PortName {
        // SAFETY: a trap without arguments.
        PortName(unsafe { trap::gnumach_mach_reply_port() })
    }

    fn vm_allocate(&self, size: usize) -> Result<u64, KernReturn> {
        let mut addr = 0u64;
        // SAFETY: a trap with a valid out-pointer; "anywhere".
        KernReturn(unsafe {
            trap::gnumach_vm_allocate(self.task(), &raw mut addr, size as u64, 1)
        })
        .result()?;
        Ok(addr)
    }

    unsafe fn vm_deallocate(&self, addr: u64, size: usize) -> KernReturn {
        // SAFETY: the caller gives up the region.
        KernReturn(unsafe { trap::gnumach_vm_deallocate(self.task(), addr, size as u64) })
    }
}
