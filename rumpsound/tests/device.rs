//! The audio device interface on the loopback kernel, over a back end that
//! keeps what it is given (the virtio-sound back end is tested on a card
//! in the VM test bed, `tests/vm/tests/rumpsound.rs`): open modes and
//! their exclusivity, formats refused or taken, whole frames, the mixer,
//! counters, drain, and a close that stops the stream.

#![cfg(target_os = "linux")]

use std::io;
use std::sync::Arc;

use mach::KernReturn;
use machdev::loopback::LocalServer;
use machdev::{Mode, PoolConfig};
use mig_bindings::device::Client;
use parking_lot::Mutex;
use rumpsound::device::{Card, Cards};
use rumpsound::pcm::{
    AUDIO_CAPS, AUDIO_DRAIN, AUDIO_FORMAT, AUDIO_MIXER, AUDIO_PLAY_INFO, AUDIO_RECORD_INFO, Caps,
    Counters, ENCODING_SLINEAR_LE, Format, Sample,
};
use rumpsound::stream::Stream;

/// What a recording back end saw.
#[derive(Default)]
struct Seen {
    format: Option<Format>,
    written: Vec<u8>,
    drains: usize,
    stops: usize,
}

struct Recorder {
    caps: Caps,
    seen: Mutex<Seen>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            caps: Caps {
                channels: (1, 2),
                rates: vec![44_100, 48_000],
                samples: vec![Sample::S16Le],
            },
            seen: Mutex::new(Seen::default()),
        })
    }
}

