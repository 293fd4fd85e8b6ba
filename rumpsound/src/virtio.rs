//! Native virtio-sound: a virtio 1.x sound PCI function (QEMU's
//! `virtio-sound-pci`) driven in this process through the hypercall
//! crate's PCI service, on `virtio-drivers`' PCI transport and split
//! virtqueues with the shared platform layer of `virtio-pci`.
//!
//! `virtio-drivers`' own sound device is not used: it plays only (no
//! capture), waits for each transfer by spinning, asserts on lengths it is
//! given, has no `ACCESS_PLATFORM` (which a device behind an IOMMU needs)
//! and copies every block into a fresh allocation.
//!
//! - Queues: control (0), transmit (2), receive (3); no event queue (the
//!   driver counts underruns itself: the ring ran dry while running).
//! - Control requests (`PCM_INFO`, `PCM_SET_PARAMS`, `PCM_PREPARE`,
//!   `PCM_START`, `PCM_STOP`, `PCM_RELEASE`) go one at a time through one
//!   DMA page and are waited for by polling (they are rare and quick).
//! - A stream's ring: `blocks` slots of DMA memory, each the transfer
//!   header, one block of frames and the status the card writes back.
//!   Playback fills a slot, queues it (header and frames readable, status
//!   writable) and starts the stream once every slot is with the card;
//!   the card returns a slot once it has played it, which paces writers.
//!   Capture queues every slot (header readable, frames and status
//!   writable) and starts; each returned slot's frames go to a buffer the
//!   reader takes from, and the slot goes back to the card.
//! - Interrupts: MSI-X vector 0 for the queues where the device has
//!   MSI-X, else `INTx`; polled every millisecond without either.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hypercall::pci::{self, Address, Device, DmaAddressing, DmaBuffer};
use parking_lot::{Condvar, Mutex, MutexGuard};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_pci::{PAGE, PciHal, io_err};

use crate::pcm::{Caps, Counters, Format, MAX_BLOCKS, Sample};
use crate::stream::{Direction, Stream};

const CONTROL_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 2;
const RX_QUEUE: u16 = 3;
/// Descriptors of the control queue (one request at a time).
const CONTROL_SIZE: usize = 4;
/// Descriptors of each PCM queue: two per block.
const PCM_SIZE: usize = 2 * MAX_BLOCKS;

const R_PCM_INFO: u32 = 0x0100;
const R_PCM_SET_PARAMS: u32 = 0x0101;
const R_PCM_PREPARE: u32 = 0x0102;
const R_PCM_RELEASE: u32 = 0x0103;
const R_PCM_START: u32 = 0x0104;
const R_PCM_STOP: u32 = 0x0105;
const S_OK: u32 = 0x8000;
const S_NOT_SUPP: u32 = 0x8002;
/// `virtio_snd_pcm_info`'s size.
const PCM_INFO_SIZE: usize = 32;

/// Where a slot's transfer header (the stream id) is.
const HEADER: usize = 4;
/// Where a slot's frames start (right after the header).
const FRAMES: usize = 8;
/// `virtio_snd_pcm_status`: status and latency in bytes.
const STATUS: usize = 8;

/// Where the response of a control request goes in its page.
const RESPONSE: usize = 2048;
/// How long a control request may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long past the ring's own duration a block may take to come back
/// before the card is called stalled.
const STALL: Duration = Duration::from_secs(2);
/// How long a waiter waits for an interrupt before it looks itself.
const LOST_INTERRUPT: Duration = Duration::from_millis(100);

/// The rates of virtio-snd's rate codes (`VIRTIO_SND_PCM_RATE_*`).
const RATES: [u32; 14] = [
    5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000, 176_400, 192_000,
    384_000,
];

/// virtio-snd's format code (`VIRTIO_SND_PCM_FMT_*`) for `s`.
fn format_code(s: Sample) -> u8 {
    match s {
        Sample::U8 => 4,
        Sample::S16Le => 5,
        Sample::S32Le => 17,
    }
}

bitflags::bitflags! {
    /// The feature bits this driver takes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const VERSION_1 = 1 << 32;
        /// DMA goes through the platform's IOMMU: taken under VFIO only.
        const ACCESS_PLATFORM = 1 << 33;
    }
}

