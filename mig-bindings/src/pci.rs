//! The Hurd's PCI arbiter interface (`pci.defs`, subsystem 39000), client
//! side: configuration space and device regions of one device port
//! (`/servers/bus/pci/<domain>/<bus>/<dev>/<func>/config`).

use alloc::vec::Vec;

use mach::KernReturn;
use mach::ipc::Ipc;
use mach::msg::{Builder, Header, MsgBuf, TypeDesc};
use mach::port::{PortName, type_name as tn};

use crate::rpc::{Array, INT32, array_reply, reply_body, rpc};

/// `pci_conf_read`.
pub const ID_CONF_READ: i32 = 39000;
/// `pci_conf_write`.
pub const ID_CONF_WRITE: i32 = 39001;
/// `pci_get_ndevs`.
pub const ID_GET_NDEVS: i32 = 39002;
/// `pci_get_dev_regions`.
pub const ID_GET_DEV_REGIONS: i32 = 39003;
/// `pci_get_dev_rom`.
pub const ID_GET_DEV_ROM: i32 = 39004;
/// Data up to this size travels inline in requests.
pub const INLINE_MAX: usize = 2048;

const INT64: TypeDesc = TypeDesc::inline(tn::INTEGER_64, 64, 1);

fn data_desc(n: usize, inline: bool) -> TypeDesc {
    TypeDesc {
        name: tn::CHAR,
        size: 8,
        number: n as u32,
        inline,
        longform: true,
        deallocate: false,
    }
}

/// `pci_conf_read(reg, amount)` request.
#[must_use]
pub fn conf_read_request(dest: PortName, reply: PortName, reg: i32, amount: u64) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_CONF_READ));
    b.desc(INT32).raw(&reg.to_ne_bytes());
    b.desc(INT64).raw(&amount.to_ne_bytes());
    b.finish()
}

/// `pci_conf_write(reg, data)` request; `data` must fit inline.
#[must_use]
pub fn conf_write_request(dest: PortName, reply: PortName, reg: i32, data: &[u8]) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_CONF_WRITE));
    b.desc(INT32).raw(&reg.to_ne_bytes());
    b.desc(data_desc(data.len(), true)).raw(data);
    b.finish()
}

/// A request without arguments (`pci_get_ndevs`, `pci_get_dev_regions`,
/// `pci_get_dev_rom`).
#[must_use]
pub fn bare_request(dest: PortName, reply: PortName, id: i32) -> MsgBuf {
    Builder::new(Header::request(dest, reply, id)).finish()
}

/// Decodes a reply carrying `data_t`: inline, or out of line (copied out
/// and deallocated from `ipc`).
pub fn decode_data_reply<I: Ipc + ?Sized>(
    ipc: &I,
    bytes: &[u8],
    id: i32,
) -> Result<Vec<u8>, KernReturn> {
    match array_reply(bytes, id, tn::CHAR, 8)? {
        Array::Inline(data) => Ok(data.to_vec()),
        Array::OutOfLine { bytes: 0, .. } => Ok(Vec::new()),
        Array::OutOfLine { addr, bytes } => {
            // SAFETY: the kernel mapped `bytes` bytes at `addr` into this
            // task.
            let v = unsafe { core::slice::from_raw_parts(addr as *const u8, bytes) }.to_vec();
            // SAFETY: the region is ours and copied out.
            let _ = unsafe { ipc.vm_deallocate(addr, bytes) };
            Ok(v)
        }
    }
}

/// Reads `amount` bytes of configuration space at `reg`.
pub fn conf_read<I: Ipc + ?Sized>(
    ipc: &I,
    dev: PortName,
    reg: i32,
    amount: u64,
) -> Result<Vec<u8>, KernReturn> {
    let m = rpc(ipc, |r| conf_read_request(dev, r, reg, amount))?;
    decode_data_reply(ipc, m.as_bytes(), ID_CONF_READ)
}

/// Writes configuration space at `reg`; returns the bytes written.
pub fn conf_write<I: Ipc + ?Sized>(
    ipc: &I,
    dev: PortName,
    reg: i32,
    data: &[u8],
) -> Result<u64, KernReturn> {
    if data.len() > INLINE_MAX {
        return Err(KernReturn::MIG_ARRAY_TOO_LARGE);
    }
    let m = rpc(ipc, |r| conf_write_request(dev, r, reg, data))?;
    let mut r = reply_body(m.as_bytes(), ID_CONF_WRITE, Some(64), false)?;
    let d = r.desc().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if d.encode() != INT64.encode() {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    let b = r.data(8).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok(u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// The device's regions (`struct pci_mem_region` array, as the arbiter
/// lays it out).
pub fn get_dev_regions<I: Ipc + ?Sized>(ipc: &I, dev: PortName) -> Result<Vec<u8>, KernReturn> {
    let m = rpc(ipc, |r| bare_request(dev, r, ID_GET_DEV_REGIONS))?;
    decode_data_reply(ipc, m.as_bytes(), ID_GET_DEV_REGIONS)
}
