//! PCM formats and the status flavors of rumpsound's audio devices.
//!
//! Formats follow NetBSD's audio(4): an encoding (`AUDIO_ENCODING_*`) and
//! a precision in bits, a sample rate and a channel count, interleaved
//! frames; plus the block (period) size and how many blocks the ring
//! holds. The flavors' words are `i32`, as `device_set_status` carries
//! them:
//!
//! | flavor | set | get |
//! |---|---|---|
//! | [`AUDIO_FORMAT`] | rate, channels, encoding, precision, block bytes, blocks | the same |
//! | [`AUDIO_CAPS`] | — | channels min, max, rate count, rates…, format count, (encoding, precision)… |
//! | [`AUDIO_PLAY_INFO`], [`AUDIO_RECORD_INFO`] | — | [`Counters`]: frames low/high word, underruns or overruns, latency bytes, blocks queued, running |
//! | [`AUDIO_DRAIN`] | no words: waits until what was written has played | — |
//! | [`AUDIO_MIXER`] | left, right volume (0–255), mute (0/1) | the same |

use std::fmt;

/// `device_set_status`/`device_get_status`: the stream format.
pub const AUDIO_FORMAT: u32 = 0x6101;
/// `device_get_status`: what the card can do.
pub const AUDIO_CAPS: u32 = 0x6102;
/// `device_get_status`: the playback stream's counters.
pub const AUDIO_PLAY_INFO: u32 = 0x6103;
/// `device_get_status`: the capture stream's counters.
pub const AUDIO_RECORD_INFO: u32 = 0x6104;
/// `device_set_status`: play out what was written, then stop.
pub const AUDIO_DRAIN: u32 = 0x6105;
/// `device_set_status`/`device_get_status`: volume and mute.
pub const AUDIO_MIXER: u32 = 0x6106;

/// NetBSD's `AUDIO_ENCODING_SLINEAR_LE`.
pub const ENCODING_SLINEAR_LE: i32 = 6;
/// NetBSD's `AUDIO_ENCODING_ULINEAR_LE`.
pub const ENCODING_ULINEAR_LE: i32 = 8;

/// A sample format this driver moves: NetBSD's encoding and precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sample {
    /// Unsigned 8-bit.
    U8,
    /// Signed 16-bit little-endian.
    S16Le,
    /// Signed 32-bit little-endian.
    S32Le,
}

impl Sample {
    /// Every format, in the order [`AUDIO_CAPS`] lists them.
    pub const ALL: [Self; 3] = [Self::U8, Self::S16Le, Self::S32Le];

    /// Bytes per sample.
    #[must_use]
    pub fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::S16Le => 2,
            Self::S32Le => 4,
        }
    }

    /// The signed value of the sample in `bytes` (this format's
    /// [`Sample::bytes`]; unsigned 8-bit samples centred on 0).
    #[must_use]
    pub fn get(self, bytes: &[u8]) -> i32 {
        match self {
            Self::U8 => i32::from(bytes[0]) - 128,
            Self::S16Le => i32::from(i16::from_le_bytes([bytes[0], bytes[1]])),
            Self::S32Le => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        }
    }

    /// Stores the signed value `v` (in this format's range) in `bytes`.
    pub fn put(self, v: i32, bytes: &mut [u8]) {
        match self {
            Self::U8 => bytes[0] = (v + 128) as u8,
            Self::S16Le => bytes.copy_from_slice(&(v as i16).to_le_bytes()),
            Self::S32Le => bytes.copy_from_slice(&v.to_le_bytes()),
        }
    }

    /// NetBSD's (encoding, precision).
    #[must_use]
    pub fn netbsd(self) -> (i32, i32) {
        match self {
            Self::U8 => (ENCODING_ULINEAR_LE, 8),
            Self::S16Le => (ENCODING_SLINEAR_LE, 16),
            Self::S32Le => (ENCODING_SLINEAR_LE, 32),
        }
    }

    /// The format NetBSD's (encoding, precision) names, if one of ours.
    #[must_use]
    pub fn from_netbsd(encoding: i32, precision: i32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.netbsd() == (encoding, precision))
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::U8 => "u8",
            Self::S16Le => "s16le",
            Self::S32Le => "s32le",
        })
    }
}

/// A stream's format and ring geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// Frames per second.
    pub rate: u32,
    /// Samples per frame.
    pub channels: u8,
    /// Sample format.
    pub sample: Sample,
    /// Bytes per block (period): the unit the card completes, a whole
    /// number of frames.
    pub block: usize,
    /// Blocks the ring holds.
    pub blocks: usize,
}

/// The most blocks a ring holds.
pub const MAX_BLOCKS: usize = 16;
/// The largest block.
pub const MAX_BLOCK: usize = 64 << 10;

