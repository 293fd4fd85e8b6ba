//! Kernel RPCs GNU Mach has no trap for (the raw-trap transport's port and
//! task calls; contiguous memory, physical addresses and I/O ports for user
//! -space drivers on any transport), as MIG builds them from GNU Mach's `mach_port.defs`,
//! `mach.defs`, `mach_host.defs`, `gnumach.defs` and `mach_i386.defs`
//! (ids and item types from the current MIG's user stubs; `tests` below
//! pins the bytes). Requests are pure functions of their arguments; replies
//! are decoded with the checks MIG's user stubs make ([`crate::rpc`]).

use alloc::vec::Vec;

use crate::kern::KernReturn;
use crate::msg::{Builder, Header, MsgBuf, TypeDesc};
use crate::port::{PortName, type_name as tn};
use crate::rpc::{Array, array_reply, decode_simple_reply, reply_body};

/// `mach_port_mod_refs` (`mach_port.defs`).
pub const PORT_MOD_REFS: i32 = 3208;
/// `mach_port_move_member`.
pub const PORT_MOVE_MEMBER: i32 = 3213;
/// `mach_port_request_notification`.
pub const PORT_REQUEST_NOTIFICATION: i32 = 3214;
/// `TASK_BOOTSTRAP_PORT` (`mach/task_special_ports.h`).
pub const TASK_BOOTSTRAP_PORT: i32 = 4;
/// `task_get_special_port` (`mach.defs`).
pub const TASK_GET_SPECIAL_PORT: i32 = 2058;
/// `host_reboot` (`mach_host.defs`).
pub const HOST_REBOOT: i32 = 2635;
/// `vm_allocate_contiguous` (`gnumach.defs`).
pub const VM_ALLOCATE_CONTIGUOUS: i32 = 4210;
/// `vm_wire` (`mach_host.defs`).
pub const VM_WIRE: i32 = 2636;
/// `VM_PROT_READ | VM_PROT_WRITE | VM_PROT_EXECUTE`: wire for any access.
pub const VM_PROT_ALL: i32 = 7;
/// `vm_pages_phys` (`gnumach.defs`).
pub const VM_PAGES_PHYS: i32 = 4212;
/// `i386_io_perm_create` (`mach_i386.defs`).
pub const IO_PERM_CREATE: i32 = 3805;
/// `i386_io_perm_modify`.
pub const IO_PERM_MODIFY: i32 = 3806;

/// A reply with a return code and one port (`task_get_special_port`,
/// `mach_port_request_notification`, `i386_io_perm_create`).
const PORT_REPLY_SIZE: usize = 64;

fn port_name(b: &mut Builder, name: PortName) {
    b.desc(TypeDesc::inline(tn::PORT_NAME, 32, 1))
        .raw(&name.0.to_ne_bytes());
}

fn int16(b: &mut Builder, v: u16) {
    b.desc(TypeDesc::inline(tn::INTEGER_16, 16, 1))
        .raw(&v.to_ne_bytes());
}

/// `mach_port_mod_refs(task, name, right, delta)`.
#[must_use]
pub fn port_mod_refs_request(
    task: PortName,
    reply: PortName,
    name: PortName,
    right: u32,
    delta: i32,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(task, reply, PORT_MOD_REFS));
    port_name(&mut b, name);
    b.int32(right as i32).int32(delta);
    b.finish()
}

/// `mach_port_move_member(task, member, after)`.
#[must_use]
pub fn port_move_member_request(
    task: PortName,
    reply: PortName,
    member: PortName,
    after: PortName,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(task, reply, PORT_MOVE_MEMBER));
    port_name(&mut b, member);
    port_name(&mut b, after);
    b.finish()
}

/// `mach_port_request_notification(task, name, id, sync, notify, poly)`.
#[must_use]
pub fn request_notification_request(
    task: PortName,
    reply: PortName,
    name: PortName,
    id: i32,
    sync: u32,
    notify: PortName,
    notify_disposition: u8,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(task, reply, PORT_REQUEST_NOTIFICATION));
    port_name(&mut b, name);
    b.int32(id)
        .int32(sync as i32)
        .port(notify, notify_disposition);
    b.finish()
}

