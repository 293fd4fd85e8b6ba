//! rumpdisk: disks served over the Mach device interface.
//!
//! - [`disk::Disk`]: the back-end interface; [`image::Image`] serves host
//!   files and block devices; [`virtio::VirtioDisk`] drives a virtio-blk
//!   PCI function natively through the hypercall crate's PCI service; with
//!   a rump kernel, `netbsd` serves NetBSD's disk drivers.
//! - [`device::Disks`]: the `machdev` driver — device names, 512-byte
//!   records, `DEV_GET_SIZE`/`DEV_GET_RECORDS`, `BLKRRPART`,
//!   `DEV_FLUSH_CACHE`, and GNU Mach's error codes.

#[cfg(target_os = "linux")]
pub mod ctl;
pub mod device;
pub mod disk;
pub mod image;
#[cfg(target_os = "linux")]
pub mod nbd;
#[cfg(rump_kernel)]
pub mod netbsd;
pub mod virtio;
