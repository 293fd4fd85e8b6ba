//! rumpnet: the network translator.

use std::process::ExitCode;
use std::sync::Arc;

use machdev::{BootOptions, OptionArgs, PoolConfig};
use rumpnet::device::{Interface, Interfaces};
use rumpnet::nic::Nic;
use rumpnet::virtio::VirtioNic;

const HELP: &str = "\
Usage: rumpnet [OPTION...]
Serve network interfaces over the Mach device interface, with GNU Mach's
packet filters (NETF and BPF) for many clients at once.

  -h, --host-priv-port=PORT  Host privileged port (bootstrap chain)
  -d, --device-master-port=PORT
                             Device master that names this translator does
                             not serve are forwarded to
  -N, --next-task=TASK       Next task of the bootstrap chain, resumed with
                             this translator's control port
      --virtio=PCI           Drive the virtio-net PCI function PCI
                             (DDDD:BB:DD.F) natively (named vioif0,
                             vioif1 ...); repeatable
      --netbsd=IF            Serve the NetBSD kernel's interface IF (wm0,
                             vioif0 ...; needs a rump kernel); repeatable
      --netbsd-pci=PCI       Give the PCI function PCI (DDDD:BB:DD.F) to the
                             NetBSD kernel, whose drivers attach it; repeatable
      --pci-dma=MODE         How PCI devices address DMA memory: iommu
                             (default on Linux) or physical
      --tap=NAME=IFACE       (Linux) Join interface NAME (eth0, vioif0 ...)
                             to the host TAP interface IFACE, created if
                             needed (needs CAP_NET_ADMIN): the host's stack
                             becomes a client of the NIC; repeatable
      --threads=N            At most N server threads (default 64)

Interfaces are eth0, eth1 ... in the order --virtio and --netbsd give
them, and also go by their own names.
  -?, --help                 Give this help list
  -V, --version              Print program version

Device interface: device_open (eth0, vioif0 ...), device_write and
device_write_inband (one Ethernet frame), device_set_filter (NETF and BPF
programs; priority NET_HI_PRI and up takes frames exclusively),
device_get_status (NET_STATUS, NET_ADDRESS, NET_FLAGS), device_set_status
(NET_FLAGS: IFF_UP, IFF_PROMISC, IFF_ALLMULTI). Other calls, device_read
included, answer D_INVALID_OPERATION, as GNU Mach's network drivers do.

Logging: RUST_LOG=debug.
";

/// Where an interface comes from.
#[derive(Debug)]
enum Backend {
    Virtio(hypercall::pci::Address),
    Netbsd(String),
}

#[derive(Debug, Default)]
struct Options {
    boot: BootOptions,
    interfaces: Vec<Backend>,
    netbsd_pci: Vec<hypercall::pci::Address>,
    pci_dma: Option<hypercall::pci::DmaAddressing>,
    taps: Vec<(String, String)>,
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
        if args.common(HELP, "rumpnet", env!("CARGO_PKG_VERSION"), &mut o.threads)? {
            continue;
        }
        match key.as_str() {
            "--virtio" => o.interfaces.push(Backend::Virtio(
                args.parsed("not a PCI address DDDD:BB:DD.F")?,
            )),
            "--netbsd" => o.interfaces.push(Backend::Netbsd(args.value()?)),
            "--netbsd-pci" => o
                .netbsd_pci
                .push(args.parsed("not a PCI address DDDD:BB:DD.F")?),
            "--pci-dma" => o.pci_dma = Some(args.parsed("expected iommu or physical")?),
            "--tap" => {
                let v = args.value()?;
                let (name, iface) = v
                    .split_once('=')
                    .filter(|(n, i)| !n.is_empty() && !i.is_empty())
                    .ok_or_else(|| format!("--tap {v:?}: expected NAME=IFACE"))?;
                o.taps.push((name.to_owned(), iface.to_owned()));
            }
            other => return Err(format!("unrecognized option '{other}'")),
        }
    }
    Ok(o)
}

