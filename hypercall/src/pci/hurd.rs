//! GNU/Hurd back end: the PCI arbiter (`/servers/bus/pci/DDDD/BB/DD/F/`:
//! `pci_conf_read`/`write` and `pci_get_dev_regions` on `config`, BARs by
//! mapping `regionN`, which glibc's `mmap` turns into `io_map`), the kernel's
//! "irq" device (`device_intr_register`, then `device_intr_ack` after each
//! notification), and GNU Mach's `vm_allocate_contiguous`, `vm_wire` and
//! `vm_pages_phys` for DMA memory. Bus addresses are physical addresses.
//!
//! Interrupt lines: the ACPI translator's `acpi_get_pci_irq` (the GSI its
//! routing tables give), else the configuration space's interrupt-line
//! register as the firmware programmed it.

use std::collections::BTreeMap;
use std::ffi::{CString, c_char, c_int};
use std::sync::Arc;

use mach::ipc::option;
use mach::kernel_rpc::{KernelRpc, VM_PROT_ALL};
use mach::port::{PortName, Right};
use mach::sys::hurd::HurdIpc;
use mach::{Ipc, KernReturn};
use mig_bindings::device::Client;
use mig_bindings::pci as arbiter;
use parking_lot::Mutex;

use super::{
    Address, Bar, BarKind, BarMaps, Info, Mmio, PAGE, contiguous, mmap_shared, page_span,
    range_lookup, segments,
};
use crate::errno::{HyResult, NetbsdErrno, nb};

unsafe extern "C" {
    fn file_name_lookup(name: *const c_char, flags: c_int, mode: u32) -> u32;
    fn get_privileged_ports(host_priv: *mut u32, device_master: *mut u32) -> c_int;
}

const ROOT: &str = "/servers/bus/pci";
/// `device_intr_notify`'s message id.
const INTR_NOTIFY: i32 = 100;

fn kr_err(k: KernReturn) -> NetbsdErrno {
    NetbsdErrno(match k {
        KernReturn::RESOURCE_SHORTAGE | KernReturn::NO_SPACE => nb::ENOMEM,
        KernReturn::D_NO_SUCH_DEVICE => nb::ENXIO,
        KernReturn::INVALID_ARGUMENT | KernReturn::INVALID_ADDRESS => nb::EINVAL,
        KernReturn::PROTECTION_FAILURE | KernReturn::NO_ACCESS => nb::EACCES,
        _ => nb::EIO,
    })
}

fn dir(a: Address) -> String {
    format!(
        "{ROOT}/{:04x}/{:02x}/{:02x}/{}",
        a.domain, a.bus, a.device, a.function
    )
}

/// A port for `path` (`file_name_lookup`), or the errno.
fn lookup(path: &str, flags: c_int) -> HyResult<PortName> {
    let c = CString::new(path).map_err(|_| NetbsdErrno(nb::EINVAL))?;
    // SAFETY: a NUL-terminated path.
    let port = unsafe { file_name_lookup(c.as_ptr(), flags, 0) };
    if port == 0 {
        Err(NetbsdErrno::last_os_error())
    } else {
        Ok(PortName(port))
    }
}

/// The privileged ports (host, device master), fetched once.
fn privileged() -> HyResult<(PortName, PortName)> {
    static PORTS: Mutex<Option<(PortName, PortName)>> = Mutex::new(None);
    let mut g = PORTS.lock();
    if let Some(p) = *g {
        return Ok(p);
    }
    let (mut host, mut master) = (0u32, 0u32);
    // SAFETY: two valid out-pointers.
    let r = unsafe { get_privileged_ports(&raw mut host, &raw mut master) };
    if r != 0 {
        // Not root, or not started with the privileged ports.
        return Err(NetbsdErrno(nb::EPERM));
    }
    *g = Some((PortName(host), PortName(master)));
    Ok((PortName(host), PortName(master)))
}

fn read_config(port: PortName, offset: u16, buf: &mut [u8]) -> HyResult<()> {
    let v = arbiter::conf_read(&HurdIpc, port, offset.into(), buf.len() as u64).map_err(kr_err)?;
    if v.len() != buf.len() {
        return Err(NetbsdErrno(nb::EIO));
    }
    buf.copy_from_slice(&v);
    Ok(())
}

