//! PCI devices from user space: enumeration, configuration space, BAR
//! mappings, interrupts and DMA memory — the host service a rump kernel's
//! PCI drivers (through the `rumpcomp_pci_*` hypercalls, `abi::pci`) and the
//! translators' native drivers use.
//!
//! Back ends: on Linux VFIO with an IOMMU (`vfio.rs`; type1 container, BAR
//! mmap through region offsets, an eventfd per interrupt, DMA at IOVAs this
//! module chooses); on the Hurd the PCI arbiter, the "irq" device and GNU
//! Mach's contiguous memory (`hurd.rs`).
//!
//! Bus addresses: what a device must be given for DMA. Under an IOMMU they
//! are IOVAs; on the Hurd, physical addresses.

use std::fmt;
use std::str::FromStr;

use crate::errno::{HyResult, NetbsdErrno, nb};

pub mod rump;

#[cfg(target_os = "hurd")]
mod hurd;
#[cfg(target_os = "hurd")]
use hurd as sys;
#[cfg(target_os = "linux")]
mod vfio;
#[cfg(target_os = "linux")]
use vfio as sys;

/// How devices address DMA memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaAddressing {
    /// Through an IOMMU at addresses this module chooses (Linux VFIO).
    Iommu,
    /// By physical address: devices that bypass the IOMMU (QEMU's legacy
    /// virtio, machines without one, the Hurd). DMA memory comes from huge
    /// pages (physically contiguous up to 2 MiB); other memory translates
    /// page by page.
    Physical,
}

impl FromStr for DmaAddressing {
    type Err = NetbsdErrno;

    /// `iommu` or `physical` (rumpdisk's `--pci-dma`, `RUMP_PCI_DMA`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iommu" => Ok(Self::Iommu),
            "physical" => Ok(Self::Physical),
            _ => Err(NetbsdErrno(nb::EINVAL)),
        }
    }
}

static ADDRESSING: std::sync::OnceLock<DmaAddressing> = std::sync::OnceLock::new();

/// The addressing in force: what [`set_dma_addressing`] chose, else
/// `RUMP_PCI_DMA=physical`, else `Iommu` on Linux; always `Physical` on the
/// Hurd.
#[must_use]
pub fn dma_addressing() -> DmaAddressing {
    *ADDRESSING.get_or_init(|| {
        if cfg!(target_os = "hurd") {
            DmaAddressing::Physical
        } else {
            std::env::var("RUMP_PCI_DMA")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DmaAddressing::Iommu)
        }
    })
}

/// Chooses the addressing, before any DMA memory exists.
///
/// # Errors
/// `EBUSY` once the addressing is in use and different.
pub fn set_dma_addressing(a: DmaAddressing) -> HyResult<()> {
    if cfg!(target_os = "hurd") && a != DmaAddressing::Physical {
        return Err(NetbsdErrno(nb::EOPNOTSUPP));
    }
    let now = *ADDRESSING.get_or_init(|| a);
    if now == a {
        Ok(())
    } else {
        Err(NetbsdErrno(nb::EBUSY))
    }
}

/// A function's place: domain, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0–31.
    pub device: u8,
    /// Function number, 0–7.
    pub function: u8,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for Address {
    type Err = NetbsdErrno;

    /// `DDDD:BB:DD.F` (Linux's sysfs names).
    fn from_str(s: &str) -> HyResult<Self> {
        let bad = NetbsdErrno(nb::EINVAL);
        let (domain, rest) = s.split_once(':').ok_or(bad)?;
        let (bus, rest) = rest.split_once(':').ok_or(bad)?;
        let (device, function) = rest.split_once('.').ok_or(bad)?;
        let a = Self {
            domain: u16::from_str_radix(domain, 16).map_err(|_| bad)?,
            bus: u8::from_str_radix(bus, 16).map_err(|_| bad)?,
            device: u8::from_str_radix(device, 16).map_err(|_| bad)?,
            function: u8::from_str_radix(function, 16).map_err(|_| bad)?,
        };
        if a.device > 31 || a.function > 7 {
            return Err(bad);
        }
        Ok(a)
    }
}

/// What enumeration tells about a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// Where it is.
    pub address: Address,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code, subclass and programming interface (24 bits).
    pub class: u32,
}

