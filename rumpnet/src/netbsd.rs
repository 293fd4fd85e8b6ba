//! The NetBSD back end: an interface the rump kernel's own drivers attach
//! (wm(4) on Intel's e1000 family, vioif(4) on virtio), brought up as
//! `ifconfig wm0 up` would, with whole frames in and out through bpf(4).
//!
//! Why bpf rather than a virtif-style tap in the kernel: bpf is part of
//! every NetBSD kernel and sees each frame the driver receives exactly as
//! it arrived (before any protocol), and a bpf write hands a complete
//! Ethernet frame to the driver's output queue with its source address
//! kept (`BIOCSHDRCMPLT`). A read returns every frame the kernel buffered
//! since the last one, into one buffer this back end reuses: no
//! allocation per frame on our side (NetBSD's mbufs are its own).
//!
//! The descriptor is promiscuous: the `Interfaces` driver's address filter
//! decides which frames clients see, as it does for native virtio-net
//! (whose device QEMU starts promiscuous), so `NET_FLAGS` `IFF_PROMISC`
//! needs nothing of the hardware. No protocol is configured in the rump
//! kernel, so its own stack answers nothing on the wire.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rump::Rump;
use rump::net::{Bpf, IFF_UP, Interfaces, records};

use crate::nic::{ETHER_ADDR, ETHER_HEADER, Nic, NicStats, Receiver};

/// Bytes of the kernel's bpf buffer (and of the reader's).
const BPF_BUFFER: u32 = 256 * 1024;
/// How long a read waits before the reader checks it should stop.
const READ_TIMEOUT_MS: u32 = 500;

struct Shared {
    kernel: Rump,
    bpf: Bpf,
    stop: AtomicBool,
    rx_frames: AtomicU64,
    tx_frames: AtomicU64,
    rx_errors: AtomicU64,
}

/// One interface of the rump kernel.
pub struct NetbsdNic {
    name: String,
    mac: [u8; ETHER_ADDR],
    mtu: usize,
    shared: Arc<Shared>,
    started: AtomicBool,
}

impl std::fmt::Debug for NetbsdNic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetbsdNic")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

impl NetbsdNic {
    /// Brings up the kernel's interface `name` (`wm0`, `vioif0`) and opens
    /// bpf on it.
    ///
    /// # Errors
    /// No such interface (the error lists those the kernel attached), not
    /// an Ethernet interface, or the driver's error bringing it up.
    pub fn open(kernel: Rump, name: &str) -> io::Result<Self> {
        let ifs = Interfaces::open(kernel)?;
        let links = ifs.links()?;
        let Some(link) = links.iter().find(|l| l.name == name) else {
            let attached: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no interface {name} in the NetBSD kernel (it attached: {})",
                    attached.join(", ")
                ),
            ));
        };
        let mac: [u8; ETHER_ADDR] = link.address.as_slice().try_into().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} has no Ethernet address ({:?})", link.address),
            )
        })?;
        let flags = ifs.flags(name)?;
        ifs.set_flags(name, flags | IFF_UP)?;
        let mtu = ifs.mtu(name)?;
        let bpf = Bpf::open(kernel, name, BPF_BUFFER, READ_TIMEOUT_MS)?;
        Ok(Self {
            name: name.to_owned(),
            mac,
            mtu,
            shared: Arc::new(Shared {
                kernel,
                bpf,
                stop: AtomicBool::new(false),
                rx_frames: AtomicU64::new(0),
                tx_frames: AtomicU64::new(0),
                rx_errors: AtomicU64::new(0),
            }),
            started: AtomicBool::new(false),
        })
    }
}

impl Shared {
    fn receive(&self, rx: &Receiver, name: &str) {
        if let Err(e) = self.kernel.bind_thread() {
            log::warn!("{name}: receiving without an LWP of its own: {e}");
        }
        let mut buf = vec![0u8; self.bpf.buffer_size()];
        while !self.stop.load(Ordering::Relaxed) {
            let n = match self.bpf.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    // The interface went away (ENXIO) or bpf failed: no
                    // frame will come again.
                    log::error!("{name}: bpf read: {e}; receiving stops");
                    return;
                }
            };
            for r in records(&buf[..n]) {
                if r.data.len() < r.wire_len || r.data.len() < ETHER_HEADER {
                    self.rx_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.rx_frames.fetch_add(1, Ordering::Relaxed);
                rx(r.data);
            }
        }
    }
}

impl Nic for NetbsdNic {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; ETHER_ADDR] {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() < ETHER_HEADER || frame.len() > ETHER_HEADER + self.mtu {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: a {}-byte frame", self.name, frame.len()),
            ));
        }
        // Senders (the TAP reader, the device server's threads) keep an
        // LWP each rather than one per frame.
        self.shared.kernel.bind_thread()?;
        self.shared.bpf.write(frame)?;
        self.shared.tx_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn start(&self, rx: Receiver) -> io::Result<()> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Err(io::Error::other(format!("{} started twice", self.name)));
        }
        let shared = Arc::clone(&self.shared);
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("{}-rx", self.name))
            .spawn(move || shared.receive(&rx, &name))?;
        Ok(())
    }

    fn stats(&self) -> NicStats {
        // Frames bpf dropped for want of buffer space are lost receives.
        let dropped = self.shared.bpf.stats().map_or(0, |s| s.dropped);
        NicStats {
            rx_frames: self.shared.rx_frames.load(Ordering::Relaxed),
            tx_frames: self.shared.tx_frames.load(Ordering::Relaxed),
            rx_errors: self.shared.rx_errors.load(Ordering::Relaxed) + dropped,
        }
    }
}

impl Drop for NetbsdNic {
    fn drop(&mut self) {
        // The reader sees this within a read timeout and ends; the
        // descriptor closes with the last reference.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
