//! Native virtio-net: a modern (virtio 1.x) virtio-net PCI function driven
//! in this process through the hypercall crate's PCI service (VFIO on
//! Linux, the PCI arbiter on the Hurd), on `virtio-drivers`' PCI transport
//! and split virtqueues with the shared platform layer of `virtio-pci`.
//!
//! `virtio-drivers`' own net device is not used: its feature set is fixed
//! (no `ACCESS_PLATFORM`, which a device behind an IOMMU needs) and one
//! `&mut` value holds both queues, so sending and receiving could not run
//! on different threads.
//!
//! - Features: `MAC`, `STATUS` (link state), `VERSION_1`, and
//!   `ACCESS_PLATFORM` under an IOMMU. No checksum or segmentation offloads
//!   and no mergeable receive buffers: every frame is whole, at most 1514
//!   bytes, with its checksums already computed, and fits one receive
//!   buffer. The 12-byte `virtio_net_hdr` is written zeroed on sending and
//!   stripped on receiving.
//! - Receiving (queue 0): 128 buffers of 2 KiB in DMA memory, posted at
//!   [`Nic::start`] and reused for ever. The interrupt thread takes every
//!   used buffer, hands its frame to the [`Receiver`] in place, posts the
//!   buffer again, notifies the device once, and then re-enables the line.
//! - Sending (queue 1): 64 slots of 2 KiB in DMA memory. [`Nic::send`]
//!   copies the frame behind a zeroed header into a free slot, queues it
//!   and notifies the device; up to 64 frames are in flight. Completed
//!   slots come back from the interrupt thread (or the next send); with
//!   none free, `send` sleeps until one does, looking itself after
//!   [`LOST_INTERRUPT`], and fails with `TimedOut` after [`SEND_TIMEOUT`].
//! - Interrupts: MSI-X vector 0 for both queues where the device has
//!   MSI-X (configuration changes have no vector: [`VirtioNic::link_up`]
//!   reads the state), else `INTx`; polled every millisecond when the
//!   device has no interrupt at all.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hypercall::pci::{self, Address, Device, DmaAddressing, DmaBuffer};
use parking_lot::{Condvar, Mutex, MutexGuard};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_pci::{PAGE, PciHal, io_err};

use crate::nic::{ETHER_ADDR, ETHER_HEADER, Nic, NicStats, Receiver};

/// The receive queue's index.
const RX_QUEUE: u16 = 0;
/// The transmit queue's index.
const TX_QUEUE: u16 = 1;
/// Receive buffers, one descriptor each: the receive queue's size.
const RX_BUFFERS: usize = 128;
/// Transmit slots, one descriptor each: the transmit queue's size.
const TX_SLOTS: usize = 64;
/// Bytes per receive buffer and transmit slot (header and frame).
const BUFFER: usize = 2048;
/// `virtio_net_hdr` with `VERSION_1` (`num_buffers` included).
const HEADER: usize = 12;
/// The payload limit: virtio-net without the `MTU` feature carries
/// Ethernet's.
pub const MTU: usize = 1500;
/// The longest frame received and delivered: Ethernet's with one VLAN tag.
const MAX_RX_FRAME: usize = ETHER_HEADER + MTU + 4;
/// How long a sender waiting for a free slot waits for an interrupt
/// before looking for completions itself.
pub const LOST_INTERRUPT: Duration = Duration::from_millis(100);
/// How long a send waits for a free slot before it fails with `TimedOut`
/// (the device stopped taking frames).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The `LINK_UP` bit of the device's status field.
const LINK_UP: u16 = 1;

bitflags::bitflags! {
    /// The feature bits this driver takes when the device offers them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const MAC = 1 << 5;
        const STATUS = 1 << 16;
        const VERSION_1 = 1 << 32;
        /// DMA goes through the platform's IOMMU: taken under VFIO only.
        const ACCESS_PLATFORM = 1 << 33;
    }
}

