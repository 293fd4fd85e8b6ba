//! WAV files through the device interface: what `--play` and `--record`
//! do, as any Mach program would (open `audioN`, set the format, write or
//! read PCM, drain, read the counters, close).

use std::path::Path;
use std::time::{Duration, Instant};

use mach::ipc::Ipc;
use mach::{KernReturn, PortName};
use machdev::Mode;
use mig_bindings::device::Client;

use crate::pcm::{AUDIO_DRAIN, AUDIO_FORMAT, AUDIO_PLAY_INFO, AUDIO_RECORD_INFO, Format, Sample};

/// Bytes per `device_write` (several blocks: fewer calls, still paced).
const WRITE_CHUNK: usize = 16 << 10;

fn kr(what: &str, e: KernReturn) -> String {
    format!("{what}: {e}")
}

/// What a stream's counters said at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Frames the card played or captured.
    pub frames: u64,
    /// Underruns (playback) or overruns (capture).
    pub xruns: i32,
    /// The card's last latency, in bytes.
    pub latency_bytes: i32,
    /// Wall time from the first write (read) to the end of the drain.
    pub elapsed: Duration,
}

fn report(
    c: &Client<'_, impl Ipc + ?Sized>,
    dev: PortName,
    flavor: u32,
    t: Instant,
) -> Result<Report, String> {
    let w = c
        .get_status(dev, flavor, 16)
        .map_err(|e| kr("counters", e))?;
    let [lo, hi, xruns, latency_bytes, ..] = w[..] else {
        return Err(format!("counters: {} words", w.len()));
    };
    Ok(Report {
        frames: u64::from(lo as u32) | (u64::from(hi as u32) << 32),
        xruns,
        latency_bytes,
        elapsed: t.elapsed(),
    })
}

/// The sample format of a WAV file, and its samples as raw bytes.
fn pcm_of(path: &Path) -> Result<(Format, Vec<u8>), String> {
    let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = r.spec();
    let bad = |e: hound::Error| format!("{}: {e}", path.display());
    let sample = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 8) => Sample::U8,
        (hound::SampleFormat::Int, 16) => Sample::S16Le,
        (hound::SampleFormat::Int, 32) => Sample::S32Le,
        (f, bits) => {
            return Err(format!(
                "{}: {bits}-bit {f:?} samples (u8, s16 and s32 are played)",
                path.display()
            ));
        }
    };
    let mut data = vec![0; r.len() as usize * sample.bytes()];
    for (s, out) in r
        .samples::<i32>()
        .zip(data.chunks_exact_mut(sample.bytes()))
    {
        sample.put(s.map_err(bad)?, out);
    }
    let channels = u8::try_from(spec.channels)
        .map_err(|_| format!("{}: {} channels", path.display(), spec.channels))?;
    Ok((Format::new(spec.sample_rate, channels, sample), data))
}

/// Plays `path` on `device` through the device master `master`: opens it
/// for writing, sets the file's format, writes its frames, drains, and
/// returns the playback counters.
///
/// # Errors
/// An unreadable file, a format the card refuses, a failed call.
pub fn play<I: Ipc + ?Sized>(
    ipc: &I,
    master: PortName,
    device: &str,
    path: &Path,
) -> Result<Report, String> {
    let (format, data) = pcm_of(path)?;
    let c = Client::new(ipc);
    let dev = c
        .open(master, Mode::WRITE, device)
        .map_err(|e| kr(&format!("open {device}"), e))?;
    let run = || {
        c.set_status(dev, AUDIO_FORMAT, &format.to_words()[..4])
            .map_err(|e| kr(&format!("{device}: format {format}"), e))?;
        let t = Instant::now();
        let chunk = WRITE_CHUNK / format.frame() * format.frame();
        for part in data.chunks(chunk.max(format.frame())) {
            c.write(dev, 0, part).map_err(|e| kr("write", e))?;
        }
        c.set_status(dev, AUDIO_DRAIN, &[])
            .map_err(|e| kr("drain", e))?;
        report(&c, dev, AUDIO_PLAY_INFO, t)
    };
    let r = run();
    let _ = c.close(dev);
    r
}

/// Records `seconds` of `format` from `device` into the WAV file `path`.
///
/// # Errors
/// A format the card refuses, a failed call, an unwritable file.
pub fn record<I: Ipc + ?Sized>(
    ipc: &I,
    master: PortName,
    device: &str,
    format: Format,
    seconds: f64,
    path: &Path,
) -> Result<Report, String> {
    let c = Client::new(ipc);
    let dev = c
        .open(master, Mode::READ, device)
        .map_err(|e| kr(&format!("open {device}"), e))?;
    let run = || {
        c.set_status(dev, AUDIO_FORMAT, &format.to_words()[..4])
            .map_err(|e| kr(&format!("{device}: format {format}"), e))?;
        let spec = hound::WavSpec {
            channels: u16::from(format.channels),
            sample_rate: format.rate,
            bits_per_sample: (format.sample.bytes() * 8) as u16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w =
            hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
        let want = (seconds * f64::from(format.rate)) as u64 * format.frame() as u64;
        let mut got = 0u64;
        let t = Instant::now();
        while got < want {
            let ask =
                (want - got).min(WRITE_CHUNK as u64) as usize / format.frame() * format.frame();
            let data = c
                .read(dev, 0, ask.max(format.frame()) as i32)
                .map_err(|e| kr("read", e))?;
            got += data.len() as u64;
            let put = |e: hound::Error| format!("{}: {e}", path.display());
            data.chunks_exact(format.sample.bytes())
                .try_for_each(|s| w.write_sample(format.sample.get(s)))
                .map_err(put)?;
        }
        w.finalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let r = report(&c, dev, AUDIO_RECORD_INFO, t);
        c.set_status(dev, AUDIO_DRAIN, &[])
            .map_err(|e| kr("stop", e))?;
        r
    };
    let r = run();
    let _ = c.close(dev);
    r
}
