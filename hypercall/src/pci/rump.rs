//! The PCI bus a rump kernel sees (`rumpcomp_pci_*`, `abi::pci`): bus 0
//! only (NetBSD's rump PCI has no bridges), built from the host functions a
//! translator hands over. Host function `i` appears as slot `i / 8`,
//! function `i % 8` (function 0 of a slot with more says multi-function),
//! so up to 256 functions fit, not 32.
//!
//! A function is opened on the kernel's first look at it, with memory
//! decoding and bus mastering turned on as firmware leaves them.
//!
//! Interrupts run on a host thread bound to a kernel LWP: wait for the host
//! notification holding no CPU, run the handler under the giant lock
//! (`hyp_backend_schedule(1)`), release, then acknowledge the line. DMA
//! memory from `dmalloc` is contiguous for the device and below 4 GiB;
//! `virt_to_mach` of any other kernel memory identity-maps (Linux: IOVA =
//! address) the pages from that byte up to `MAXPHYS` on first use and keeps
//! them mapped, because rump's `bus_dmamap_load` merges virtually adjacent
//! pages into one segment and translates only its first byte.

use std::collections::BTreeMap;
use std::ffi::{c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Address, Device, DmaBuffer, Interrupt, PAGE};
use crate::errno::{HyResult, NetbsdErrno, nb};
use crate::sched;

/// NetBSD's `MAXPHYS`: the largest transfer a driver maps at once.
const MAXPHYS: usize = 64 * 1024;

/// The bus: functions in slot order, opened on first use.
#[derive(Default)]
struct Bus {
    functions: Vec<(Address, Option<Arc<Device>>)>,
    /// `pci_intr_map` cookies → function index.
    cookies: BTreeMap<u32, usize>,
    /// `dmalloc` allocations by address.
    dma: BTreeMap<usize, DmaBuffer>,
}

static BUS: Mutex<Option<Bus>> = Mutex::new(None);

/// Configuration reads the kernel made (its bus probe shows here).
static CONF_READS: AtomicU64 = AtomicU64::new(0);

/// How many `rumpcomp_pci_confread` calls the kernel made so far.
#[must_use]
pub fn conf_reads() -> u64 {
    CONF_READS.load(Ordering::Relaxed)
}