/// Units opened so far in this process: the `N` of `vioif<N>`.
static UNITS: AtomicUsize = AtomicUsize::new(0);

/// The receive side: its queue and buffers.
struct Rx {
    queue: VirtQueue<PciHal, RX_BUFFERS>,
    /// Buffer `i` at `i * BUFFER`.
    buffers: DmaBuffer,
    /// The buffer each descriptor chain (token) holds while posted.
    of_token: [usize; RX_BUFFERS],
    /// Where frames go; `None` before `start` and once the NIC is dropped.
    receiver: Option<Receiver>,
}

impl Rx {
    /// Buffer `i`'s address and bus address.
    fn buffer(&self, i: usize) -> (*mut u8, u64) {
        // SAFETY: `i` < RX_BUFFERS: inside the buffer memory.
        let p = unsafe { self.buffers.as_ptr().add(i * BUFFER) };
        (p, self.buffers.bus_address() + (i * BUFFER) as u64)
    }

    /// Gives buffer `i` (not with the device) to the device.
    fn post(&mut self, i: usize) -> Result<(), virtio_drivers::Error> {
        let (p, bus) = self.buffer(i);
        // SAFETY: buffer `i` is the driver's, in DMA memory it owns, and
        // untouched until the device returns it.
        let buf = unsafe { std::slice::from_raw_parts_mut(p, BUFFER) };
        // SAFETY: as above; `share` answers from the one piece.
        let token = virtio_pci::sharing(&[(p as usize, BUFFER, bus)], || unsafe {
            self.queue.add(&[], &mut [buf])
        })?;
        self.of_token[usize::from(token)] = i;
        Ok(())
    }