fn open_interfaces(o: &Options) -> Result<Arc<Interfaces>, String> {
    // Before any device or DMA memory exists.
    if let Some(a) = o.pci_dma {
        hypercall::pci::set_dma_addressing(a).map_err(|e| format!("--pci-dma: {e}"))?;
    }
    if !o.netbsd_pci.is_empty() && !o.interfaces.iter().any(|b| matches!(b, Backend::Netbsd(_))) {
        return Err(
            "--netbsd-pci gives functions to the NetBSD kernel: name its interfaces \
                    with --netbsd IF"
                .to_owned(),
        );
    }
    let mut list = Vec::new();
    for backend in &o.interfaces {
        let (nic, what): (Arc<dyn Nic>, String) = match backend {
            Backend::Virtio(address) => (
                Arc::new(VirtioNic::open(*address).map_err(|e| format!("{address}: {e}"))?),
                address.to_string(),
            ),
            Backend::Netbsd(name) => (netbsd_nic(o, name)?, name.clone()),
        };
        list.push(Interface::start(nic).map_err(|e| format!("{what}: {e}"))?);
    }
    if list.is_empty() {
        return Err("no interfaces to serve (give --virtio PCI or --netbsd IF)".to_owned());
    }
    let interfaces = Interfaces::new(list)?;
    for iface in interfaces.list() {
        let mac = iface.nic().mac();
        log::info!(
            "{}: {}",
            iface.nic().name(),
            mac.map(|b| format!("{b:02x}")).join(":")
        );
    }
    Ok(Arc::new(interfaces))
}

/// The NetBSD kernel's interface `name`, the kernel booted on first use
/// with the `--netbsd-pci` functions on its bus.
#[cfg(rump_kernel)]
fn netbsd_nic(o: &Options, name: &str) -> Result<Arc<dyn Nic>, String> {
    let kernel =
        rump::Rump::init_with_pci(&o.netbsd_pci).map_err(|e| format!("NetBSD kernel: {e}"))?;
    let nic = rumpnet::netbsd::NetbsdNic::open(kernel, name).map_err(|e| format!("{name}: {e}"))?;
    Ok(Arc::new(nic))
}

#[cfg(not(rump_kernel))]
fn netbsd_nic(_: &Options, name: &str) -> Result<Arc<dyn Nic>, String> {
    Err(format!(
        "--netbsd {name}: this rumpnet was built without a NetBSD rump kernel (build it with \
         RUMP_PREFIX set to one)"
    ))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    machdev::translator_main("rumpnet", parse, run)
}

fn pool(o: &Options) -> PoolConfig {
    PoolConfig::with_max_threads(o.threads)
}

#[cfg(target_os = "linux")]
fn run(o: &Options) -> Result<(), String> {
    o.boot.none_outside_mach()?;
    let interfaces = open_interfaces(o)?;
    for (name, host) in &o.taps {
        let iface = interfaces
            .get(name)
            .ok_or_else(|| format!("--tap {name}={host}: no interface {name}"))?;
        let tap = rumpnet::tap::Tap::open(host, iface.nic().mac()).map_err(|e| e.to_string())?;
        tap.join(iface)?;
        log::info!("{name} joined to the host's {host}");
    }
    // On Linux the device interface is served inside this process, on the
    // loopback kernel; the TAP front end serves the host.
    let driver: Arc<dyn machdev::Driver> = interfaces;
    let _local = machdev::loopback::LocalServer::start(vec![driver], pool(o))
        .map_err(|e| format!("device server: {e}"))?;
    log::info!("serving");
    loop {
        std::thread::park();
    }
}

#[cfg(target_os = "hurd")]
fn run(o: &Options) -> Result<(), String> {
    use machdev::sys::hurd;

    if !o.taps.is_empty() {
        return Err("--tap is a Linux front end".to_owned());
    }
    let interfaces = open_interfaces(o)?;
    let driver: Arc<dyn machdev::Driver> = interfaces;
    hurd::serve_translator("rumpnet", vec![driver], &o.boot, pool(o)).map(|never| match never {})
}
