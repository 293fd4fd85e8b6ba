//! The kernel's sound cards through audio(4), as NetBSD's `audioplay`
//! reaches them: `/dev/soundN` (which keeps its format between opens,
//! unlike `/dev/audioN`), `AUDIO_SETINFO`/`AUDIO_GETINFO` with `struct
//! audio_info`, `write(2)` of PCM (blocking while the kernel's buffer is
//! full), `AUDIO_DRAIN` and `AUDIO_FLUSH`.
//!
//! Layouts are NetBSD 7's (`<sys/audioio.h>`): `struct audio_prinfo` is
//! 56 bytes, `struct audio_info` 136. They are here with or without a
//! kernel (and tested without one); [`Sound`] needs one.
#![cfg_attr(not(rump_kernel), allow(dead_code))]

#[cfg(rump_kernel)]
use crate::{Fd, Rump, RumpError, oflags};
use crate::{IOC_IN, IOC_OUT, IOC_VOID, ioc};

/// One direction of `struct audio_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioPrinfo {
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u32,
    /// Bits per sample.
    pub precision: u32,
    /// `AUDIO_ENCODING_*`.
    pub encoding: u32,
    /// Volume, 0–255.
    pub gain: u32,
    /// The port.
    pub port: u32,
    /// Bytes in the kernel's buffer.
    pub seek: u32,
    /// Ports there are.
    pub avail_ports: u32,
    /// The kernel's buffer size.
    pub buffer_size: u32,
    ispare: [u32; 1],
    /// Bytes transferred (the stamp, less what was dropped).
    pub samples: u32,
    /// Zero-length writes counted.
    pub eof: u32,
    /// Paused.
    pub pause: u8,
    /// An underrun (playback) or overrun (capture) happened.
    pub error: u8,
    /// Another process waits in open.
    pub waiting: u8,
    /// Balance.
    pub balance: u8,
    cspare: [u8; 2],
    /// Open in this direction.
    pub open: u8,
    /// Transferring now.
    pub active: u8,
}

/// `struct audio_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioInfo {
    /// The playback side.
    pub play: AudioPrinfo,
    /// The capture side.
    pub record: AudioPrinfo,
    /// Input-to-output mix.
    pub monitor_gain: u32,
    /// The hardware block size in bytes.
    pub blocksize: u32,
    /// High water mark, in blocks.
    pub hiwat: u32,
    /// Low water mark, in blocks.
    pub lowat: u32,
    ispare1: u32,
    /// `AUMODE_*`.
    pub mode: u32,
}

impl AudioInfo {
    /// `AUDIO_INITINFO`: every field "unchanged" (all bits set), so that
    /// `AUDIO_SETINFO` changes only what the caller sets after.
    #[must_use]
    pub fn unchanged() -> Self {
        // SAFETY: plain integers, any bit pattern is valid.
        unsafe { std::mem::transmute([0xffu8; size_of::<Self>()]) }
    }
}

const AUDIO_GETINFO: u64 = ioc(IOC_OUT, b'A', 21, size_of::<AudioInfo>());
const AUDIO_SETINFO: u64 = ioc(IOC_IN | IOC_OUT, b'A', 22, size_of::<AudioInfo>());
const AUDIO_DRAIN: u64 = ioc(IOC_VOID, b'A', 23, 0);
const AUDIO_FLUSH: u64 = ioc(IOC_VOID, b'A', 24, 0);

/// A sound card of the kernel, open for playback.
#[cfg(rump_kernel)]
#[derive(Debug)]
pub struct Sound {
    kernel: Rump,
    fd: Fd,
    unit: u32,
}

#[cfg(rump_kernel)]
impl Sound {
    /// Opens card `unit` (`/dev/sound<unit>`) for playback.
    ///
    /// # Errors
    /// No such card (`ENXIO`), already open (`EBUSY`), the kernel's.
    pub fn open_playback(kernel: Rump, unit: u32) -> Result<Self, RumpError> {
        let fd = kernel.open(&format!("/dev/sound{unit}"), oflags::WRONLY, 0)?;
        Ok(Self { kernel, fd, unit })
    }

    /// The card's unit.
    #[must_use]
    pub fn unit(&self) -> u32 {
        self.unit
    }

    /// The kernel it is in.
    #[must_use]
    pub fn kernel(&self) -> Rump {
        self.kernel
    }

    /// `AUDIO_GETINFO`.
    pub fn info(&self) -> Result<AudioInfo, RumpError> {
        let mut i = AudioInfo::unchanged();
        // SAFETY: AUDIO_GETINFO fills a `struct audio_info`.
        unsafe { self.fd.ioctl(AUDIO_GETINFO, &mut i) }?;
        Ok(i)
    }

    /// `AUDIO_SETINFO` of `info` (fields left [`AudioInfo::unchanged`]
    /// stay as they are); returns what the kernel took.
    pub fn set_info(&self, mut info: AudioInfo) -> Result<AudioInfo, RumpError> {
        // SAFETY: AUDIO_SETINFO reads and writes a `struct audio_info`.
        unsafe { self.fd.ioctl(AUDIO_SETINFO, &mut info) }?;
        self.info()
    }

    /// Writes PCM, waiting while the kernel's buffer is full; returns the
    /// bytes taken.
    pub fn write(&self, data: &[u8]) -> Result<usize, RumpError> {
        self.fd.write(data)
    }

    /// `AUDIO_DRAIN`: waits until what was written has played.
    pub fn drain(&self) -> Result<(), RumpError> {
        let mut none = 0u32;
        // SAFETY: AUDIO_DRAIN takes no argument (the pointer is unused).
        unsafe { self.fd.ioctl(AUDIO_DRAIN, &mut none) }.map(drop)
    }

    /// `AUDIO_FLUSH`: drops what was written and not played.
    pub fn flush(&self) -> Result<(), RumpError> {
        let mut none = 0u32;
        // SAFETY: AUDIO_FLUSH takes no argument (the pointer is unused).
        unsafe { self.fd.ioctl(AUDIO_FLUSH, &mut none) }.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_ioctls_are_netbsds() {
        assert_eq!(size_of::<AudioPrinfo>(), 56);
        assert_eq!(size_of::<AudioInfo>(), 136);
        assert_eq!(std::mem::offset_of!(AudioPrinfo, samples), 40);
        assert_eq!(std::mem::offset_of!(AudioPrinfo, active), 55);
        assert_eq!(std::mem::offset_of!(AudioInfo, blocksize), 116);
        assert_eq!(std::mem::offset_of!(AudioInfo, mode), 132);
        assert_eq!(AUDIO_GETINFO, 0x4088_4115);
        assert_eq!(AUDIO_SETINFO, 0xc088_4116);
        assert_eq!(AUDIO_DRAIN, 0x2000_4117);
        assert_eq!(AUDIO_FLUSH, 0x2000_4118);
        assert!(AudioInfo::unchanged().play.sample_rate == u32::MAX);
    }
}
