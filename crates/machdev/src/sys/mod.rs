//! Host pieces of the bootstrap chain.

#[cfg(target_os = "hurd")]
pub mod hurd;