/// A control request failed: `Unsupported` when the card says so.
fn refused(code: u32, status: u32) -> io::Error {
    let kind = if status == S_NOT_SUPP {
        io::ErrorKind::Unsupported
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(
        kind,
        format!("virtio-sound: request {code:#06x} answered {status:#06x}"),
    )
}

/// The control queue and its page.
struct Control {
    queue: VirtQueue<PciHal, CONTROL_SIZE>,
    page: DmaBuffer,
    /// Set when a request never came back: its buffers may still be the
    /// device's, so no other request is made.
    lost: bool,
}

impl Control {
    /// Sends `req` and returns the `resp`-byte response, whose status
    /// (first word) was `S_OK`.
    fn request(
        &mut self,
        transport: &Mutex<PciTransport>,
        req: &[u8],
        resp: usize,
    ) -> io::Result<Vec<u8>> {
        let code = u32::from_le_bytes(req[..4].try_into().expect("a request header"));
        if self.lost {
            return Err(io::Error::other("virtio-sound: the control queue is stuck"));
        }
        assert!(req.len() <= RESPONSE && (4..=PAGE - RESPONSE).contains(&resp));
        let p = self.page.as_ptr();
        let bus = self.page.bus_address();
        // SAFETY: the page is the driver's, PAGE bytes; the request and
        // response areas are inside it and apart; the device has neither
        // (no request is outstanding).
        let (inp, out) = unsafe {
            std::ptr::copy_nonoverlapping(req.as_ptr(), p, req.len());
            p.add(RESPONSE).write_bytes(0, resp);
            (
                std::slice::from_raw_parts(p, req.len()),
                std::slice::from_raw_parts_mut(p.add(RESPONSE), resp),
            )
        };
        let pieces = [
            (p as usize, req.len(), bus),
            (p as usize + RESPONSE, resp, bus + RESPONSE as u64),
        ];
        // SAFETY: both buffers stay untouched until `pop_used` below.
        let token = virtio_pci::sharing(&pieces, || unsafe {
            self.queue.add(&[inp], &mut [&mut *out])
        })
        .map_err(io_err)?;
        if self.queue.should_notify() {
            transport.lock().notify(CONTROL_QUEUE);
        }
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        while !self.queue.can_pop() {
            if Instant::now() > deadline {
                self.lost = true;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("virtio-sound: request {code:#06x} not answered"),
                ));
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        // SAFETY: the chain `add` queued, with the same buffers.
        unsafe { self.queue.pop_used(token, &[inp], &mut [&mut *out]) }.map_err(io_err)?;
        let status = u32::from_le_bytes(out[..4].try_into().expect("4 bytes"));
        if status != S_OK {
            return Err(refused(code, status));
        }
        Ok(out.to_vec())
    }

    /// A request about stream `stream` with no more than its header.
    fn stream_request(
        &mut self,
        transport: &Mutex<PciTransport>,
        code: u32,
        stream: u32,
    ) -> io::Result<()> {
        let mut req = code.to_le_bytes().to_vec();
        req.extend_from_slice(&stream.to_le_bytes());
        self.request(transport, &req, 4).map(drop)
    }
}

/// Where a stream is in virtio-snd's state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No parameters with the card (released).
    Released,
    /// Parameters set and prepared; blocks may be queued.
    Prepared,
    /// Started.
    Running,
}

/// One stream's ring.
struct Ring {
    queue: VirtQueue<PciHal, PCM_SIZE>,
    /// The queue's index.
    index: u16,
    direction: Direction,
    /// The card's stream id.
    stream: u32,
    caps: Caps,
    format: Format,
    state: State,
    /// `format.blocks` slots (allocated at the first prepare of a format).
    slots: Option<DmaBuffer>,
    slot_size: usize,
    free: Vec<usize>,
    /// The slot each queued chain holds, by token.
    inflight: [Option<usize>; PCM_SIZE],
    queued: usize,
    /// Bytes of frames in each slot.
    lens: Vec<usize>,
    /// Playback: the slot being filled.
    filling: Option<usize>,
    /// Playback: the ring runs dry at the end on purpose.
    draining: bool,
    /// Capture: frames from the card not read yet.
    captured: VecDeque<u8>,
    counters: Counters,
    /// The card answered a block with an error (until the next prepare).
    failed: Option<String>,
    /// The card kept blocks of a released stream: their slots may still be
    /// its, so the stream serves no more.
    stuck: Option<String>,
}

