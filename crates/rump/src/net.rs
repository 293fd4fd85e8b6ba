//! The kernel's network interfaces and bpf(4), as NetBSD's `ifconfig` and
//! `tcpdump` reach them: interface ioctls on a routing socket (no protocol
//! family needs to be linked) and a bpf descriptor bound to an interface,
//! through which whole Ethernet frames are read and written.
//!
//! Layouts are NetBSD's (LP64): `struct ifreq` is 144 bytes (name and a
//! union holding a `sockaddr_storage`), `struct ifconf` 16, `struct
//! bpf_hdr` has its lengths at offsets 16, 20 and 24 and records are
//! aligned to `sizeof(long)`. The layouts and [`records`] are here with or
//! without a kernel (and tested without one); [`Interfaces`] and [`Bpf`]
//! need one.
#![cfg_attr(not(rump_kernel), allow(dead_code))]

use std::ffi::c_int;

use crate::RumpError;
#[cfg(rump_kernel)]
use crate::{Fd, Rump, oflags};

/// `IFNAMSIZ`.
pub const IFNAMSIZ: usize = 16;
/// `IFF_UP`.
pub const IFF_UP: i16 = 0x1;
/// `IFF_RUNNING`.
pub const IFF_RUNNING: i16 = 0x40;
/// `AF_LINK`.
const AF_LINK: u8 = 18;
/// `PF_ROUTE`.
const PF_ROUTE: i32 = 34;
/// `SOCK_RAW`.
const SOCK_RAW: i32 = 3;
/// `DLT_EN10MB`.
pub const DLT_EN10MB: u32 = 1;

use crate::{IOC_IN, IOC_OUT, IOC_VOID, ioc};

const SIOCSIFFLAGS: u64 = ioc(IOC_IN, b'i', 16, size_of::<IfReq>());
const SIOCGIFFLAGS: u64 = ioc(IOC_IN | IOC_OUT, b'i', 17, size_of::<IfReq>());
const SIOCGIFCONF: u64 = ioc(IOC_IN | IOC_OUT, b'i', 38, size_of::<IfConf>());
const SIOCGIFMTU: u64 = ioc(IOC_IN | IOC_OUT, b'i', 126, size_of::<IfReq>());

const BIOCSBLEN: u64 = ioc(IOC_IN | IOC_OUT, b'B', 102, 4);
const BIOCPROMISC: u64 = ioc(IOC_VOID, b'B', 105, 0);
const BIOCGDLT: u64 = ioc(IOC_OUT, b'B', 106, 4);
const BIOCSETIF: u64 = ioc(IOC_IN, b'B', 108, size_of::<IfReq>());
const BIOCGSTATS: u64 = ioc(IOC_OUT, b'B', 111, size_of::<BpfStat>());
const BIOCIMMEDIATE: u64 = ioc(IOC_IN, b'B', 112, 4);
const BIOCSHDRCMPLT: u64 = ioc(IOC_IN, b'B', 117, 4);
const BIOCSSEESENT: u64 = ioc(IOC_IN, b'B', 121, 4);
const BIOCSRTIMEOUT: u64 = ioc(IOC_IN, b'B', 122, size_of::<Timeval>());

/// `struct ifreq`: the name, then a union of at most a `sockaddr_storage`.
#[repr(C, align(8))]
struct IfReq {
    name: [u8; IFNAMSIZ],
    u: [u8; 128],
}

impl IfReq {
    fn new(name: &str) -> Result<Self, RumpError> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(RumpError::kernel(format!("interface {name:?}"), 22));
        }
        let mut r = Self {
            name: [0; IFNAMSIZ],
            u: [0; 128],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(r)
    }

    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.u[0], self.u[1]])
    }

    fn int(&self) -> i32 {
        i32::from_ne_bytes(self.u[..4].try_into().expect("4 bytes"))
    }
}

/// `struct ifconf`.
#[repr(C)]
struct IfConf {
    len: c_int,
    buf: *mut IfReq,
}

/// `struct bpf_stat`.
#[repr(C)]
#[derive(Default)]
struct BpfStat {
    recv: u64,
    drop: u64,
    capt: u64,
    padding: [u64; 13],
}

/// `struct timeval`.
#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

/// An interface as `SIOCGIFCONF` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its name (`wm0`, `vioif0`, `lo0`).
    pub name: String,
    /// Its link-level address (empty for interfaces without one).
    pub address: Vec<u8>,
}

/// The kernel's interface configuration, through a routing socket.
#[cfg(rump_kernel)]
#[derive(Debug)]
pub struct Interfaces {
    sock: Fd,
}

#[cfg(rump_kernel)]
impl Interfaces {
    /// Opens a routing socket for interface ioctls.
    ///
    /// # Errors
    /// The kernel's (no routing domain linked).
    pub fn open(kernel: Rump) -> Result<Self, RumpError> {
        Ok(Self {
            sock: kernel.socket(PF_ROUTE, SOCK_RAW, 0)?,
        })
    }