/// Every PCI function the host shows, in address order (no cap on their
/// number).
///
/// # Errors
/// The host's PCI service cannot be read.
pub fn devices() -> HyResult<Vec<Info>> {
    let mut v = sys::devices()?;
    v.sort_by_key(|i| i.address);
    Ok(v)
}

/// The kind of a base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// Memory space (MMIO), 32- or 64-bit.
    Memory {
        /// A 64-bit BAR (it uses the next register too).
        wide: bool,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// I/O port space.
    Io,
}

/// One implemented BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Register index, 0–5.
    pub index: u8,
    /// Memory or I/O.
    pub kind: BarKind,
    /// Its bus address as configuration space holds it.
    pub address: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// Decodes the six BAR registers of a type-0 header (`raw`) with their
/// sizes (`sizes`, 0 = unimplemented).
#[must_use]
pub fn decode_bars(raw: [u32; 6], sizes: [u64; 6]) -> Vec<Bar> {
    let mut bars = Vec::new();
    let mut i = 0;
    while i < 6 {
        let r = raw[i];
        let io = r & 1 == 1;
        let wide = !io && (r >> 1) & 3 == 2;
        let address = if io {
            u64::from(r & !3)
        } else if wide && i < 5 {
            u64::from(r & !0xf) | (u64::from(raw[i + 1]) << 32)
        } else {
            u64::from(r & !0xf)
        };
        if sizes[i] > 0 {
            bars.push(Bar {
                index: i as u8,
                kind: if io {
                    BarKind::Io
                } else {
                    BarKind::Memory {
                        wide,
                        prefetchable: r & 8 != 0,
                    }
                },
                address,
                size: sizes[i],
            });
        }
        i += if wide { 2 } else { 1 };
    }
    bars
}

/// Memory BAR `index` of `bars` (`EINVAL` for an I/O or absent one).
fn memory_bar(bars: &[Bar], index: u8) -> HyResult<Bar> {
    bars.iter()
        .find(|b| b.index == index && matches!(b.kind, BarKind::Memory { .. }))
        .copied()
        .ok_or(NetbsdErrno(nb::EINVAL))
}

/// The BAR of `bars` holding `[bus, bus+len)`: its index and the offset.
pub(crate) fn bar_lookup(bars: &[Bar], bus: u64, len: usize) -> Option<(u8, usize)> {
    bars.iter().find_map(|b| {
        (matches!(b.kind, BarKind::Memory { .. })
            && bus >= b.address
            && bus.checked_add(len as u64)? <= b.address + b.size)
            .then(|| Some((b.index, usize::try_from(bus - b.address).ok()?)))
            .flatten()
    })
}

/// The bus address of `va` in a table of contiguous DMA regions (start →
/// (length, bus address of the start)).
pub(crate) fn range_lookup(
    regions: &std::collections::BTreeMap<usize, (usize, u64)>,
    va: usize,
    len: usize,
) -> Option<u64> {
    let (&start, &(size, bus)) = regions.range(..=va).next_back()?;
    (va + len.max(1) <= start + size).then(|| bus + (va - start) as u64)
}

/// The bus address of `[addr, addr+len)` when it is one piece for devices
/// ([`segments`] of the same pages).
pub(crate) fn contiguous(
    start: usize,
    addr: usize,
    len: usize,
    pages: impl IntoIterator<Item = Option<u64>>,
) -> Option<u64> {
    match segments(start, addr, len, pages)?.as_slice() {
        [(_, bus)] => Some(*bus),
        _ => None,
    }
}

/// `[addr, addr+len)` as pieces each contiguous for devices, given the bus
/// addresses of the pages from `start` (its page), one per page: (length,
/// bus address) in order; `None` where a page is unknown.
pub(crate) fn segments(
    start: usize,
    addr: usize,
    len: usize,
    pages: impl IntoIterator<Item = Option<u64>>,
) -> Option<Vec<(usize, u64)>> {
    let end = addr + len;
    let mut out: Vec<(usize, u64)> = Vec::new();
    for (i, p) in pages.into_iter().enumerate() {
        let page = start + i * PAGE;
        if page >= end {
            break;
        }
        let from = addr.max(page);
        let n = end.min(page + PAGE) - from;
        let bus = p? + (from - page) as u64;
        match out.last_mut() {
            Some((l, b)) if *b + *l as u64 == bus => *l += n,
            _ => out.push((n, bus)),
        }
    }
    (out.iter().map(|&(l, _)| l).sum::<usize>() == len).then_some(out)
}

