//! Native virtio-blk: the `virtio-drivers` crate's driver over the
//! hypercall crate's PCI service (configuration space, mapped BARs, DMA
//! memory, the device's interrupt), in this process.
//!
//! Requests are interrupt-driven with several in flight: a request is
//! queued with its data buffer given to the device in place (an IOMMU maps
//! it at its own address; without one, a buffer not contiguous in physical
//! memory goes through a bounce buffer), then its thread sleeps. The
//! interrupt thread acknowledges the device, completes every finished
//! request in ring order, wakes their threads and only then re-enables the
//! line. Each transfer is one request (no 4 KiB splitting).

use std::collections::BTreeMap;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hypercall::pci::{self, Address, Device, DmaBuffer};
use parking_lot::{Condvar, Mutex};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::disk::{Disk, PAGE};

/// Sector size of virtio-blk.
pub const SECTOR: u32 = 512;
/// Request slots (the driver's ring has 16 descriptors).
const SLOTS: usize = 16;
/// How long a request waits for an interrupt before looking for its
/// completion itself.
const LOST_INTERRUPT: std::time::Duration = std::time::Duration::from_millis(200);

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// `virtio-drivers`' platform layer over `hypercall::pci`.
#[derive(Debug)]
pub struct PciHal;

/// How a shared buffer reaches the device.
enum Share {
    /// Mapped in place (unmapped on unshare).
    Mapped { addr: usize, len: usize },
    /// Copied through a bounce buffer.
    Bounce(DmaBuffer),
}

/// Shares by bus address.
static SHARES: Mutex<BTreeMap<u64, Share>> = Mutex::new(BTreeMap::new());
/// `dma_alloc` allocations by bus address.
static ALLOCS: Mutex<BTreeMap<u64, DmaBuffer>> = Mutex::new(BTreeMap::new());

