//! Native virtio-blk: a driver built on the `virtio-drivers` crate's PCI
//! transport and virtqueue, over the hypercall crate's PCI service
//! (configuration space, mapped BARs, DMA memory, the device's interrupt),
//! in this process.
//!
//! Requests are interrupt-driven with several in flight. A transfer's data
//! buffer is given to the device in place, as a scatter-gather list:
//! - under an IOMMU it is mapped at its own address, so it is one piece;
//! - with physical addresses (the Hurd; `--pci-dma physical`), it is one
//!   piece per run of consecutive page frames;
//! - only a buffer that cannot be split on sector boundaries into the
//!   device's segment limit goes through a bounce buffer.
//!
//! Each transfer is one request where the pieces fit (no 4 KiB splitting),
//! else a few requests in flight together. The requesting thread sleeps;
//! the interrupt thread acknowledges the device, completes every finished
//! request in ring order, wakes their threads and only then re-enables the
//! line.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hypercall::pci::{self, Address, Device, DmaAddressing, DmaBuffer};
use parking_lot::{Condvar, Mutex};
use virtio_drivers::device::blk::SECTOR_SIZE;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::pci::PciTransport;
use virtio_pci::{PciHal, Piece, io_err};
/// The virtio capability list, for callers that inspect a function
/// (`virtio-pci` has it).
pub use virtio_pci::{VirtioCap, virtio_caps};

use diskdev::disk::{Disk, PAGE};

/// Sector size of virtio-blk.
pub const SECTOR: u32 = SECTOR_SIZE as u32;
/// Requests in flight (header and status slots).
const SLOTS: usize = 16;
/// Descriptors of the ring: a request takes one per piece plus two (its
/// header and status). The device must offer a queue at least this long
/// (QEMU's virtio-blk has 256).
const QUEUE_SIZE: usize = 128;
/// How long a request waits for an interrupt before looking for its
/// completion itself.
const LOST_INTERRUPT: std::time::Duration = std::time::Duration::from_millis(200);

/// Request types and statuses (virtio 1.2, 5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const S_OK: u8 = 0;
const S_UNSUPP: u8 = 2;

bitflags::bitflags! {
    /// The feature bits this driver takes when the device offers them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const SEG_MAX = 1 << 2;
        const RO = 1 << 5;
        const FLUSH = 1 << 9;
        const RING_EVENT_IDX = 1 << 29;
        const VERSION_1 = 1 << 32;
        /// DMA goes through the platform's IOMMU: taken under VFIO only.
        const ACCESS_PLATFORM = 1 << 33;
    }
}

/// One queued request: its number, slot and the buffers it was queued
/// with (`pop_used` takes them again).
struct InFlight {
    id: u64,
    slot: usize,
    inputs: Vec<&'static [u8]>,
    outputs: Vec<&'static mut [u8]>,
}

// SAFETY: the data buffers belong to the thread waiting for the request,
// which keeps them alive and untouched until its result is in `done`; the
// header and status are the slot's, in DMA memory the driver owns.
unsafe impl Send for InFlight {}

struct Inner {
    transport: PciTransport,
    queue: VirtQueue<PciHal, QUEUE_SIZE>,
    /// Request headers and statuses, in DMA memory: slot `i` at `i * 32`.
    slots: DmaBuffer,
    free: Vec<usize>,
    /// Requests the device has, by token (the head descriptor, which a
    /// later request reuses once this one completed).
    inflight: BTreeMap<u16, InFlight>,
    /// Results of completed requests, by request number, until their owner
    /// takes them. A completed request's slot is free at once, so threads
    /// that queue several requests never hold slots waiting for each other.
    done: BTreeMap<u64, io::Result<()>>,
    next_id: u64,
}

// SAFETY: the transport's and queue's raw pointers are to DMA memory and
// mapped BARs this value owns; every access goes through the mutex around
// it.
unsafe impl Send for Inner {}

impl Inner {
    /// Slot `slot`'s 16-byte header and its status byte.
    fn slot(&self, slot: usize) -> (*mut u8, *mut u8) {
        // SAFETY: slot `slot` < SLOTS lies inside the slot buffer.
        let h = unsafe { self.slots.as_ptr().add(slot * 32) };
        // SAFETY: the status follows the header, inside the slot.
        (h, unsafe { h.add(16) })
    }