impl Ring {
    /// Ring `k` (0 playback on the transmit queue, 1 capture on the
    /// receive queue) for the card's stream `stream`, released.
    fn new(
        queue: VirtQueue<PciHal, PCM_SIZE>,
        k: usize,
        stream: u32,
        caps: Caps,
        format: Format,
    ) -> Self {
        let (direction, index) = [
            (Direction::Playback, TX_QUEUE),
            (Direction::Capture, RX_QUEUE),
        ][k];
        Self {
            queue,
            index,
            direction,
            stream,
            caps,
            format,
            state: State::Released,
            slots: None,
            slot_size: 0,
            free: Vec::new(),
            inflight: [None; PCM_SIZE],
            queued: 0,
            lens: Vec::new(),
            filling: None,
            draining: false,
            captured: VecDeque::new(),
            counters: Counters::default(),
            failed: None,
            stuck: None,
        }
    }

    /// Slot `i`'s address and bus address.
    fn slot(&self, i: usize) -> (*mut u8, u64) {
        let m = self.slots.as_ref().expect("slots exist once prepared");
        // SAFETY: `i` < the slot count: inside the slot memory.
        let p = unsafe { m.as_ptr().add(i * self.slot_size) };
        (p, m.bus_address() + (i * self.slot_size) as u64)
    }

    /// The buffers of slot `i`'s chain: (readable, writable) as (address,
    /// length, bus address).
    fn pieces(&self, i: usize) -> [(usize, usize, u64); 2] {
        let (p, bus) = self.slot(i);
        let p = p as usize;
        let block = self.format.block;
        match self.direction {
            Direction::Playback => [
                (
                    p + HEADER,
                    FRAMES - HEADER + self.lens[i],
                    bus + HEADER as u64,
                ),
                (p + FRAMES + block, STATUS, bus + (FRAMES + block) as u64),
            ],
            Direction::Capture => [
                (p + HEADER, FRAMES - HEADER, bus + HEADER as u64),
                (p + FRAMES, block + STATUS, bus + FRAMES as u64),
            ],
        }
    }

    /// Gives slot `i` to the card.
    fn queue_slot(&mut self, i: usize, transport: &Mutex<PciTransport>) -> io::Result<()> {
        let (p, _) = self.slot(i);
        // Both directions: the status follows the block.
        let status_at = FRAMES + self.format.block;
        // SAFETY: the slot is the driver's (not with the card); header and
        // status are inside it.
        unsafe {
            std::ptr::copy_nonoverlapping(self.stream.to_le_bytes().as_ptr(), p.add(HEADER), 4);
            p.add(status_at).write_bytes(0, STATUS);
        }
        let [r, w] = self.pieces(i);
        // SAFETY: both pieces are inside the slot, which stays untouched
        // until `reclaim` takes it back.
        let (inp, out) = unsafe {
            (
                std::slice::from_raw_parts(r.0 as *const u8, r.1),
                std::slice::from_raw_parts_mut(w.0 as *mut u8, w.1),
            )
        };
        // SAFETY: as above; `share` answers from the two pieces.
        let token = virtio_pci::sharing(&[r, w], || unsafe { self.queue.add(&[inp], &mut [out]) })
            .map_err(io_err)?;
        self.inflight[usize::from(token)] = Some(i);
        self.queued += 1;
        if self.queue.should_notify() {
            transport.lock().notify(self.index);
        }
        Ok(())
    }

