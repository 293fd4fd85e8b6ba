//! rumpnet: network interfaces served over GNU Mach's network device
//! interface.
//!
//! - [`nic::Nic`]: the back-end interface (a NIC driven in this process);
//!   [`virtio::VirtioNic`] drives a virtio-net PCI function natively
//!   through the hypercall crate's PCI service; `netbsd::NetbsdNic` (with
//!   a rump kernel) serves an interface of NetBSD's own drivers.
//! - [`device::Interfaces`]: the `machdev` driver — names, frames in and
//!   out, `NET_STATUS`/`NET_ADDRESS`/`NET_FLAGS`, and GNU Mach's packet
//!   filters for many clients (`machdev::net`).
//! - `tap` (Linux): joins an interface to a host TAP interface, so the
//!   Linux kernel's stack is one more client.

pub mod device;
#[cfg(rump_kernel)]
pub mod netbsd;
pub mod nic;
#[cfg(target_os = "linux")]
pub mod tap;
pub mod virtio;