pub(super) fn devices() -> HyResult<Vec<Info>> {
    let mut v = Vec::new();
    let walk = |p: &str| -> Vec<(String, u32)> {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        u32::from_str_radix(&n, 16).ok().map(|x| (n, x))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for (dn, domain) in walk(ROOT) {
        for (bn, bus) in walk(&format!("{ROOT}/{dn}")) {
            for (sn, device) in walk(&format!("{ROOT}/{dn}/{bn}")) {
                for (_, function) in walk(&format!("{ROOT}/{dn}/{bn}/{sn}")) {
                    let address = Address {
                        domain: domain as u16,
                        bus: bus as u8,
                        device: device as u8,
                        function: function as u8,
                    };
                    let port = lookup(&format!("{}/config", dir(address)), libc::O_RDONLY)?;
                    let mut id = [0u8; 12];
                    let r = read_config(port, 0, &mut id);
                    let _ = HurdIpc.port_deallocate(port);
                    r?;
                    let word = |i: usize| u32::from_le_bytes(id[i..i + 4].try_into().expect("4"));
                    v.push(Info {
                        address,
                        vendor: word(0) as u16,
                        device: (word(0) >> 16) as u16,
                        class: word(8) >> 8,
                    });
                }
            }
        }
    }
    Ok(v)
}

/// Open devices, DMA memory and wired buffers.
#[derive(Default)]
struct State {
    /// Contiguous allocations: address → (length, physical address).
    dma: BTreeMap<usize, (usize, u64)>,
    /// Wired buffers: start → (length, physical page addresses, users).
    mapped: BTreeMap<usize, (usize, Vec<u64>, u32)>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut g = STATE.lock();
    f(g.get_or_insert_with(State::default))
}

/// An open function.
#[derive(Debug)]
pub(super) struct Device {
    address: Address,
    config: PortName,
    bars: Vec<Bar>,
    maps: BarMaps,
}

impl Device {
    pub(super) fn open(address: Address) -> HyResult<Arc<Self>> {
        let config = lookup(&format!("{}/config", dir(address)), libc::O_RDWR)?;
        let regions = arbiter::get_dev_regions(&HurdIpc, config).map_err(kr_err);
        let regions = match regions {
            Ok(r) => r,
            Err(e) => {
                let _ = HurdIpc.port_deallocate(config);
                return Err(e);
            }
        };
        // libpciaccess's `struct pci_mem_region` as the arbiter sends it:
        // memory, bus_addr, base_addr, size (8 bytes each), then the
        // is_IO/is_prefetchable/is_64 bits; 40 bytes per region, one per
        // BAR register (a 64-bit BAR's second register has none).
        let mut bars = Vec::new();
        let mut skip = false;
        for (i, r) in regions.chunks_exact(40).take(6).enumerate() {
            let q = |o: usize| u64::from_ne_bytes(r[o..o + 8].try_into().expect("8"));
            let bits = r[32];
            if std::mem::take(&mut skip) || q(24) == 0 {
                continue;
            }
            let kind = if bits & 1 != 0 {
                BarKind::Io
            } else {
                skip = bits & 4 != 0;
                BarKind::Memory {
                    wide: skip,
                    prefetchable: bits & 2 != 0,
                }
            };
            bars.push(Bar {
                index: i as u8,
                kind,
                address: q(16),
                size: q(24),
            });
        }
        Ok(Arc::new(Self {
            address,
            config,
            bars,
            maps: BarMaps::default(),
        }))
    }

    pub(super) fn address(&self) -> Address {
        self.address
    }

    pub(super) fn config_read(&self, offset: u16, buf: &mut [u8]) -> HyResult<()> {
        read_config(self.config, offset, buf)
    }

    pub(super) fn config_write(&self, offset: u16, data: &[u8]) -> HyResult<()> {
        let n = arbiter::conf_write(&HurdIpc, self.config, offset.into(), data).map_err(kr_err)?;
        if n as usize == data.len() {
            Ok(())
        } else {
            Err(NetbsdErrno(nb::EIO))
        }
    }

    pub(super) fn bars(&self) -> &[Bar] {
        &self.bars
    }

    pub(super) fn map_bar(&self, index: u8) -> HyResult<Mmio> {
        self.maps.get(&self.bars, index, |len| {
            let path = CString::new(format!("{}/region{index}", dir(self.address)))
                .map_err(|_| NetbsdErrno(nb::EINVAL))?;
            // SAFETY: a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(NetbsdErrno::last_os_error());
            }
            // glibc asks the arbiter with io_map; the mapping keeps its own
            // reference to the memory object.
            let p = mmap_shared(fd, len, 0);
            // SAFETY: our descriptor, closed once.
            unsafe { libc::close(fd) };
            p
        })
    }

    /// The function's GSI from the ACPI translator (`/servers/acpi`), if
    /// it runs and knows one.
    fn acpi_gsi(&self) -> Option<i32> {
        let acpi = lookup("/servers/acpi", libc::O_RDONLY).ok()?;
        let a = self.address;
        let r = mig_bindings::acpi::get_pci_irq(
            &HurdIpc,
            acpi,
            a.bus.into(),
            a.device.into(),
            a.function.into(),
        );
        let _ = HurdIpc.port_deallocate(acpi);
        r.ok().filter(|&gsi| gsi > 0)
    }

    pub(super) fn interrupt(self: &Arc<Self>, _prefer_msix: bool) -> HyResult<Interrupt> {
        // GNU Mach delivers legacy lines only (no MSI-X).
        let line = if let Some(gsi) = self.acpi_gsi() {
            gsi
        } else {
            let mut b = [0u8; 1];
            self.config_read(0x3c, &mut b)?;
            if b[0] == 0 || b[0] == 0xff {
                return Err(NetbsdErrno(nb::ENXIO));
            }
            i32::from(b[0])
        };
        let (_, master) = privileged()?;
        let client = Client::new(&HurdIpc);
        let irq = client.open(master, 0x3, "irq").map_err(kr_err)?;
        let port = HurdIpc.port_allocate(Right::Receive).map_err(kr_err)?;
        if let Err(e) = client.intr_register(irq, line, 0, port) {
            let _ = HurdIpc.port_mod_refs(port, Right::Receive, -1);
            let _ = HurdIpc.port_deallocate(irq);
            return Err(kr_err(e));
        }
        Ok(Interrupt {
            _device: Arc::clone(self),
            irq,
            port,
            client: Mutex::new(client),
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = HurdIpc.port_deallocate(self.config);
    }
}

/// Notifications of one line on a receive port.
#[derive(Debug)]
pub(super) struct Interrupt {
    _device: Arc<Device>,
    irq: PortName,
    port: PortName,
    /// Keeps one reply port for the acknowledgements.
    client: Mutex<Client<'static, HurdIpc>>,
}

impl Interrupt {
    pub(super) fn wait(&self) -> HyResult<u64> {
        let mut buf = mach::msg::MsgBuf::zeroed(256);
        loop {
            // SAFETY: a receive into a buffer of its length.
            let r = unsafe {
                HurdIpc.mach_msg(
                    buf.as_mut_ptr(),
                    option::RCV_MSG,
                    0,
                    256,
                    self.port,
                    0,
                    PortName::NULL,
                )
            };
            if r != KernReturn::SUCCESS {
                return Err(kr_err(r));
            }
            if buf.header().is_ok_and(|h| h.id == INTR_NOTIFY) {
                return Ok(1);
            }
        }
    }

    pub(super) fn ack(&self) -> HyResult<()> {
        self.client
            .lock()
            .intr_ack(self.irq, self.port)
            .map_err(kr_err)
    }

    // The Linux back end's signature; every line here is INTx.
    #[allow(clippy::unused_self)]
    pub(super) fn is_intx(&self) -> bool {
        true
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        // Destroying the port ends the registration.
        let _ = HurdIpc.port_mod_refs(self.port, Right::Receive, -1);
        let _ = HurdIpc.port_deallocate(self.irq);
    }
}

pub(super) fn dma_alloc(
    len: usize,
    align: usize,
    below_4g: bool,
) -> HyResult<(*mut u8, usize, u64)> {
    let len = len.next_multiple_of(PAGE);
    let (host, _) = privileged()?;
    let pmax = if below_4g { 1 << 32 } else { 0 };
    let palign = align.next_power_of_two().max(PAGE) as u64;
    let (vaddr, paddr) = HurdIpc
        .vm_allocate_contiguous(host, len as u64, 0, pmax, palign)
        .map_err(kr_err)?;
    let va = usize::try_from(vaddr).map_err(|_| NetbsdErrno(nb::EINVAL))?;
    with_state(|s| s.dma.insert(va, (len, paddr)));
    Ok((va as *mut u8, len, paddr))
}

/// # Safety
/// `vaddr`/`len` come from [`dma_alloc`] and nothing uses the memory.
pub(super) unsafe fn dma_free(vaddr: *mut u8, len: usize) {
    with_state(|s| s.dma.remove(&(vaddr as usize)));
    // SAFETY: the caller's contract.
    let _ = unsafe { HurdIpc.vm_deallocate(vaddr as u64, len) };
}

fn wire(host: PortName, start: usize, span: usize, access: i32) -> HyResult<()> {
    HurdIpc
        .vm_wire(host, start as u64, span as u64, access)
        .map_err(kr_err)
}

/// # Safety
/// As [`super::dma_map`] (`len` is not zero).
pub(super) unsafe fn dma_map(addr: usize, len: usize) -> HyResult<Option<u64>> {
    let (start, span) = page_span(addr, len);
    // One section: two callers mapping the same range count as two users
    // of one wiring.
    with_state(|s| {
        match s.mapped.get_mut(&start) {
            Some((l, _, users)) if *l == span => *users += 1,
            _ => {
                let (host, _) = privileged()?;
                wire(host, start, span, VM_PROT_ALL)?;
                let pages = match HurdIpc.vm_pages_phys(host, start as u64, span as u64) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = wire(host, start, span, 0);
                        return Err(kr_err(e));
                    }
                };
                s.mapped.insert(start, (span, pages, 1));
            }
        }
        let pages = &s.mapped[&start].1;
        Ok(contiguous(
            start,
            addr,
            len,
            pages.iter().copied().map(Some),
        ))
    })
}