/// `task_get_special_port(task, which)`.
#[must_use]
pub fn task_get_special_port_request(task: PortName, reply: PortName, which: i32) -> MsgBuf {
    let mut b = Builder::new(Header::request(task, reply, TASK_GET_SPECIAL_PORT));
    b.int32(which);
    b.finish()
}

/// `host_reboot(host_priv, options)`.
#[must_use]
pub fn host_reboot_request(host_priv: PortName, reply: PortName, options: i32) -> MsgBuf {
    let mut b = Builder::new(Header::request(host_priv, reply, HOST_REBOOT));
    b.int32(options);
    b.finish()
}

/// `vm_allocate_contiguous(host_priv, task, size, pmin, pmax, palign)`.
#[must_use]
pub fn vm_allocate_contiguous_request(
    host_priv: PortName,
    reply: PortName,
    task: PortName,
    size: u64,
    pmin: u64,
    pmax: u64,
    palign: u64,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(host_priv, reply, VM_ALLOCATE_CONTIGUOUS));
    b.port(task, tn::COPY_SEND)
        .int64(size as i64)
        .int64(pmin as i64)
        .int64(pmax as i64)
        .int64(palign as i64);
    b.finish()
}

/// `vm_wire(host_priv, task, address, size, access)`: keeps the pages in
/// memory (`access` `VM_PROT_NONE` unwires them), as DMA needs.
#[must_use]
pub fn vm_wire_request(
    host_priv: PortName,
    reply: PortName,
    task: PortName,
    address: u64,
    size: u64,
    access: i32,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(host_priv, reply, VM_WIRE));
    b.port(task, tn::COPY_SEND)
        .int64(address as i64)
        .int64(size as i64)
        .int32(access);
    b.finish()
}

/// `vm_pages_phys(host_priv, task, vaddr, size)`.
#[must_use]
pub fn vm_pages_phys_request(
    host_priv: PortName,
    reply: PortName,
    task: PortName,
    vaddr: u64,
    size: u64,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(host_priv, reply, VM_PAGES_PHYS));
    b.port(task, tn::COPY_SEND)
        .int64(vaddr as i64)
        .int64(size as i64);
    b.finish()
}

/// `i386_io_perm_create(master, from, to)`.
#[must_use]
pub fn io_perm_create_request(master: PortName, reply: PortName, from: u16, to: u16) -> MsgBuf {
    let mut b = Builder::new(Header::request(master, reply, IO_PERM_CREATE));
    int16(&mut b, from);
    int16(&mut b, to);
    b.finish()
}

/// `i386_io_perm_modify(task, io_perm, enable)`.
#[must_use]
pub fn io_perm_modify_request(
    task: PortName,
    reply: PortName,
    io_perm: PortName,
    enable: bool,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(task, reply, IO_PERM_MODIFY));
    b.port(io_perm, tn::COPY_SEND)
        .desc(TypeDesc::inline(tn::BOOLEAN, 32, 1))
        .raw(&u32::from(enable).to_ne_bytes());
    b.finish()
}

/// A reply carrying one port right (`PORT_SEND` or `PORT_SEND_ONCE`).
pub fn decode_port_reply(bytes: &[u8], request_id: i32, right: u8) -> Result<PortName, KernReturn> {
    reply_body(bytes, request_id, Some(PORT_REPLY_SIZE), true)?
        .port(right)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)
}

/// `vm_allocate_contiguous`: the virtual and the physical address.
pub fn decode_vm_allocate_contiguous_reply(bytes: &[u8]) -> Result<(u64, u64), KernReturn> {
    let mut r = reply_body(bytes, VM_ALLOCATE_CONTIGUOUS, Some(80), false)?;
    let vaddr = r.int64().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let paddr = r.int64().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok((vaddr as u64, paddr as u64))
}