    /// Queues a request of type `kind` at `sector` in slot `slot` and
    /// notifies the device when it wants it. Returns the request's number,
    /// under which its result appears in `done`.
    ///
    /// # Safety
    /// The pieces must stay valid and mapped, and untouched by the caller,
    /// until the request completes.
    unsafe fn submit(
        &mut self,
        slot: usize,
        kind: u32,
        sector: u64,
        pieces: &[Piece],
        write: bool,
    ) -> Result<u64, virtio_drivers::Error> {
        let (h, st) = self.slot(slot);
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        let bus = self.slots.bus_address() + (slot * 32) as u64;
        // SAFETY: the slot is this request's alone, in DMA memory the
        // driver owns; the caller's contract for the pieces.
        let (inputs, outputs) = unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), h, 16);
            st.write(0xff);
            let mut inputs: Vec<&'static [u8]> = vec![std::slice::from_raw_parts(h, 16)];
            let mut outputs: Vec<&'static mut [u8]> = Vec::new();
            for &(a, l, _) in pieces {
                if write {
                    inputs.push(std::slice::from_raw_parts(a as *const u8, l));
                } else {
                    outputs.push(std::slice::from_raw_parts_mut(a as *mut u8, l));
                }
            }
            outputs.push(std::slice::from_raw_parts_mut(st, 1));
            (inputs, outputs)
        };
        let mut shared = Vec::with_capacity(pieces.len() + 2);
        shared.push((h as usize, 16, bus));
        shared.extend_from_slice(pieces);
        shared.push((st as usize, 1, bus + 16));
        let mut f = InFlight {
            id: 0,
            slot,
            inputs,
            outputs,
        };
        // SAFETY: the caller's contract; `share` answers from `shared`.
        let token = virtio_pci::sharing(&shared, || unsafe {
            self.queue.add(&f.inputs, &mut f.outputs)
        })?;
        if self.queue.should_notify() {
            self.transport.notify(0);
        }
        self.next_id += 1;
        f.id = self.next_id;
        self.inflight.insert(token, f);
        Ok(self.next_id)
    }

    /// Completes every finished request, in ring order. Returns how many.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(token) = self.queue.peek_used() {
            let Some(f) = self.inflight.remove(&token) else {
                log::error!("virtio: completion of unknown request {token}");
                return n;
            };
            // SAFETY: the buffers `submit` queued with `token`, still alive
            // (their owner waits for `done`).
            let (inputs, mut outputs): (Vec<&[u8]>, Vec<&mut [u8]>) = (f.inputs, f.outputs);
            // SAFETY: as above.
            let popped = unsafe { self.queue.pop_used(token, &inputs, &mut outputs) };
            // SAFETY: the status byte, written by the device.
            let status = unsafe { self.slot(f.slot).1.read() };
            let r = match (popped, status) {
                (Ok(_), S_OK) => Ok(()),
                (Ok(_), S_UNSUPP) => Err(io::Error::from(io::ErrorKind::Unsupported)),
                (Ok(_), s) => Err(io_err(format!("device status {s}"))),
                (Err(e), _) => Err(io_err(e)),
            };
            self.free.push(f.slot);
            self.done.insert(f.id, r);
            n += 1;
        }
        n
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
    /// Data pieces one request may carry.
    max_pieces: usize,
    /// Whether the device has a write cache to flush (else it writes
    /// through).
    has_flush: bool,
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

/// A transfer's data as the device gets it.
enum Data {
    /// The caller's buffer, mapped for the transfer: pieces of it.
    Mapped(Vec<Piece>),
    /// A bounce buffer.
    Bounce(DmaBuffer),
}

