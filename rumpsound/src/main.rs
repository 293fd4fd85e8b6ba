//! rumpsound: the sound translator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use machdev::{BootOptions, OptionArgs, PoolConfig};
use rumpsound::device::{Card, Cards};
use rumpsound::virtio::VirtioSound;

const HELP: &str = "\
Usage: rumpsound [OPTION...]
Serve sound cards as Mach devices (audio0, audio1 ...) that programs write
PCM to and read PCM from. Cards are numbered in the order --virtio and
--netbsd give them.

  -h, --host-priv-port=PORT  Host privileged port (bootstrap chain)
  -d, --device-master-port=PORT
                             Device master that names this translator does
                             not serve are forwarded to
  -N, --next-task=TASK       Next task of the bootstrap chain, resumed with
                             this translator's control port
      --virtio=PCI           Drive the virtio-sound PCI function PCI
                             (DDDD:BB:DD.F) natively; repeatable
      --netbsd=CARD          Serve the NetBSD kernel's card CARD (audio0 ...;
                             playback; needs a rump kernel); repeatable
      --netbsd-pci=PCI       Give the PCI function PCI (DDDD:BB:DD.F) to the
                             NetBSD kernel, whose drivers (hdaudio, auich)
                             attach it; repeatable
      --pci-dma=MODE         How PCI devices address DMA memory: iommu
                             (default on Linux) or physical
      --play=FILE            (Linux) Play the WAV file FILE (u8, s16 or s32
                             PCM) on audio0 through the device interface,
                             print the counters and exit
      --record=FILE          (Linux) Record --seconds of audio0's capture
                             into the WAV file FILE (s16le, --rate,
                             --channels) and exit
      --seconds=N            How long --record records (default 1)
      --rate=HZ              --record's rate (default 48000)
      --channels=N           --record's channels (default 2)
      --threads=N            At most N server threads (default 64)
  -?, --help                 Give this help list
  -V, --version              Print program version

Device interface: device_open (audio0 ...: D_WRITE takes the playback
stream, D_READ the capture stream, one opener each, else D_ALREADY_OPEN),
device_write and device_write_inband (whole frames, paced by the card),
device_read and device_read_inband (captured frames), device_set_status
and device_get_status with the flavors AUDIO_FORMAT 0x6101, AUDIO_CAPS
0x6102, AUDIO_PLAY_INFO 0x6103, AUDIO_RECORD_INFO 0x6104, AUDIO_DRAIN
0x6105 and AUDIO_MIXER 0x6106 (docs/rumpsound.md). A format the card
cannot do answers D_INVALID_OPERATION (no resampling). Other calls
answer D_INVALID_OPERATION.

Logging: RUST_LOG=debug.
";

/// Where a card comes from.
#[derive(Debug)]
enum Backend {
    Virtio(hypercall::pci::Address),
    Netbsd(u32),
}

#[derive(Debug, Default)]
struct Options {
    boot: BootOptions,
    cards: Vec<Backend>,
    netbsd_pci: Vec<hypercall::pci::Address>,
    pci_dma: Option<hypercall::pci::DmaAddressing>,
    play: Option<PathBuf>,
    record: Option<PathBuf>,
    seconds: Option<f64>,
    rate: Option<u32>,
    channels: Option<u8>,
    threads: Option<usize>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let (boot, rest) = BootOptions::parse(args)?;
    let mut o = Options {
        boot,
        ..Options::default()
    };
    let mut args = OptionArgs::new(rest);
    while let Some(key) = args.next_key() {
        let key = key.to_owned();
        if args.common(HELP, "rumpsound", env!("CARGO_PKG_VERSION"), &mut o.threads)? {
            continue;
        }
        match key.as_str() {
            "--virtio" => o.cards.push(Backend::Virtio(
                args.parsed("not a PCI address DDDD:BB:DD.F")?,
            )),
            "--netbsd" => {
                let v = args.value()?;
                let unit = v
                    .strip_prefix("audio")
                    .and_then(|u| u.parse().ok())
                    .ok_or_else(|| format!("--netbsd {v:?}: expected audioN"))?;
                o.cards.push(Backend::Netbsd(unit));
            }
            "--netbsd-pci" => o
                .netbsd_pci
                .push(args.parsed("not a PCI address DDDD:BB:DD.F")?),
            "--pci-dma" => o.pci_dma = Some(args.parsed("expected iommu or physical")?),
            "--play" => o.play = Some(PathBuf::from(args.value()?)),
            "--record" => o.record = Some(PathBuf::from(args.value()?)),
            "--seconds" => {
                let s: f64 = args.parsed("expected seconds")?;
                if !(s > 0.0 && s <= 3600.0) {
                    return Err(format!("--seconds {s}: from 0 to 3600"));
                }
                o.seconds = Some(s);
            }
            "--rate" => o.rate = Some(args.parsed("expected a rate in Hz")?),
            "--channels" => o.channels = Some(args.parsed("expected a channel count")?),
            other => return Err(format!("unrecognized option '{other}'")),
        }
    }
    if o.play.is_some() && o.record.is_some() {
        return Err("--play and --record: one at a time".to_owned());
    }
    Ok(o)
}