impl Format {
    /// `rate` frames/s of `channels` × `sample`, with blocks of about 20 ms
    /// and eight of them in the ring (160 ms: room for a user-space driver
    /// on a loaded host).
    #[must_use]
    pub fn new(rate: u32, channels: u8, sample: Sample) -> Self {
        let frame = usize::from(channels) * sample.bytes();
        let frames = (rate as usize / 50).max(1);
        Self {
            rate,
            channels,
            sample,
            block: (frames * frame).clamp(frame, MAX_BLOCK / frame * frame),
            blocks: 8,
        }
    }

    /// Bytes per frame.
    #[must_use]
    pub fn frame(&self) -> usize {
        usize::from(self.channels) * self.sample.bytes()
    }

    /// Bytes per second.
    #[must_use]
    pub fn bytes_per_second(&self) -> u64 {
        u64::from(self.rate) * self.frame() as u64
    }

    /// The [`AUDIO_FORMAT`] words.
    #[must_use]
    pub fn to_words(&self) -> Vec<i32> {
        let (encoding, precision) = self.sample.netbsd();
        vec![
            self.rate as i32,
            i32::from(self.channels),
            encoding,
            precision,
            self.block as i32,
            self.blocks as i32,
        ]
    }

    /// A format from [`AUDIO_FORMAT`] words: the first four are needed;
    /// block bytes and blocks, when given and not 0, replace the defaults.
    /// Checks the geometry only (the card's abilities are its driver's to
    /// check).
    pub fn from_words(words: &[i32]) -> Result<Self, String> {
        let [rate, channels, encoding, precision, rest @ ..] = words else {
            return Err(format!(
                "{} words: rate, channels, encoding and precision are needed",
                words.len()
            ));
        };
        let sample = Sample::from_netbsd(*encoding, *precision)
            .ok_or_else(|| format!("encoding {encoding} with precision {precision}"))?;
        let rate = u32::try_from(*rate)
            .ok()
            .filter(|r| (1..=768_000).contains(r))
            .ok_or_else(|| format!("rate {rate}"))?;
        let channels = u8::try_from(*channels)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| format!("{channels} channels"))?;
        let mut f = Self::new(rate, channels, sample);
        if let Some(&block) = rest.first().filter(|b| **b != 0) {
            let block = usize::try_from(block).map_err(|_| format!("block {block}"))?;
            if block > MAX_BLOCK || !block.is_multiple_of(f.frame()) || block == 0 {
                return Err(format!(
                    "block of {block} bytes (a multiple of the {}-byte frame, at most {MAX_BLOCK})",
                    f.frame()
                ));
            }
            f.block = block;
        }
        if let Some(&blocks) = rest.get(1).filter(|b| **b != 0) {
            f.blocks = usize::try_from(blocks)
                .ok()
                .filter(|b| (2..=MAX_BLOCKS).contains(b))
                .ok_or_else(|| format!("{blocks} blocks (2 to {MAX_BLOCKS})"))?;
        }
        if rest.len() > 2 {
            return Err(format!("{} words (at most 6)", words.len()));
        }
        Ok(f)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} Hz, {} channel(s), {}, {} blocks of {} bytes",
            self.rate, self.channels, self.sample, self.blocks, self.block
        )
    }
}

/// What a card's stream can do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Channel counts.
    pub channels: (u8, u8),
    /// Rates in Hz, ascending.
    pub rates: Vec<u32>,
    /// Sample formats.
    pub samples: Vec<Sample>,
}

impl Caps {
    /// Whether `f` is within these.
    #[must_use]
    pub fn allows(&self, f: &Format) -> bool {
        (self.channels.0..=self.channels.1).contains(&f.channels)
            && self.rates.contains(&f.rate)
            && self.samples.contains(&f.sample)
    }

    /// The [`AUDIO_CAPS`] words.
    #[must_use]
    pub fn to_words(&self) -> Vec<i32> {
        let mut w = vec![
            i32::from(self.channels.0),
            i32::from(self.channels.1),
            self.rates.len() as i32,
        ];
        w.extend(self.rates.iter().map(|r| *r as i32));
        w.push(self.samples.len() as i32);
        for s in &self.samples {
            let (e, p) = s.netbsd();
            w.extend([e, p]);
        }
        w
    }
}

/// A stream's counters ([`AUDIO_PLAY_INFO`], [`AUDIO_RECORD_INFO`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames the card played (or captured) since the device was opened.
    pub frames: u64,
    /// Times the card ran out of blocks while running (playback), or
    /// captured blocks dropped because nobody read them (capture).
    pub xruns: u64,
    /// The card's last reported latency, in bytes.
    pub latency_bytes: u32,
    /// Blocks with the card now.
    pub queued: u32,
    /// Whether the stream runs.
    pub running: bool,
}