/// The functions open now (for [`bar_to_virt`]).
static OPEN: parking_lot::Mutex<Vec<std::sync::Weak<sys::Device>>> =
    parking_lot::Mutex::new(Vec::new());

/// Maps `len` bytes of `fd` at `offset` shared and writable (device memory:
/// a VFIO region, a Hurd `regionN` file).
pub(crate) fn mmap_shared(fd: std::os::fd::RawFd, len: usize, offset: u64) -> HyResult<*mut u8> {
    let offset = libc::off_t::try_from(offset).map_err(|_| NetbsdErrno(nb::EINVAL))?;
    // SAFETY: a new shared mapping the kernel places; nothing of ours is
    // overwritten.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            offset,
        )
    };
    if p == libc::MAP_FAILED {
        Err(NetbsdErrno::last_os_error())
    } else {
        Ok(p.cast())
    }
}

/// The BAR mappings of one open function: each made once, all unmapped
/// when the function is dropped (there is no unmapping before: a rump
/// kernel never gives a mapping back).
#[derive(Debug, Default)]
pub(crate) struct BarMaps(parking_lot::Mutex<std::collections::BTreeMap<u8, Mmio>>);

impl BarMaps {
    /// Memory BAR `index` of `bars`, mapped by `map(the BAR's size)` the
    /// first time.
    pub(crate) fn get(
        &self,
        bars: &[Bar],
        index: u8,
        map: impl FnOnce(usize) -> HyResult<*mut u8>,
    ) -> HyResult<Mmio> {
        let mut maps = self.0.lock();
        if let Some(m) = maps.get(&index) {
            return Ok(*m);
        }
        let bar = memory_bar(bars, index)?;
        let len = usize::try_from(bar.size).map_err(|_| NetbsdErrno(nb::EINVAL))?;
        let p = map(len)?;
        // SAFETY: `map` mapped `len` bytes at `p`; they stay mapped until
        // this value drops.
        let m = unsafe { Mmio::new(p, len) };
        maps.insert(index, m);
        Ok(m)
    }
}

impl Drop for BarMaps {
    fn drop(&mut self) {
        for m in self.0.get_mut().values() {
            // SAFETY: mapped in `get` with this length; unmapped once.
            unsafe { libc::munmap(m.as_ptr().cast(), m.len()) };
        }
    }
}

/// An open PCI function, for this process alone while it is open.
#[derive(Debug)]
pub struct Device {
    inner: std::sync::Arc<sys::Device>,
}