    /// Takes back every slot the card returned: playback frees it,
    /// capture keeps its frames and queues it again while running.
    /// Returns how many came back.
    fn reclaim(&mut self, transport: &Mutex<PciTransport>) -> usize {
        let mut returned = 0;
        while let Some(token) = self.queue.peek_used() {
            let Some(slot) = self.inflight[usize::from(token)].take() else {
                log::error!("virtio-sound: completion of unknown block {token}");
                break;
            };
            let [r, w] = self.pieces(slot);
            // SAFETY: the pieces `queue_slot` gave under `token`.
            let used = unsafe {
                let inp = std::slice::from_raw_parts(r.0 as *const u8, r.1);
                let out = std::slice::from_raw_parts_mut(w.0 as *mut u8, w.1);
                self.queue.pop_used(token, &[inp], &mut [out])
            };
            self.queued -= 1;
            returned += 1;
            let used = match used {
                Ok(u) => u as usize,
                Err(e) => {
                    log::error!("virtio-sound: ring: {e}");
                    self.failed = Some(e.to_string());
                    break;
                }
            };
            let (p, _) = self.slot(slot);
            let block = self.format.block;
            // SAFETY: the card wrote the status, inside the slot.
            let status = unsafe { std::slice::from_raw_parts(p.add(FRAMES + block), STATUS) };
            let code = u32::from_le_bytes(status[..4].try_into().expect("4 bytes"));
            if self.state == State::Released {
                // Flushed by a release: neither played nor captured.
                self.free.push(slot);
                continue;
            }
            self.counters.latency_bytes = u32::from_le_bytes(status[4..].try_into().expect("4"));
            if code != S_OK {
                self.failed = Some(format!("the card answered a block {code:#06x}"));
            }
            let frame = self.format.frame();
            match self.direction {
                Direction::Playback => {
                    self.counters.frames += (self.lens[slot] / frame) as u64;
                    self.free.push(slot);
                    if self.queued == 0 && self.state == State::Running && !self.draining {
                        self.counters.xruns += 1;
                    }
                }
                Direction::Capture => {
                    let got = used.saturating_sub(STATUS).min(block) / frame * frame;
                    // SAFETY: the card wrote `got` bytes of frames there.
                    let data = unsafe { std::slice::from_raw_parts(p.add(FRAMES), got) };
                    let room = 2 * self.format.blocks * block;
                    if self.captured.len() + got > room {
                        let drop = self.captured.len() + got - room;
                        self.captured.drain(..drop);
                        self.counters.xruns += 1;
                    }
                    self.captured.extend(data);
                    self.counters.frames += (got / frame) as u64;
                    if self.state == State::Running {
                        if let Err(e) = self.queue_slot(slot, transport) {
                            self.failed = Some(e.to_string());
                        }
                    } else {
                        self.free.push(slot);
                    }
                }
            }
        }
        self.counters.queued = self.queued as u32;
        returned
    }

