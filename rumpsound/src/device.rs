//! The `machdev` driver: sound cards as Mach devices `audio0`, `audio1` …
//!
//! - `device_open`: `D_WRITE` takes the card's playback stream, `D_READ`
//!   its capture stream; each stream has one opener at a time (a second
//!   gets `D_ALREADY_OPEN`: natively nothing mixes), and a card without
//!   that stream answers `D_INVALID_OPERATION`.
//! - `device_write`/`device_write_inband`: whole frames of the stream's
//!   format (else `D_INVALID_SIZE`), volume applied, queued; the call
//!   waits while the ring is full, so a writer is paced by the card. The
//!   record number is ignored. Without `D_WRITE`: `D_INVALID_OPERATION`.
//! - `device_read`/`device_read_inband`: captured frames, at least one
//!   block's worth (or the length asked, if less), whole frames; the first
//!   read starts capture.
//! - `device_set_status`/`device_get_status`: the flavors of [`crate::pcm`]
//!   (format, caps, counters, drain, mixer). A format the card cannot do
//!   is refused with `D_INVALID_OPERATION` (no resampling); a malformed
//!   one with `D_INVALID_SIZE`.
//! - Close (or the client's death): the stream stops at once and drops
//!   what is queued; the device serves the next opener.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use mach::KernReturn;
use machdev::{Device, Driver, Mode};
use parking_lot::Mutex;

use crate::pcm::{
    AUDIO_CAPS, AUDIO_DRAIN, AUDIO_FORMAT, AUDIO_MIXER, AUDIO_PLAY_INFO, AUDIO_RECORD_INFO, Format,
    Mixer,
};
use crate::stream::Stream;

/// A back end's error as the device interface answers it.
fn kern(e: &io::Error) -> KernReturn {
    match e.kind() {
        io::ErrorKind::Unsupported => KernReturn::D_INVALID_OPERATION,
        _ => KernReturn::D_IO_ERROR,
    }
}

/// One card: its streams, who has them, its mixer.
pub struct Card {
    name: String,
    playback: Option<Arc<dyn Stream>>,
    capture: Option<Arc<dyn Stream>>,
    /// (playback taken, capture taken).
    taken: Mutex<(bool, bool)>,
    mixer: Mutex<Mixer>,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("name", &self.name)
            .field("playback", &self.playback.is_some())
            .field("capture", &self.capture.is_some())
            .finish_non_exhaustive()
    }
}

impl Card {
    /// A card with these streams.
    #[must_use]
    pub fn new(playback: Option<Arc<dyn Stream>>, capture: Option<Arc<dyn Stream>>) -> Self {
        Self {
            name: String::new(),
            playback,
            capture,
            taken: Mutex::new((false, false)),
            mixer: Mutex::new(Mixer::default()),
        }
    }
}

/// One open of a card.
struct Open {
    card: Arc<Card>,
    playback: Option<Arc<dyn Stream>>,
    capture: Option<Arc<dyn Stream>>,
}

impl Open {
    /// The stream whose format the format flavor sets and tells: playback
    /// when opened for writing.
    fn streams(&self) -> impl Iterator<Item = &Arc<dyn Stream>> {
        self.playback.iter().chain(self.capture.iter())
    }

    fn whole_frames(s: &dyn Stream, len: usize) -> Result<(), KernReturn> {
        if len.is_multiple_of(s.format().frame()) {
            Ok(())
        } else {
            Err(KernReturn::D_INVALID_SIZE)
        }
    }
}

impl Device for Open {
    fn read(&self, _recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        let s = self
            .capture
            .as_ref()
            .ok_or(KernReturn::D_INVALID_OPERATION)?;
        Self::whole_frames(&**s, len)?;
        let mut buf = vec![0; len];
        let n = s.read(&mut buf).map_err(|e| {
            log::warn!("{}: capture: {e}", self.card.name);
            kern(&e)
        })?;
        buf.truncate(n);
        Ok(buf)
    }

