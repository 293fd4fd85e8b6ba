//! Guest program: rumpsound's device interface on a virtio-sound function
//! (QEMU's `none` audio back end behind it), as a Mach client sees it on
//! the loopback transport. Bad input first: a write on a capture open, a
//! second writer, formats the card cannot do or that are malformed, a
//! write of a partial frame; then a writer that goes away mid-stream
//! (closed without draining) and a new one that plays after it; then a
//! second of capture, timed.
//!
//! Usage: `sound-check PCI`. Prints `SOUND key=value` lines; exits 1 at
//! the first failure.

#[cfg(target_os = "linux")]
mod check {
    use std::sync::Arc;
    use std::time::Instant;

    use mach::KernReturn;
    use mach::PortName;
    use mach::loopback::Task;
    use machdev::{Mode, PoolConfig};
    use mig_bindings::device::Client;
    use rumpsound::device::{Card, Cards};
    use rumpsound::pcm::{
        AUDIO_DRAIN, AUDIO_FORMAT, AUDIO_PLAY_INFO, ENCODING_SLINEAR_LE, Format, Sample,
    };

    fn fail(what: &str) -> ! {
        println!("SOUND FAIL {what}");
        std::process::exit(1)
    }

    fn expect(what: &str, got: Result<(), KernReturn>, want: Result<(), KernReturn>) {
        if got == want {
            println!("SOUND ok {what}: {got:?}");
        } else {
            fail(&format!("{what}: {got:?}, expected {want:?}"));
        }
    }

    /// Bad input, on a capture open `rd` and a playback open; returns
    /// the playback open, with `format` set.
    fn bad_input(c: &Client<'_, Task>, master: PortName, rd: PortName, words: &[i32]) -> PortName {
        expect(
            "write on a capture open",
            c.write(rd, 0, &[0; 64]).map(drop),
            Err(KernReturn::D_INVALID_OPERATION),
        );
        let wr = c
            .open(master, Mode::WRITE, "audio0")
            .unwrap_or_else(|e| fail(&e.to_string()));
        expect(
            "a second writer",
            c.open(master, Mode::WRITE, "audio0").map(drop),
            Err(KernReturn::D_ALREADY_OPEN),
        );
        expect(
            "a rate the card cannot do",
            c.set_status(wr, AUDIO_FORMAT, &[12_345, 2, ENCODING_SLINEAR_LE, 16]),
            Err(KernReturn::D_INVALID_OPERATION),
        );
        expect(
            "an encoding nobody knows",
            c.set_status(wr, AUDIO_FORMAT, &[48_000, 2, 99, 16]),
            Err(KernReturn::D_INVALID_SIZE),
        );
        expect(
            "too few format words",
            c.set_status(wr, AUDIO_FORMAT, &[48_000, 2]),
            Err(KernReturn::D_INVALID_SIZE),
        );
        expect("the format", c.set_status(wr, AUDIO_FORMAT, words), Ok(()));
        expect(
            "a partial frame",
            c.write(wr, 0, &[0; 6]).map(drop),
            Err(KernReturn::D_INVALID_SIZE),
        );
        wr
    }

    /// Half a second on `wr`, then the writer goes without draining: the
    /// stream stops at once and the card serves the next writer.
    fn abandoned_writer(c: &Client<'_, Task>, master: PortName, wr: PortName, format: Format) {
        let words = format.to_words();
        let half = vec![0x11u8; format.bytes_per_second() as usize / 2];
        expect("half a second", c.write(wr, 0, &half).map(drop), Ok(()));
        let t = Instant::now();
        expect("close mid-stream", c.close(wr), Ok(()));
        println!("SOUND close_mid_stream_ms={}", t.elapsed().as_millis());
        let wr = c
            .open(master, Mode::WRITE, "audio0")
            .unwrap_or_else(|e| fail(&format!("open after the writer went: {e}")));
        expect(
            "the format again",
            c.set_status(wr, AUDIO_FORMAT, &words),
            Ok(()),
        );
        let fifth = vec![0u8; format.bytes_per_second() as usize / 5];
        let t = Instant::now();
        expect(
            "a fifth of a second",
            c.write(wr, 0, &fifth).map(drop),
            Ok(()),
        );
        expect("drain", c.set_status(wr, AUDIO_DRAIN, &[]), Ok(()));
        let info = c
            .get_status(wr, AUDIO_PLAY_INFO, 16)
            .unwrap_or_else(|e| fail(&format!("counters: {e}")));
        println!(
            "SOUND replay_frames={} replay_ms={} underruns={}",
            info[0],
            t.elapsed().as_millis(),
            info[2]
        );
        expect("close", c.close(wr), Ok(()));
    }

    /// A second of capture on `rd` (QEMU's none back end: silence, at the
    /// card's pace).
    fn capture(c: &Client<'_, Task>, rd: PortName, format: Format) {
        let t = Instant::now();
        let mut got = 0usize;
        let mut nonzero = 0usize;
        while got < format.bytes_per_second() as usize {
            let data = c
                .read(rd, 0, 16 << 10)
                .unwrap_or_else(|e| fail(&format!("capture: {e}")));
            nonzero += data.iter().filter(|b| **b != 0).count();
            got += data.len();
        }
        println!(
            "SOUND capture_frames={} capture_ms={} capture_nonzero={nonzero}",
            got / format.frame(),
            t.elapsed().as_millis()
        );
        expect("stop capture", c.set_status(rd, AUDIO_DRAIN, &[]), Ok(()));
        expect("close capture", c.close(rd), Ok(()));
    }

    pub fn main() {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
        let Some(address) = std::env::args().nth(1).and_then(|a| a.parse().ok()) else {
            fail("usage: sound-check PCI");
        };
        let card = rumpsound::virtio::VirtioSound::open(address)
            .unwrap_or_else(|e| fail(&format!("open {address}: {e}")));
        let cards = Cards::new(vec![Card::new(card.playback(), card.capture())]);
        let driver: Arc<dyn machdev::Driver> = Arc::new(cards);
        let local = machdev::loopback::LocalServer::start(vec![driver], PoolConfig::default())
            .unwrap_or_else(|e| fail(&format!("server: {e}")));
        let (task, master) = local.client().unwrap_or_else(|e| fail(&e.to_string()));
        let c = Client::new(&task);
        let format = Format::new(48_000, 2, Sample::S16Le);
        let rd = c
            .open(master, Mode::READ, "audio0")
            .unwrap_or_else(|e| fail(&e.to_string()));
        let wr = bad_input(&c, master, rd, &format.to_words());
        abandoned_writer(&c, master, wr, format);
        capture(&c, rd, format);
        println!("SOUND done");
    }
}

#[cfg(target_os = "linux")]
fn main() {
    check::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {}