    /// Sets the card's parameters for the format and prepares the stream
    /// (slots allocated for it), when released.
    fn prepare(&mut self, s: &Shared) -> io::Result<()> {
        if self.state != State::Released {
            return Ok(());
        }
        if let Some(e) = &self.stuck {
            return Err(io::Error::other(format!("virtio-sound: {e}")));
        }
        let f = self.format;
        let rate = RATES
            .iter()
            .position(|r| *r == f.rate)
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, format!("{} Hz", f.rate)))?;
        let mut req = R_PCM_SET_PARAMS.to_le_bytes().to_vec();
        req.extend_from_slice(&self.stream.to_le_bytes());
        req.extend_from_slice(&((f.block * f.blocks) as u32).to_le_bytes());
        req.extend_from_slice(&(f.block as u32).to_le_bytes());
        req.extend_from_slice(&0u32.to_le_bytes());
        req.extend_from_slice(&[f.channels, format_code(f.sample), rate as u8, 0]);
        let mut c = s.control.lock();
        c.request(&s.transport, &req, 4)?;
        c.stream_request(&s.transport, R_PCM_PREPARE, self.stream)?;
        drop(c);
        let slot_size = (FRAMES + f.block + STATUS).next_multiple_of(64);
        let size = (slot_size * f.blocks).next_multiple_of(PAGE);
        if self.slots.as_ref().is_none_or(|m| m.len() < size) {
            self.slots =
                Some(DmaBuffer::new(size, PAGE, false).map_err(hypercall::NetbsdErrno::to_io)?);
        }
        self.slot_size = slot_size;
        self.lens = vec![0; f.blocks];
        self.free = (0..f.blocks).rev().collect();
        self.filling = None;
        self.draining = false;
        self.failed = None;
        self.state = State::Prepared;
        Ok(())
    }

    fn start(&mut self, s: &Shared) -> io::Result<()> {
        s.control
            .lock()
            .stream_request(&s.transport, R_PCM_START, self.stream)?;
        self.state = State::Running;
        self.counters.running = true;
        Ok(())
    }

    /// Stops and releases the stream; the card gives every block back.
    fn release(&mut self, s: &Shared) -> io::Result<()> {
        let mut r = Ok(());
        if self.state == State::Running {
            r = s
                .control
                .lock()
                .stream_request(&s.transport, R_PCM_STOP, self.stream);
        }
        if self.state != State::Released {
            let released =
                s.control
                    .lock()
                    .stream_request(&s.transport, R_PCM_RELEASE, self.stream);
            r = r.and(released);
        }
        self.state = State::Released;
        self.counters.running = false;
        self.filling = None;
        self.draining = false;
        r
    }

    /// The longest a block in the ring may take to come back.
    fn patience(&self) -> Duration {
        let ring = (self.format.block * self.format.blocks) as u64;
        Duration::from_nanos(ring * 1_000_000_000 / self.format.bytes_per_second().max(1)) + STALL
    }

    fn check(&self) -> io::Result<()> {
        match self.stuck.as_ref().or(self.failed.as_ref()) {
            Some(e) => Err(io::Error::other(format!("virtio-sound: {e}"))),
            None => Ok(()),
        }
    }
}

/// Fields drop in order: the transport first (its drop resets the device,
/// which stops its DMA), then the rings and buffers, the function last.
struct Shared {
    transport: Mutex<PciTransport>,
    control: Mutex<Control>,
    play: Mutex<Option<Ring>>,
    played: Condvar,
    capture: Mutex<Option<Ring>>,
    captured: Condvar,
    interrupts: bool,
    _device: Arc<Device>,
}

impl Shared {
    /// What an interrupt (or a poll) does.
    fn service(&self, intx: bool) {
        if intx {
            // Reading the ISR status deasserts the line.
            let _ = self.transport.lock().ack_interrupt();
        }
        for (ring, cv) in [(&self.play, &self.played), (&self.capture, &self.captured)] {
            if let Some(r) = ring.lock().as_mut()
                && r.reclaim(&self.transport) > 0
            {
                cv.notify_all();
            }
        }
    }

    /// Waits on `cv` until `done` holds of the ring (reclaiming between
    /// looks); `TimedOut` past the ring's patience.
    fn wait(
        &self,
        ring: &mut MutexGuard<'_, Option<Ring>>,
        cv: &Condvar,
        mut done: impl FnMut(&Ring) -> bool,
    ) -> io::Result<()> {
        let r = ring.as_mut().expect("the stream exists");
        let deadline = Instant::now() + r.patience();
        loop {
            let r = ring.as_mut().expect("the stream exists");
            r.reclaim(&self.transport);
            r.check()?;
            if done(r) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "virtio-sound: the card returns no blocks",
                ));
            }
            if self.interrupts {
                cv.wait_for(ring, LOST_INTERRUPT);
            } else {
                MutexGuard::unlocked(ring, || std::thread::sleep(virtio_pci::POLL));
            }
        }
    }
}

/// A virtio-sound function driven from this process: its first output
/// and first input stream.
pub struct VirtioSound {
    address: Address,
    playback: Option<Arc<VirtioStream>>,
    capture: Option<Arc<VirtioStream>>,
}

impl std::fmt::Debug for VirtioSound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioSound")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Caps from a `virtio_snd_pcm_info`.
fn caps_of(info: &[u8]) -> Caps {
    let formats = u64::from_le_bytes(info[8..16].try_into().expect("8 bytes"));
    let rates = u64::from_le_bytes(info[16..24].try_into().expect("8 bytes"));
    Caps {
        channels: (info[25], info[26]),
        rates: RATES
            .iter()
            .enumerate()
            .filter(|(i, _)| rates & (1 << i) != 0)
            .map(|(_, r)| *r)
            .collect(),
        samples: Sample::ALL
            .into_iter()
            .filter(|s| formats & (1 << format_code(*s)) != 0)
            .collect(),
    }
}