    fn ifreq(&self, cmd: u64, r: &mut IfReq) -> Result<(), RumpError> {
        // SAFETY: `r` is the `struct ifreq` these commands take.
        unsafe { self.sock.ioctl(cmd, r) }.map(drop)
    }

    /// The interface flags of `name` (`ENXIO`: no such interface).
    ///
    /// # Errors
    /// The kernel's.
    pub fn flags(&self, name: &str) -> Result<i16, RumpError> {
        let mut r = IfReq::new(name)?;
        self.ifreq(SIOCGIFFLAGS, &mut r)?;
        Ok(r.short())
    }

    /// Sets the interface flags of `name` (the driver's `if_ioctl` runs:
    /// `IFF_UP` initialises the hardware).
    ///
    /// # Errors
    /// The kernel's.
    pub fn set_flags(&self, name: &str, flags: i16) -> Result<(), RumpError> {
        let mut r = IfReq::new(name)?;
        r.u[..2].copy_from_slice(&flags.to_ne_bytes());
        self.ifreq(SIOCSIFFLAGS, &mut r)
    }

    /// The MTU of `name`.
    ///
    /// # Errors
    /// The kernel's.
    pub fn mtu(&self, name: &str) -> Result<usize, RumpError> {
        let mut r = IfReq::new(name)?;
        self.ifreq(SIOCGIFMTU, &mut r)?;
        usize::try_from(r.int()).map_err(|_| RumpError::kernel(format!("mtu of {name}"), 22))
    }

    /// Every interface with its link-level address.
    ///
    /// # Errors
    /// The kernel's.
    pub fn links(&self) -> Result<Vec<Link>, RumpError> {
        // SIOCGIFCONF lists one record per address; the link-level one
        // (AF_LINK) comes first for each interface.
        let mut records: Vec<IfReq> = (0..64).map(|_| IfReq::new("x").expect("valid")).collect();
        let mut conf = IfConf {
            len: c_int::try_from(records.len() * size_of::<IfReq>()).expect("fits"),
            buf: records.as_mut_ptr(),
        };
        // SAFETY: `conf` points at `records`, `len` bytes of them.
        unsafe { self.sock.ioctl(SIOCGIFCONF, &mut conf) }?;
        let n = usize::try_from(conf.len).unwrap_or(0) / size_of::<IfReq>();
        let mut out: Vec<Link> = Vec::new();
        for r in records.iter().take(n) {
            let len = r.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
            let name = String::from_utf8_lossy(&r.name[..len]).into_owned();
            // sockaddr_dl: len, family, index (2), type, nlen, alen, slen,
            // then the name and the address in data[].
            let sa = &r.u;
            let address = if sa[1] == AF_LINK {
                let (nlen, alen) = (usize::from(sa[5]), usize::from(sa[6]));
                sa.get(8 + nlen..8 + nlen + alen).unwrap_or(&[]).to_vec()
            } else {
                continue;
            };
            if !out.iter().any(|l| l.name == name) {
                out.push(Link { name, address });
            }
        }
        Ok(out)
    }
}

/// A bpf descriptor bound to one interface, promiscuous, in immediate mode,
/// not seeing the frames it sent, writing complete Ethernet headers.
#[cfg(rump_kernel)]
#[derive(Debug)]
pub struct Bpf {
    fd: Fd,
    buffer: usize,
}

/// Counters of a bpf descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BpfStats {
    /// Frames the interface passed to bpf.
    pub received: u64,
    /// Frames dropped because the descriptor's buffer was full.
    pub dropped: u64,
}

#[cfg(rump_kernel)]
impl Bpf {
    /// Opens `/dev/bpf` on interface `name` with a `buffer`-byte kernel
    /// buffer and reads that time out after `timeout_ms` (so a reader can
    /// notice it should stop).
    ///
    /// # Errors
    /// The kernel's (`ENXIO`: no such interface; `EINVAL`: not Ethernet).
    pub fn open(kernel: Rump, name: &str, buffer: u32, timeout_ms: u32) -> Result<Self, RumpError> {
        let fd = kernel.open("/dev/bpf", oflags::RDWR, 0)?;
        let mut blen = buffer;
        let mut one: u32 = 1;
        let mut zero: u32 = 0;
        let mut ifr = IfReq::new(name)?;
        let mut tv = Timeval {
            sec: i64::from(timeout_ms / 1000),
            usec: i64::from(timeout_ms % 1000) * 1000,
        };
        let mut dlt: u32 = 0;
        // SAFETY: each argument is the type its command takes.
        unsafe {
            fd.ioctl(BIOCSBLEN, &mut blen)?;
            fd.ioctl(BIOCSETIF, &mut ifr)?;
            fd.ioctl(BIOCGDLT, &mut dlt)?;
            fd.ioctl(BIOCIMMEDIATE, &mut one)?;
            fd.ioctl(BIOCSHDRCMPLT, &mut one)?;
            fd.ioctl(BIOCSSEESENT, &mut zero)?;
            fd.ioctl(BIOCSRTIMEOUT, &mut tv)?;
            fd.ioctl(BIOCPROMISC, &mut zero)?;
        }
        if dlt != DLT_EN10MB {
            return Err(RumpError::kernel(
                format!("bpf on {name}: link type {dlt}, not Ethernet"),
                22,
            ));
        }
        Ok(Self {
            fd,
            buffer: blen as usize,
        })
    }

