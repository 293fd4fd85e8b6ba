//! Guest program: plays `SECONDS` of a tone and measures what it costs.
//!
//! - `sound-bench rumpsound PCI SECONDS`: rumpsound's native virtio-sound
//!   driver on the function `PCI`, served in this process on the loopback
//!   transport and written through the device interface in 16 KiB writes.
//! - `sound-bench alsa DEVICE SECONDS`: a guest kernel's driver through
//!   ALSA's PCM ioctls on `DEVICE` (`/dev/snd/pcmC0D0p`), 16 KiB writes,
//!   48 kHz stereo s16le, eight periods of 20 ms (as rumpsound's ring).
//!
//! Prints `BENCH key=value`: `latency_ms`, the mean time a frame written
//! waits before the card takes it (frames written less frames played,
//! sampled after every write: rumpsound's `AUDIO_PLAY_INFO`, ALSA's
//! `DELAY`); `cpu_per_s`, the whole guest's busy CPU seconds per second of
//! audio (`/proc/stat`: the kernel driver's interrupt work counts as
//! rumpsound's does); `own_cpu_per_s`, this process's alone; `irqs_per_s`, interrupts per second of audio
//! (`/proc/interrupts`, all lines); `wakeups_per_s`, this process's
//! context switches per second of audio; `seconds`, the wall time.

#![allow(clippy::cast_precision_loss)]

#[cfg(target_os = "linux")]
mod bench {
    use std::time::Instant;

    /// Bytes per write.
    const CHUNK: usize = 16 << 10;
    const RATE: u32 = 48_000;
    /// Bytes per frame: stereo s16le.
    const FRAME: usize = 4;

    fn fail(what: &str) -> ! {
        println!("BENCH FAIL {what}");
        std::process::exit(1)
    }

    /// `seconds` of a 440 Hz tone, stereo s16le.
    fn tone(seconds: f64) -> Vec<u8> {
        let frames = (seconds * f64::from(RATE)) as usize;
        (0..frames)
            .flat_map(|f| {
                let v = (8000.0
                    * (std::f64::consts::TAU * 440.0 * f as f64 / f64::from(RATE)).sin())
                    as i16;
                [v.to_le_bytes(), v.to_le_bytes()].concat()
            })
            .collect()
    }