impl Stream for Recorder {
    fn caps(&self) -> &Caps {
        &self.caps
    }
    fn format(&self) -> Format {
        self.seen
            .lock()
            .format
            .unwrap_or_else(|| Format::new(48_000, 2, Sample::S16Le))
    }
    fn set_format(&self, f: Format) -> io::Result<()> {
        if !self.caps.allows(&f) {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.seen.lock().format = Some(f);
        Ok(())
    }
    fn write(&self, data: &[u8]) -> io::Result<()> {
        self.seen.lock().written.extend_from_slice(data);
        Ok(())
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // A rising count, one byte per byte.
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(buf.len())
    }
    fn drain(&self) -> io::Result<()> {
        self.seen.lock().drains += 1;
        Ok(())
    }
    fn stop(&self) {
        self.seen.lock().stops += 1;
    }
    fn counters(&self) -> Counters {
        Counters {
            frames: (self.seen.lock().written.len() / 4) as u64 + (1 << 32),
            ..Counters::default()
        }
    }
}

fn serve(cards: Vec<Card>) -> LocalServer {
    let driver: Arc<dyn machdev::Driver> = Arc::new(Cards::new(cards));
    LocalServer::start(vec![driver], PoolConfig::default()).unwrap()
}

fn samples(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[test]
fn playback_takes_whole_frames_in_the_format_set_with_the_mixer_applied() {
    let play = Recorder::new();
    let local = serve(vec![Card::new(Some(play.clone()), None)]);
    let (task, master) = local.client().unwrap();
    let c = Client::new(&task);
    let dev = c.open(master, Mode::WRITE, "audio0").unwrap();
    // Refused: a rate the card lacks, an unknown encoding, too few words.
    assert_eq!(
        c.set_status(dev, AUDIO_FORMAT, &[22_050, 2, ENCODING_SLINEAR_LE, 16]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(
        c.set_status(dev, AUDIO_FORMAT, &[48_000, 2, 42, 16]),
        Err(KernReturn::D_INVALID_SIZE)
    );
    assert_eq!(
        c.set_status(dev, AUDIO_FORMAT, &[48_000]),
        Err(KernReturn::D_INVALID_SIZE)
    );
    let mono = Format::new(44_100, 1, Sample::S16Le);
    c.set_status(dev, AUDIO_FORMAT, &mono.to_words()[..4])
        .unwrap();
    assert_eq!(
        c.get_status(dev, AUDIO_FORMAT, 16).unwrap(),
        mono.to_words()
    );
    assert_eq!(
        c.get_status(dev, AUDIO_FORMAT, 3),
        Err(KernReturn::D_INVALID_SIZE)
    );
    // Whole frames only (2 bytes, mono s16).
    assert_eq!(c.write(dev, 0, &[1, 2, 3]), Err(KernReturn::D_INVALID_SIZE));
    assert_eq!(c.write(dev, 0, &samples(&[1000, -1000])), Ok(4));
    // Half volume, then muted; inband writes too.
    c.set_status(dev, AUDIO_MIXER, &[128, 128, 0]).unwrap();
    assert_eq!(c.get_status(dev, AUDIO_MIXER, 3).unwrap(), [128, 128, 0]);
    assert_eq!(c.write_inband(dev, 0, &samples(&[1000, -1000])), Ok(4));
    c.set_status(dev, AUDIO_MIXER, &[255, 255, 1]).unwrap();
    assert_eq!(c.write(dev, 0, &samples(&[1000])), Ok(2));
    assert_eq!(
        c.set_status(dev, AUDIO_MIXER, &[300, 0, 0]),
        Err(KernReturn::D_INVALID_SIZE)
    );
    assert_eq!(
        play.seen.lock().written,
        samples(&[1000, -1000, 501, -501, 0])
    );
    // Counters: the frames' low and high words.
    let info = c.get_status(dev, AUDIO_PLAY_INFO, 6).unwrap();
    assert_eq!((info[0], info[1]), (2, 1));
    assert_eq!(
        c.get_status(dev, AUDIO_RECORD_INFO, 6),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(
        c.get_status(dev, AUDIO_CAPS, 16).unwrap(),
        [1, 2, 2, 44_100, 48_000, 1, ENCODING_SLINEAR_LE, 16]
    );
    assert_eq!(
        c.set_status(dev, AUDIO_DRAIN, &[1]),
        Err(KernReturn::D_INVALID_SIZE)
    );
    c.set_status(dev, AUDIO_DRAIN, &[]).unwrap();
    assert_eq!(
        c.set_status(dev, 0x7777, &[]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    // Reading needs D_READ (and a capture stream).
    assert_eq!(c.read(dev, 0, 4), Err(KernReturn::D_INVALID_OPERATION));
    c.close(dev).unwrap();
    let seen = play.seen.lock();
    assert_eq!((seen.drains, seen.stops), (1, 1));
}

#[test]
fn each_stream_has_one_opener_and_a_missing_one_cannot_be_opened() {
    let play = Recorder::new();
    let capture = Recorder::new();
    let local = serve(vec![
        Card::new(Some(play.clone()), Some(capture.clone())),
        Card::new(None, Some(Recorder::new())),
    ]);
    let (task, master) = local.client().unwrap();
    let c = Client::new(&task);
    let wr = c.open(master, Mode::WRITE, "audio0").unwrap();
    assert_eq!(
        c.open(master, Mode::WRITE, "audio0"),
        Err(KernReturn::D_ALREADY_OPEN)
    );
    assert_eq!(
        c.open(master, Mode::READ | Mode::WRITE, "audio0"),
        Err(KernReturn::D_ALREADY_OPEN)
    );
    // The capture stream is free; reads give whole frames of it.
    let rd = c.open(master, Mode::READ, "audio0").unwrap();
    assert_eq!(c.read(rd, 0, 8).unwrap(), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(c.read(rd, 0, 6), Err(KernReturn::D_INVALID_SIZE));
    assert_eq!(
        c.write(rd, 0, &[0; 4]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    // A capture-only card has no playback to open; no such card at all.
    assert_eq!(
        c.open(master, Mode::WRITE, "audio1"),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert!(c.open(master, Mode::READ, "audio1").is_ok());
    assert_eq!(
        c.open(master, Mode::READ, "audio2"),
        Err(KernReturn::D_NO_SUCH_DEVICE)
    );
    assert_eq!(
        c.open(master, 0, "audio0"),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    // A writer that goes stops its stream; the next one opens.
    c.close(wr).unwrap();
    assert_eq!(play.seen.lock().stops, 1);
    assert_eq!(capture.seen.lock().stops, 0);
    let wr = c.open(master, Mode::WRITE, "audio0").unwrap();
    c.close(wr).unwrap();
    c.close(rd).unwrap();
    assert_eq!(capture.seen.lock().stops, 1);
}

/// A writer that dies mid-stream (its task goes, with its rights): the
/// server's no-senders notification closes the open, the stream stops
/// and the next writer gets the card.
#[test]
fn a_dying_writer_stops_its_stream_and_frees_the_card() {
    let play = Recorder::new();
    let local = serve(vec![Card::new(Some(play.clone()), None)]);
    let (task, master) = local.client().unwrap();
    {
        let c = Client::new(&task);
        let dev = c.open(master, Mode::WRITE, "audio0").unwrap();
        assert_eq!(c.write(dev, 0, &samples(&[1, 2])), Ok(4));
    }
    drop(task);
    let t0 = std::time::Instant::now();
    while play.seen.lock().stops == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "the dead writer's open was not closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let (task, master) = local.client().unwrap();
    let c = Client::new(&task);
    let dev = c.open(master, Mode::WRITE, "audio0").unwrap();
    c.close(dev).unwrap();
    assert_eq!(play.seen.lock().stops, 2);
}
