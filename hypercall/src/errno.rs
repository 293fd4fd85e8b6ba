//! Error and signal numbers: the host's (Linux or the Hurd, through `libc`)
//! and NetBSD's, which is what every `int`-returning hypercall must answer.
//!
//! The table is symbolic on the host side, so the same code is right on the
//! Hurd, whose errno values (`0x4000_0000 | n`) share nothing with Linux's.

use std::fmt;

/// A NetBSD errno value, as the rump kernel understands it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetbsdErrno(pub i32);

/// NetBSD errno numbers (`sys/errno.h`) the host layer produces or translates.
#[allow(missing_docs)]
pub mod nb {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EINTR: i32 = 4;
    pub const EIO: i32 = 5;
    pub const ENXIO: i32 = 6;
    pub const E2BIG: i32 = 7;
    pub const ENOEXEC: i32 = 8;
    pub const EBADF: i32 = 9;
    pub const ECHILD: i32 = 10;
    pub const EDEADLK: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EFAULT: i32 = 14;
    pub const ENOTBLK: i32 = 15;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENODEV: i32 = 19;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOTTY: i32 = 25;
    pub const ETXTBSY: i32 = 26;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const ESPIPE: i32 = 29;
    pub const EROFS: i32 = 30;
    pub const EMLINK: i32 = 31;
    pub const EPIPE: i32 = 32;
    pub const EDOM: i32 = 33;
    pub const ERANGE: i32 = 34;
    pub const EAGAIN: i32 = 35;
    pub const EINPROGRESS: i32 = 36;
    pub const EALREADY: i32 = 37;
    pub const ENOTSOCK: i32 = 38;
    pub const EDESTADDRREQ: i32 = 39;
    pub const EMSGSIZE: i32 = 40;
    pub const EPROTOTYPE: i32 = 41;
    pub const ENOPROTOOPT: i32 = 42;
    pub const EPROTONOSUPPORT: i32 = 43;
    pub const ESOCKTNOSUPPORT: i32 = 44;
    pub const EOPNOTSUPP: i32 = 45;
    pub const EPFNOSUPPORT: i32 = 46;
    pub const EAFNOSUPPORT: i32 = 47;
    pub const EADDRINUSE: i32 = 48;
    pub const EADDRNOTAVAIL: i32 = 49;
    pub const ENETDOWN: i32 = 50;
    pub const ENETUNREACH: i32 = 51;
    pub const ENETRESET: i32 = 52;
    pub const ECONNABORTED: i32 = 53;
    pub const ECONNRESET: i32 = 54;
    pub const ENOBUFS: i32 = 55;
    pub const EISCONN: i32 = 56;
    pub const ENOTCONN: i32 = 57;
    pub const ESHUTDOWN: i32 = 58;
    pub const ETOOMANYREFS: i32 = 59;
    pub const ETIMEDOUT: i32 = 60;
    pub const ECONNREFUSED: i32 = 61;
    pub const ELOOP: i32 = 62;
    pub const ENAMETOOLONG: i32 = 63;
    pub const EHOSTDOWN: i32 = 64;
    pub const EHOSTUNREACH: i32 = 65;
    pub const ENOTEMPTY: i32 = 66;
    pub const EUSERS: i32 = 68;
    pub const EDQUOT: i32 = 69;
    pub const ESTALE: i32 = 70;
    pub const EREMOTE: i32 = 71;
    pub const ENOLCK: i32 = 77;
    pub const ENOSYS: i32 = 78;
    pub const EIDRM: i32 = 82;
    pub const ENOMSG: i32 = 83;
    pub const EOVERFLOW: i32 = 84;
    pub const EILSEQ: i32 = 85;
    pub const ENOTSUP: i32 = 86;
    pub const ECANCELED: i32 = 87;
    pub const EBADMSG: i32 = 88;
    pub const ENODATA: i32 = 89;
    pub const ETIME: i32 = 92;
    pub const EMULTIHOP: i32 = 94;
    pub const ENOLINK: i32 = 95;
    pub const EPROTO: i32 = 96;
}

