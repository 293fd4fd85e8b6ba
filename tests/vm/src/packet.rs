//! Raw Ethernet frames through the guest kernel's own interfaces
//! (`AF_PACKET`), for the guest programs that send and count test frames.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The experimental ethertype the test frames carry.
pub const ETHERTYPE: u16 = 0x88b5;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
///
/// # Errors
/// Not six hexadecimal bytes.
pub fn parse_mac(s: &str) -> io::Result<[u8; 6]> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?}: not a MAC"),
        ));
    }
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?}: not a MAC"))
        })?;
    }
    Ok(m)
}

/// The MAC and index of the kernel's interface `ifname`, in this
/// process's network namespace (sysfs shows the namespace that mounted it).
///
/// # Errors
/// No such interface.
pub fn interface(ifname: &str) -> io::Result<([u8; 6], i32)> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {ifname}"),
        ));
    }
    // SAFETY: plain socket creation.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) })?;
    // SAFETY: a fresh descriptor this value owns from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed ifreq is valid; the name is set below.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut ifr) })?;
    // SAFETY: SIOCGIFHWADDR set the hardware-address member.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data) {
        *m = b as u8;
    }
    Ok((mac, i32::try_from(index).map_err(io::Error::other)?))
}

/// The network interface of the kernel-driven virtio function at `bdf`.
///
/// # Errors
/// The function has none.
pub fn interface_of(bdf: &str) -> io::Result<String> {
    for e in std::fs::read_dir(format!("/sys/bus/pci/devices/{bdf}"))? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with("virtio")
            && let Ok(mut net) = std::fs::read_dir(e.path().join("net"))
            && let Some(Ok(n)) = net.next()
        {
            return Ok(n.file_name().to_string_lossy().into_owned());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{bdf}: no network interface"),
    ))
}

/// A raw packet socket on one interface for [`ETHERTYPE`], with an 8 MiB
/// receive buffer and a one-second receive timeout.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens one on interface `index`.
    ///
    /// # Errors
    /// The kernel's (not root, no such interface).
    pub fn open(index: i32) -> io::Result<Self> {
        let proto = ETHERTYPE.to_be();
        // SAFETY: plain socket creation.
        let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto.into()) })?;
        // SAFETY: a fresh descriptor this value owns from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index;
        // SAFETY: `sll` is a sockaddr_ll of the size given.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        let rcvbuf: libc::c_int = 8 << 20;
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: option values of the sizes given.
        unsafe {
            cvt(libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const rcvbuf).cast(),
                size_of::<libc::c_int>() as u32,
            ))?;
            cvt(libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as u32,
            ))?;
        }
        Ok(Self { fd })
    }

    /// Receives one frame that arrived on the interface (not one it sent).
    ///
    /// # Errors
    /// The kernel's (`WouldBlock` after the timeout).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: a zeroed sockaddr_ll is valid; the kernel fills it.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: `buf` and `from` are writable for the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &raw mut len,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                return Ok(n as usize);
            }
        }
    }

    /// Sends one whole frame.
    ///
    /// # Errors
    /// The kernel's.
    pub fn send(&self, f: &[u8]) -> io::Result<()> {
        // SAFETY: `f` is readable for its length; the socket is bound.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