/// `vm_pages_phys`: one physical address per page, inline or (for many
/// pages) out of line; the out-of-line region is returned for the caller
/// to read and deallocate as `(addr, bytes)`.
pub fn decode_vm_pages_phys_reply(bytes: &[u8]) -> Result<PhysPages, KernReturn> {
    Ok(
        match array_reply(bytes, VM_PAGES_PHYS, tn::INTEGER_64, 64)? {
            Array::Inline(raw) => PhysPages::Inline(
                raw.chunks_exact(8)
                    .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ),
            Array::OutOfLine { addr, bytes } => PhysPages::OutOfLine {
                addr,
                count: bytes / 8,
            },
        },
    )
}

/// What `vm_pages_phys` answered.
#[derive(Debug, PartialEq, Eq)]
pub enum PhysPages {
    /// The addresses, in the reply.
    Inline(Vec<u64>),
    /// `count` addresses in a region the kernel mapped into the task.
    OutOfLine {
        /// Where the region is.
        addr: u64,
        /// How many addresses it holds.
        count: usize,
    },
}

impl PhysPages {
    /// The addresses; an out-of-line region is copied out and given back
    /// to `ipc`'s task.
    pub fn into_vec<I: crate::Ipc + ?Sized>(self, ipc: &I) -> Vec<u64> {
        match self {
            Self::Inline(v) => v,
            Self::OutOfLine { count: 0, .. } => Vec::new(),
            Self::OutOfLine { addr, count } => {
                // SAFETY: the kernel mapped `count` addresses at `addr` for
                // this reply; the region is read, then given back.
                let v = unsafe { core::slice::from_raw_parts(addr as *const u64, count) }.to_vec();
                // SAFETY: the region is ours and no longer used.
                let _ = unsafe { ipc.vm_deallocate(addr, count * 8) };
                v
            }
        }
    }
}

/// The kernel RPCs above as calls, on any transport: the transport says
/// how one RPC goes (`kernel_rpc`; by default with a fresh reply port each
/// time), the rest follows.
pub trait KernelRpc: crate::Ipc {
    /// One kernel RPC: sends `build(reply_port)` and returns the reply.
    ///
    /// # Errors
    /// The transport's error.
    fn kernel_rpc(&self, build: impl FnOnce(PortName) -> MsgBuf) -> Result<MsgBuf, KernReturn> {
        crate::rpc::rpc(self, build)
    }

    /// A kernel RPC whose reply carries only a return code.
    fn simple_kernel_rpc(&self, id: i32, build: impl FnOnce(PortName) -> MsgBuf) -> KernReturn {
        match self
            .kernel_rpc(build)
            .and_then(|m| decode_simple_reply(m.as_bytes(), id))
        {
            Ok(()) => KernReturn::SUCCESS,
            Err(e) => e,
        }
    }