impl VirtioDisk {
    /// Opens the virtio-blk function at `address` and starts its driver.
    ///
    /// # Errors
    /// No such function, not virtio-blk, or the device fails to start.
    pub fn open(address: Address) -> io::Result<Self> {
        // Transitional (0x1001) or modern (0x1042) virtio-blk.
        let (device, mut transport) = virtio_pci::open(address, &[0x1001, 0x1042], "virtio-blk")?;
        let mut supported = Features::SEG_MAX
            | Features::RO
            | Features::FLUSH
            | Features::RING_EVENT_IDX
            | Features::VERSION_1;
        if pci::dma_addressing() == DmaAddressing::Iommu {
            supported |= Features::ACCESS_PLATFORM;
        }
        let features = transport.begin_init(supported);
        // Configuration: capacity (sectors) at 0, seg_max at 12.
        let capacity = transport
            .read_consistent(|| {
                let lo: u32 = transport.read_config_space(0)?;
                let hi: u32 = transport.read_config_space(4)?;
                Ok(u64::from(lo) | (u64::from(hi) << 32))
            })
            .map_err(io_err)?;
        let seg_max = if features.contains(Features::SEG_MAX) {
            transport.read_config_space::<u32>(12).map_err(io_err)?
        } else {
            1
        };
        let queue = VirtQueue::new(
            &mut transport,
            0,
            false,
            features.contains(Features::RING_EVENT_IDX),
        )
        .map_err(|e| io_err(format!("{address}: queue of {QUEUE_SIZE}: {e}")))?;
        transport.finish_init();
        let capacity = capacity * u64::from(SECTOR);
        let read_only = features.contains(Features::RO);
        let max_pieces = (seg_max.max(1) as usize).min(QUEUE_SIZE - 2);
        let slots =
            DmaBuffer::new(SLOTS * 32, PAGE, false).map_err(hypercall::NetbsdErrno::to_io)?;
        let mut inner = Inner {
            transport,
            queue,
            slots,
            free: (0..SLOTS).rev().collect(),
            inflight: BTreeMap::new(),
            done: BTreeMap::new(),
            next_id: 0,
        };
        // MSI-X vector 0 for the request queue where the device has MSI-X
        // (no ISR read and no unmask per interrupt), else INTx.
        let irq = virtio_pci::queue_interrupt(&device, address, &[0]);
        inner.queue.set_dev_notify(irq.is_ok());
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            cv: Condvar::new(),
            interrupts: irq.is_ok(),
        });
        let irq_kind = irq.as_ref().ok().map(pci::Interrupt::is_intx);
        match irq {
            Ok(irq) => {
                let s = Arc::clone(&shared);
                virtio_pci::spawn_interrupt_thread(
                    format!("virtio-irq {address}"),
                    irq,
                    move |intx| {
                        interrupt(&s, intx);
                        true
                    },
                )?;
            }
            Err(e) => log::warn!("{address}: no interrupt ({e}); completions are polled"),
        }
        log::info!(
            "{address}: virtio-blk, {capacity} bytes{}, {}, up to {max_pieces} pieces a request",
            if read_only { ", read-only" } else { "" },
            match &irq_kind {
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
            max_pieces,
            has_flush: features.contains(Features::FLUSH),
            ops: AtomicU64::new(0),
            _device: device,
        })
    }

    /// The caller's buffer mapped for the device as pieces, or, where its
    /// pieces cannot be cut into requests on sector boundaries, a bounce
    /// buffer.
    fn prepare(&self, buf: *mut u8, len: usize, write: bool) -> io::Result<Data> {
        // SAFETY: the caller (a transfer) keeps the buffer alive and
        // untouched until `release`.
        match unsafe { pci::dma_map(buf, len) } {
            // Contiguous for the device (always under an IOMMU): one piece.
            Ok(Some(bus)) => return Ok(Data::Mapped(vec![(buf as usize, len, bus)])),
            Ok(None) => {
                // Pieces end on page boundaries (or with the buffer, whose
                // length is whole sectors): from a sector-aligned start,
                // every group of them is whole sectors.
                let splits_on_sectors = (buf as usize).is_multiple_of(SECTOR as usize);
                match pci::dma_segments(buf, len) {
                    Ok(pieces) if pieces.len() <= self.max_pieces || splits_on_sectors => {
                        let mut at = buf as usize;
                        return Ok(Data::Mapped(
                            pieces
                                .into_iter()
                                .map(|(l, bus)| {
                                    at += l;
                                    (at - l, l, bus)
                                })
                                .collect(),
                        ));
                    }
                    _ => {
                        let _ = pci::dma_unmap(buf, len);
                    }
                }
            }
            Err(_) => {}
        }
        let b = DmaBuffer::new(len, PAGE, false).map_err(hypercall::NetbsdErrno::to_io)?;
        if write {
            // SAFETY: `buf` is readable for `len` bytes; the bounce buffer
            // holds at least `len`.
            unsafe { std::ptr::copy_nonoverlapping(buf, b.as_ptr(), len) };
        }
        Ok(Data::Bounce(b))
    }

    /// Ends what `prepare` started, copying a bounced read back.
    fn release(buf: *mut u8, len: usize, data: &Data, write: bool) {
        match data {
            Data::Mapped(_) => {
                let _ = pci::dma_unmap(buf, len);
            }
            Data::Bounce(b) if !write => {
                // SAFETY: the device is done with the bounce buffer; `buf`
                // is writable for `len` bytes.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), buf, len) };
            }
            Data::Bounce(_) => {}
        }
    }

    /// Queues one request per group of at most `max_pieces` pieces (one
    /// for the whole transfer when they fit) and waits for all of them.
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
        let data = self.prepare(buf, len, write)?;
        let bounce;
        let pieces: &[Piece] = match &data {
            Data::Mapped(p) => p,
            Data::Bounce(b) => {
                bounce = [(b.as_ptr() as usize, len, b.bus_address())];
                &bounce
            }
        };
        log::debug!(
            "{}: {len} bytes at {offset}: {}",
            self.address,
            match &data {
                Data::Mapped(p) => format!(
                    "{} pieces in {} requests",
                    p.len(),
                    p.len().div_ceil(self.max_pieces)
                ),
                Data::Bounce(_) => "bounced".to_owned(),
            }
        );
        let kind = if write { T_OUT } else { T_IN };
        let mut sector = offset / u64::from(SECTOR);
        let mut queued = Vec::new();
        let mut g = self.shared.inner.lock();
        let mut result = Ok(());
        for group in pieces.chunks(self.max_pieces) {
            match self.queue_one(&mut g, kind, sector, group, write) {
                Ok(id) => queued.push(id),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            sector += (group.iter().map(|p| p.1).sum::<usize>() / SECTOR as usize) as u64;
        }
        // Every queued request is waited for, even after a failure: the
        // device may still be using the buffer.
        for id in queued {
            let r = self.wait_for(&mut g, id);
            if result.is_ok() {
                result = r;
            }
        }
        drop(g);
        Self::release(buf, len, &data, write);
        result
    }

    /// Queues one request once a slot and room in the ring are free;
    /// returns its number.
    fn queue_one(
        &self,
        g: &mut parking_lot::MutexGuard<'_, Inner>,
        kind: u32,
        sector: u64,
        pieces: &[Piece],
        write: bool,
    ) -> io::Result<u64> {
        loop {
            if let Some(slot) = g.free.pop() {
                // SAFETY: the transfer keeps the pieces mapped and untouched
                // until it has waited for this request.
                match unsafe { g.submit(slot, kind, sector, pieces, write) } {
                    Ok(id) => return Ok(id),
                    Err(virtio_drivers::Error::QueueFull) => g.free.push(slot),
                    Err(e) => {
                        g.free.push(slot);
                        return Err(io_err(e));
                    }
                }
            }
            // No slot or no room in the ring: wait for a completion.
            self.wait(g);
        }
    }

    /// Waits for request `id`'s result.
    fn wait_for(&self, g: &mut parking_lot::MutexGuard<'_, Inner>, id: u64) -> io::Result<()> {
        loop {
            if let Some(r) = g.done.remove(&id) {
                return r;
            }
            self.wait(g);
        }
    }

    /// Sleeps until the interrupt thread completed something, or (no
    /// interrupt) completes what the device finished.
    fn wait(&self, g: &mut parking_lot::MutexGuard<'_, Inner>) {
        if self.shared.interrupts {
            // A lost interrupt costs a delay, never a hang.
            if self.shared.cv.wait_for(g, LOST_INTERRUPT).timed_out() && g.drain() > 0 {
                log::warn!(
                    "{}: a completion arrived without an interrupt",
                    self.address
                );
                // What this drain freed or finished may be what others
                // wait for (a drain is all that helps a waiter).
                self.shared.cv.notify_all();
            }
        } else if g.drain() == 0 {
            parking_lot::MutexGuard::unlocked(g, std::thread::yield_now);
        }
    }
}

/// The interrupt thread's work: acknowledges the device, completes every
/// finished request and wakes their threads.
fn interrupt(s: &Shared, intx: bool) {
    {
        let mut g = s.inner.lock();
        if intx {
            // Reading the ISR status deasserts the line.
            let _ = g.transport.ack_interrupt();
        }
        g.drain();
    }
    s.cv.notify_all();
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
        if !self.has_flush {
            return Ok(());
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let mut g = self.shared.inner.lock();
        // A flush covers the writes completed before it: it waits for
        // nothing else, like the kernel's.
        let id = self.queue_one(&mut g, T_FLUSH, 0, &[], false)?;
        self.wait_for(&mut g, id)
    }

    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}
