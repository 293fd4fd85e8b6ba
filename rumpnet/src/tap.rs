//! The Linux front end: a host TAP interface joined to an interface, so the
//! Linux kernel's own network stack is a client of the NIC rumpnet drives
//! (`ping`, `nc`, `ip` through it).
//!
//! The TAP interface takes the NIC's MAC. Every frame the interface accepts
//! from the wire (see [`crate::device`]) is written to the TAP, beside the
//! Mach clients' filters; every frame Linux sends on the TAP goes out of the
//! NIC (and through the `NETF_OUT` filters). Configure the TAP with `ip`
//! (addresses, `ip link set NAME up`) as any interface.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::device::{FrameSink, Interface};
use crate::nic::ETHER_ADDR;

/// A TAP interface of the host, joined to an [`Interface`].
#[derive(Debug)]
pub struct Tap {
    name: String,
    file: File,
    /// Frames written to the host.
    to_host: AtomicU64,
    /// Frames the host refused (TAP down, queue full).
    to_host_errors: AtomicU64,
    /// Frames the host sent out of the NIC.
    from_host: AtomicU64,
    /// Frames from the host the interface refused (too long, down).
    from_host_errors: AtomicU64,
}

/// `struct ifreq` with the name set.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} is longer than {}",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: `ifreq` is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

impl Tap {
    /// Creates (or attaches to) the TAP interface `name` and gives it
    /// `mac`. Needs `CAP_NET_ADMIN`.
    pub fn open(name: &str, mac: [u8; ETHER_ADDR]) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes the `ifreq` we pass.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TAP {name}: {e}")));
        }
        set_mac(name, mac)?;
        Ok(Self {
            name: name.to_owned(),
            file,
            to_host: AtomicU64::new(0),
            to_host_errors: AtomicU64::new(0),
            from_host: AtomicU64::new(0),
            from_host_errors: AtomicU64::new(0),
        })
    }

    /// The host interface's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames written to the host, refused by it, sent by it, and refused
    /// from it.
    #[must_use]
    pub fn counters(&self) -> [u64; 4] {
        [
            self.to_host.load(Ordering::Relaxed),
            self.to_host_errors.load(Ordering::Relaxed),
            self.from_host.load(Ordering::Relaxed),
            self.from_host_errors.load(Ordering::Relaxed),
        ]
    }

    /// Joins the TAP to `iface` both ways: received frames to the host, a
    /// thread sending the host's frames out of the NIC.
    pub fn join(self, iface: &Arc<Interface>) -> Result<Arc<Self>, String> {
        let tap = Arc::new(self);
        iface.set_sink(tap.clone())?;
        let reader = Arc::clone(&tap);
        let weak = Arc::downgrade(iface);
        std::thread::Builder::new()
            .name(format!("tap-{}", tap.name))
            .spawn(move || reader.host_frames(&weak))
            .map_err(|e| format!("TAP {}: {e}", tap.name))?;
        Ok(tap)
    }

    fn host_frames(&self, iface: &std::sync::Weak<Interface>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match (&self.file).read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("TAP {}: read: {e}; no more frames from the host", self.name);
                    return;
                }
            };
            let Some(iface) = iface.upgrade() else { return };
            match iface.transmit(&buf[..n]) {
                Ok(()) => self.from_host.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    log::debug!("TAP {}: a {n}-byte frame not sent: {e}", self.name);
                    self.from_host_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

impl FrameSink for Tap {
    fn frame(&self, frame: &[u8]) {
        // One write is one frame; a TAP that is down refuses it (EIO).
        match (&self.file).write(frame) {
            Ok(n) if n == frame.len() => self.to_host.fetch_add(1, Ordering::Relaxed),
            Ok(_) | Err(_) => self.to_host_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Gives the host interface `name` the Ethernet address `mac`.
fn set_mac(name: &str, mac: [u8; ETHER_ADDR]) -> io::Result<()> {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq(name)?;
    // SAFETY: the union's `sockaddr` member is plain data; we write it
    // whole.
    unsafe {
        req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (d, &s) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(&mac) {
            *d = s as libc::c_char;
        }
    }
    // SAFETY: SIOCSIFHWADDR reads the `ifreq` we pass.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFHWADDR, &raw const req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("{name}: setting the MAC: {e}"),
        ));
    }
    Ok(())
}