impl Device {
    /// Opens the function at `address` for exclusive use (Linux: binds it
    /// to vfio-pci and attaches its IOMMU group to this process's
    /// container).
    ///
    /// # Errors
    /// `ENOENT` if there is no such function, `EBUSY` if its group is in use
    /// elsewhere, or what the host answers.
    pub fn open(address: Address) -> HyResult<Self> {
        let inner = sys::Device::open(address)?;
        let mut open = OPEN.lock();
        open.retain(|d| d.strong_count() > 0);
        open.push(std::sync::Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// Where it is.
    #[must_use]
    pub fn address(&self) -> Address {
        self.inner.address()
    }

    /// Reads `buf.len()` bytes of configuration space at `offset`.
    ///
    /// # Errors
    /// Out of range or refused by the host.
    pub fn config_read(&self, offset: u16, buf: &mut [u8]) -> HyResult<()> {
        self.inner.config_read(offset, buf)
    }

    /// Writes `data` to configuration space at `offset`.
    ///
    /// # Errors
    /// Out of range or refused by the host.
    pub fn config_write(&self, offset: u16, data: &[u8]) -> HyResult<()> {
        self.inner.config_write(offset, data)
    }

    /// The 32-bit configuration register at `offset`.
    ///
    /// # Errors
    /// As [`Device::config_read`].
    pub fn config_read32(&self, offset: u16) -> HyResult<u32> {
        let mut b = [0; 4];
        self.config_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes the 32-bit configuration register at `offset`.
    ///
    /// # Errors
    /// As [`Device::config_write`].
    pub fn config_write32(&self, offset: u16, value: u32) -> HyResult<()> {
        self.config_write(offset, &value.to_le_bytes())
    }

    /// Its implemented BARs.
    ///
    /// # Errors
    /// Configuration space cannot be read.
    pub fn bars(&self) -> HyResult<Vec<Bar>> {
        Ok(self.inner.bars().to_vec())
    }

    /// Maps memory BAR `index` (uncached MMIO). The mapping lives as long
    /// as the device is open.
    ///
    /// # Errors
    /// `EINVAL` for an I/O or unimplemented BAR, or what the host answers.
    pub fn map_bar(&self, index: u8) -> HyResult<Mmio> {
        self.inner.map_bar(index)
    }

    /// Enables the device's memory space and bus mastering (command
    /// register bits 1 and 2), as a driver must before MMIO and DMA.
    ///
    /// # Errors
    /// As [`Device::config_write`].
    pub fn enable(&self) -> HyResult<()> {
        let mut cmd = [0; 2];
        self.config_read(4, &mut cmd)?;
        let v = u16::from_le_bytes(cmd) | 0x6;
        self.config_write(4, &v.to_le_bytes())
    }

    /// The device's interrupt: MSI-X vector 0 where the device has MSI-X
    /// and `prefer_msix`, else its `INTx` line.
    ///
    /// # Errors
    /// The device has no interrupt, or the host refuses it.
    pub fn interrupt(&self, prefer_msix: bool) -> HyResult<Interrupt> {
        Ok(Interrupt {
            inner: self.inner.interrupt(prefer_msix)?,
        })
    }
}

/// A mapped memory BAR.
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    base: *mut u8,
    len: usize,
}

// SAFETY: an MMIO window is device memory reachable from any thread; the
// accessors are volatile, single loads and stores.
unsafe impl Send for Mmio {}
// SAFETY: as above.
unsafe impl Sync for Mmio {}

impl Mmio {
    /// # Safety
    /// `base` maps `len` bytes of device memory that stay mapped for the
    /// lifetime of every copy of the result.
    pub(crate) unsafe fn new(base: *mut u8, len: usize) -> Self {
        Self { base, len }
    }

    /// Its start in this process.
    #[must_use]
    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    /// Its length.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, width: usize) {
        assert!(
            offset.is_multiple_of(width) && offset + width <= self.len,
            "MMIO access of {width} bytes at {offset:#x} outside a {:#x}-byte BAR",
            self.len
        );
    }

    /// A 32-bit register.
    ///
    /// # Panics
    /// If `offset` is misaligned or outside the BAR.
    #[must_use]
    pub fn read32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        // SAFETY: inside the mapping (checked); the base is page-aligned and
        // the offset a multiple of the width, so the access is aligned.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            self.base.add(offset).cast::<u32>().read_volatile()
        }
    }

    /// A 16-bit register (devices such as virtio answer a 16-bit field only
    /// to a 16-bit access).
    ///
    /// # Panics
    /// If `offset` is misaligned or outside the BAR.
    #[must_use]
    pub fn read16(&self, offset: usize) -> u16 {
        self.check(offset, 2);
        // SAFETY: as in `read32`.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            self.base.add(offset).cast::<u16>().read_volatile()
        }
    }

    /// An 8-bit register.
    ///
    /// # Panics
    /// If `offset` is outside the BAR.
    #[must_use]
    pub fn read8(&self, offset: usize) -> u8 {
        self.check(offset, 1);
        // SAFETY: inside the mapping (checked).
        unsafe { self.base.add(offset).read_volatile() }
    }

    /// A 64-bit register, as two 32-bit reads (low first).
    ///
    /// # Panics
    /// If `offset` is misaligned or outside the BAR.
    #[must_use]
    pub fn read64(&self, offset: usize) -> u64 {
        u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32)
    }

    /// Writes a 32-bit register.
    ///
    /// # Panics
    /// If `offset` is misaligned or outside the BAR.
    pub fn write32(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        // SAFETY: as in `read32`.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            self.base.add(offset).cast::<u32>().write_volatile(value);
        }
    }

    /// Writes a 16-bit register.
    ///
    /// # Panics
    /// If `offset` is misaligned or outside the BAR.
    pub fn write16(&self, offset: usize, value: u16) {
        self.check(offset, 2);
        // SAFETY: as in `read32`.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            self.base.add(offset).cast::<u16>().write_volatile(value);
        }
    }

    /// Writes an 8-bit register.
    ///
    /// # Panics
    /// If `offset` is outside the BAR.
    pub fn write8(&self, offset: usize, value: u8) {
        self.check(offset, 1);
        // SAFETY: inside the mapping (checked).
        unsafe { self.base.add(offset).write_volatile(value) }
    }
}