/// Hands `functions` to the rump kernel's bus, before `rump_init`. Without
/// a call, `RUMP_PCI_DEVICES` (comma-separated `DDDD:BB:DD.F`) is read at
/// the first PCI hypercall; with neither, the bus is empty.
///
/// # Errors
/// `EINVAL` for more than 256 functions.
pub fn attach(functions: &[Address]) -> HyResult<()> {
    if functions.len() > 256 {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    *BUS.lock() = Some(Bus {
        functions: functions.iter().map(|a| (*a, None)).collect(),
        ..Bus::default()
    });
    Ok(())
}

fn with_bus<R>(f: impl FnOnce(&mut Bus) -> R) -> R {
    let mut g = BUS.lock();
    let bus = g.get_or_insert_with(|| {
        let functions = std::env::var("RUMP_PCI_DEVICES")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .filter_map(|s| {
                let a = s.trim().parse::<Address>().ok();
                if a.is_none() {
                    log::warn!("RUMP_PCI_DEVICES: {s:?} is not DDDD:BB:DD.F; ignored");
                }
                a.map(|a| (a, None))
            })
            .take(256)
            .collect();
        Bus {
            functions,
            ..Bus::default()
        }
    });
    f(bus)
}

/// The function at virtual `(bus, dev, fun)`, opened.
fn device(bus: u32, dev: u32, fun: u32) -> HyResult<Arc<Device>> {
    if bus != 0 || dev > 31 || fun > 7 {
        return Err(NetbsdErrno(nb::ENXIO));
    }
    let index = (dev * 8 + fun) as usize;
    with_bus(|b| {
        let (address, open) = b.functions.get_mut(index).ok_or(NetbsdErrno(nb::ENXIO))?;
        if let Some(d) = open {
            return Ok(Arc::clone(d));
        }
        let d = Arc::new(Device::open(*address)?);
        // As firmware leaves a function it set up: memory decoding and bus
        // mastering on. Some NetBSD drivers (ahcisata) never turn bus
        // mastering on themselves, and the host may have turned it off
        // (VFIO resets a function when it is opened).
        if let Err(e) = d.enable() {
            log::warn!("{address}: enabling memory space and bus mastering: {e}");
        }
        *open = Some(Arc::clone(&d));
        Ok(d)
    })
}

/// Whether the slot of `dev` holds more than function 0.
fn multi_function(dev: u32) -> bool {
    with_bus(|b| b.functions.len() > (dev as usize) * 8 + 1)
}

/// `rumpcomp_pci_confread`: the 32-bit register `reg`; an absent function
/// reads all ones (and is an error), as the probe expects.
///
/// # Errors
/// `ENXIO` for an absent function, or the host's error.
pub fn conf_read(bus: u32, dev: u32, fun: u32, reg: u32) -> HyResult<u32> {
    CONF_READS.fetch_add(1, Ordering::Relaxed);
    let reg = u16::try_from(reg & !3).map_err(|_| NetbsdErrno(nb::EINVAL))?;
    let d = device(bus, dev, fun)?;
    let mut v = d.config_read32(reg)?;
    if reg == 0x0c && fun == 0 && multi_function(dev) {
        // Header type bit 7: the probe looks at functions 1–7.
        v |= 0x80 << 16;
    }
    Ok(v)
}

/// `rumpcomp_pci_confwrite`.
///
/// # Errors
/// `ENXIO` for an absent function, or the host's error.
pub fn conf_write(bus: u32, dev: u32, fun: u32, reg: u32, value: u32) -> HyResult<()> {
    let reg = u16::try_from(reg & !3).map_err(|_| NetbsdErrno(nb::EINVAL))?;
    device(bus, dev, fun)?.config_write32(reg, value)
}

/// `rumpcomp_pci_map`: the BAR at bus address `addr`, mapped.
#[must_use]
pub fn map(addr: u64, len: usize) -> Option<*mut u8> {
    super::bar_to_virt(addr, len)
}

/// `rumpcomp_pci_irq_map`: remembers `cookie` for the function.
///
/// # Errors
/// `ENXIO` for an absent function.
pub fn irq_map(bus: u32, dev: u32, fun: u32, cookie: u32) -> HyResult<()> {
    device(bus, dev, fun)?;
    with_bus(|b| b.cookies.insert(cookie, (dev * 8 + fun) as usize));
    Ok(())
}

/// An interrupt handler of the kernel's and its argument.
#[derive(Clone, Copy)]
pub struct Handler {
    /// The handler.
    pub func: unsafe extern "C" fn(*mut c_void) -> c_int,
    /// Its argument.
    pub arg: *mut c_void,
}

// SAFETY: the kernel hands the pair to another thread itself; it runs only
// with a CPU held, as the kernel's interrupt contract requires.
unsafe impl Send for Handler {}

/// `rumpcomp_pci_irq_establish`: starts the interrupt thread of `cookie`'s
/// function.
///
/// # Errors
/// `EINVAL` for an unknown cookie, or the host's interrupt error.
pub fn irq_establish(cookie: u32, handler: Handler) -> HyResult<()> {
    let index = with_bus(|b| b.cookies.get(&cookie).copied()).ok_or(NetbsdErrno(nb::EINVAL))?;
    let d = with_bus(|b| b.functions.get(index).and_then(|f| f.1.clone()))
        .ok_or(NetbsdErrno(nb::ENXIO))?;
    // Level-triggered INTx: NetBSD's rump PCI has no MSI.
    let irq = d.interrupt(false)?;
    std::thread::Builder::new()
        .name(format!("pci-irq{cookie}"))
        .spawn(move || interrupt_thread(&irq, handler))
        .map_err(|e| NetbsdErrno::from_io(&e))?;
    Ok(())
}

fn interrupt_thread(irq: &Interrupt, h: Handler) {
    if let Err(e) = sched::bind_host_thread() {
        log::error!("PCI interrupt thread: no LWP ({e})");
        return;
    }
    let Some(k) = sched::kernel() else { return };
    loop {
        if let Err(e) = irq.wait() {
            log::error!("PCI interrupt wait: {e}; the thread ends");
            return;
        }
        k.backend_schedule(1, std::ptr::null_mut());
        // SAFETY: the kernel's handler with its own argument, run with a
        // CPU and the giant lock as its interrupt contract wants.
        unsafe { (h.func)(h.arg) };
        let _ = k.backend_unschedule(std::ptr::null_mut());
        if let Err(e) = irq.ack() {
            log::error!("PCI interrupt acknowledge: {e}");
        }
    }
}

/// `rumpcomp_pci_dmalloc`: `size` bytes contiguous for the device, aligned
/// to `align`, below 4 GiB. Returns (bus address, process address).
///
/// # Errors
/// `ENOMEM`, or `ENXIO` before any device is open.
pub fn dmalloc(size: usize, align: usize) -> HyResult<(u64, usize)> {
    let b = DmaBuffer::new(size, align, true)?;
    let r = (b.bus_address(), b.as_ptr() as usize);
    with_bus(|bus| bus.dma.insert(r.1, b));
    Ok(r)
}

/// `rumpcomp_pci_dmafree`.
pub fn dmafree(vaddr: usize) {
    let freed = with_bus(|b| b.dma.remove(&vaddr));
    if freed.is_none() {
        log::warn!("rumpcomp_pci_dmafree of {vaddr:#x}: not from dmalloc");
    }
}

/// `rumpcomp_pci_virt_to_mach`: the bus address of kernel byte `va`
/// (identity-mapping the pages up to `MAXPHYS` from it on first use).
#[must_use]
pub fn virt_to_mach(va: usize) -> u64 {
    if let Some(bus) = super::virt_to_bus(va as *const u8) {
        return bus;
    }
    let first = va & !(PAGE - 1);
    let mut mapped = 0;
    for page in (first..va + MAXPHYS).step_by(PAGE) {
        if super::virt_to_bus(page as *const u8).is_some() {
            continue;
        }
        // SAFETY: kernel memory stays allocated while the kernel may DMA to
        // it; the mapping is kept for the rest of the process (kernel pages
        // are reused, never returned to the host).
        if unsafe { super::dma_map(page as *const u8, PAGE) }.is_err() {
            // Past the end of the process's memory.
            break;
        }
        mapped += 1;
    }
    if mapped == 0 && super::virt_to_bus(va as *const u8).is_none() {
        log::error!("rumpcomp_pci_virt_to_mach({va:#x}): not mappable for DMA");
    }
    super::virt_to_bus(va as *const u8).unwrap_or(va as u64)
}

/// `rumpcomp_pci_iospace_init`: I/O port access for the process (Linux
/// `iopl(3)`; the Hurd an `i386_io_perm` capability for every port but the
/// configuration mechanism's).
///
/// # Errors
/// The host refuses (not root).
pub fn iospace_init() -> HyResult<()> {
    super::sys::iospace_init()
}

/// Whether [`early_iospace_init`] raised the I/O privilege level.
static EARLY_IOPL: AtomicBool = AtomicBool::new(false);

/// From `rumpuser_init`, before the kernel starts any thread: with
/// functions on the bus, I/O port access for the calling thread now, which
/// every thread the kernel starts then inherits. Linux keeps `iopl` per
/// thread, inherited only by threads created after the call, and the
/// kernel's own [`iospace_init`] comes during autoconfiguration, after
/// `rump_init` started its soft-interrupt, clock and cross-call threads: a
/// soft interrupt that touched a port (vioif's receive softint notifying a
/// legacy virtio queue once its ring ran low) killed the translator with
/// `SIGSEGV`. On the Hurd the I/O permission is the task's, so nothing is
/// done early. A host that refuses is left to the kernel's own call to
/// report.
pub fn early_iospace_init() {
    if cfg!(target_os = "linux")
        && with_bus(|b| !b.functions.is_empty())
        && super::sys::iospace_init().is_ok()
    {
        EARLY_IOPL.store(true, Ordering::Release);
    }
}

/// Gives a host thread started before the kernel (bound to an LWP now, so
/// it may run drivers) the I/O port access the kernel's threads have.
pub fn thread_iospace() {
    if EARLY_IOPL.load(Ordering::Acquire) {
        let _ = super::sys::iospace_init();
    }
}