impl Counters {
    /// The words of the info flavors.
    #[must_use]
    pub fn to_words(&self) -> Vec<i32> {
        vec![
            self.frames as u32 as i32,
            (self.frames >> 32) as u32 as i32,
            self.xruns.min(i32::MAX as u64) as i32,
            self.latency_bytes as i32,
            self.queued as i32,
            i32::from(self.running),
        ]
    }
}

/// Volume and mute ([`AUDIO_MIXER`]), applied to samples in software.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mixer {
    /// Left (first channel) volume, 0–255 (255: unchanged).
    pub left: u8,
    /// Right (every other channel) volume, 0–255.
    pub right: u8,
    /// Silence.
    pub mute: bool,
}

impl Default for Mixer {
    fn default() -> Self {
        Self {
            left: 255,
            right: 255,
            mute: false,
        }
    }
}

impl Mixer {
    /// The [`AUDIO_MIXER`] words.
    #[must_use]
    pub fn to_words(&self) -> Vec<i32> {
        vec![
            i32::from(self.left),
            i32::from(self.right),
            i32::from(self.mute),
        ]
    }

    /// From [`AUDIO_MIXER`] words.
    pub fn from_words(words: &[i32]) -> Result<Self, String> {
        let &[left, right, mute] = words else {
            return Err(format!("{} words (left, right, mute)", words.len()));
        };
        let vol = |v: i32| u8::try_from(v).map_err(|_| format!("volume {v} (0 to 255)"));
        Ok(Self {
            left: vol(left)?,
            right: vol(right)?,
            mute: match mute {
                0 => false,
                1 => true,
                m => return Err(format!("mute {m} (0 or 1)")),
            },
        })
    }

    /// Whether samples pass unchanged.
    #[must_use]
    pub fn unity(&self) -> bool {
        !self.mute && self.left == 255 && self.right == 255
    }

    /// Scales the whole frames in `data` (`f`'s format) in place.
    pub fn apply(&self, f: &Format, data: &mut [u8]) {
        if self.unity() {
            return;
        }
        let gain = |ch: usize| -> i64 {
            if self.mute {
                0
            } else if ch == 0 {
                i64::from(self.left)
            } else {
                i64::from(self.right)
            }
        };
        let n = f.sample.bytes();
        for (i, s) in data.chunks_exact_mut(n).enumerate() {
            let g = gain(i % usize::from(f.channels));
            f.sample
                .put((i64::from(f.sample.get(s)) * g / 255) as i32, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_words_round_trip_and_bad_ones_are_refused() {
        let f = Format::new(48_000, 2, Sample::S16Le);
        assert_eq!(f.block, 960 * 4);
        assert_eq!(Format::from_words(&f.to_words()), Ok(f));
        let short = Format::from_words(&[44_100, 1, ENCODING_SLINEAR_LE, 16]).unwrap();
        assert_eq!(short.block, 882 * 2);
        for bad in [
            &[48_000, 2, ENCODING_SLINEAR_LE][..],
            &[48_000, 2, 99, 16],
            &[48_000, 2, ENCODING_SLINEAR_LE, 24],
            &[0, 2, ENCODING_SLINEAR_LE, 16],
            &[48_000, 0, ENCODING_SLINEAR_LE, 16],
            &[48_000, 2, ENCODING_SLINEAR_LE, 16, 3],
            &[48_000, 2, ENCODING_SLINEAR_LE, 16, 1 << 20],
            &[48_000, 2, ENCODING_SLINEAR_LE, 16, 4096, 1],
            &[48_000, 2, ENCODING_SLINEAR_LE, 16, 4096, 17],
            &[48_000, 2, ENCODING_SLINEAR_LE, 16, 4096, 8, 0],
        ] {
            assert!(Format::from_words(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_mixer_scales_each_channel_and_mutes() {
        let f = Format::new(8000, 2, Sample::S16Le);
        let mut d: Vec<u8> = [1000i16, -1000, 1000, -1000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        Mixer::from_words(&[255, 51, 0]).unwrap().apply(&f, &mut d);
        let v: Vec<i16> = d
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(v, [1000, -200, 1000, -200]);
        Mixer::from_words(&[255, 255, 1]).unwrap().apply(&f, &mut d);
        assert!(d.iter().all(|b| *b == 0));
        let mut u = vec![200u8, 56];
        Mixer::from_words(&[0, 0, 0])
            .unwrap()
            .apply(&Format::new(8000, 1, Sample::U8), &mut u);
        assert_eq!(u, [128, 128]);
        assert!(Mixer::from_words(&[256, 0, 0]).is_err());
        assert!(Mixer::from_words(&[1, 1, 2]).is_err());
        assert!(Mixer::from_words(&[1, 1]).is_err());
    }
}
