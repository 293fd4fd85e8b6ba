//! The platform layer the native virtio drivers (rumpdisk's virtio-blk,
//! rumpnet's virtio-net) share: the `virtio-drivers` crate's [`Hal`] over
//! the hypercall crate's PCI service, configuration-space access for its
//! PCI transport, the virtio capability list, MSI-X routing of the queues,
//! opening a function as a [`PciTransport`] and the interrupt thread.
//!
//! - [`PciHal`]: DMA memory from [`DmaBuffer`] (kept in a table by bus
//!   address until `virtio-drivers` frees it), BAR addresses from the
//!   mapped BARs of the open devices, and buffer translations the driver
//!   prepared itself ([`sharing`]): a driver knows the bus address of each
//!   buffer it queues (its own DMA memory, or data it mapped), so `share`
//!   never guesses.
//! - [`open`]: checks the function's identity, enables memory space and
//!   bus mastering and builds the transport.
//! - [`queue_interrupt`]: MSI-X vector 0 for the driver's queues where the
//!   device has MSI-X, else `INTx`; [`spawn_interrupt_thread`] runs the
//!   driver's service routine on every interrupt.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use hypercall::NetbsdErrno;
use hypercall::pci::{self, Address, Device, DmaBuffer};
use parking_lot::Mutex;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{PciTransport, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_VENDOR_ID};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// The page size of DMA allocations (`virtio-drivers` counts in 4 KiB
/// pages).
pub const PAGE: usize = 4096;

/// A buffer the device reaches at a known bus address: process address,
/// length, bus address.
pub type Piece = (usize, usize, u64);

/// An error of `virtio-drivers` (or anything displayable) as an
/// [`io::Error`].
pub fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// `virtio-drivers`' platform layer over `hypercall::pci`.
#[derive(Debug)]
pub struct PciHal;

/// `dma_alloc` allocations by bus address.
static ALLOCS: Mutex<BTreeMap<u64, DmaBuffer>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// The buffers of the chain this thread is queueing, in the order
    /// `VirtQueue::add` shares them, and how many it has shared: `share`
    /// answers from here.
    static QUEUEING: RefCell<(Vec<Piece>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Runs `f`, which queues one descriptor chain (`VirtQueue::add`), with
/// `pieces` as the translations [`PciHal`]'s `share` answers, in the order
/// `add` shares the buffers (inputs, then outputs). A buffer `f` shares
/// that is not the next piece is a driver bug: `share` panics.
pub fn sharing<R>(pieces: &[Piece], f: impl FnOnce() -> R) -> R {
    QUEUEING.with_borrow_mut(|(q, next)| {
        q.clear();
        q.extend_from_slice(pieces);
        *next = 0;
    });
    let r = f();
    QUEUEING.with_borrow_mut(|(q, next)| {
        q.clear();
        *next = 0;
    });
    r
}

// SAFETY: allocations are zeroed, page-aligned and contiguous for the
// device (`DmaBuffer`); translations come from the PCI service; buffers
// are given to the device at the bus addresses their driver prepared for
// them (`sharing`), which keeps them mapped until they complete.
unsafe impl Hal for PciHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let b = DmaBuffer::new(pages * PAGE, PAGE, false)
            .unwrap_or_else(|e| panic!("virtio: DMA memory for {pages} pages: {e}"));
        let r = (b.bus_address(), NonNull::new(b.as_ptr()).expect("mapped"));
        ALLOCS.lock().insert(r.0, b);
        r
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        i32::from(ALLOCS.lock().remove(&paddr).is_none())
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        pci::bar_to_virt(paddr, size)
            .and_then(NonNull::new)
            .unwrap_or_else(|| panic!("virtio: no mapped BAR holds {paddr:#x}+{size:#x}"))
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let addr = buffer.cast::<u8>().as_ptr() as usize;
        let len = buffer.len();
        QUEUEING.with_borrow_mut(|(pieces, next)| {
            let piece = pieces.get(*next).filter(|p| p.0 == addr && p.1 == len);
            *next += 1;
            match piece {
                Some(p) => p.2,
                None => panic!("virtio: {len} bytes at {addr:#x} were not prepared for DMA"),
            }
        })
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // The driver that prepared the pieces releases them.
    }
}

/// Configuration space of the one function a transport drives.
#[derive(Debug)]
pub struct Config(pub Arc<Device>);

impl ConfigurationAccess for Config {
    fn read_word(&self, _df: DeviceFunction, offset: u8) -> u32 {
        self.0.config_read32(offset.into()).unwrap_or(u32::MAX)
    }