/// A device's interrupt. [`Interrupt::wait`] blocks until it fires;
/// [`Interrupt::ack`] re-enables a level-triggered line after the handler
/// ran (`INTx` is masked by the host when it fires).
#[derive(Debug)]
pub struct Interrupt {
    inner: sys::Interrupt,
}

impl Interrupt {
    /// Waits for the next interrupt; returns how many arrived since the
    /// last wait (at least 1).
    ///
    /// # Errors
    /// The host's notification failed.
    pub fn wait(&self) -> HyResult<u64> {
        self.inner.wait()
    }

    /// Re-enables the line (after the handler ran).
    ///
    /// # Errors
    /// The host refused.
    pub fn ack(&self) -> HyResult<()> {
        self.inner.ack()
    }

    /// Whether this is `INTx` (level-triggered, acknowledged) rather than
    /// MSI-X.
    #[must_use]
    pub fn is_intx(&self) -> bool {
        self.inner.is_intx()
    }
}

/// Memory a device can reach by DMA, contiguous in bus-address space.
#[derive(Debug)]
pub struct DmaBuffer {
    vaddr: *mut u8,
    len: usize,
    bus: u64,
}

// SAFETY: plain memory owned by this value; shared access goes through raw
// pointers the user synchronizes with the device.
unsafe impl Send for DmaBuffer {}
// SAFETY: as above.
unsafe impl Sync for DmaBuffer {}

impl DmaBuffer {
    /// `len` bytes (rounded up to pages) of zeroed memory, contiguous for the
    /// device, aligned to `align` in bus-address space, below 4 GiB when
    /// `below_4g`. Needs an open device on Linux (the IOMMU container).
    ///
    /// # Errors
    /// `ENOMEM`, `ENXIO` with no open device, or what the host answers.
    pub fn new(len: usize, align: usize, below_4g: bool) -> HyResult<Self> {
        if len == 0 {
            return Err(NetbsdErrno(nb::EINVAL));
        }
        let (vaddr, len, bus) = sys::dma_alloc(len, align.max(1), below_4g)?;
        Ok(Self { vaddr, len, bus })
    }

    /// Its start in this process.
    #[must_use]
    pub fn as_ptr(&self) -> *mut u8 {
        self.vaddr
    }

    /// Its length (whole pages).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bus address of its first byte; byte `i` is at `bus_address() + i`.
    #[must_use]
    pub fn bus_address(&self) -> u64 {
        self.bus
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by `dma_alloc` with these values; freed once.
        unsafe { sys::dma_free(self.vaddr, self.len) };
    }
}

/// The bus address of byte `vaddr`, if it is in DMA memory (a
/// [`DmaBuffer`], or a buffer mapped with [`dma_map`]).
#[must_use]
pub fn virt_to_bus(vaddr: *const u8) -> Option<u64> {
    sys::virt_to_bus(vaddr as usize)
}

/// The bus address of `[vaddr, vaddr+len)` when it lies in one
/// [`DmaBuffer`] (usable by devices as it is, nothing to map).
#[must_use]
pub fn dma_buffer_bus(vaddr: *const u8, len: usize) -> Option<u64> {
    sys::dma_buffer_bus(vaddr as usize, len)
}

/// The mapped BAR of an open device whose bus address range holds
/// `[bus, bus+len)`, as a process address (mapping the BAR if needed).
#[must_use]
pub fn bar_to_virt(bus: u64, len: usize) -> Option<*mut u8> {
    let open: Vec<_> = OPEN
        .lock()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    open.iter().find_map(|d| {
        let (index, off) = bar_lookup(d.bars(), bus, len)?;
        let m = d.map_bar(index).ok()?;
        // SAFETY: inside the mapping (checked against the BAR's size).
        Some(unsafe { m.as_ptr().add(off) })
    })
}

/// Page size of DMA bookkeeping (x86's, on Linux and the Hurd alike).
pub(crate) const PAGE: usize = 4096;

