//! rumpfs: NetBSD's file systems (FFS, ext2, FAT) run in a rump kernel and
//! served to clients.
//!
//! - [`store`]: store names (`file:PATH`, `part:N:STORE`, `device:NAME`)
//!   and the host byte window they name.
//! - [`partition`]: MBR and GPT tables, numbered as libstore's `part:N:`.
//! - [`detect`]: the file system type from the superblock.
//! - `volume`: the mounted file system and the node table front ends
//!   name files by (with a rump kernel).
//! - `fuse`: the Linux front end (with a rump kernel, on Linux).
//! - `hurd`: the Hurd front end, the volume as a `machdev::netfs::Netfs`
//!   (with a rump kernel).

pub mod detect;
#[cfg(all(rump_kernel, target_os = "linux"))]
pub mod fuse;
#[cfg(rump_kernel)]
pub mod hurd;
pub mod partition;
pub mod store;
#[cfg(rump_kernel)]
pub mod volume;
