//! GNU Mach IPC as Rust values.
//!
//! The core ([`kern`], [`port`], [`msg`], [`ipc`]) needs only `core` and
//! `alloc`: message building and parsing in GNU Mach's `x86_64` ABI, port
//! names and dispositions, return codes, and the [`ipc::Ipc`] transport
//! trait. Transports:
//! - `sys::hurd` (GNU/Hurd): glibc's `mach_msg` and the kernel RPCs;
//! - `sys::gnumach` (feature `gnumach`, `no_std`): GNU Mach's traps
//!   without glibc, for bootstrap tasks on a bare kernel;
//! - [`loopback`] (feature `loopback`): an in-process kernel with Mach's
//!   semantics, the test transport on Linux.
//!
//! [`rights`] (with `std`) wraps names in RAII rights.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod ipc;
pub mod kern;
pub mod kernel_rpc;
pub mod msg;
pub mod port;
pub mod rpc;

#[cfg(feature = "std")]
pub mod rights;

#[cfg(feature = "loopback")]
pub mod loopback;

#[cfg(any(all(feature = "std", target_os = "hurd"), feature = "gnumach"))]
pub mod sys;

pub use ipc::Ipc;
pub use kern::KernReturn;
pub use port::PortName;