    /// The size a read buffer must have (the kernel buffer's).
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        self.buffer
    }

    /// Reads the frames the kernel holds into `buf` (at least
    /// [`Bpf::buffer_size`] bytes); 0 after the timeout with none.
    ///
    /// # Errors
    /// The kernel's.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, RumpError> {
        self.fd.read(buf)
    }

    /// Sends one whole Ethernet frame (header included) out of the
    /// interface.
    ///
    /// # Errors
    /// The kernel's (`EMSGSIZE` past the MTU, `ENETDOWN`, `ENOBUFS`).
    pub fn write(&self, frame: &[u8]) -> Result<(), RumpError> {
        self.fd.write(frame).map(drop)
    }

    /// The descriptor's counters.
    ///
    /// # Errors
    /// The kernel's.
    pub fn stats(&self) -> Result<BpfStats, RumpError> {
        let mut s = BpfStat::default();
        // SAFETY: `s` is the `struct bpf_stat` BIOCGSTATS fills.
        unsafe { self.fd.ioctl(BIOCGSTATS, &mut s) }?;
        Ok(BpfStats {
            received: s.recv,
            dropped: s.drop,
        })
    }
}

/// One record of a bpf read: the captured bytes, and whether they are the
/// whole frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (more than `data` when truncated).
    pub wire_len: usize,
}

/// The records of `buf`, as a bpf read returned them (`struct bpf_hdr`
/// each, aligned to 8 bytes). A record running past the end ends the walk.
pub fn records(buf: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = buf.get(at..at.checked_add(26)?)?;
        let caplen = u32::from_ne_bytes(h[16..20].try_into().expect("4 bytes")) as usize;
        let datalen = u32::from_ne_bytes(h[20..24].try_into().expect("4 bytes")) as usize;
        let hdrlen = usize::from(u16::from_ne_bytes([h[24], h[25]]));
        let start = at.checked_add(hdrlen)?;
        let data = buf.get(start..start.checked_add(caplen)?)?;
        at = (start + caplen + 7) & !7;
        Some(Record {
            data,
            wire_len: datalen,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(out: &mut Vec<u8>, data: &[u8], wire: u32) {
        let mut h = [0u8; 26];
        h[16..20].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        h[20..24].copy_from_slice(&wire.to_ne_bytes());
        h[24..26].copy_from_slice(&32u16.to_ne_bytes());
        out.extend_from_slice(&h);
        out.resize(out.len() + 6, 0);
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
    }

    #[test]
    fn ioctl_numbers_are_netbsds() {
        assert_eq!(size_of::<IfReq>(), 144);
        assert_eq!(size_of::<IfConf>(), 16);
        assert_eq!(SIOCSIFFLAGS, 0x8090_6910);
        assert_eq!(SIOCGIFFLAGS, 0xc090_6911);
        assert_eq!(SIOCGIFCONF, 0xc010_6926);
        assert_eq!(BIOCSETIF, 0x8090_426c);
        assert_eq!(BIOCIMMEDIATE, 0x8004_4270);
        assert_eq!(BIOCPROMISC, 0x2000_4269);
        assert_eq!(BIOCGSTATS, 0x4080_426f);
        assert_eq!(BIOCSRTIMEOUT, 0x8010_427a);
    }

    #[test]
    fn records_walk_aligned_headers_and_stop_at_a_cut_record() {
        let mut buf = Vec::new();
        record(&mut buf, &[1; 60], 60);
        record(&mut buf, &[2; 1514], 1514);
        record(&mut buf, &[3; 61], 100);
        let all: Vec<_> = records(&buf).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].data, &[1; 60][..]);
        assert_eq!(all[1].data.len(), 1514);
        assert_eq!((all[2].data.len(), all[2].wire_len), (61, 100));
        // A record cut short, or a header claiming more than was read.
        assert_eq!(records(&buf[..buf.len() - 9]).count(), 2);
        let mut bogus = buf.clone();
        bogus[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(records(&bogus).count(), 0);
        assert_eq!(records(&[0u8; 10]).count(), 0);
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(IfReq::new("wm0").is_ok());
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("a-very-long-name0").is_err());
        assert!(IfReq::new("w\0").is_err());
    }
}
