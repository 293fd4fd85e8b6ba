//! rumpusbdisk: USB mass storage served over the Mach device interface.
//!
//! NetBSD's USB host-controller drivers (EHCI/OHCI/UHCI; xHCI in newer
//! trees), its USB stack, umass and SCSI disk driver run in the rump kernel
//! on the PCI functions given; each stick's disk is served as `sd0`,
//! `sd1` ... with the disk semantics rumpdisk has (`diskdev`). A name is
//! opened in the kernel at each `device_open`, so sticks may come and go.

use std::process::ExitCode;
use std::sync::Arc;

use machdev::{BootOptions, OptionArgs, PoolConfig};

const HELP: &str = "\
Usage: rumpusbdisk [OPTION...]
Serve USB mass-storage devices over the Mach device interface, as sd0,
sd1 ..., through NetBSD's USB host controller, umass and sd drivers.

  -h, --host-priv-port=PORT  Host privileged port (bootstrap chain)
  -d, --device-master-port=PORT
                             Device master that names this translator does
                             not serve are forwarded to
  -N, --next-task=TASK       Next task of the bootstrap chain, resumed with
                             this translator's control port
      --netbsd-pci=PCI       Give the USB host controller at PCI
                             (DDDD:BB:DD.F) to the NetBSD kernel; repeatable
      --pci-dma=MODE         How PCI devices address DMA memory: iommu
                             (default on Linux) or physical
      --read-only            Serve the disks read-only
      --threads=N            At most N server threads (default 64)
      --ctl=COMMANDS         (Linux) Run device-interface commands against the
                             server (as rumpdisk's --ctl; plus wait NAME SECS)
      --exit                 (Linux) Exit after --ctl instead of serving
  -?, --help                 Give this help list
  -V, --version              Print program version

A disk is opened in the NetBSD kernel when a client opens its name: a stick
plugged in later is served once NetBSD attached it; I/O on an open whose
stick was pulled answers D_NO_SUCH_DEVICE, and the stick opens again when
it is back.

Logging: RUST_LOG=debug; RUMP_VERBOSE=1 shows the kernel's messages.
";

#[derive(Debug, Default)]
struct Options {
    boot: BootOptions,
    netbsd_pci: Vec<hypercall::pci::Address>,
    pci_dma: Option<hypercall::pci::DmaAddressing>,
    read_only: bool,
    threads: Option<usize>,
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
        if args.common(
            HELP,
            "rumpusbdisk",
            env!("CARGO_PKG_VERSION"),
            &mut o.threads,
        )? {
            continue;
        }
        match key.as_str() {
            "--netbsd-pci" => o
                .netbsd_pci
                .push(args.parsed("not a PCI address DDDD:BB:DD.F")?),
            "--pci-dma" => o.pci_dma = Some(args.parsed("expected iommu or physical")?),
            "--read-only" => o.read_only = true,
            "--ctl" => o.ctl = Some(args.value()?),
            "--exit" => o.exit = true,
            other => return Err(format!("unrecognized option '{other}'")),
        }
    }
    Ok(o)
}

/// `sd` and a unit number.
#[cfg(any(rump_kernel, test))]
fn is_disk_name(name: &str) -> bool {
    name.strip_prefix("sd")
        .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(rump_kernel)]
fn disks(o: &Options) -> Result<Arc<dyn machdev::Driver>, String> {
    use diskdev::device::AttachedDisks;
    use diskdev::netbsd::{NetbsdDisk, raw_device};

    if let Some(a) = o.pci_dma {
        hypercall::pci::set_dma_addressing(a).map_err(|e| format!("--pci-dma: {e}"))?;
    }
    if o.netbsd_pci.is_empty() {
        return Err("no USB host controller given (--netbsd-pci PCI)".to_owned());
    }
    if !rump::USB_DMA {
        // Refused here rather than let the kernel panic on the first
        // transfer.
        return Err(format!(
            "the NetBSD kernel this rumpusbdisk was built with ({}) cannot drive a USB host \
             controller: its librumpdev_usb was built without usb_dma (NUSB_DMA 0), so \
             usbdi.c asserts on the first transfer; rebuild it with \
             CPPFLAGS.usbdi.c=-DNUSB_DMA=1 (docs/rumpusbdisk.md)",
            rump::LIB_DIR
        ));
    }
    let kernel =
        rump::Rump::init_with_pci(&o.netbsd_pci).map_err(|e| format!("NetBSD kernel: {e}"))?;
    let read_only = o.read_only;
    Ok(Arc::new(AttachedDisks::new(is_disk_name, move |name| {
        let path = raw_device(name);
        make_node(kernel, name, &path)?;
        let d = NetbsdDisk::open(kernel, &path, read_only)?;
        Ok(Arc::new(d) as Arc<dyn diskdev::disk::Disk>)
    })))
}

/// The kernel makes device nodes for `sd0` only: the raw whole-disk node of
/// another unit is made from `/dev/rsd0d`'s major, with NetBSD's minor
/// numbering (16 partitions a unit on amd64, `d` the raw one).
#[cfg(rump_kernel)]
fn make_node(kernel: rump::Rump, name: &str, path: &str) -> std::io::Result<()> {
    const MAXPARTITIONS: u32 = 16;
    const RAW_PART: u32 = 3;
    let unit: u32 = name[2..]
        .parse()
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    if unit == 0 || kernel.rdev(path).is_ok() {
        return Ok(());
    }
    let major = rump::major(kernel.rdev("/dev/rsd0d")?);
    match kernel.mknod(
        path,
        rump::S_IFCHR | 0o600,
        rump::makedev(major, unit * MAXPARTITIONS + RAW_PART),
    ) {
        // Another open made it meanwhile.
        Err(e) if e.errno().is_some_and(|e| e.0 == 17) => Ok(()),
        r => r.map_err(Into::into),
    }
}

#[cfg(not(rump_kernel))]
fn disks(_: &Options) -> Result<Arc<dyn machdev::Driver>, String> {
    Err(
        "this rumpusbdisk was built without a NetBSD rump kernel, which has the USB \
         drivers (build it with RUMP_PREFIX set to one)"
            .to_owned(),
    )
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    machdev::translator_main("rumpusbdisk", parse, run)
}

fn pool(o: &Options) -> PoolConfig {
    PoolConfig::with_max_threads(o.threads)
}

#[cfg(target_os = "linux")]
fn run(o: &Options) -> Result<(), String> {
    o.boot.none_outside_mach()?;
    let driver = disks(o)?;
    let local = machdev::loopback::LocalServer::start(vec![driver], pool(o))
        .map_err(|e| format!("device server: {e}"))?;
    log::info!("serving sd0 ... over the device interface");
    if let Some(script) = &o.ctl {
        diskdev::ctl::run_local(&local, script)?;
        if o.exit {
            return Ok(());
        }
    }
    loop {
        std::thread::park();
    }
}

#[cfg(target_os = "hurd")]
fn run(o: &Options) -> Result<(), String> {
    if o.ctl.is_some() {
        return Err("--ctl is a Linux front end".to_owned());
    }
    let driver = disks(o)?;
    machdev::sys::hurd::serve_translator("rumpusbdisk", vec![driver], &o.boot, pool(o))
        .map(|never| match never {})
}

#[cfg(test)]
mod tests {
    #[test]
    fn disk_names_are_sd_and_a_unit() {
        for ok in ["sd0", "sd1", "sd12"] {
            assert!(super::is_disk_name(ok), "{ok}");
        }
        for bad in ["sd", "sda", "wd0", "sd0a", "sd1234", ""] {
            assert!(!super::is_disk_name(bad), "{bad}");
        }
    }
}
