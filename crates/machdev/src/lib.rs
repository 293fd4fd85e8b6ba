//! The server framework every translator uses.
//!
//! [`pool`] is what every server shares: a port set, a port of its own
//! for every open with a no-senders notification, and a worker pool that
//! grows while all threads are busy. On it: the device server below, and
//! [`netfs`], a file server's Hurd front end (libnetfs's part: protids,
//! `dir_lookup`'s walk, the io/fs/fsys RPCs) for any file system.
//!
//! A driver implements [`Driver`] (names it claims, `open`) and [`Device`]
//! (read, write, status, close). [`DeviceServer`] serves them over the Mach
//! device interface (GNU Mach's `device.defs`, MIG's wire format): a master
//! port that accepts `device_open`/`device_open_new` only, a port of its own
//! for every open with the mode of that open enforced on every call,
//! no-senders cleanup, a worker pool that grows while all threads are busy,
//! deferred replies ([`DataReply`], [`WriteReply`]), and forwarding of names
//! no driver claims to the next device master. [`boot`] adds the Hurd's
//! bootstrap chain: a control port answering `fsys_getpriv` with this
//! server's master port, forwarding `fsys_startup`/`fsys_init`, and
//! `startup_dosync` as a driver sync. [`loopback`] (feature `loopback`)
//! runs a server on an in-process kernel, with client tasks beside it.
//! [`net`] delivers a network interface's frames through GNU Mach's packet
//! filters (`device_set_filter`) to many clients at once.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod boot;
mod device;
#[cfg(feature = "loopback")]
pub mod loopback;
pub mod net;
#[cfg(feature = "std")]
pub mod netfs;
pub mod pool;
mod reply;
mod server;
mod sync;
#[cfg(feature = "std")]
pub mod sys;

#[cfg(feature = "std")]
pub use boot::translator_main;
pub use boot::{BootHost, BootOptions, Chain, OptionArgs};
pub use device::{Device, Driver, Mode};
pub use pool::PoolConfig;
pub use reply::{Data, DataReply, Responder, WriteReply};
pub use server::{DeviceServer, MAX_READ};