pub(super) fn dma_unmap(addr: usize, len: usize) -> HyResult<()> {
    let (start, span) = page_span(addr, len);
    let last = with_state(|s| match s.mapped.get_mut(&start) {
        Some((l, _, users)) if *l == span => {
            *users -= 1;
            let last = *users == 0;
            if last {
                s.mapped.remove(&start);
            }
            Ok(last)
        }
        _ => Err(NetbsdErrno(nb::EINVAL)),
    })?;
    if last {
        wire(privileged()?.0, start, span, 0)?;
    }
    Ok(())
}

pub(super) fn virt_to_bus(va: usize) -> Option<u64> {
    with_state(|s| {
        if let Some(bus) = range_lookup(&s.dma, va, 1) {
            return Some(bus);
        }
        let (&start, (len, pages, _)) = s.mapped.range(..=va).next_back()?;
        (va < start + len).then(|| pages[(va - start) / PAGE] + ((va % PAGE) as u64))
    })
}

pub(super) fn dma_segments(addr: usize, len: usize) -> HyResult<Vec<(usize, u64)>> {
    let (start, span) = page_span(addr, len);
    with_state(|s| match s.mapped.get(&start) {
        Some((l, pages, _)) if *l == span => {
            segments(start, addr, len, pages.iter().copied().map(Some))
        }
        _ => None,
    })
    .ok_or(NetbsdErrno(nb::EINVAL))
}

pub(super) fn dma_buffer_bus(va: usize, len: usize) -> Option<u64> {
    with_state(|s| range_lookup(&s.dma, va, len))
}

pub(super) fn iospace_init() -> HyResult<()> {
    let (_, master) = privileged()?;
    // Every port but the configuration mechanism's (0xcf8–0xcff), which is
    // the arbiter's.
    for (from, to) in [(0, 0xcf7), (0xd00, 0xffff)] {
        let perm = HurdIpc.io_perm_create(master, from, to).map_err(kr_err)?;
        let r = HurdIpc.io_perm_modify(perm, true);
        let _ = HurdIpc.port_deallocate(perm);
        r.map_err(kr_err)?;
    }
    Ok(())
}