/// Host errno ↔ NetBSD errno. On hosts where two names share one value
/// (Linux: `EWOULDBLOCK` = `EAGAIN`, `EOPNOTSUPP` = `ENOTSUP`) the first
/// row wins when translating from the host.
const ERRNO_TABLE: &[(i32, i32)] = &[
    (libc::EPERM, nb::EPERM),
    (libc::ENOENT, nb::ENOENT),
    (libc::ESRCH, nb::ESRCH),
    (libc::EINTR, nb::EINTR),
    (libc::EIO, nb::EIO),
    (libc::ENXIO, nb::ENXIO),
    (libc::E2BIG, nb::E2BIG),
    (libc::ENOEXEC, nb::ENOEXEC),
    (libc::EBADF, nb::EBADF),
    (libc::ECHILD, nb::ECHILD),
    (libc::EDEADLK, nb::EDEADLK),
    (libc::ENOMEM, nb::ENOMEM),
    (libc::EACCES, nb::EACCES),
    (libc::EFAULT, nb::EFAULT),
    (libc::ENOTBLK, nb::ENOTBLK),
    (libc::EBUSY, nb::EBUSY),
    (libc::EEXIST, nb::EEXIST),
    (libc::EXDEV, nb::EXDEV),
    (libc::ENODEV, nb::ENODEV),
    (libc::ENOTDIR, nb::ENOTDIR),
    (libc::EISDIR, nb::EISDIR),
    (libc::EINVAL, nb::EINVAL),
    (libc::ENFILE, nb::ENFILE),
    (libc::EMFILE, nb::EMFILE),
    (libc::ENOTTY, nb::ENOTTY),
    (libc::ETXTBSY, nb::ETXTBSY),
    (libc::EFBIG, nb::EFBIG),
    (libc::ENOSPC, nb::ENOSPC),
    (libc::ESPIPE, nb::ESPIPE),
    (libc::EROFS, nb::EROFS),
    (libc::EMLINK, nb::EMLINK),
    (libc::EPIPE, nb::EPIPE),
    (libc::EDOM, nb::EDOM),
    (libc::ERANGE, nb::ERANGE),
    (libc::EAGAIN, nb::EAGAIN),
    (libc::EINPROGRESS, nb::EINPROGRESS),
    (libc::EALREADY, nb::EALREADY),
    (libc::ENOTSOCK, nb::ENOTSOCK),
    (libc::EDESTADDRREQ, nb::EDESTADDRREQ),
    (libc::EMSGSIZE, nb::EMSGSIZE),
    (libc::EPROTOTYPE, nb::EPROTOTYPE),
    (libc::ENOPROTOOPT, nb::ENOPROTOOPT),
    (libc::EPROTONOSUPPORT, nb::EPROTONOSUPPORT),
    (libc::ESOCKTNOSUPPORT, nb::ESOCKTNOSUPPORT),
    (libc::EOPNOTSUPP, nb::EOPNOTSUPP),
    (libc::EPFNOSUPPORT, nb::EPFNOSUPPORT),
    (libc::EAFNOSUPPORT, nb::EAFNOSUPPORT),
    (libc::EADDRINUSE, nb::EADDRINUSE),
    (libc::EADDRNOTAVAIL, nb::EADDRNOTAVAIL),
    (libc::ENETDOWN, nb::ENETDOWN),
    (libc::ENETUNREACH, nb::ENETUNREACH),
    (libc::ENETRESET, nb::ENETRESET),
    (libc::ECONNABORTED, nb::ECONNABORTED),
    (libc::ECONNRESET, nb::ECONNRESET),
    (libc::ENOBUFS, nb::ENOBUFS),
    (libc::EISCONN, nb::EISCONN),
    (libc::ENOTCONN, nb::ENOTCONN),
    (libc::ESHUTDOWN, nb::ESHUTDOWN),
    (libc::ETOOMANYREFS, nb::ETOOMANYREFS),
    (libc::ETIMEDOUT, nb::ETIMEDOUT),
    (libc::ECONNREFUSED, nb::ECONNREFUSED),
    (libc::ELOOP, nb::ELOOP),
    (libc::ENAMETOOLONG, nb::ENAMETOOLONG),
    (libc::EHOSTDOWN, nb::EHOSTDOWN),
    (libc::EHOSTUNREACH, nb::EHOSTUNREACH),
    (libc::ENOTEMPTY, nb::ENOTEMPTY),
    (libc::EUSERS, nb::EUSERS),
    (libc::EDQUOT, nb::EDQUOT),
    (libc::ESTALE, nb::ESTALE),
    (libc::EREMOTE, nb::EREMOTE),
    (libc::ENOLCK, nb::ENOLCK),
    (libc::ENOSYS, nb::ENOSYS),
    (libc::EIDRM, nb::EIDRM),
    (libc::ENOMSG, nb::ENOMSG),
    (libc::EOVERFLOW, nb::EOVERFLOW),
    (libc::EILSEQ, nb::EILSEQ),
    (libc::ENOTSUP, nb::ENOTSUP),
    (libc::ECANCELED, nb::ECANCELED),
    (libc::EBADMSG, nb::EBADMSG),
    (libc::ENODATA, nb::ENODATA),
    (libc::ETIME, nb::ETIME),
    (libc::EMULTIHOP, nb::EMULTIHOP),
    (libc::ENOLINK, nb::ENOLINK),
    (libc::EPROTO, nb::EPROTO),
];

