//! The GNU/Hurd transport: glibc's `mach_msg` and the Mach kernel RPCs
//! glibc provides (`mach_port_*`, `vm_*`), on the calling task.

use std::ffi::c_int;

use crate::ipc::Ipc;
use crate::kern::KernReturn;
use crate::port::{PortName, Right};

#[allow(non_upper_case_globals)]
unsafe extern "C" {
    static __mach_task_self_: u32;
    fn mach_msg(
        msg: *mut u8,
        option: u32,
        send_size: u32,
        rcv_size: u32,
        rcv_name: u32,
        timeout: u32,
        notify: u32,
    ) -> c_int;
    fn mach_reply_port() -> u32;
    fn mach_port_allocate(task: u32, right: u32, name: *mut u32) -> c_int;
    fn mach_port_deallocate(task: u32, name: u32) -> c_int;
    fn mach_port_mod_refs(task: u32, name: u32, right: u32, delta: c_int) -> c_int;
    fn mach_port_insert_right(task: u32, name: u32, poly: u32, poly_type: u32) -> c_int;
    fn mach_port_move_member(task: u32, member: u32, after: u32) -> c_int;
    fn mach_port_request_notification(
        task: u32,
        name: u32,
        variant: c_int,
        sync: u32,
        notify: u32,
        notify_type: u32,
        previous: *mut u32,
    ) -> c_int;
    fn vm_allocate(task: u32, addr: *mut usize, size: usize, anywhere: c_int) -> c_int;
    fn vm_deallocate(task: u32, addr: usize, size: usize) -> c_int;
}

/// The calling task's own IPC space.
#[derive(Debug, Clone, Copy, Default)]
pub struct HurdIpc;

fn task() -> u32 {
    // SAFETY: glibc initialises the task self port before main.
    unsafe { __mach_task_self_ }
}

fn kr(rc: c_int) -> KernReturn {
    KernReturn(rc)
}

impl Ipc for HurdIpc {
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
        kr(unsafe {
            mach_msg(
                msg, option, send_size, rcv_size, rcv_name.0, timeout_ms, notify.0,
            )
        })
    }

    fn port_allocate(&self, right: Right) -> Result<PortName, KernReturn> {
        let mut name = 0;
        // SAFETY: valid out-pointer.
        kr(unsafe { mach_port_allocate(task(), right as u32, &raw mut name) }).result()?;
        Ok(PortName(name))
    }

    fn port_deallocate(&self, name: PortName) -> KernReturn {
        // SAFETY: a kernel RPC on our own space.
        kr(unsafe { mach_port_deallocate(task(), name.0) })
    }

    fn port_mod_refs(&self, name: PortName, right: Right, delta: i32) -> KernReturn {
        // SAFETY: a kernel RPC on our own space.
        kr(unsafe { mach_port_mod_refs(task(), name.0, right as u32, delta) })
    }

    fn port_insert_right(&self, name: PortName, poly: PortName, disposition: u8) -> KernReturn {
        // SAFETY: a kernel RPC on our own space.
        kr(unsafe { mach_port_insert_right(task(), name.0, poly.0, u32::from(disposition)) })
    }

    fn port_move_member(&self, member: PortName, set: PortName) -> KernReturn {
        // SAFETY: a kernel RPC on our own space.
        kr(unsafe { mach_port_move_member(task(), member.0, set.0) })
    }

    fn request_notification(
        &self,
        name: PortName,
        id: i32,
        sync: u32,
        notify: PortName,
        notify_disposition: u8,
    ) -> Result<PortName, KernReturn> {
        let mut prev = 0;
        // SAFETY: valid out-pointer.
        kr(unsafe {
            mach_port_request_notification(
                task(),
                name.0,
                id,
                sync,
                notify.0,
                u32::from(notify_disposition),
                &raw mut prev,
            )
        })
        .result()?;
        Ok(PortName(prev))
    }

    fn task_self(&self) -> PortName {
        PortName(task())
    }

    fn reply_port(&self) -> PortName {
        // SAFETY: a trap without arguments.
        PortName(unsafe { mach_reply_port() })
    }

    fn vm_allocate(&self, size: usize) -> Result<u64, KernReturn> {
        let mut addr = 0usize;
        // SAFETY: valid out-pointer; "anywhere" lets the kernel choose.
        kr(unsafe { vm_allocate(task(), &raw mut addr, size, 1) }).result()?;
        Ok(addr as u64)
    }

    unsafe fn vm_deallocate(&self, addr: u64, size: usize) -> KernReturn {
        // SAFETY: the caller gives up the region.
        kr(unsafe { vm_deallocate(task(), addr as usize, size) })
    }
}

/// Kernel RPCs with a fresh reply port each (glibc has no stubs for
/// `vm_allocate_contiguous` and the like).
impl crate::kernel_rpc::KernelRpc for HurdIpc {}
