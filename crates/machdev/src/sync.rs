//! The server's locks: `parking_lot` with `std`, spin locks in a `no_std`
//! task (the single-threaded GNU Mach test tasks never contend for them).

#[cfg(feature = "std")]
pub(crate) use parking_lot::{Mutex, RwLock};
#[cfg(not(feature = "std"))]
pub(crate) use spin::{Mutex, RwLock};