impl NetbsdErrno {
    /// Translates a host errno. Values NetBSD has no name for become
    /// `EINVAL`, as the reference host does.
    #[must_use]
    pub fn from_host(host: i32) -> Self {
        ERRNO_TABLE
            .iter()
            .find(|(h, _)| *h == host)
            .map_or(Self(nb::EINVAL), |(_, n)| Self(*n))
    }

    /// Translates an `io::Error` (its OS code; anything else is `EIO`).
    #[must_use]
    pub fn from_io(err: &std::io::Error) -> Self {
        err.raw_os_error().map_or(Self(nb::EIO), Self::from_host)
    }

    /// The current thread's host `errno`, translated.
    #[must_use]
    pub fn last_os_error() -> Self {
        Self::from_host(::errno::errno().0)
    }

    /// The host errno for this NetBSD value, if the host has one.
    #[must_use]
    pub fn to_host(self) -> Option<i32> {
        ERRNO_TABLE
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(h, _)| *h)
    }

    /// The value as a host `io::Error` (unknown values become `EIO`).
    #[must_use]
    pub fn to_io(self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.to_host().unwrap_or(libc::EIO))
    }
}

impl fmt::Debug for NetbsdErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_host() {
            Some(h) => write!(
                f,
                "NetBSD errno {} ({})",
                self.0,
                std::io::Error::from_raw_os_error(h)
            ),
            None => write!(f, "NetBSD errno {}", self.0),
        }
    }
}

impl fmt::Display for NetbsdErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for NetbsdErrno {}

/// Result of a host operation, failing with a NetBSD errno.
pub type HyResult<T> = Result<T, NetbsdErrno>;

/// NetBSD signal numbers (`sys/signal.h`) and their host counterparts.
const SIGNAL_TABLE: &[(i32, i32)] = &[
    (1, libc::SIGHUP),
    (2, libc::SIGINT),
    (3, libc::SIGQUIT),
    (4, libc::SIGILL),
    (5, libc::SIGTRAP),
    (6, libc::SIGABRT),
    (8, libc::SIGFPE),
    (9, libc::SIGKILL),
    (10, libc::SIGBUS),
    (11, libc::SIGSEGV),
    (12, libc::SIGSYS),
    (13, libc::SIGPIPE),
    (14, libc::SIGALRM),
    (15, libc::SIGTERM),
    (16, libc::SIGURG),
    (17, libc::SIGSTOP),
    (18, libc::SIGTSTP),
    (19, libc::SIGCONT),
    (20, libc::SIGCHLD),
    (21, libc::SIGTTIN),
    (22, libc::SIGTTOU),
    (23, libc::SIGIO),
    (24, libc::SIGXCPU),
    (25, libc::SIGXFSZ),
    (26, libc::SIGVTALRM),
    (27, libc::SIGPROF),
    (28, libc::SIGWINCH),
    (30, libc::SIGUSR1),
    (31, libc::SIGUSR2),
];

/// The host signal for a NetBSD signal number (`None` for EMT, INFO, PWR
/// and anything unknown to this host).
#[must_use]
pub fn host_signal(netbsd_sig: i32) -> Option<i32> {
    SIGNAL_TABLE
        .iter()
        .find(|(n, _)| *n == netbsd_sig)
        .map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_values_translate() {
        assert_eq!(NetbsdErrno::from_host(libc::ENOENT).0, 2);
        assert_eq!(NetbsdErrno::from_host(libc::EAGAIN).0, 35);
        assert_eq!(NetbsdErrno::from_host(libc::EDEADLK).0, 11);
        assert_eq!(NetbsdErrno::from_host(libc::ENOSYS).0, 78);
        assert_eq!(NetbsdErrno::from_host(libc::ETIMEDOUT).0, 60);
    }

    #[test]
    fn unknown_host_value_is_einval() {
        assert_eq!(NetbsdErrno::from_host(99_999).0, nb::EINVAL);
    }

    #[test]
    fn round_trip_for_every_netbsd_value_in_the_table() {
        for &(_, n) in ERRNO_TABLE {
            let host = NetbsdErrno(n).to_host().expect("host value");
            let back = NetbsdErrno::from_host(host).0;
            // Linux gives ENOTSUP and EOPNOTSUPP one value; NetBSD does not.
            let aliased = n == nb::ENOTSUP && libc::ENOTSUP == libc::EOPNOTSUPP;
            assert!(back == n || aliased, "{n} -> {host} -> {back}");
        }
    }

    #[test]
    fn signals_use_netbsd_numbering() {
        assert_eq!(host_signal(30), Some(libc::SIGUSR1));
        assert_eq!(host_signal(20), Some(libc::SIGCHLD));
        assert_eq!(host_signal(7), None);
    }
}
