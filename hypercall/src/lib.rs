//! The host layer a NetBSD rump kernel runs on: rumpuser(3), interface
//! version 17.
//!
//! Two layers:
//! - a typed Rust core ([`sched`], [`lwp`], [`sync`], [`thread`],
//!   [`clock`], [`mem`], [`file`], [`bio`], [`random`], [`param`],
//!   [`console`], [`process`], [`dl`], [`errno`]) that the translators' own
//!   Rust code may use too;
//! - `abi`, a thin `extern "C"` skin exporting every `rumpuser_*` symbol
//!   with its exact C prototype (plus the `rumpuser_component_*` helpers),
//!   so the kernel's static libraries link against this crate instead of
//!   NetBSD's `librumpuser`. `rumpuser_dprintf` is C-variadic and comes
//!   from a small C shim (`csrc/dprintf.c`).
//!
//! Host-specific code lives in `sys::{linux,hurd}`.

pub mod abi;
pub mod bio;
pub mod clock;
pub mod console;
pub mod dl;
pub mod errno;
pub mod file;
pub mod lwp;
pub mod mem;
pub mod param;
pub mod pci;
pub mod process;
pub mod random;
pub mod sched;
pub mod sync;
mod sys;
pub mod thread;

pub use errno::{HyResult, NetbsdErrno};
