//! Entropy (`rumpuser_getrandom`) from the host's random source.

use crate::errno::{HyResult, NetbsdErrno, nb};

/// `RUMPUSER_RANDOM_HARD`: the bytes must be of cryptographic quality.
pub const RANDOM_HARD: i32 = 0x01;
/// `RUMPUSER_RANDOM_NOWAIT`: do not block waiting for entropy.
pub const RANDOM_NOWAIT: i32 = 0x02;

/// Fills `buf` from the host's cryptographic random source (which is
/// always "hard"). Returns the number of bytes, never 0 for a non-empty
/// buffer: the kernel loops until it has enough.
pub fn fill(buf: &mut [u8], flags: i32) -> HyResult<usize> {
    if flags & !(RANDOM_HARD | RANDOM_NOWAIT) != 0 {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    if buf.is_empty() {
        return Ok(0);
    }
    getrandom::fill(buf).map_err(|e| {
        e.raw_os_error()
            .map_or(NetbsdErrno(nb::EIO), NetbsdErrno::from_host)
    })?;
    Ok(buf.len())
}