/// The format a stream starts with: 48 kHz (else its fastest rate up to
/// that), two channels where it can, s16le where it can.
fn default_format(c: &Caps) -> Option<Format> {
    let rate = c
        .rates
        .iter()
        .copied()
        .filter(|r| *r <= 48_000)
        .max()
        .or_else(|| c.rates.first().copied())?;
    let channels = 2.clamp(c.channels.0, c.channels.1.max(c.channels.0));
    let sample = if c.samples.contains(&Sample::S16Le) {
        Sample::S16Le
    } else {
        *c.samples.first()?
    };
    Some(Format::new(rate, channels, sample))
}

/// Asks the card about its first `streams` streams: the first playback
/// and the first capture stream with a format this driver moves, as (id,
/// caps, default format).
fn discover(
    control: &mut Control,
    transport: &Mutex<PciTransport>,
    address: Address,
    streams: u32,
) -> io::Result<[Option<(u32, Caps, Format)>; 2]> {
    let count = streams.min(((PAGE - RESPONSE - 4) / PCM_INFO_SIZE) as u32);
    let mut req = R_PCM_INFO.to_le_bytes().to_vec();
    for w in [0, count, PCM_INFO_SIZE as u32] {
        req.extend_from_slice(&w.to_le_bytes());
    }
    let info = control.request(transport, &req, 4 + count as usize * PCM_INFO_SIZE)?;
    let mut found = [None, None];
    for (id, info) in info[4..].chunks_exact(PCM_INFO_SIZE).enumerate() {
        // virtio-snd's directions: 0 output, 1 input.
        let k = match info[24] {
            0 => 0,
            1 => 1,
            _ => continue,
        };
        let caps = caps_of(info);
        let Some(format) = default_format(&caps) else {
            log::info!("{address}: stream {id}: no format this driver moves");
            continue;
        };
        if found[k].is_none() {
            found[k] = Some((id as u32, caps, format));
        }
    }
    Ok(found)
}

