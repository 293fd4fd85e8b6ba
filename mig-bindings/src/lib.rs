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

pub mod device;