/// The whole pages holding `[addr, addr+len)`: their start and length.
pub(crate) fn page_span(addr: usize, len: usize) -> (usize, usize) {
    let start = addr & !(PAGE - 1);
    (start, (addr + len).next_multiple_of(PAGE) - start)
}

/// Makes `[ptr, ptr+len)` of this process reachable by devices (pinned) at
/// bus addresses [`virt_to_bus`] answers, until [`dma_unmap`] with the same
/// range. Zero-copy I/O to a caller's buffer. Returns the bus address of
/// `ptr` when the range is contiguous for devices (always under an IOMMU;
/// by chance with physical addresses), else `None` (still mapped).
///
/// # Safety
/// The memory must stay allocated until it is unmapped, and must not be
/// touched while a device may be writing it.
///
/// # Errors
/// `EINVAL` for an empty range; otherwise as the host's pinning and
/// mapping.
pub unsafe fn dma_map(ptr: *const u8, len: usize) -> HyResult<Option<u64>> {
    if len == 0 {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    // SAFETY: the caller's contract.
    unsafe { sys::dma_map(ptr as usize, len) }
}

/// The pieces of `[ptr, ptr+len)`, which [`dma_map`] mapped, that are each
/// contiguous for devices: (length, bus address), in order. One piece
/// under an IOMMU; with physical addresses, one per run of consecutive
/// page frames, for a scatter-gather list instead of a bounce buffer.
///
/// # Errors
/// `EINVAL` if the range is not mapped (or a frame is unknown).
pub fn dma_segments(ptr: *const u8, len: usize) -> HyResult<Vec<(usize, u64)>> {
    if len == 0 {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    sys::dma_segments(ptr as usize, len)
}

/// Ends a [`dma_map`].
///
/// # Errors
/// `EINVAL` if the range was not mapped.
pub fn dma_unmap(ptr: *const u8, len: usize) -> HyResult<()> {
    sys::dma_unmap(ptr as usize, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_as_sysfs_names() {
        let a: Address = "0000:00:1f.2".parse().unwrap();
        assert_eq!(
            a,
            Address {
                domain: 0,
                bus: 0,
                device: 0x1f,
                function: 2
            }
        );
        assert_eq!(a.to_string(), "0000:00:1f.2");
        for bad in ["", "0000:00:20.0", "0000:00:1f.8", "00:1f.2", "x:00:00.0"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_merge_consecutive_frames_and_cut_at_the_ends() {
        let p = PAGE as u64;
        // Three pages: frames 10, 11 and 20; the range starts 100 bytes in
        // and ends 50 bytes into the third page.
        let frames = [Some(10 * p), Some(11 * p), Some(20 * p)];
        let start = 0x7000_0000;
        let len = 2 * PAGE - 100 + 50;
        assert_eq!(
            segments(start, start + 100, len, frames),
            Some(vec![(2 * PAGE - 100, 10 * p + 100), (50, 20 * p)])
        );
        // Identity: one piece.
        let id = (0..4).map(|i| Some(0x5000 + i * p));
        assert_eq!(
            segments(0x5000, 0x5000, 4 * PAGE, id),
            Some(vec![(4 * PAGE, 0x5000)])
        );
        // An unknown frame, or too few pages: no list.
        assert_eq!(segments(start, start, 2 * PAGE, [Some(p), None]), None);
        assert_eq!(segments(start, start, 2 * PAGE, [Some(p)]), None);
    }

    #[test]
    fn bars_decode_with_64_bit_pairs_and_io() {
        let raw = [0xfebf_0000, 0xc001, 0xfe00_000c, 0x1, 0, 0];
        let sizes = [0x1000, 0x40, 0x4000, 0, 0, 0];
        let bars = decode_bars(raw, sizes);
        assert_eq!(bars.len(), 3);
        assert_eq!(bars[0].address, 0xfebf_0000);
        assert_eq!(bars[1].kind, BarKind::Io);
        assert_eq!(bars[1].address, 0xc000);
        assert_eq!(
            bars[2].kind,
            BarKind::Memory {
                wide: true,
                prefetchable: true
            }
        );
        assert_eq!(bars[2].address, 0x1_fe00_0000);
        assert_eq!(bars[2].size, 0x4000);
    }
}
