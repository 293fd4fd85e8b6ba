//! Clocks and sleeping (`rumpuser_clock_gettime`, `rumpuser_clock_sleep`).

use std::time::Duration;

use crate::errno::{HyResult, NetbsdErrno, nb};

/// `enum rumpclock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time; sleeps are relative.
    RelWall,
    /// Monotonic time with an arbitrary origin; sleeps are absolute.
    AbsMono,
}

impl Clock {
    /// Decodes the C enum value.
    #[must_use]
    pub fn from_raw(v: i32) -> Option<Self> {
        match v {
            0 => Some(Self::RelWall),
            1 => Some(Self::AbsMono),
            _ => None,
        }
    }

    fn host_id(self) -> libc::clockid_t {
        match self {
            Self::RelWall => libc::CLOCK_REALTIME,
            Self::AbsMono => libc::CLOCK_MONOTONIC,
        }
    }
}

/// The time of `clock` as (seconds, nanoseconds). Cheap (vDSO on Linux):
/// the kernel busy-waits on it in `DELAY()`.
pub fn now(clock: Clock) -> HyResult<(i64, i64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock.host_id(), &raw mut ts) } != 0 {
        return Err(NetbsdErrno::last_os_error());
    }
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// How long to sleep for a `rumpuser_clock_sleep` request: the duration for
/// `RelWall`, the time until the deadline for `AbsMono` (zero if it passed).
pub fn sleep_duration(clock: Clock, sec: i64, nsec: i64) -> HyResult<Duration> {
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    let asked = Duration::new(sec as u64, nsec as u32);
    match clock {
        Clock::RelWall => Ok(asked),
        Clock::AbsMono => {
            let (s, ns) = now(Clock::AbsMono)?;
            let now = Duration::new(s as u64, ns as u32);
            Ok(asked.saturating_sub(now))
        }
    }
}

/// Sleeps as `rumpuser_clock_sleep` asks (never fails with `EINTR`: the
/// kernel asserts success). The caller releases the CPU around it.
pub fn sleep(clock: Clock, sec: i64, nsec: i64) -> HyResult<()> {
    let d = sleep_duration(clock, sec, nsec)?;
    if clock == Clock::AbsMono {
        // Sleep in pieces until the monotonic deadline has really passed.
        let mut left = d;
        while !left.is_zero() {
            std::thread::sleep(left);
            left = sleep_duration(clock, sec, nsec)?;
        }
    } else {
        std::thread::sleep(d);
    }
    Ok(())
}