    /// Hands every received frame to the receiver and posts its buffer
    /// again; notifies the device when it wants it. Returns how many
    /// buffers came back.
    fn drain(&mut self, counters: &Counters, transport: &Mutex<PciTransport>) -> usize {
        let mut n = 0;
        while let Some(token) = self.queue.peek_used() {
            let i = self.of_token[usize::from(token)];
            let (p, _) = self.buffer(i);
            // SAFETY: the buffer `post` queued under `token`.
            let buf = unsafe { std::slice::from_raw_parts_mut(p, BUFFER) };
            // SAFETY: the same buffer, the chain's only one.
            let used = unsafe { self.queue.pop_used(token, &[], &mut [buf]) };
            let len = match used {
                Ok(len) => len as usize,
                Err(e) => {
                    // The ring does not say what the device returned.
                    log::error!("virtio-net: receive ring: {e}");
                    counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            if (HEADER + ETHER_HEADER..=HEADER + MAX_RX_FRAME).contains(&len) {
                counters.rx_frames.fetch_add(1, Ordering::Relaxed);
                if let Some(rx) = &self.receiver {
                    // SAFETY: the device wrote `len` bytes of the buffer,
                    // which is the driver's until it is posted again.
                    rx(unsafe { std::slice::from_raw_parts(p.add(HEADER), len - HEADER) });
                }
            } else {
                counters.rx_errors.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
            if let Err(e) = self.post(i) {
                log::error!("virtio-net: reposting a receive buffer: {e}");
            }
        }
        if n > 0 && self.queue.should_notify() {
            transport.lock().notify(RX_QUEUE);
        }
        n
    }
}

/// The transmit side: its queue and slots.
struct Tx {
    queue: VirtQueue<PciHal, TX_SLOTS>,
    /// Slot `i` at `i * BUFFER`.
    slots: DmaBuffer,
    free: Vec<usize>,
    /// The slot and length each chain in flight holds, by token.
    inflight: [Option<(usize, usize)>; TX_SLOTS],
}

impl Tx {
    /// Slot `i`'s address and bus address.
    fn slot(&self, i: usize) -> (*mut u8, u64) {
        // SAFETY: `i` < TX_SLOTS: inside the slot memory.
        let p = unsafe { self.slots.as_ptr().add(i * BUFFER) };
        (p, self.slots.bus_address() + (i * BUFFER) as u64)
    }

    /// Frees the slots of every frame the device sent. Returns how many.
    fn reclaim(&mut self) -> usize {
        let mut n = 0;
        while let Some(token) = self.queue.peek_used() {
            let Some((slot, len)) = self.inflight[usize::from(token)].take() else {
                log::error!("virtio-net: completion of unknown frame {token}");
                break;
            };
            let (p, _) = self.slot(slot);
            // SAFETY: the slot `send` queued under `token`, `len` bytes.
            let buf = unsafe { std::slice::from_raw_parts(p, len) };
            // SAFETY: the same buffer, the chain's only one.
            if let Err(e) = unsafe { self.queue.pop_used(token, &[buf], &mut []) } {
                log::error!("virtio-net: transmit ring: {e}");
                break;
            }
            self.free.push(slot);
            n += 1;
        }
        n
    }
}

#[derive(Debug, Default)]
struct Counters {
    rx_frames: AtomicU64,
    tx_frames: AtomicU64,
    rx_errors: AtomicU64,
}

/// Fields drop in order: the transport first (its drop resets the device,
/// which stops its DMA), then the rings and buffers, the function last.
struct Shared {
    transport: Mutex<PciTransport>,
    rx: Mutex<Rx>,
    tx: Mutex<Tx>,
    /// Signalled when transmit slots come back.
    tx_done: Condvar,
    /// Whether an interrupt (else polling) brings completions.
    interrupts: bool,
    counters: Counters,
    _device: Arc<Device>,
}

impl Shared {
    /// What an interrupt (or a poll) does: acknowledges the device,
    /// delivers the received frames, frees the sent frames' slots.
    fn service(&self, intx: bool) {
        if intx {
            // Reading the ISR status deasserts the line.
            let _ = self.transport.lock().ack_interrupt();
        }
        self.rx.lock().drain(&self.counters, &self.transport);
        if self.tx.lock().reclaim() > 0 {
            self.tx_done.notify_all();
        }
    }
}

/// A virtio-net function driven from this process.
pub struct VirtioNic {
    address: Address,
    name: String,
    mac: [u8; ETHER_ADDR],
    /// Whether the device reports its link state.
    has_status: bool,
    shared: Arc<Shared>,
    /// What brings completions, until [`Nic::start`] gives it to the
    /// thread that waits for them.
    wakeup: Mutex<Option<Wakeup>>,
}

/// What the receive thread waits for.
enum Wakeup {
    /// The device's interrupt.
    Interrupt(pci::Interrupt),
    /// A timer: the device has no interrupt.
    Poll,
}

impl std::fmt::Debug for VirtioNic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioNic")
            .field("address", &self.address)
            .field("name", &self.name)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

impl VirtioNic {
    /// Opens the virtio-net function at `address` and starts its device,
    /// with DMA addressed as `hypercall::pci::dma_addressing` says (IOMMU
    /// under VFIO, physical addresses on the Hurd or with
    /// `RUMP_PCI_DMA=physical`). Frames flow once [`Nic::start`] ran.
    ///
    /// # Errors
    /// No such function, not virtio-net, not virtio 1.x, or the device
    /// refuses the features or queues.
    pub fn open(address: Address) -> io::Result<Self> {
        // Transitional (0x1000) or modern (0x1041) virtio-net.
        let (device, mut transport) = virtio_pci::open(address, &[0x1000, 0x1041], "virtio-net")?;
        let mut supported = Features::MAC | Features::STATUS | Features::VERSION_1;
        if pci::dma_addressing() == DmaAddressing::Iommu {
            supported |= Features::ACCESS_PLATFORM;
        }
        let features = transport.begin_init(supported);
        if !features.contains(Features::VERSION_1)
            || !transport.get_status().contains(DeviceStatus::FEATURES_OK)
        {
            transport.set_status(DeviceStatus::FAILED);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{address}: the device does not take virtio 1.x ({features:?})"),
            ));
        }
        // Configuration: mac at 0 (with MAC), status at 6 (with STATUS).
        let mac = if features.contains(Features::MAC) {
            transport
                .read_consistent(|| {
                    let mut mac = [0u8; ETHER_ADDR];
                    for (i, b) in mac.iter_mut().enumerate() {
                        *b = transport.read_config_space(i)?;
                    }
                    Ok(mac)
                })
                .map_err(io_err)?
        } else {
            // Locally administered, from the function's place.
            [
                0x02,
                (address.domain >> 8) as u8,
                address.domain as u8,
                address.bus,
                address.device,
                address.function,
            ]
        };
        let queue_err =
            |q: u16, size: usize| move |e| io_err(format!("{address}: queue {q} of {size}: {e}"));
        let rx_queue = VirtQueue::new(&mut transport, RX_QUEUE, false, false)
            .map_err(queue_err(RX_QUEUE, RX_BUFFERS))?;
        let tx_queue = VirtQueue::new(&mut transport, TX_QUEUE, false, false)
            .map_err(queue_err(TX_QUEUE, TX_SLOTS))?;
        transport.finish_init();
        let dma = |len| DmaBuffer::new(len, PAGE, false).map_err(hypercall::NetbsdErrno::to_io);
        let mut rx = Rx {
            queue: rx_queue,
            buffers: dma(RX_BUFFERS * BUFFER)?,
            of_token: [0; RX_BUFFERS],
            receiver: None,
        };
        let mut tx = Tx {
            queue: tx_queue,
            slots: dma(TX_SLOTS * BUFFER)?,
            free: (0..TX_SLOTS).rev().collect(),
            inflight: [None; TX_SLOTS],
        };
        let irq = virtio_pci::queue_interrupt(&device, address, &[RX_QUEUE, TX_QUEUE]);
        rx.queue.set_dev_notify(irq.is_ok());
        // Sent frames are reclaimed by the next sends; the transmit queue
        // interrupts only while a sender waits for a free slot.
        tx.queue.set_dev_notify(false);
        let kind = match &irq {
            Ok(i) if i.is_intx() => "INTx".to_owned(),
            Ok(_) => "MSI-X".to_owned(),
            Err(e) => format!("polled (no interrupt: {e})"),
        };
        let name = format!("vioif{}", UNITS.fetch_add(1, Ordering::Relaxed));
        let has_status = features.contains(Features::STATUS);
        let shared = Arc::new(Shared {
            transport: Mutex::new(transport),
            rx: Mutex::new(rx),
            tx: Mutex::new(tx),
            tx_done: Condvar::new(),
            interrupts: irq.is_ok(),
            counters: Counters::default(),
            _device: device,
        });
        let nic = Self {
            address,
            name,
            mac,
            has_status,
            shared,
            wakeup: Mutex::new(Some(irq.map_or(Wakeup::Poll, Wakeup::Interrupt))),
        };
        log::info!(
            "{address}: {}: virtio-net, {}, link {}, {kind}",
            nic.name,
            format_mac(nic.mac),
            if nic.link_up() { "up" } else { "down" },
        );
        Ok(nic)
    }

    /// Where it is.
    #[must_use]
    pub fn address(&self) -> Address {
        self.address
    }

    /// Whether the link is up (always, for a device that does not report
    /// it).
    #[must_use]
    pub fn link_up(&self) -> bool {
        !self.has_status
            || self
                .shared
                .transport
                .lock()
                .read_config_space::<u16>(6)
                .is_ok_and(|s| s & LINK_UP != 0)
    }

    /// A free transmit slot, waiting for one while the device holds all.
    fn free_slot(&self, tx: &mut MutexGuard<'_, Tx>) -> io::Result<usize> {
        let deadline = Instant::now() + SEND_TIMEOUT;
        loop {
            if let Some(slot) = tx.free.pop() {
                return Ok(slot);
            }
            if tx.reclaim() > 0 {
                continue;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{}: the device sends no frames", self.name),
                ));
            }
            if self.shared.interrupts {
                // Completions interrupt only while a sender waits for one
                // (as Linux's virtio_net frees sent buffers in its transmit
                // path): one may have come before the request did.
                tx.queue.set_dev_notify(true);
                if tx.reclaim() == 0 {
                    // A lost interrupt costs a delay, never a hang.
                    if self.shared.tx_done.wait_for(tx, LOST_INTERRUPT).timed_out()
                        && tx.reclaim() > 0
                    {
                        log::warn!("{}: a completion arrived without an interrupt", self.name);
                        self.shared.tx_done.notify_all();
                    }
                }
                tx.queue.set_dev_notify(false);
            } else {
                MutexGuard::unlocked(tx, || std::thread::sleep(virtio_pci::POLL));
            }
        }
    }
}

