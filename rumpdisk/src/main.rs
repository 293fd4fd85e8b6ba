//! rumpdisk: the disk translator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use machdev::{BootOptions, OptionArgs, PoolConfig};
use rumpdisk::device::Disks;
use rumpdisk::disk::Disk;
use rumpdisk::image::{Cache, Image};
use rumpdisk::virtio::VirtioDisk;

const HELP: &str = "\
Usage: rumpdisk [OPTION...]
Serve disks over the Mach device interface.

  -h, --host-priv-port=PORT  Host privileged port (bootstrap chain)
  -d, --device-master-port=PORT
                             Device master that names this translator does
                             not serve are forwarded to
  -N, --next-task=TASK       Next task of the bootstrap chain, resumed with
                             this translator's control port
      --image=NAME=PATH      Serve the host file or block device PATH as
                             device NAME (e.g. wd0=/srv/disk.img); repeatable
      --virtio=NAME=PCI      Drive the virtio-blk PCI function PCI
                             (DDDD:BB:DD.F) natively and serve it as NAME
                             (e.g. vd0=0000:00:05.0); repeatable
      --netbsd=NAME          Serve the NetBSD kernel's disk NAME (wd0, ld0, sd0 ...;
                             opened as /dev/rNAMEd); needs a rump kernel
      --netbsd-pci=PCI       Give the PCI function PCI (DDDD:BB:DD.F) to the
                             NetBSD kernel's bus, for its disk drivers
                             (--netbsd ld0, wd0 ...); repeatable
      --pci-dma=MODE         How PCI devices address DMA memory: iommu
                             (default on Linux) or physical (devices that
                             bypass the IOMMU, e.g. QEMU's legacy virtio)
      --netbsd-image=NAME=PATH
                             Attach PATH to the NetBSD kernel with etfs and
                             serve it through the kernel's disk layer as NAME
      --read-only            Serve the images read-only
      --cache=MODE           How images use the host's page cache: writeback
                             (default), none (Linux direct I/O, as QEMU's
                             cache=none) or evict (Linux: through the page
                             cache, pages dropped once used, as nbdkit's
                             cache=none)
      --threads=N            At most N server threads (default 64)
      --nbd-unix=PATH        (Linux) Also serve the disks over NBD on the Unix
                             socket PATH; export names are device names
      --nbd-port=PORT        (Linux) Also serve NBD on 127.0.0.1:PORT
      --ctl=COMMANDS         (Linux) Run device-interface commands against the
                             server: size NAME; write NAME OFF LEN BYTE;
                             read NAME OFF LEN; verify NAME OFF LEN BYTE;
                             flush NAME
      --exit                 (Linux) Exit after --ctl instead of serving
  -?, --help                 Give this help list
  -V, --version              Print program version

Logging: RUST_LOG=debug.
";

#[derive(Debug, Default)]
struct Options {
    boot: BootOptions,
    images: Vec<(String, PathBuf)>,
    virtio: Vec<(String, hypercall::pci::Address)>,
    pci_dma: Option<hypercall::pci::DmaAddressing>,
    netbsd: Vec<String>,
    netbsd_pci: Vec<hypercall::pci::Address>,
    netbsd_images: Vec<(String, PathBuf)>,
    read_only: bool,
    cache: Cache,
    threads: Option<usize>,
    nbd_unix: Option<PathBuf>,
    nbd_port: Option<u16>,
    ctl: Option<String>,
    exit: bool,
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
        if args.common(HELP, "rumpdisk", env!("CARGO_PKG_VERSION"), &mut o.threads)? {
            continue;
        }
        match key.as_str() {
            "--image" => {
                let v = args.value()?;
                let (name, path) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--image {v:?}: expected NAME=PATH"))?;
                if name.is_empty() || name.len() > 127 {
                    return Err(format!("--image {v:?}: bad device name"));
                }
                o.images.push((name.to_owned(), PathBuf::from(path)));
            }
            "--virtio" => {
                let v = args.value()?;
                let (name, pci) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--virtio {v:?}: expected NAME=DDDD:BB:DD.F"))?;
                let address = pci.parse().map_err(|_| {
                    format!("--virtio {v:?}: {pci:?} is not a PCI address DDDD:BB:DD.F")
                })?;
                o.virtio.push((name.to_owned(), address));
            }
            "--netbsd" => o.netbsd.push(args.value()?),
            "--pci-dma" => o.pci_dma = Some(args.parsed("expected iommu or physical")?),
            "--netbsd-pci" => o
                .netbsd_pci
                .push(args.parsed("not a PCI address DDDD:BB:DD.F")?),
            "--netbsd-image" => {
                let v = args.value()?;
                let (name, path) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--netbsd-image {v:?}: expected NAME=PATH"))?;
                o.netbsd_images.push((name.to_owned(), PathBuf::from(path)));
            }
            "--read-only" => o.read_only = true,
            "--cache" => o.cache = args.value()?.parse()?,
            "--nbd-unix" => o.nbd_unix = Some(PathBuf::from(args.value()?)),
            "--nbd-port" => {
                o.nbd_port = Some(
                    args.value()?
                        .parse()
                        .map_err(|_| "--nbd-port: not a port")?,
                );
            }
            "--ctl" => o.ctl = Some(args.value()?),
            "--exit" => o.exit = true,
            other => return Err(format!("unrecognized option '{other}'")),
        }
    }
    Ok(o)
}