    /// Busy and total CPU ticks of the whole guest.
    fn cpu_ticks() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let t: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: u64 = t.iter().sum();
        // idle and iowait
        let idle = t.get(3).copied().unwrap_or(0) + t.get(4).copied().unwrap_or(0);
        (total - idle, total)
    }

    fn interrupts() -> u64 {
        std::fs::read_to_string("/proc/interrupts")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .flat_map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .take_while(|w| w.bytes().all(|b| b.is_ascii_digit()))
                    .filter_map(|w| w.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// This process's user and system CPU seconds.
    fn own_cpu() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |r| r.1);
        let ticks: f64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<f64>().ok())
            .sum();
        // SAFETY: sysconf reads a system constant.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    fn switches() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    /// Plays `data` with `write` (a chunk; returns the frames queued but
    /// not played just after) and prints the figures.
    fn measure(data: &[u8], mut write: impl FnMut(&[u8]) -> u64, end: impl FnOnce()) {
        let seconds = (data.len() / FRAME) as f64 / f64::from(RATE);
        let (b0, t0) = cpu_ticks();
        let (i0, s0, c0) = (interrupts(), switches(), own_cpu());
        let start = Instant::now();
        let mut waits = Vec::new();
        for c in data.chunks(CHUNK) {
            waits.push(write(c));
        }
        end();
        let wall = start.elapsed().as_secs_f64();
        let (b1, t1) = cpu_ticks();
        let (i1, s1, c1) = (interrupts(), switches(), own_cpu());
        // Past the first ring's worth the writer is paced: the mean there.
        let steady = &waits[waits.len().min(8)..];
        let latency =
            steady.iter().sum::<u64>() as f64 / steady.len().max(1) as f64 / f64::from(RATE) * 1e3;
        // Busy share of all CPUs' ticks, as CPU seconds per audio second.
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
        let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cpus * wall;
        println!(
            "BENCH latency_ms={latency:.1} cpu_per_s={:.3} own_cpu_per_s={:.3} irqs_per_s={:.0} \
             wakeups_per_s={:.0} seconds={wall:.3}",
            busy / seconds,
            (c1 - c0) / seconds,
            (i1 - i0) as f64 / seconds,
            (s1 - s0) as f64 / seconds
        );
    }

    fn rumpsound(pci: &str, data: &[u8]) {
        use std::sync::Arc;

        use machdev::{Mode, PoolConfig};
        use mig_bindings::device::Client;
        use rumpsound::device::{Card, Cards};
        use rumpsound::pcm::{AUDIO_DRAIN, AUDIO_FORMAT, AUDIO_PLAY_INFO, Format, Sample};

        let address = pci.parse().unwrap_or_else(|_| fail("not a PCI address"));
        let card = rumpsound::virtio::VirtioSound::open(address)
            .unwrap_or_else(|e| fail(&format!("open {pci}: {e}")));
        let driver: Arc<dyn machdev::Driver> =
            Arc::new(Cards::new(vec![Card::new(card.playback(), card.capture())]));
        let local = machdev::loopback::LocalServer::start(vec![driver], PoolConfig::default())
            .unwrap_or_else(|e| fail(&format!("server: {e}")));
        let (task, master) = local.client().unwrap_or_else(|e| fail(&e.to_string()));
        let c = Client::new(&task);
        let dev = c
            .open(master, Mode::WRITE, "audio0")
            .unwrap_or_else(|e| fail(&e.to_string()));
        c.set_status(
            dev,
            AUDIO_FORMAT,
            &Format::new(RATE, 2, Sample::S16Le).to_words(),
        )
        .unwrap_or_else(|e| fail(&e.to_string()));
        let mut written = 0u64;
        measure(
            data,
            |chunk| {
                c.write(dev, 0, chunk)
                    .unwrap_or_else(|e| fail(&e.to_string()));
                written += (chunk.len() / FRAME) as u64;
                let w = c
                    .get_status(dev, AUDIO_PLAY_INFO, 6)
                    .unwrap_or_else(|e| fail(&e.to_string()));
                let played = u64::from(w[0] as u32) | (u64::from(w[1] as u32) << 32);
                written.saturating_sub(played)
            },
            || {
                c.set_status(dev, AUDIO_DRAIN, &[])
                    .unwrap_or_else(|e| fail(&e.to_string()));
            },
        );
    }

    /// ALSA's `struct snd_pcm_hw_params` (x86-64).
    #[repr(C)]
    struct HwParams {
        flags: u32,
        masks: [[u32; 8]; 3],
        mres: [[u32; 8]; 5],
        intervals: [[u32; 3]; 12],
        ires: [[u32; 3]; 9],
        rmask: u32,
        cmask: u32,
        info: u32,
        msbits: u32,
        rate_num: u32,
        rate_den: u32,
        fifo_size: u64,
        reserved: [u8; 64],
    }

    #[repr(C)]
    struct Xferi {
        result: i64,
        buf: *const u8,
        frames: u64,
    }

    const HW_PARAMS: u64 = 0xc260_4111;
    const PREPARE: u64 = 0x4140;
    const DRAIN: u64 = 0x4144;
    const DELAY: u64 = 0x8008_4121;
    const WRITEI_FRAMES: u64 = 0x4018_4150;

    fn ioctl<T>(fd: i32, req: u64, arg: *mut T, what: &str) {
        // SAFETY: the argument type matches the request, as ALSA's
        // headers define it.
        if unsafe { libc::ioctl(fd, req, arg) } < 0 {
            fail(&format!("{what}: {}", std::io::Error::last_os_error()));
        }
    }

    fn alsa(device: &str, data: &[u8]) {
        use std::os::fd::AsRawFd;

        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .unwrap_or_else(|e| fail(&format!("{device}: {e}")));
        let fd = f.as_raw_fd();
        // Everything allowed, then narrowed: interleaved read/write access,
        // S16_LE, two channels, 48 kHz, 960-frame periods, eight of them.
        // SAFETY: plain integers.
        let mut p: HwParams = unsafe { std::mem::zeroed() };
        for m in &mut p.masks {
            *m = [u32::MAX; 8];
        }
        for i in &mut p.intervals {
            *i = [0, u32::MAX, 0];
        }
        let one = |bit: u32| {
            let mut m = [0u32; 8];
            m[(bit / 32) as usize] = 1 << (bit % 32);
            m
        };
        p.masks[0] = one(3); // SNDRV_PCM_ACCESS_RW_INTERLEAVED
        p.masks[1] = one(2); // SNDRV_PCM_FORMAT_S16_LE
        p.masks[2] = one(0); // SNDRV_PCM_SUBFORMAT_STD
        let exact = |v: u32| [v, v, 1 << 2]; // integer
        p.intervals[10 - 8] = exact(2); // CHANNELS
        p.intervals[11 - 8] = exact(RATE); // RATE
        p.intervals[13 - 8] = exact(RATE / 50); // PERIOD_SIZE
        p.intervals[15 - 8] = exact(8); // PERIODS
        p.rmask = u32::MAX;
        ioctl(fd, HW_PARAMS, &raw mut p, "HW_PARAMS");
        ioctl(fd, PREPARE, std::ptr::null_mut::<u8>(), "PREPARE");
        measure(
            data,
            |chunk| {
                let mut x = Xferi {
                    result: 0,
                    buf: chunk.as_ptr(),
                    frames: (chunk.len() / FRAME) as u64,
                };
                ioctl(fd, WRITEI_FRAMES, &raw mut x, "WRITEI_FRAMES");
                let mut delay = 0i64;
                ioctl(fd, DELAY, &raw mut delay, "DELAY");
                delay.max(0) as u64
            },
            || ioctl(fd, DRAIN, std::ptr::null_mut::<u8>(), "DRAIN"),
        );
    }

    pub fn main() {
        env_logger::init();
        let args: Vec<String> = std::env::args().collect();
        let [_, mode, target, seconds] = &args[..] else {
            fail("usage: sound-bench rumpsound PCI SECONDS | alsa DEVICE SECONDS");
        };
        let seconds: f64 = seconds.parse().unwrap_or_else(|_| fail("SECONDS"));
        let data = tone(seconds);
        match mode.as_str() {
            "rumpsound" => rumpsound(target, &data),
            "alsa" => alsa(target, &data),
            _ => fail("mode: rumpsound or alsa"),
        }
    }
}

#[cfg(target_os = "linux")]
fn main() {
    bench::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {}
