//! rumpdisk: disks served over the Mach device interface.
//!
//! The disk layer (device semantics, host images, NetBSD's disks, the NBD
//! and ctl front ends) is the `diskdev` crate, shared with rumpusbdisk, and
//! re-exported here under its module names. This crate adds the native
//! virtio-blk driver, [`virtio::VirtioDisk`], which drives a virtio-blk PCI
//! function through the hypercall crate's PCI service.

#[cfg(target_os = "linux")]
pub use diskdev::ctl;
#[cfg(target_os = "linux")]
pub use diskdev::nbd;
#[cfg(rump_kernel)]
pub use diskdev::netbsd;
pub use diskdev::{device, disk, image};
pub mod virtio;