impl VirtioSound {
    /// Opens the virtio-sound function at `address` and starts its device,
    /// with DMA addressed as `hypercall::pci::dma_addressing` says.
    ///
    /// # Errors
    /// No such function, not virtio-sound, not virtio 1.x, no PCM stream
    /// the driver can use, or the device refuses the features, queues or
    /// requests.
    pub fn open(address: Address) -> io::Result<Self> {
        let (device, mut transport) = virtio_pci::open(address, &[0x1059], "virtio-sound")?;
        let mut supported = Features::VERSION_1;
        if pci::dma_addressing() == DmaAddressing::Iommu {
            supported |= Features::ACCESS_PLATFORM;
        }
        let got = transport.begin_init(supported);
        if !got.contains(Features::VERSION_1)
            || !transport.get_status().contains(DeviceStatus::FEATURES_OK)
        {
            transport.set_status(DeviceStatus::FAILED);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{address}: the device does not take virtio 1.x ({got:?})"),
            ));
        }
        let streams: u32 = transport.read_config_space(4).map_err(io_err)?;
        let queue_err = |q: u16| move |e| io_err(format!("{address}: queue {q}: {e}"));
        let control = VirtQueue::new(&mut transport, CONTROL_QUEUE, false, false)
            .map_err(queue_err(CONTROL_QUEUE))?;
        let tx =
            VirtQueue::new(&mut transport, TX_QUEUE, false, false).map_err(queue_err(TX_QUEUE))?;
        let rx =
            VirtQueue::new(&mut transport, RX_QUEUE, false, false).map_err(queue_err(RX_QUEUE))?;
        transport.finish_init();
        let transport = Mutex::new(transport);
        let mut control = Control {
            queue: control,
            page: DmaBuffer::new(PAGE, PAGE, false).map_err(hypercall::NetbsdErrno::to_io)?,
            lost: false,
        };
        let mut rings = discover(&mut control, &transport, address, streams)?;
        let irq = virtio_pci::queue_interrupt(&device, address, &[TX_QUEUE, RX_QUEUE]);
        let mut queues = [Some(tx), Some(rx)];
        let mut make = |k: usize| {
            let (stream, caps, format) = rings[k].take()?;
            let mut queue = queues[k].take().expect("each queue once");
            queue.set_dev_notify(irq.is_ok());
            Some(Ring::new(queue, k, stream, caps, format))
        };
        let (play, capture) = (make(0), make(1));
        if play.is_none() && capture.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{address}: none of the {streams} streams plays or captures a format this driver moves"
                ),
            ));
        }
        let kind = match &irq {
            Ok(i) if i.is_intx() => "INTx".to_owned(),
            Ok(_) => "MSI-X".to_owned(),
            Err(e) => format!("polled (no interrupt: {e})"),
        };
        let describe = |r: &Option<Ring>| {
            r.as_ref().map_or_else(
                || "none".to_owned(),
                |r| format!("stream {} ({:?})", r.stream, r.caps),
            )
        };
        log::info!(
            "{address}: virtio-sound, {streams} streams; playback {}, capture {}; {kind}",
            describe(&play),
            describe(&capture)
        );
        let caps = [&play, &capture].map(|r| r.as_ref().map(|r| r.caps.clone()));
        let shared = Arc::new(Shared {
            transport,
            control: Mutex::new(control),
            play: Mutex::new(play),
            played: Condvar::new(),
            capture: Mutex::new(capture),
            captured: Condvar::new(),
            interrupts: irq.is_ok(),
            _device: device,
        });
        // The thread keeps no card alive: once it is gone the thread ends
        // at its next wake-up.
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        virtio_pci::spawn_service(format!("virtio-sound-{address}"), irq.ok(), move |intx| {
            weak.upgrade().map(|s| s.service(intx)).is_some()
        })?;
        let [play_caps, capture_caps] = caps;
        let stream = |direction, caps: Option<Caps>| {
            caps.map(|caps| {
                Arc::new(VirtioStream {
                    shared: Arc::clone(&shared),
                    direction,
                    caps,
                })
            })
        };
        Ok(Self {
            address,
            playback: stream(Direction::Playback, play_caps),
            capture: stream(Direction::Capture, capture_caps),
        })
    }

    /// Its playback stream, if it has one.
    #[must_use]
    pub fn playback(&self) -> Option<Arc<dyn Stream>> {
        self.playback.clone().map(|s| s as Arc<dyn Stream>)
    }

    /// Its capture stream, if it has one.
    #[must_use]
    pub fn capture(&self) -> Option<Arc<dyn Stream>> {
        self.capture.clone().map(|s| s as Arc<dyn Stream>)
    }
}

/// One stream of a [`VirtioSound`].
pub struct VirtioStream {
    shared: Arc<Shared>,
    direction: Direction,
    caps: Caps,
}

impl VirtioStream {
    fn ring(&self) -> (MutexGuard<'_, Option<Ring>>, &Condvar) {
        match self.direction {
            Direction::Playback => (self.shared.play.lock(), &self.shared.played),
            Direction::Capture => (self.shared.capture.lock(), &self.shared.captured),
        }
    }
}

impl Stream for VirtioStream {
    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn format(&self) -> Format {
        self.ring().0.as_ref().expect("the stream exists").format
    }

