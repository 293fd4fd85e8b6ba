//! What a back end gives the device layer: PCM streams, one direction
//! each.

use std::io;

use crate::pcm::{Caps, Counters, Format};

/// Which way a stream's samples go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To the speakers.
    Playback,
    /// From the microphone.
    Capture,
}

/// One PCM stream of a card.
pub trait Stream: Send + Sync {
    /// What it can do.
    fn caps(&self) -> &Caps;

    /// The format it uses now.
    fn format(&self) -> Format;

    /// Takes `f` for what comes next (what is queued is dropped first;
    /// call [`Stream::drain`] before, to play it). `Unsupported` for a
    /// format outside [`Stream::caps`].
    fn set_format(&self, f: Format) -> io::Result<()>;

    /// Playback: queues `data` (whole frames), waiting while the ring is
    /// full, so a writer is paced by the card's clock; the stream starts
    /// once the ring is full (or at [`Stream::drain`]).
    fn write(&self, data: &[u8]) -> io::Result<()>;

    /// Capture: starts the stream if it is not running, waits for at least
    /// one block (or `buf.len()` bytes, if less) and returns what was
    /// captured, oldest first.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Plays out what was written and stops (playback); stops (capture).
    fn drain(&self) -> io::Result<()>;

    /// Stops at once, dropping what is queued (its writer or reader went
    /// away); the stream serves the next opener.
    fn stop(&self);

    /// Its counters.
    fn counters(&self) -> Counters;
}
