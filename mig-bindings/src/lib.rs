//! Mach and Hurd RPC interfaces as Rust codecs.
//!
//! Written from the interfaces' facts (routine ids, argument types) for
//! GNU Mach's `x86_64` message ABI; the bytes are MIG's. The tests prove
//! it both ways against stubs that the current MIG generates from GNU
//! Mach's own `.defs` (see `setup-mig.sh` and `tests/`).
//!
//! - [`device`]: `device/device.defs` (subsystem 2800): requests decoded
//!   with the checks MIG's server stubs make, replies built as they build
//!   them, and a client.
//! - [`fsys`] (22000), [`startup`] (29000, 29500): the bootstrap chain.
//! - [`io`] (21000), [`fs`] (20000): a file server's protids (`io_read`,
//!   `dir_lookup`, `dir_readdir`, ...), with the Hurd's `struct stat`,
//!   `struct statfs` and `struct dirent` layouts.
//! - [`auth`] (25000): the rendezvous by which a file server learns a
//!   client's ids (`io_reauthenticate`).
//! - [`pci`] (39000), [`acpi`] (41000): the PCI arbiter and ACPI clients.
//! - [`net`]: GNU Mach's network devices: status flavors, interface
//!   flags, and the `net_rcv_msg` carrying each received frame.
//! - [`rpc`]: what all of them share.
//!
//! The Hurd's own `.defs` are in no Debian package for Linux; the Hurd
//! codecs here are written from the interfaces' ids and types, and
//! `tests/layouts.rs` pins their bytes to what the current MIG generates for
//! those interfaces.

#![no_std]

extern crate alloc;

pub mod acpi;
pub mod auth;
pub mod device;
pub mod fs;
pub mod fsys;
pub mod io;
pub mod net;
pub mod pci;
pub mod rpc;
pub mod startup;
