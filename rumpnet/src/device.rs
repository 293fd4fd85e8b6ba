//! The `machdev` driver: network interfaces under GNU Mach's network
//! device interface (`device/net_status.h`, `device/net_io.c`).
//!
//! - Names: `eth0`, `eth1` ... in the order the interfaces were given, and
//!   each NIC's own NetBSD name (`vioif0`, `wm0`).
//! - `device_write`/`device_write_inband`: one whole Ethernet frame each,
//!   14 to 14 + MTU bytes (else `D_INVALID_SIZE`), on an interface that is
//!   up and running (else `D_DEVICE_DOWN`); the record number is ignored.
//! - `device_set_filter`: NETF and BPF programs ([`machdev::net`]); frames
//!   received go through the `NETF_IN` filters, frames sent through the
//!   `NETF_OUT` ones.
//! - `device_get_status`: `NET_STATUS`, `NET_ADDRESS` (the MAC, as GNU
//!   Mach gives it: two words in network order), `NET_FLAGS`;
//!   `device_set_status`: `NET_FLAGS` (`IFF_UP`, `IFF_PROMISC`,
//!   `IFF_ALLMULTI`; other bits are kept as they are). Anything else,
//!   `device_read` included, is `D_INVALID_OPERATION`, as GNU Mach's
//!   network drivers answer.
//! - Without `IFF_PROMISC`, an interface passes on only frames addressed to
//!   its MAC, broadcast, and (with `IFF_ALLMULTI`, which is set at start)
//!   multicast; the NIC itself may receive more.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use mach::KernReturn;
use mach::PortName;
use mach::ipc::Ipc;
use mach::msg::MsgBuf;
use machdev::net::{Direction, FilterSet, FilterStats};
use machdev::{Device, Driver, Mode};
use mig_bindings::net::{
    HDR_ETHERNET, IFF_ALLMULTI, IFF_BROADCAST, IFF_MULTICAST, IFF_PROMISC, IFF_RUNNING, IFF_UP,
    NET_ADDRESS, NET_FLAGS, NET_STATUS, NET_STATUS_COUNT, NetStatus,
};

use crate::nic::{ETHER_ADDR, ETHER_HEADER, Nic, NicStats};

/// Flags a client may change with `NET_FLAGS`.
const SETTABLE: i32 = IFF_UP | IFF_PROMISC | IFF_ALLMULTI;
/// A broadcast destination.
const BROADCAST: [u8; ETHER_ADDR] = [0xff; ETHER_ADDR];

/// Where frames go besides the Mach clients (the TAP front end).
pub trait FrameSink: Send + Sync {
    /// One whole Ethernet frame the interface received.
    fn frame(&self, frame: &[u8]);
}

thread_local! {
    /// Each delivering thread's `net_rcv_msg` buffer, kept between frames.
    static MESSAGE: RefCell<MsgBuf> = RefCell::new(mig_bindings::net::net_rcv_buffer());
}

/// Counters of an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// The NIC's own.
    pub nic: NicStats,
    /// The filters'.
    pub filters: FilterStats,
    /// Received frames passed on (address accepted).
    pub rx_accepted: u64,
    /// Received frames not addressed to this interface (not promiscuous).
    pub rx_other_address: u64,
    /// Received frames shorter than an Ethernet header.
    pub rx_runts: u64,
    /// Frames clients sent.
    pub tx_frames: u64,
    /// Frames clients wanted to send that the NIC refused.
    pub tx_errors: u64,
}

/// One network interface: a NIC, its flags, its filters and front ends.
pub struct Interface {
    nic: Arc<dyn Nic>,
    flags: AtomicI32,
    filters: FilterSet,
    sink: OnceLock<Arc<dyn FrameSink>>,
    rx_accepted: AtomicU64,
    rx_other_address: AtomicU64,
    rx_runts: AtomicU64,
    tx_frames: AtomicU64,
    tx_errors: AtomicU64,
}

impl fmt::Debug for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interface")
            .field("nic", &self.nic.name())
            .field("flags", &format_args!("{:#x}", self.flags()))
            .finish_non_exhaustive()
    }
}