    /// `task_get_special_port(task, which)`: a send right, or `NULL`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn task_get_special_port(&self, task: PortName, which: i32) -> Result<PortName, KernReturn> {
        let m = self.kernel_rpc(|r| task_get_special_port_request(task, r, which))?;
        decode_port_reply(m.as_bytes(), TASK_GET_SPECIAL_PORT, tn::MOVE_SEND)
    }

    /// `host_reboot(host_priv, options)`.
    fn host_reboot(&self, host_priv: PortName, options: i32) -> KernReturn {
        self.simple_kernel_rpc(HOST_REBOOT, |r| host_reboot_request(host_priv, r, options))
    }

    /// `vm_allocate_contiguous` in this task: `size` bytes of physically
    /// contiguous, wired memory between `pmin` and `pmax` (0: no limit),
    /// aligned to `palign`; returns the virtual and physical addresses.
    ///
    /// # Errors
    /// The kernel's answer.
    fn vm_allocate_contiguous(
        &self,
        host_priv: PortName,
        size: u64,
        pmin: u64,
        pmax: u64,
        palign: u64,
    ) -> Result<(u64, u64), KernReturn> {
        let task = self.task_self();
        let m = self.kernel_rpc(|r| {
            vm_allocate_contiguous_request(host_priv, r, task, size, pmin, pmax, palign)
        })?;
        decode_vm_allocate_contiguous_reply(m.as_bytes())
    }

    /// `vm_pages_phys` in this task: the physical address of every page of
    /// `[vaddr, vaddr+size)` (0 for a page not resident).
    ///
    /// # Errors
    /// The kernel's answer.
    fn vm_pages_phys(
        &self,
        host_priv: PortName,
        vaddr: u64,
        size: u64,
    ) -> Result<Vec<u64>, KernReturn> {
        let task = self.task_self();
        let m = self.kernel_rpc(|r| vm_pages_phys_request(host_priv, r, task, vaddr, size))?;
        Ok(decode_vm_pages_phys_reply(m.as_bytes())?.into_vec(self))
    }

    /// `vm_wire` in this task (`access` `VM_PROT_NONE` unwires).
    ///
    /// # Errors
    /// The kernel's answer.
    fn vm_wire(
        &self,
        host_priv: PortName,
        address: u64,
        size: u64,
        access: i32,
    ) -> Result<(), KernReturn> {
        let task = self.task_self();
        self.simple_kernel_rpc(VM_WIRE, |r| {
            vm_wire_request(host_priv, r, task, address, size, access)
        })
        .result()
    }

    /// `i386_io_perm_create(master, from, to)`: the capability for I/O ports
    /// `from..=to`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn io_perm_create(&self, master: PortName, from: u16, to: u16) -> Result<PortName, KernReturn> {
        let m = self.kernel_rpc(|r| io_perm_create_request(master, r, from, to))?;
        decode_port_reply(m.as_bytes(), IO_PERM_CREATE, tn::MOVE_SEND)
    }

    /// `i386_io_perm_modify` on this task: enables (or withdraws) direct
    /// access to the ports of `io_perm`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn io_perm_modify(&self, io_perm: PortName, enable: bool) -> Result<(), KernReturn> {
        let task = self.task_self();
        self.simple_kernel_rpc(IO_PERM_MODIFY, |r| {
            io_perm_modify_request(task, r, io_perm, enable)
        })
        .result()
    }
}

#[cfg(test)]
mod tests {
    //! Bytes as the current MIG's user stubs build them (sizes, bits and
    //! descriptor words from `mach_portUser.c`, `gnumachUser.c`,
    //! `mach_i386User.c`, `mach_hostUser.c`, `machUser.c`).
    use super::*;
    use crate::port::notify;

    fn word(m: &MsgBuf, off: usize) -> u32 {
        u32::from_ne_bytes(m.as_bytes()[off..off + 4].try_into().unwrap())
    }

    const INT32: u32 = 0x2000_2002;
    const INT64: u32 = 0x2000_400b;
    const NAME32: u32 = 0x2000_200f;

    #[test]
    fn port_requests() {
        let (t, r) = (PortName(1), PortName(2));
        let m = port_mod_refs_request(t, r, PortName(9), 1, -1);
        let h = m.header().unwrap();
        assert_eq!((h.size, h.bits, h.id), (80, 0x1513, 3208));
        assert_eq!((word(&m, 32), word(&m, 40)), (NAME32, 9));
        assert_eq!(
            (word(&m, 48), word(&m, 56), word(&m, 64), word(&m, 72)),
            (INT32, 1, INT32, u32::MAX)
        );
        let m = port_move_member_request(t, r, PortName(9), PortName(10));
        assert_eq!(m.header().unwrap().size, 64);
        assert_eq!((word(&m, 48), word(&m, 56)), (NAME32, 10));
        let m = request_notification_request(
            t,
            r,
            PortName(9),
            0o106,
            1,
            PortName(11),
            tn::MAKE_SEND_ONCE,
        );
        let h = m.header().unwrap();
        assert_eq!((h.size, h.bits, h.id), (96, 0x8000_1513, 3214));
        assert_eq!((word(&m, 80), word(&m, 88)), (0x2000_4015, 11));
    }

