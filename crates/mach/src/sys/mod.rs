//! Transports for real GNU Mach.

#[cfg(feature = "gnumach")]
pub mod gnumach;
#[cfg(all(feature = "std", target_os = "hurd"))]
pub mod hurd;
