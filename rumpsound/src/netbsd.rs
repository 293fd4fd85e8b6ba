//! NetBSD's sound drivers (hdaudio with hdafg, auich with ac97, in the
//! linked rump kernel) through audio(4): a card's playback stream is
//! `/dev/soundN`, its format `AUDIO_SETINFO`, its PCM `write(2)`.
//!
//! - The kernel's audio layer converts what the hardware lacks (encodings,
//!   precisions, channel counts, rates), so the caps are what a probe of
//!   `AUDIO_SETINFO` at open accepted; the ring geometry of a format
//!   (block bytes, blocks) is the kernel's, which chooses its own block
//!   size (reported back).
//! - Writes block while the kernel's buffer is full: a writer is paced by
//!   the card. `stop` is `AUDIO_FLUSH`, `drain` `AUDIO_DRAIN`.
//! - Counters: bytes the kernel took (`samples`, less what it dropped) as
//!   frames; an underrun is counted when the kernel's error flag (silence
//!   it had to play) is set after a write — not after a drain, where the
//!   ring runs dry on purpose; the latency is what its buffer holds.
//! - Capture is not served by this back end (the native one captures).

use std::io;

use parking_lot::Mutex;
use rump::Rump;
use rump::audio::{AudioInfo, Sound};

use crate::pcm::{Caps, Counters, Format, Sample};
use crate::stream::Stream;

/// Rates the probe tries.
const RATES: [u32; 9] = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000];

/// A card's playback stream in the kernel.
pub struct NetbsdPlayback {
    sound: Sound,
    caps: Caps,
    state: Mutex<State>,
}

struct State {
    format: Format,
    /// Bytes counted so far, and the kernel's last 32-bit count.
    bytes: u64,
    last: u32,
    /// The kernel played silence between writes.
    underrun: bool,
}

impl std::fmt::Debug for NetbsdPlayback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetbsdPlayback")
            .field("unit", &self.sound.unit())
            .finish_non_exhaustive()
    }
}

/// `AUDIO_SETINFO` asking for `f` on the playback side only.
fn play_info(f: &Format) -> AudioInfo {
    let mut i = AudioInfo::unchanged();
    let (encoding, precision) = f.sample.netbsd();
    i.play.sample_rate = f.rate;
    i.play.channels = u32::from(f.channels);
    i.play.precision = precision as u32;
    i.play.encoding = encoding as u32;
    i
}

/// Whether the kernel takes `f` as it is.
fn takes(sound: &Sound, f: &Format) -> bool {
    let want = play_info(f);
    sound.set_info(want).is_ok_and(|got| {
        (
            got.play.sample_rate,
            got.play.channels,
            got.play.precision,
            got.play.encoding,
        ) == (
            want.play.sample_rate,
            want.play.channels,
            want.play.precision,
            want.play.encoding,
        )
    })
}

impl NetbsdPlayback {
    /// Opens card `unit` of `kernel` for playback, probes what it takes
    /// and sets 48 kHz stereo s16le (else the first format it takes).
    ///
    /// # Errors
    /// No such card, the card busy, nothing this driver moves taken.
    pub fn open(kernel: Rump, unit: u32) -> io::Result<Self> {
        kernel.bind_thread()?;
        let sound = Sound::open_playback(kernel, unit)?;
        let base = Format::new(48_000, 2, Sample::S16Le);
        let caps = Caps {
            channels: {
                let ch: Vec<u8> = (1..=2)
                    .filter(|c| {
                        takes(
                            &sound,
                            &Format {
                                channels: *c,
                                ..base
                            },
                        )
                    })
                    .collect();
                (
                    ch.first().copied().unwrap_or(0),
                    ch.last().copied().unwrap_or(0),
                )
            },
            rates: RATES
                .into_iter()
                .filter(|r| takes(&sound, &Format::new(*r, 2, Sample::S16Le)))
                .collect(),
            samples: Sample::ALL
                .into_iter()
                .filter(|s| takes(&sound, &Format::new(48_000, 2, *s)))
                .collect(),
        };
        let format = [base, Format::new(44_100, 2, Sample::S16Le)]
            .into_iter()
            .find(|f| caps.allows(f) && takes(&sound, f))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "NetBSD audio{unit}: takes no s16le stereo at 44.1 or 48 kHz ({caps:?})"
                    ),
                )
            })?;
        let playback = Self {
            caps,
            state: Mutex::new(State {
                format,
                bytes: 0,
                last: 0,
                underrun: false,
            }),
            sound,
        };
        let info = playback.sound.info()?;
        playback.state.lock().last = info.play.samples;
        log::info!(
            "NetBSD audio{unit}: {:?}; {format}, kernel block {} bytes, buffer {} bytes",
            playback.caps,
            info.blocksize,
            info.play.buffer_size
        );
        Ok(playback)
    }

    fn bind(&self) -> io::Result<()> {
        self.sound.kernel().bind_thread().map_err(io::Error::from)
    }
}

impl Stream for NetbsdPlayback {
    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn format(&self) -> Format {
        self.state.lock().format
    }

    fn set_format(&self, f: Format) -> io::Result<()> {
        if !self.caps.allows(&f) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the card does not take {f} (it takes {:?})", self.caps),
            ));
        }
        self.bind()?;
        self.sound.flush()?;
        let got = self.sound.set_info(play_info(&f))?;
        let mut s = self.state.lock();
        s.format = Format {
            block: (got.blocksize as usize).max(f.frame()),
            ..f
        };
        Ok(())
    }

    fn write(&self, mut data: &[u8]) -> io::Result<()> {
        self.bind()?;
        while !data.is_empty() {
            let n = self.sound.write(data)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        if self.sound.info()?.play.error != 0 {
            self.state.lock().underrun = true;
        }
        Ok(())
    }

    fn read(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn drain(&self) -> io::Result<()> {
        self.bind()?;
        self.sound.drain().map_err(io::Error::from)
    }

    fn stop(&self) {
        if let Err(e) = self
            .bind()
            .and_then(|()| self.sound.flush().map_err(io::Error::from))
        {
            log::warn!("NetBSD audio{}: flush: {e}", self.sound.unit());
        }
        let mut s = self.state.lock();
        s.bytes = 0;
        s.underrun = false;
        if let Ok(i) = self.sound.info() {
            s.last = i.play.samples;
        }
    }

    fn counters(&self) -> Counters {
        if self.bind().is_err() {
            return Counters::default();
        }
        let Ok(i) = self.sound.info() else {
            return Counters::default();
        };
        let mut s = self.state.lock();
        s.bytes += u64::from(i.play.samples.wrapping_sub(s.last));
        s.last = i.play.samples;
        Counters {
            frames: s.bytes / s.format.frame() as u64,
            xruns: u64::from(s.underrun),
            latency_bytes: i.play.seek,
            queued: i.play.seek / i.blocksize.max(1),
            running: i.play.active != 0,
        }
    }
}
