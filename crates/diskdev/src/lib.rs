//! The disk layer rumpdisk and rumpusbdisk share, so that every disk
//! translator answers the Mach device interface the same way.
//!
//! - [`disk::Disk`]: the back-end interface; [`image::Image`] serves host
//!   files and block devices; with a rump kernel, `netbsd` serves NetBSD's
//!   disk drivers (`wd0`, `ld0`, `sd0` ...). Native drivers (rumpdisk's
//!   virtio-blk) implement [`disk::Disk`] in their translator.
//! - [`device::Disks`]: the `machdev` driver — device names, 512-byte
//!   records, `DEV_GET_SIZE`/`DEV_GET_RECORDS`, `BLKRRPART`,
//!   `DEV_FLUSH_CACHE`, and GNU Mach's error codes.
//! - [`remote::MachDisk`]: the other side — a Mach disk device another
//!   server (rumpdisk) serves, as a block device a rump kernel sits on.
//! - Linux front ends: `nbd` (an NBD server over the same disks) and `ctl`
//!   (a scripted Mach client for checks).

#[cfg(target_os = "linux")]
pub mod ctl;
pub mod device;
pub mod disk;
pub mod image;
#[cfg(target_os = "linux")]
pub mod nbd;
#[cfg(rump_kernel)]
pub mod netbsd;
pub mod remote;