// SAFETY: allocations are zeroed, page-aligned and contiguous for the
// device (`DmaBuffer`); translations come from the PCI service; shared
// buffers stay mapped or bounced until `unshare`.
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

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let addr = buffer.cast::<u8>().as_ptr() as usize;
        let len = buffer.len();
        // Already DMA memory (request headers): nothing to map or undo.
        if let Some(bus) = pci::dma_buffer_bus(addr as *const u8, len) {
            return bus;
        }
        // SAFETY: the driver keeps the buffer alive and untouched until
        // `unshare` (virtio-drivers' contract for shared buffers).
        match unsafe { pci::dma_map(addr as *const u8, len) } {
            Ok(Some(bus)) => {
                SHARES.lock().insert(bus, Share::Mapped { addr, len });
                return bus;
            }
            Ok(None) => {
                // Not contiguous for the device: bounce instead.
                let _ = pci::dma_unmap(addr as *const u8, len);
            }
            Err(_) => {}
        }
        let b = DmaBuffer::new(len, PAGE, false)
            .unwrap_or_else(|e| panic!("virtio: bounce buffer of {len} bytes: {e}"));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: `buffer` is readable for `len` bytes; the bounce
            // buffer holds at least `len`.
            unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, b.as_ptr(), len) };
        }
        let bus = b.bus_address();
        SHARES.lock().insert(bus, Share::Bounce(b));
        bus
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        match SHARES.lock().remove(&paddr) {
            Some(Share::Mapped { addr, len }) => {
                let _ = pci::dma_unmap(addr as *const u8, len);
            }
            Some(Share::Bounce(b)) if direction != BufferDirection::DriverToDevice => {
                // SAFETY: the device is done with the bounce buffer; `buffer`
                // is writable for its length.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        b.as_ptr(),
                        buffer.cast::<u8>().as_ptr(),
                        buffer.len(),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Configuration space of the one function the transport drives.
struct Config(Arc<Device>);

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

/// One queued request: where its pieces are, and its result once done.
struct InFlight {
    slot: usize,
    buf: *mut u8,
    len: usize,
    write: bool,
    done: Option<io::Result<()>>,
}

// SAFETY: the buffer pointer belongs to the thread waiting for the request,
// which keeps it alive and untouched until `done` is set under the lock.
unsafe impl Send for InFlight {}

struct Inner {
    blk: VirtIOBlk<PciHal, PciTransport>,
    /// Request headers and statuses, in DMA memory: slot `i` at `i * 32`.
    slots: DmaBuffer,
    free: Vec<usize>,
    inflight: BTreeMap<u16, InFlight>,
}

// SAFETY: the driver's raw pointers are to DMA memory and mapped BARs this
// value owns; every access goes through the mutex around it.
unsafe impl Send for Inner {}

impl Inner {
    fn req(&self, slot: usize) -> *mut BlkReq {
        // SAFETY: slot `slot` < SLOTS lies inside the slot buffer.
        unsafe { self.slots.as_ptr().add(slot * 32).cast() }
    }

    fn resp(&self, slot: usize) -> *mut BlkResp {
        // SAFETY: as in `req`; the status follows the 16-byte header.
        unsafe { self.slots.as_ptr().add(slot * 32 + 16).cast() }
    }

    /// Completes every finished request, in ring order.
    fn drain(&mut self) {
        while let Some(token) = self.blk.peek_used() {
            let Some(f) = self.inflight.get(&token) else {
                log::error!("virtio: completion of unknown request {token}");
                return;
            };
            let (slot, buf, len, write) = (f.slot, f.buf, f.len, f.write);
            let (req, resp) = (self.req(slot), self.resp(slot));
            // SAFETY: the header, buffer and status queued with `token`,
            // still alive (their owner waits for `done`).
            let r = unsafe {
                if write {
                    let data = std::slice::from_raw_parts(buf, len);
                    self.blk
                        .complete_write_blocks(token, &*req, data, &mut *resp)
                } else {
                    let data = std::slice::from_raw_parts_mut(buf, len);
                    self.blk
                        .complete_read_blocks(token, &*req, data, &mut *resp)
                }
            };
            let r = r.map_err(|e| {
                // SAFETY: the status slot, written by the device.
                let status = unsafe { (*resp).status() };
                if status == RespStatus::UNSUPPORTED {
                    io::Error::from(io::ErrorKind::Unsupported)
                } else {
                    io_err(format!("{e} (status {status:?})"))
                }
            });
            if let Some(f) = self.inflight.get_mut(&token) {
                f.done = Some(r);
            }
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    cv: Condvar,
    /// Whether an interrupt thread completes requests (else callers poll).
    interrupts: bool,
}

/// A virtio-blk function driven from this process.
pub struct VirtioDisk {
    address: Address,
    shared: Arc<Shared>,
    capacity: u64,
    read_only: bool,
    ops: AtomicU64,
    _device: Arc<Device>,
}

impl std::fmt::Debug for VirtioDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioDisk")
            .field("address", &self.address)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl VirtioDisk {
    /// Opens the virtio-blk function at `address` and starts its driver.
    ///
    /// # Errors
    /// No such function, not virtio-blk, or the device fails to start.
    pub fn open(address: Address) -> io::Result<Self> {
        let device = Arc::new(Device::open(address).map_err(hypercall::NetbsdErrno::to_io)?);
        let id = device
            .config_read32(0)
            .map_err(hypercall::NetbsdErrno::to_io)?;
        // Transitional (0x1001) or modern (0x1042) virtio-blk.
        if id & 0xffff != 0x1af4 || !matches!(id >> 16, 0x1001 | 0x1042) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{address}: {id:08x} is not a virtio-blk function"),
            ));
        }
        device.enable().map_err(hypercall::NetbsdErrno::to_io)?;
        let df = device_function(address);
        let mut root = PciRoot::new(Config(Arc::clone(&device)));
        let transport = PciTransport::new::<PciHal, _>(&mut root, df).map_err(io_err)?;
        let mut blk = VirtIOBlk::<PciHal, _>::new(transport).map_err(io_err)?;
        let capacity = blk.capacity() * u64::from(SECTOR);
        let read_only = blk.readonly();
        let slots =
            DmaBuffer::new(SLOTS * 32, PAGE, false).map_err(hypercall::NetbsdErrno::to_io)?;
        // MSI-X vector 0 for the request queue where the device has MSI-X
        // (no ISR read and no unmask per interrupt), else INTx.
        let irq = match msix_queue_vector(&device, address) {
            Ok(true) => device.interrupt(true).or_else(|_| device.interrupt(false)),
            _ => device.interrupt(false),
        };
        if irq.is_ok() {
            blk.enable_interrupts();
        } else {
            blk.disable_interrupts();
        }
        let inner = Inner {
            blk,
            slots,
            free: (0..SLOTS).rev().collect(),
            inflight: BTreeMap::new(),
        };
        for s in 0..SLOTS {
            // SAFETY: slot memory inside the DMA buffer, aligned for both.
            unsafe {
                inner.req(s).write(BlkReq::default());
                inner.resp(s).write(BlkResp::default());
            }
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            cv: Condvar::new(),
            interrupts: irq.is_ok(),
        });
        let shared_irq_kind = irq.as_ref().ok().map(pci::Interrupt::is_intx);
        match irq {
            Ok(irq) => {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("virtio-irq {address}"))
                    .spawn(move || interrupt_thread(&s, &irq))?;
            }
            Err(e) => log::warn!("{address}: no interrupt ({e}); completions are polled"),
        }
        log::info!(
            "{address}: virtio-blk, {capacity} bytes{}, {}",
            if read_only { ", read-only" } else { "" },
            match &shared_irq_kind {
                Some(true) => "INTx",
                Some(false) => "MSI-X",
                None => "polled",
            }
        );
        Ok(Self {
            address,
            shared,
            capacity,
            read_only,
            ops: AtomicU64::new(0),
            _device: device,
        })
    }

    /// Queues one request and waits for its completion.
    fn transfer(&self, offset: u64, buf: *mut u8, len: usize, write: bool) -> io::Result<()> {
        if !offset.is_multiple_of(u64::from(SECTOR)) || !len.is_multiple_of(SECTOR as usize) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        if len == 0 {
            return Ok(());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let sector = usize::try_from(offset / u64::from(SECTOR))
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut g = self.shared.inner.lock();
        let token = loop {
            if let Some(slot) = g.free.pop() {
                let (req, resp) = (g.req(slot), g.resp(slot));
                // SAFETY: the slot's header and status and the caller's
                // buffer stay untouched until the completion is taken below
                // (the caller waits here for it).
                let r = unsafe {
                    if write {
                        let data = std::slice::from_raw_parts(buf, len);
                        g.blk.write_blocks_nb(sector, &mut *req, data, &mut *resp)
                    } else {
                        let data = std::slice::from_raw_parts_mut(buf, len);
                        g.blk.read_blocks_nb(sector, &mut *req, data, &mut *resp)
                    }
                };
                match r {
                    Ok(t) => {
                        g.inflight.insert(
                            t,
                            InFlight {
                                slot,
                                buf,
                                len,
                                write,
                                done: None,
                            },
                        );
                        break t;
                    }
                    Err(virtio_drivers::Error::QueueFull) => g.free.push(slot),
                    Err(e) => {
                        g.free.push(slot);
                        return Err(io_err(e));
                    }
                }
            }
            // No slot or no room in the ring: wait for a completion.
            self.wait(&mut g);
        };
        loop {
            if let Some(f) = g.inflight.get_mut(&token)
                && let Some(r) = f.done.take()
            {
                let slot = f.slot;
                g.inflight.remove(&token);
                g.free.push(slot);
                drop(g);
                self.shared.cv.notify_all();
                return r;
            }
            self.wait(&mut g);
        }
    }

    /// Sleeps until the interrupt thread completed something, or (no
    /// interrupt) completes what the device finished.
    fn wait(&self, g: &mut parking_lot::MutexGuard<'_, Inner>) {
        if self.shared.interrupts {
            // A lost interrupt costs a delay, never a hang.
            if self.shared.cv.wait_for(g, LOST_INTERRUPT).timed_out() {
                let before = g.inflight.values().filter(|f| f.done.is_some()).count();
                g.drain();
                if g.inflight.values().filter(|f| f.done.is_some()).count() > before {
                    log::warn!(
                        "{}: a completion arrived without an interrupt",
                        self.address
                    );
                }
            }
        } else {
            g.drain();
            if g.inflight.values().all(|f| f.done.is_none()) {
                parking_lot::MutexGuard::unlocked(g, std::thread::yield_now);
            }
        }
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

fn device_function(a: Address) -> DeviceFunction {
    DeviceFunction {
        bus: a.bus,
        device: a.device,
        function: a.function,
    }
}

/// Routes the request queue's interrupts to MSI-X vector 0 and turns
/// configuration-change interrupts off, through the virtio common
/// configuration (`virtio-drivers` leaves both at "no vector"). Returns
/// whether the device took the vector.
fn msix_queue_vector(
    device: &Arc<Device>,
    address: Address,
) -> Result<bool, hypercall::NetbsdErrno> {
    let Some(common) = virtio_caps(device, address)
        .into_iter()
        .find(|c| c.cfg_type == 1)
    else {
        return Ok(false);
    };
    let m = device.map_bar(common.bar)?;
    let offset = common.offset as usize;
    // msix_config, queue_select, queue_msix_vector.
    m.write16(offset + 0x10, 0xffff);
    m.write16(offset + 0x16, 0);
    m.write16(offset + 0x1a, 0);
    Ok(m.read16(offset + 0x1a) == 0)
}

fn interrupt_thread(s: &Shared, irq: &pci::Interrupt) {
    loop {
        if let Err(e) = irq.wait() {
            log::error!("virtio interrupt: {e}; the interrupt thread ends");
            return;
        }
        {
            let mut g = s.inner.lock();
            if irq.is_intx() {
                // Reading the ISR status deasserts the line.
                let _ = g.blk.ack_interrupt();
            }
            g.drain();
        }
        s.cv.notify_all();
        if let Err(e) = irq.ack() {
            log::error!("virtio interrupt acknowledge: {e}");
        }
    }
}

impl Disk for VirtioDisk {
    fn size(&self) -> io::Result<u64> {
        Ok(self.capacity)
    }

    fn sector_size(&self) -> u32 {
        SECTOR
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.transfer(offset, buf.as_mut_ptr(), buf.len(), false)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        self.transfer(offset, data.as_ptr().cast_mut(), data.len(), true)
    }

    fn flush(&self) -> io::Result<()> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let mut g = self.shared.inner.lock();
        // The driver's flush waits for its own completion at the head of
        // the ring: nothing else may be in flight.
        while !g.inflight.is_empty() {
            self.wait(&mut g);
        }
        let had_irq = self.shared.interrupts;
        if had_irq {
            g.blk.disable_interrupts();
        }
        let r = g.blk.flush().map_err(io_err);
        if had_irq {
            g.blk.enable_interrupts();
        }
        r
    }

    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}