impl Interface {
    /// Starts `nic` and serves it: up, running, all multicast.
    pub fn start(nic: Arc<dyn Nic>) -> std::io::Result<Arc<Self>> {
        let iface = Arc::new(Self {
            nic,
            flags: AtomicI32::new(
                IFF_UP | IFF_RUNNING | IFF_BROADCAST | IFF_MULTICAST | IFF_ALLMULTI,
            ),
            filters: FilterSet::new(),
            sink: OnceLock::new(),
            rx_accepted: AtomicU64::new(0),
            rx_other_address: AtomicU64::new(0),
            rx_runts: AtomicU64::new(0),
            tx_frames: AtomicU64::new(0),
            tx_errors: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&iface);
        iface.nic.start(Arc::new(move |frame: &[u8]| {
            if let Some(iface) = weak.upgrade() {
                iface.received(frame);
            }
        }))?;
        Ok(iface)
    }

    /// The NIC.
    #[must_use]
    pub fn nic(&self) -> &Arc<dyn Nic> {
        &self.nic
    }

    /// Current `IFF_*` flags.
    #[must_use]
    pub fn flags(&self) -> i32 {
        self.flags.load(Ordering::Acquire)
    }

    /// Also hands every received frame the interface accepts to `sink`
    /// (once per interface).
    pub fn set_sink(&self, sink: Arc<dyn FrameSink>) -> Result<(), String> {
        self.sink
            .set(sink)
            .map_err(|_| format!("{} has a front end already", self.nic.name()))
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> InterfaceStats {
        InterfaceStats {
            nic: self.nic.stats(),
            filters: self.filters.stats(),
            rx_accepted: self.rx_accepted.load(Ordering::Relaxed),
            rx_other_address: self.rx_other_address.load(Ordering::Relaxed),
            rx_runts: self.rx_runts.load(Ordering::Relaxed),
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
            tx_errors: self.tx_errors.load(Ordering::Relaxed),
        }
    }

    /// The filters (their per-port counters).
    #[must_use]
    pub fn filters(&self) -> &FilterSet {
        &self.filters
    }

    /// Whether a frame for `dest` is this interface's to take.
    fn wants(&self, dest: &[u8]) -> bool {
        let flags = self.flags();
        flags & IFF_PROMISC != 0
            || dest == self.nic.mac()
            || dest == BROADCAST
            || (dest[0] & 1 == 1 && flags & IFF_ALLMULTI != 0)
    }

    /// A frame from the wire (the NIC's receive thread).
    pub fn received(&self, frame: &[u8]) {
        if frame.len() < ETHER_HEADER {
            self.rx_runts.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.flags() & IFF_UP == 0 || !self.wants(&frame[..ETHER_ADDR]) {
            self.rx_other_address.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.rx_accepted.fetch_add(1, Ordering::Relaxed);
        self.deliver(frame, Direction::In);
        if let Some(sink) = self.sink.get() {
            sink.frame(frame);
        }
    }

    /// Sends one frame from a client (Mach or a front end): GNU Mach's
    /// `net_write` checks, then the NIC, then the `NETF_OUT` filters.
    pub fn transmit(&self, frame: &[u8]) -> Result<(), KernReturn> {
        if self.flags() & (IFF_UP | IFF_RUNNING) != IFF_UP | IFF_RUNNING {
            return Err(KernReturn::D_DEVICE_DOWN);
        }
        if frame.len() < ETHER_HEADER || frame.len() > ETHER_HEADER + self.nic.mtu() {
            return Err(KernReturn::D_INVALID_SIZE);
        }
        if let Err(e) = self.nic.send(frame) {
            self.tx_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("{}: send: {e}", self.nic.name());
            return Err(KernReturn::D_IO_ERROR);
        }
        self.tx_frames.fetch_add(1, Ordering::Relaxed);
        self.deliver(frame, Direction::Out);
        Ok(())
    }

    fn deliver(&self, frame: &[u8], dir: Direction) {
        MESSAGE.with(|buf| self.filters.deliver(frame, dir, &mut buf.borrow_mut()));
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        match flavor {
            NET_STATUS => {
                if max < NET_STATUS_COUNT {
                    return Err(KernReturn::D_INVALID_OPERATION);
                }
                Ok(NetStatus {
                    min_packet_size: ETHER_HEADER as i32,
                    max_packet_size: (ETHER_HEADER + self.nic.mtu()) as i32,
                    header_format: HDR_ETHERNET,
                    header_size: ETHER_HEADER as i32,
                    address_size: ETHER_ADDR as i32,
                    flags: self.flags(),
                    mapped_size: 0,
                }
                .to_words()
                .to_vec())
            }
            NET_ADDRESS => {
                // The address bytes in words, each word put in network
                // order (GNU Mach's `htonl` per word): a client reading the
                // words as bytes gets the MAC back.
                if max < 2 {
                    return Err(KernReturn::D_INVALID_OPERATION);
                }
                let mut bytes = [0u8; 8];
                bytes[..ETHER_ADDR].copy_from_slice(&self.nic.mac());
                Ok(bytes
                    .chunks_exact(4)
                    .map(|w| i32::from_ne_bytes(w.try_into().expect("4 bytes")).to_be())
                    .collect())
            }
            NET_FLAGS => {
                if max < 1 {
                    return Err(KernReturn::D_INVALID_SIZE);
                }
                Ok(vec![self.flags()])
            }
            _ => Err(KernReturn::D_INVALID_OPERATION),
        }
    }

    fn set_status(&self, flavor: u32, status: &[i32]) -> Result<(), KernReturn> {
        match flavor {
            NET_FLAGS => {
                let [want] = *status else {
                    return Err(KernReturn::D_INVALID_SIZE);
                };
                let _ = self
                    .flags
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                        Some((f & !SETTABLE) | (want & SETTABLE))
                    });
                log::debug!("{}: flags {:#x}", self.nic.name(), self.flags());
                Ok(())
            }
            _ => Err(KernReturn::D_INVALID_OPERATION),
        }
    }
}

/// One open of an interface.
struct Open {
    iface: Arc<Interface>,
}

impl Device for Open {
    fn read(&self, _recnum: u64, _len: usize) -> Result<Vec<u8>, KernReturn> {
        // GNU Mach's network devices deliver through filters only.
        Err(KernReturn::D_INVALID_OPERATION)
    }

    fn write(&self, _recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        self.iface.transmit(data).map(|()| data.len())
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        self.iface.get_status(flavor, max)
    }

    fn set_status(&self, flavor: u32, status: &[i32]) -> Result<(), KernReturn> {
        self.iface.set_status(flavor, status)
    }

    fn set_filter(
        &self,
        ipc: &Arc<dyn Ipc>,
        port: PortName,
        priority: i32,
        filter: &[u16],
    ) -> Result<(), KernReturn> {
        // Filters belong to the interface and outlive this open, as in GNU
        // Mach: they go when their port dies.
        self.iface.filters.set_filter(ipc, port, priority, filter)
    }

    fn remove_filter(&self, port: PortName) -> bool {
        self.iface.filters.remove_port(port)
    }
}

/// The driver: every interface under its names.
#[derive(Debug)]
pub struct Interfaces {
    by_name: BTreeMap<String, Arc<Interface>>,
    list: Vec<Arc<Interface>>,
}

impl Interfaces {
    /// Serves `list` as `eth0`, `eth1` ... and under the NICs' own names.
    pub fn new(list: Vec<Arc<Interface>>) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for (i, iface) in list.iter().enumerate() {
            for name in [format!("eth{i}"), iface.nic.name().to_owned()] {
                if by_name.insert(name.clone(), Arc::clone(iface)).is_some() {
                    return Err(format!("interface name {name} given twice"));
                }
            }
        }
        Ok(Self { by_name, list })
    }

    /// The interfaces, in order (`eth0` first).
    #[must_use]
    pub fn list(&self) -> &[Arc<Interface>] {
        &self.list
    }

    /// The interface named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<Interface>> {
        self.by_name.get(name)
    }
}

impl Driver for Interfaces {
    fn claims(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn open(&self, name: &str, _mode: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        let iface = self.by_name.get(name).ok_or(KernReturn::D_NO_SUCH_DEVICE)?;
        Ok(Arc::new(Open {
            iface: Arc::clone(iface),
        }))
    }
}