fn format_mac(m: [u8; ETHER_ADDR]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Nic for VirtioNic {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; ETHER_ADDR] {
        self.mac
    }

    fn mtu(&self) -> usize {
        MTU
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        if !(ETHER_HEADER..=ETHER_HEADER + MTU).contains(&frame.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a frame of {} bytes (from {ETHER_HEADER} to {})",
                    self.name,
                    frame.len(),
                    ETHER_HEADER + MTU
                ),
            ));
        }
        let s = &self.shared;
        let mut tx = s.tx.lock();
        let slot = self.free_slot(&mut tx)?;
        let (p, bus) = tx.slot(slot);
        let len = HEADER + frame.len();
        // SAFETY: the free slot is the driver's, `BUFFER` >= `len` bytes of
        // DMA memory; the frame is readable for its length.
        let buf = unsafe {
            p.write_bytes(0, HEADER);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), p.add(HEADER), frame.len());
            std::slice::from_raw_parts(p, len)
        };
        // SAFETY: the slot stays untouched until `reclaim` takes it back;
        // `share` answers from the one piece.
        let added = virtio_pci::sharing(&[(p as usize, len, bus)], || unsafe {
            tx.queue.add(&[buf], &mut [])
        });
        let token = match added {
            Ok(token) => token,
            Err(e) => {
                tx.free.push(slot);
                return Err(io_err(e));
            }
        };
        tx.inflight[usize::from(token)] = Some((slot, len));
        if tx.queue.should_notify() {
            s.transport.lock().notify(TX_QUEUE);
        }
        s.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn start(&self, rx: Receiver) -> io::Result<()> {
        let Some(wakeup) = self.wakeup.lock().take() else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: already started", self.name),
            ));
        };
        let s = &self.shared;
        {
            let mut r = s.rx.lock();
            r.receiver = Some(rx);
            for i in 0..RX_BUFFERS {
                r.post(i).map_err(io_err)?;
            }
            if r.queue.should_notify() {
                s.transport.lock().notify(RX_QUEUE);
            }
        }
        // The thread keeps no NIC alive: once the NIC is gone it ends at
        // its next wake-up.
        let weak: Weak<Shared> = Arc::downgrade(s);
        let irq = match wakeup {
            Wakeup::Interrupt(irq) => Some(irq),
            Wakeup::Poll => None,
        };
        virtio_pci::spawn_service(format!("{}-irq", self.name), irq, move |intx| {
            weak.upgrade().map(|s| s.service(intx)).is_some()
        })
    }

    fn stats(&self) -> NicStats {
        let c = &self.shared.counters;
        NicStats {
            rx_frames: c.rx_frames.load(Ordering::Relaxed),
            tx_frames: c.tx_frames.load(Ordering::Relaxed),
            rx_errors: c.rx_errors.load(Ordering::Relaxed),
        }
    }
}

impl Drop for VirtioNic {
    /// No frame reaches the receiver once this returns; the device is
    /// reset when the last reference to its rings goes (at once, or when
    /// the interrupt thread finishes what it is doing).
    fn drop(&mut self) {
        self.shared.rx.lock().receiver = None;
    }
}