    #[test]
    fn host_and_io_requests() {
        let (d, r) = (PortName(1), PortName(2));
        let m = vm_allocate_contiguous_request(d, r, PortName(3), 8192, 0, 1 << 32, 4096);
        let h = m.header().unwrap();
        assert_eq!((h.size, h.bits, h.id), (112, 0x8000_1513, 4210));
        assert_eq!((word(&m, 32), word(&m, 40)), (0x2000_4013, 3));
        assert_eq!((word(&m, 48), word(&m, 56)), (INT64, 8192));
        let m = vm_pages_phys_request(d, r, PortName(3), 0x1000, 8192);
        assert_eq!(m.header().unwrap().size, 80);
        // MIG's vm_wire: task, two 64-bit integers, one 32-bit, 8-byte items.
        let m = vm_wire_request(d, r, PortName(3), 0x1000, 8192, VM_PROT_ALL);
        let h = m.header().unwrap();
        assert_eq!((h.size, h.bits, h.id), (96, 0x8000_1513, 2636));
        assert_eq!((word(&m, 80), word(&m, 88)), (0x2000_2002, 7));
        let m = io_perm_create_request(d, r, 0xcf8, 0xcff);
        let h = m.header().unwrap();
        assert_eq!((h.size, h.bits, h.id), (64, 0x1513, 3805));
        assert_eq!((word(&m, 32), word(&m, 40) & 0xffff), (0x2000_1001, 0xcf8));
        let m = io_perm_modify_request(d, r, PortName(5), true);
        let h = m.header().unwrap();
        assert_eq!((h.size, h.bits, h.id), (64, 0x8000_1513, 3806));
        assert_eq!((word(&m, 48), word(&m, 56)), (0x2000_2000, 1));
        let m = host_reboot_request(d, r, 0);
        assert_eq!(
            (m.header().unwrap().size, m.header().unwrap().id),
            (48, 2635)
        );
        let m = task_get_special_port_request(d, r, 4);
        assert_eq!(
            (m.header().unwrap().size, m.header().unwrap().id),
            (48, 2058)
        );
    }

    #[test]
    fn replies() {
        let reply = |id: i32, items: &dyn Fn(&mut Builder)| {
            let mut b = Builder::new(Header {
                id: id + 100,
                ..Header::default()
            });
            b.int32(0);
            items(&mut b);
            b.finish()
        };
        let m = reply(VM_ALLOCATE_CONTIGUOUS, &|b| {
            b.int64(0x7000).int64(0x20_0000);
        });
        assert_eq!(
            decode_vm_allocate_contiguous_reply(m.as_bytes()),
            Ok((0x7000, 0x20_0000))
        );
        let m = reply(VM_PAGES_PHYS, &|b| {
            let mut d = TypeDesc::inline(tn::INTEGER_64, 64, 2);
            d.longform = true;
            b.desc(d)
                .raw(&[1u64.to_ne_bytes(), 2u64.to_ne_bytes()].concat());
        });
        assert_eq!(
            decode_vm_pages_phys_reply(m.as_bytes()),
            Ok(PhysPages::Inline(alloc::vec![1, 2]))
        );
        let mut b = Builder::new(Header {
            id: 3308,
            ..Header::default()
        });
        b.int32(KernReturn::INVALID_RIGHT.0);
        assert_eq!(
            decode_simple_reply(b.finish().as_bytes(), 3208),
            Err(KernReturn::INVALID_RIGHT)
        );
        let b = Builder::new(Header {
            id: notify::SEND_ONCE,
            ..Header::default()
        });
        assert_eq!(
            decode_simple_reply(b.finish().as_bytes(), 3208),
            Err(KernReturn::MIG_SERVER_DIED)
        );
    }
}
