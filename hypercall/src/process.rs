//! The hosting process: signals, exit, daemonising
//! (`rumpuser_kill`, `rumpuser_exit`, `rumpuser_daemonize_begin/done`).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::console;
use crate::errno::{self, HyResult, NetbsdErrno, nb};

/// `RUMPUSER_PID_SELF`.
pub const PID_SELF: i64 = -1;
/// `RUMPUSER_PANIC`.
pub const PANIC: i32 = -1;

/// Raises NetBSD signal `sig` in this process (`pid` is only a hint: the
/// kernel runs in this process).
pub fn kill(_pid: i64, sig: i32) -> HyResult<()> {
    let host = errno::host_signal(sig).ok_or(NetbsdErrno(nb::EINVAL))?;
    // SAFETY: raise has no memory-safety preconditions.
    if unsafe { libc::raise(host) } == 0 {
        Ok(())
    } else {
        Err(NetbsdErrno::last_os_error())
    }
}

/// Ends the process: abort (a core dump) for [`PANIC`], else exit.
pub fn exit(value: i32) -> ! {
    console::flush();
    if value == PANIC {
        std::process::abort();
    }
    std::process::exit(value)
}

/// Socket to the waiting parent while daemonising; -1 when not.
static DAEMON_FD: AtomicI32 = AtomicI32::new(-1);

/// Starts daemonising: forks; the parent waits for the child's
/// [`daemonize_done`] status and exits with it; the child starts a new
/// session and returns. `EINPROGRESS` if already under way.
pub fn daemonize_begin() -> HyResult<()> {
    if DAEMON_FD.load(Ordering::Acquire) != -1 {
        return Err(NetbsdErrno(nb::EINPROGRESS));
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(NetbsdErrno::last_os_error());
    }
    // SAFETY: called before the kernel starts threads (rump_daemonize_begin
    // precedes rump_init); the child only continues this program.
    match unsafe { libc::fork() } {
        -1 => {
            let e = NetbsdErrno::last_os_error();
            // SAFETY: closing descriptors we own.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            Err(e)
        }
        0 => {
            // SAFETY: closing the parent's end in the child; setsid has no
            // preconditions.
            unsafe {
                libc::close(fds[0]);
                libc::setsid();
            }
            DAEMON_FD.store(fds[1], Ordering::Release);
            Ok(())
        }
        _child => {
            // SAFETY: closing the child's end in the parent.
            unsafe { libc::close(fds[1]) };
            let mut status = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                // SAFETY: reading into the rest of `status`.
                let n = unsafe { libc::read(fds[0], status[got..].as_mut_ptr().cast(), 4 - got) };
                if n < 0 && NetbsdErrno::last_os_error().0 == nb::EINTR {
                    continue;
                }
                if n <= 0 {
                    // The child died before reporting.
                    exit(1);
                }
                got += n as usize;
            }
            exit(i32::from_ne_bytes(status))
        }
    }
}

/// Reports the daemon's start-up status to the waiting parent; on success
/// standard input, output and error go to /dev/null. `ENOENT` when not
/// daemonising.
pub fn daemonize_done(error: i32) -> HyResult<()> {
    let fd = DAEMON_FD.swap(-1, Ordering::AcqRel);
    if fd == -1 {
        return Err(NetbsdErrno(nb::ENOENT));
    }
    if error == 0 {
        // SAFETY: opening /dev/null and duplicating it over 0-2.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                if null > 2 {
                    libc::close(null);
                }
            }
        }
    }
    let bytes = error.to_ne_bytes();
    // SAFETY: writing 4 bytes from a live array to our socket, then closing.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), 4) };
    let err = NetbsdErrno::last_os_error();
    // SAFETY: closing our socket end.
    unsafe { libc::close(fd) };
    if n == 4 { Ok(()) } else { Err(err) }
}
