//! rumpsound: sound cards served as Mach devices that programs write PCM
//! to and read PCM from.
//!
//! - [`stream::Stream`]: the back-end interface (one PCM stream of a
//!   card); [`virtio::VirtioSound`] drives a virtio-sound PCI function
//!   natively through the hypercall crate's PCI service; `netbsd` (with a
//!   rump kernel) plays through NetBSD's drivers and audio(4).
//! - [`device::Cards`]: the `machdev` driver — `audio0` …, PCM in and out,
//!   the status flavors of [`pcm`] (format, caps, counters, drain, mixer).
//! - [`wav`]: WAV files played and recorded through the device interface,
//!   as a Mach program would (`--play`, `--record`).

pub mod device;
#[cfg(rump_kernel)]
pub mod netbsd;
pub mod pcm;
pub mod stream;
pub mod virtio;
pub mod wav;