    fn write_word(&mut self, _df: DeviceFunction, offset: u8, data: u32) {
        if let Err(e) = self.0.config_write32(offset.into(), data) {
            log::warn!("virtio: configuration write at {offset:#x}: {e}");
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// `virtio-drivers`' name for the function at `a`.
#[must_use]
pub fn device_function(a: Address) -> DeviceFunction {
    DeviceFunction {
        bus: a.bus,
        device: a.device,
        function: a.function,
    }
}

/// A virtio PCI capability (vendor-specific, id 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCap {
    /// 1 common, 2 notify, 3 ISR, 4 device, 5 PCI configuration access.
    pub cfg_type: u8,
    /// The BAR its structure is in.
    pub bar: u8,
    /// Its offset in that BAR.
    pub offset: u32,
}

/// The virtio capabilities of `device` (at `address`), through
/// `virtio-drivers`' walk of the capability list.
#[must_use]
pub fn virtio_caps(device: &Arc<Device>, address: Address) -> Vec<VirtioCap> {
    let root = PciRoot::new(Config(Arc::clone(device)));
    root.capabilities(device_function(address))
        .filter(|c| c.id == 9)
        .filter_map(|c| {
            let at = u16::from(c.offset);
            Some(VirtioCap {
                // The capability's fourth byte.
                cfg_type: (c.private_header >> 8) as u8,
                bar: device.config_read32(at + 4).ok()? as u8,
                offset: device.config_read32(at + 8).ok()?,
            })
        })
        .collect()
}

/// Opens the virtio function at `address`, checks that its device ID is
/// one of `device_ids` (else `InvalidInput`, "is not a `kind` function"),
/// enables its memory space and bus mastering and builds its PCI transport
/// (modern virtio 1.x registers).
///
/// # Errors
/// No such function, another device, or no virtio capabilities.
pub fn open(
    address: Address,
    device_ids: &[u16],
    kind: &str,
) -> io::Result<(Arc<Device>, PciTransport)> {
    let device = Arc::new(Device::open(address).map_err(NetbsdErrno::to_io)?);
    let id = device.config_read32(0).map_err(NetbsdErrno::to_io)?;
    if id & 0xffff != u32::from(VIRTIO_VENDOR_ID) || !device_ids.contains(&((id >> 16) as u16)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address}: {id:08x} is not a {kind} function"),
        ));
    }
    device.enable().map_err(NetbsdErrno::to_io)?;
    let mut root = PciRoot::new(Config(Arc::clone(&device)));
    let transport =
        PciTransport::new::<PciHal, _>(&mut root, device_function(address)).map_err(io_err)?;
    Ok((device, transport))
}

/// Routes the interrupts of `queues` to MSI-X vector 0 and turns
/// configuration-change interrupts off, through the virtio common
/// configuration (`virtio-drivers` leaves both at "no vector"). Returns
/// whether the device took the vector for every queue.
///
/// # Errors
/// The common configuration's BAR cannot be mapped.
pub fn msix_queue_vectors(
    device: &Arc<Device>,
    address: Address,
    queues: &[u16],
) -> Result<bool, NetbsdErrno> {
    let Some(common) = virtio_caps(device, address)
        .into_iter()
        .find(|c| c.cfg_type == VIRTIO_PCI_CAP_COMMON_CFG)
    else {
        return Ok(false);
    };
    let m = device.map_bar(common.bar)?;
    let offset = common.offset as usize;
    // msix_config, then queue_select and queue_msix_vector per queue.
    m.write16(offset + 0x10, 0xffff);
    let mut took = true;
    for &q in queues {
        m.write16(offset + 0x16, q);
        m.write16(offset + 0x1a, 0);
        took &= m.read16(offset + 0x1a) == 0;
    }
    Ok(took)
}

/// The interrupt of `queues`: MSI-X vector 0 where the device has MSI-X
/// and takes the vector for them (no ISR read and no unmask per
/// interrupt), else the `INTx` line.
///
/// # Errors
/// The device has no interrupt, or the host refuses it.
pub fn queue_interrupt(
    device: &Arc<Device>,
    address: Address,
    queues: &[u16],
) -> Result<pci::Interrupt, NetbsdErrno> {
    match msix_queue_vectors(device, address, queues) {
        Ok(true) => device.interrupt(true).or_else(|_| device.interrupt(false)),
        _ => device.interrupt(false),
    }
}

/// Starts thread `name`, which waits for `irq` and runs `service` on every
/// interrupt (its argument: whether `irq` is `INTx`, whose ISR status the
/// driver must read to deassert the line), then re-enables the line.
/// The thread ends when `service` returns `false` or the host's
/// notification fails.
///
/// # Errors
/// The thread cannot be created.
pub fn spawn_interrupt_thread(
    name: String,
    irq: pci::Interrupt,
    mut service: impl FnMut(bool) -> bool + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new().name(name).spawn(move || {
        loop {
            if let Err(e) = irq.wait() {
                log::error!("virtio interrupt: {e}; the interrupt thread ends");
                return;
            }
            if !service(irq.is_intx()) {
                return;
            }
            if let Err(e) = irq.ack() {
                log::error!("virtio interrupt acknowledge: {e}");
            }
        }
    })?;
    Ok(())
}

/// How often a device without an interrupt is looked at.
pub const POLL: Duration = Duration::from_millis(1);

/// Starts thread `name`, which runs `service` on every interrupt of `irq`
/// (as [`spawn_interrupt_thread`]) or, for a device that has none
/// (`None`), every [`POLL`] (its argument then `false`). The thread ends
/// when `service` returns `false`.
///
/// # Errors
/// The thread cannot be created.
pub fn spawn_service(
    name: String,
    irq: Option<pci::Interrupt>,
    mut service: impl FnMut(bool) -> bool + Send + 'static,
) -> io::Result<()> {
    match irq {
        Some(irq) => spawn_interrupt_thread(name, irq, service),
        None => std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while service(false) {
                    std::thread::sleep(POLL);
                }
            })
            .map(drop),
    }
}
