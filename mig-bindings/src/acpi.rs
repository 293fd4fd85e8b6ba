//! The Hurd's ACPI translator interface (`acpi.defs`, subsystem 41000),
//! client side.

use mach::KernReturn;
use mach::ipc::Ipc;
use mach::msg::{Builder, Header, MsgBuf};
use mach::port::PortName;

use crate::rpc::{INT32, int32, reply_body, rpc};

/// `acpi_sleep`.
pub const ID_SLEEP: i32 = 41000;
/// `acpi_get_pci_irq`.
pub const ID_GET_PCI_IRQ: i32 = 41001;

/// `acpi_get_pci_irq(bus, dev, func)` request.
#[must_use]
pub fn get_pci_irq_request(
    dest: PortName,
    reply: PortName,
    bus: i32,
    dev: i32,
    func: i32,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dest, reply, ID_GET_PCI_IRQ));
    for v in [bus, dev, func] {
        b.desc(INT32).raw(&v.to_ne_bytes());
    }
    b.finish()
}

/// The interrupt line (GSI) of a PCI function.
pub fn get_pci_irq<I: Ipc + ?Sized>(
    ipc: &I,
    acpi: PortName,
    bus: i32,
    dev: i32,
    func: i32,
) -> Result<i32, KernReturn> {
    let m = rpc(ipc, |r| get_pci_irq_request(acpi, r, bus, dev, func))?;
    let mut r = reply_body(m.as_bytes(), ID_GET_PCI_IRQ, Some(64), false)?;
    int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)
}