fn open_disks(o: &Options) -> Result<Arc<Disks>, String> {
    // Before any device or DMA memory exists.
    if let Some(a) = o.pci_dma {
        hypercall::pci::set_dma_addressing(a).map_err(|e| format!("--pci-dma: {e}"))?;
    }
    let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
    for (name, path) in &o.images {
        let img = Image::open(path, o.read_only, o.cache).map_err(|e| e.to_string())?;
        add_disk(&mut disks, name, Arc::new(img))?;
    }
    for (name, address) in &o.virtio {
        let d = VirtioDisk::open(*address).map_err(|e| format!("{name} ({address}): {e}"))?;
        add_disk(&mut disks, name, Arc::new(d))?;
    }
    add_netbsd_disks(o, &mut disks)?;
    if disks.is_empty() {
        return Err(
            "no disks to serve (give --image NAME=PATH, --virtio NAME=PCI, --netbsd NAME or \
             --netbsd-image NAME=PATH)"
                .to_owned(),
        );
    }
    Ok(Arc::new(Disks::new(disks)))
}

/// Adds disk `name`, which must not be given already.
fn add_disk(
    disks: &mut BTreeMap<String, Arc<dyn Disk>>,
    name: &str,
    disk: Arc<dyn Disk>,
) -> Result<(), String> {
    match disks.insert(name.to_owned(), disk) {
        Some(_) => Err(format!("device {name} given twice")),
        None => Ok(()),
    }
}

#[cfg(rump_kernel)]
fn add_netbsd_disks(
    o: &Options,
    disks: &mut BTreeMap<String, Arc<dyn Disk>>,
) -> Result<(), String> {
    use rumpdisk::netbsd::{NetbsdDisk, raw_device};

    if o.netbsd.is_empty() && o.netbsd_images.is_empty() {
        return Ok(());
    }
    // The kernel's PCI bus holds what was given, nothing else (without
    // --netbsd-pci, RUMP_PCI_DEVICES).
    let kernel =
        rump::Rump::init_with_pci(&o.netbsd_pci).map_err(|e| format!("NetBSD kernel: {e}"))?;
    for name in &o.netbsd {
        let d = NetbsdDisk::open(kernel, &raw_device(name), o.read_only)
            .map_err(|e| format!("{name}: {e}"))?;
        add_disk(disks, name, Arc::new(d))?;
    }
    for (name, path) in &o.netbsd_images {
        let d = NetbsdDisk::attach_image(kernel, name, path, o.read_only)
            .map_err(|e| format!("{name}: {e}"))?;
        add_disk(disks, name, Arc::new(d))?;
    }
    Ok(())
}

#[cfg(not(rump_kernel))]
fn add_netbsd_disks(
    o: &Options,
    _disks: &mut BTreeMap<String, Arc<dyn Disk>>,
) -> Result<(), String> {
    if o.netbsd.is_empty() && o.netbsd_images.is_empty() && o.netbsd_pci.is_empty() {
        Ok(())
    } else {
        Err(
            "this rumpdisk was built without a NetBSD rump kernel (build with RUMP_PREFIX set)"
                .to_owned(),
        )
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    machdev::translator_main("rumpdisk", parse, run)
}

fn pool(o: &Options) -> PoolConfig {
    PoolConfig::with_max_threads(o.threads)
}

#[cfg(target_os = "linux")]
fn run(o: &Options) -> Result<(), String> {
    o.boot.none_outside_mach()?;
    let disks = open_disks(o)?;
    // On Linux the device interface is served inside this process, on the
    // loopback kernel; NBD serves other processes.
    let driver: Arc<dyn machdev::Driver> = disks.clone();
    let local = machdev::loopback::LocalServer::start(vec![driver], pool(o))
        .map_err(|e| format!("device server: {e}"))?;
    log::info!("serving {disks:?} over the device interface");
    if let Some(script) = &o.ctl {
        rumpdisk::ctl::run_local(&local, script)?;
        if o.exit {
            return Ok(());
        }
    }
    // After --ctl: the socket appears once the commands are done.
    if let Some(path) = &o.nbd_unix {
        rumpdisk::nbd::serve_unix_in_background(Arc::clone(&disks), path)
            .map_err(|e| format!("NBD on {}: {e}", path.display()))?;
        log::info!("NBD on unix:{}", path.display());
    }

    match o.nbd_port {
        Some(port) => rumpdisk::nbd::serve(&disks, &rumpdisk::nbd::Listen::Loopback(port))
            .map_err(|e| e.to_string()),
        None => loop {
            std::thread::park();
        },
    }
}

#[cfg(target_os = "hurd")]
fn run(o: &Options) -> Result<(), String> {
    use machdev::sys::hurd;

    if o.ctl.is_some() || o.nbd_unix.is_some() || o.nbd_port.is_some() {
        return Err("--ctl and NBD are Linux front ends".to_owned());
    }
    let disks = open_disks(o)?;
    let driver: Arc<dyn machdev::Driver> = disks;
    hurd::serve_translator("rumpdisk", vec![driver], &o.boot, pool(o)).map(|never| match never {})
}
