//! Host transports for real GNU Mach.

pub mod hurd;