    fn set_format(&self, f: Format) -> io::Result<()> {
        if !self.caps.allows(&f) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the card does not take {f} (it takes {:?})", self.caps),
            ));
        }
        self.stop();
        self.ring().0.as_mut().expect("the stream exists").format = f;
        Ok(())
    }

    fn write(&self, mut data: &[u8]) -> io::Result<()> {
        if self.direction != Direction::Playback {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let shared = &*self.shared;
        let (mut ring, cv) = self.ring();
        ring.as_mut().expect("the stream exists").prepare(shared)?;
        while !data.is_empty() {
            let r = ring.as_mut().expect("the stream exists");
            let slot = if let Some(slot) = r.filling {
                slot
            } else {
                if r.free.is_empty() && r.state == State::Prepared {
                    r.start(shared)?;
                }
                shared.wait(&mut ring, cv, |r| !r.free.is_empty())?;
                let r = ring.as_mut().expect("the stream exists");
                let slot = r.free.pop().expect("a free slot");
                r.lens[slot] = 0;
                r.filling = Some(slot);
                slot
            };
            let r = ring.as_mut().expect("the stream exists");
            let (p, _) = r.slot(slot);
            let take = (r.format.block - r.lens[slot]).min(data.len());
            // SAFETY: the slot being filled is the driver's; `take` bytes
            // fit after what it holds, inside its block.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(FRAMES + r.lens[slot]), take);
            }
            r.lens[slot] += take;
            data = &data[take..];
            if r.lens[slot] == r.format.block {
                r.filling = None;
                r.queue_slot(slot, &shared.transport)?;
                if r.free.is_empty() && r.state == State::Prepared {
                    r.start(shared)?;
                }
            }
        }
        Ok(())
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.direction != Direction::Capture {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let s = &*self.shared;
        let (mut ring, cv) = self.ring();
        let r = ring.as_mut().expect("the stream exists");
        if r.state != State::Running {
            r.prepare(s)?;
            while let Some(i) = r.free.pop() {
                r.queue_slot(i, &s.transport)?;
            }
            r.start(s)?;
        }
        let want = buf.len().min(r.format.block);
        s.wait(&mut ring, cv, |r| r.captured.len() >= want)?;
        let r = ring.as_mut().expect("the stream exists");
        let frame = r.format.frame();
        let n = buf.len().min(r.captured.len()) / frame * frame;
        for (b, v) in buf.iter_mut().zip(r.captured.drain(..n)) {
            *b = v;
        }
        Ok(n)
    }

    fn drain(&self) -> io::Result<()> {
        let s = &*self.shared;
        let (mut ring, cv) = self.ring();
        let r = ring.as_mut().expect("the stream exists");
        if r.state == State::Released {
            return Ok(());
        }
        if self.direction == Direction::Playback {
            if let Some(i) = r.filling.take() {
                if r.lens[i] > 0 {
                    r.queue_slot(i, &s.transport)?;
                } else {
                    r.free.push(i);
                }
            }
            r.draining = true;
            if r.state == State::Prepared && r.queued > 0 {
                r.start(s)?;
            }
            s.wait(&mut ring, cv, |r| r.queued == 0)?;
            // A card returns a block once it has taken its frames, which
            // may be before the last of them went out (QEMU's copies them
            // into its mixing buffer): one block's time more before the
            // stop.
            let r = ring.as_ref().expect("the stream exists");
            let block = Duration::from_nanos(
                r.format.block as u64 * 1_000_000_000 / r.format.bytes_per_second().max(1),
            );
            MutexGuard::unlocked(&mut ring, || std::thread::sleep(block));
        }
        let r = ring.as_mut().expect("the stream exists");
        r.release(s)?;
        s.wait(&mut ring, cv, |r| r.queued == 0)?;
        let r = ring.as_mut().expect("the stream exists");
        r.captured.clear();
        Ok(())
    }

    fn stop(&self) {
        let s = &*self.shared;
        let (mut ring, cv) = self.ring();
        let r = ring.as_mut().expect("the stream exists");
        if r.state != State::Released {
            if let Err(e) = r.release(s) {
                log::warn!("virtio-sound: stopping stream {}: {e}", r.stream);
            }
            // The card completes every block of a released stream.
            if let Err(e) = s.wait(&mut ring, cv, |r| r.queued == 0) {
                log::error!("virtio-sound: blocks not returned after a release: {e}");
                // Their slots may still be the card's: the stream serves no more.
                let r = ring.as_mut().expect("the stream exists");
                r.stuck.get_or_insert_with(|| e.to_string());
            }
        }
        let r = ring.as_mut().expect("the stream exists");
        r.captured.clear();
        // The next opener counts from zero.
        r.counters = Counters::default();
    }

    fn counters(&self) -> Counters {
        let (mut ring, _) = self.ring();
        let r = ring.as_mut().expect("the stream exists");
        r.reclaim(&self.shared.transport);
        r.counters
    }
}