fn open_cards(o: &Options) -> Result<Arc<Cards>, String> {
    // Before any device or DMA memory exists.
    if let Some(a) = o.pci_dma {
        hypercall::pci::set_dma_addressing(a).map_err(|e| format!("--pci-dma: {e}"))?;
    }
    if !o.netbsd_pci.is_empty() && !o.cards.iter().any(|b| matches!(b, Backend::Netbsd(_))) {
        return Err(
            "--netbsd-pci gives functions to the NetBSD kernel: name its cards with --netbsd \
             audioN"
                .to_owned(),
        );
    }
    let mut cards = Vec::new();
    for backend in &o.cards {
        cards.push(match backend {
            Backend::Virtio(address) => {
                let card = VirtioSound::open(*address).map_err(|e| format!("{address}: {e}"))?;
                Card::new(card.playback(), card.capture())
            }
            Backend::Netbsd(unit) => netbsd_card(o, *unit)?,
        });
    }
    if cards.is_empty() {
        return Err("no sound cards to serve (give --virtio PCI or --netbsd audioN)".to_owned());
    }
    Ok(Arc::new(Cards::new(cards)))
}

/// The NetBSD kernel's card `unit`, the kernel booted on first use with
/// the `--netbsd-pci` functions on its bus.
#[cfg(rump_kernel)]
fn netbsd_card(o: &Options, unit: u32) -> Result<Card, String> {
    let kernel =
        rump::Rump::init_with_pci(&o.netbsd_pci).map_err(|e| format!("NetBSD kernel: {e}"))?;
    let playback = rumpsound::netbsd::NetbsdPlayback::open(kernel, unit)
        .map_err(|e| format!("NetBSD audio{unit}: {e}"))?;
    Ok(Card::new(Some(Arc::new(playback)), None))
}

#[cfg(not(rump_kernel))]
fn netbsd_card(_: &Options, unit: u32) -> Result<Card, String> {
    Err(format!(
        "--netbsd audio{unit}: this rumpsound was built without a NetBSD rump kernel (build it \
         with RUMP_PREFIX set to one)"
    ))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    machdev::translator_main("rumpsound", parse, run)
}

fn pool(o: &Options) -> PoolConfig {
    PoolConfig::with_max_threads(o.threads)
}

#[cfg(target_os = "linux")]
fn run(o: &Options) -> Result<(), String> {
    use rumpsound::pcm::{Format, Sample};

    o.boot.none_outside_mach()?;
    let cards = open_cards(o)?;
    // On Linux the device interface is served inside this process, on the
    // loopback kernel; --play and --record are its clients.
    let driver: Arc<dyn machdev::Driver> = cards;
    let local = machdev::loopback::LocalServer::start(vec![driver], pool(o))
        .map_err(|e| format!("device server: {e}"))?;
    let client = || local.client().map_err(|e| format!("device client: {e}"));
    if let Some(path) = &o.play {
        let (task, master) = client()?;
        let r = rumpsound::wav::play(&task, master, "audio0", path)?;
        println!(
            "played {} frames in {:.3} s, underruns {}, latency {} bytes",
            r.frames,
            r.elapsed.as_secs_f64(),
            r.xruns,
            r.latency_bytes
        );
        return Ok(());
    }
    if let Some(path) = &o.record {
        let (task, master) = client()?;
        let format = Format::new(
            o.rate.unwrap_or(48_000),
            o.channels.unwrap_or(2),
            Sample::S16Le,
        );
        let r = rumpsound::wav::record(
            &task,
            master,
            "audio0",
            format,
            o.seconds.unwrap_or(1.0),
            path,
        )?;
        println!(
            "recorded {} frames in {:.3} s, overruns {}",
            r.frames,
            r.elapsed.as_secs_f64(),
            r.xruns
        );
        return Ok(());
    }
    log::info!("serving");
    loop {
        std::thread::park();
    }
}

#[cfg(target_os = "hurd")]
fn run(o: &Options) -> Result<(), String> {
    use machdev::sys::hurd;

    if o.play.is_some() || o.record.is_some() {
        return Err("--play and --record are the Linux front end".to_owned());
    }
    let cards = open_cards(o)?;
    let driver: Arc<dyn machdev::Driver> = cards;
    hurd::serve_translator("rumpsound", vec![driver], &o.boot, pool(o)).map(|never| match never {})
}
