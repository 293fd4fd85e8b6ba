//! The back-end interface: one network interface driven in this process
//! (native virtio-net, a NetBSD driver in the rump kernel, ...).

use std::io;
use std::sync::Arc;

/// Length of an Ethernet header (destination, source, type).
pub const ETHER_HEADER: usize = 14;
/// Length of an Ethernet address.
pub const ETHER_ADDR: usize = 6;

/// Where a NIC hands the frames it receives: each call gets one whole
/// Ethernet frame (header included, no FCS) in the back end's own buffer,
/// valid for the call only. Calls come from the back end's receive thread.
pub type Receiver = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Counters a back end keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames received from the wire.
    pub rx_frames: u64,
    /// Frames handed to the device for sending.
    pub tx_frames: u64,
    /// Frames the device or driver dropped (errors, frames too long).
    pub rx_errors: u64,
}

/// One network interface.
pub trait Nic: Send + Sync + std::fmt::Debug {
    /// The NetBSD-style name of the interface (`vioif0`, `wm0`).
    fn name(&self) -> &str;

    /// Its Ethernet address.
    fn mac(&self) -> [u8; ETHER_ADDR];

    /// The largest payload after the Ethernet header (1500 for Ethernet).
    fn mtu(&self) -> usize;

    /// Sends one whole Ethernet frame (header and payload, no FCS, at most
    /// `ETHER_HEADER + mtu()` bytes). Returns once the frame was copied to
    /// the device (the caller may reuse `frame`); several may be in flight.
    fn send(&self, frame: &[u8]) -> io::Result<()>;

    /// Starts receiving: each frame the device receives goes to `rx`, until
    /// the NIC is dropped. Called once, before any `send`.
    fn start(&self, rx: Receiver) -> io::Result<()>;

    /// Counters so far.
    fn stats(&self) -> NicStats;
}