    fn write(&self, _recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        let s = self
            .playback
            .as_ref()
            .ok_or(KernReturn::D_INVALID_OPERATION)?;
        Self::whole_frames(&**s, data.len())?;
        let mixer = *self.card.mixer.lock();
        let r = if mixer.unity() {
            s.write(data)
        } else {
            let mut scaled = data.to_vec();
            mixer.apply(&s.format(), &mut scaled);
            s.write(&scaled)
        };
        r.map_err(|e| {
            log::warn!("{}: playback: {e}", self.card.name);
            kern(&e)
        })?;
        Ok(data.len())
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        let words = match flavor {
            AUDIO_FORMAT => self
                .streams()
                .next()
                .ok_or(KernReturn::D_INVALID_OPERATION)?
                .format()
                .to_words(),
            AUDIO_CAPS => self
                .streams()
                .next()
                .ok_or(KernReturn::D_INVALID_OPERATION)?
                .caps()
                .to_words(),
            AUDIO_PLAY_INFO => self
                .card
                .playback
                .as_ref()
                .ok_or(KernReturn::D_INVALID_OPERATION)?
                .counters()
                .to_words(),
            AUDIO_RECORD_INFO => self
                .card
                .capture
                .as_ref()
                .ok_or(KernReturn::D_INVALID_OPERATION)?
                .counters()
                .to_words(),
            AUDIO_MIXER => self.card.mixer.lock().to_words(),
            _ => return Err(KernReturn::D_INVALID_OPERATION),
        };
        if words.len() > max {
            return Err(KernReturn::D_INVALID_SIZE);
        }
        Ok(words)
    }

    fn set_status(&self, flavor: u32, status: &[i32]) -> Result<(), KernReturn> {
        match flavor {
            AUDIO_FORMAT => {
                let f = Format::from_words(status).map_err(|e| {
                    log::info!("{}: format refused: {e}", self.card.name);
                    KernReturn::D_INVALID_SIZE
                })?;
                for s in self.streams() {
                    s.set_format(f).map_err(|e| {
                        log::info!("{}: {e}", self.card.name);
                        kern(&e)
                    })?;
                }
                Ok(())
            }
            AUDIO_DRAIN => {
                if !status.is_empty() {
                    return Err(KernReturn::D_INVALID_SIZE);
                }
                for s in self.streams() {
                    s.drain().map_err(|e| {
                        log::warn!("{}: drain: {e}", self.card.name);
                        kern(&e)
                    })?;
                }
                Ok(())
            }
            AUDIO_MIXER => {
                *self.card.mixer.lock() =
                    Mixer::from_words(status).map_err(|_| KernReturn::D_INVALID_SIZE)?;
                Ok(())
            }
            _ => Err(KernReturn::D_INVALID_OPERATION),
        }
    }

    fn close(&self) {
        for s in self.streams() {
            s.stop();
        }
        let mut taken = self.card.taken.lock();
        if self.playback.is_some() {
            taken.0 = false;
        }
        if self.capture.is_some() {
            taken.1 = false;
        }
    }

    fn inband(&self) -> bool {
        true
    }
}

/// The driver: every card as `audio0`, `audio1` …
#[derive(Debug)]
pub struct Cards {
    by_name: BTreeMap<String, Arc<Card>>,
}

impl Cards {
    /// Serves `cards` as `audio0`, `audio1` … in order.
    #[must_use]
    pub fn new(cards: Vec<Card>) -> Self {
        let by_name = cards
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                c.name = format!("audio{i}");
                (c.name.clone(), Arc::new(c))
            })
            .collect();
        Self { by_name }
    }
}

impl Driver for Cards {
    fn claims(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn open(&self, name: &str, mode: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        let card = self.by_name.get(name).ok_or(KernReturn::D_NO_SUCH_DEVICE)?;
        if !mode.can_read() && !mode.can_write() {
            return Err(KernReturn::D_INVALID_OPERATION);
        }
        let want = |on: bool, s: &Option<Arc<dyn Stream>>| -> Result<_, KernReturn> {
            if on {
                s.clone().map(Some).ok_or(KernReturn::D_INVALID_OPERATION)
            } else {
                Ok(None)
            }
        };
        let playback = want(mode.can_write(), &card.playback)?;
        let capture = want(mode.can_read(), &card.capture)?;
        {
            let mut taken = card.taken.lock();
            if (playback.is_some() && taken.0) || (capture.is_some() && taken.1) {
                return Err(KernReturn::D_ALREADY_OPEN);
            }
            taken.0 |= playback.is_some();
            taken.1 |= capture.is_some();
        }
        Ok(Arc::new(Open {
            card: Arc::clone(card),
            playback,
            capture,
        }))
    }
}
