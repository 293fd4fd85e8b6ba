//! Programs that run inside the VM test bed's Linux guest (`src/bin`), and
//! the tests that boot them (`tests/`).

#[cfg(target_os = "linux")]
pub mod packet;
