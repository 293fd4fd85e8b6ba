//! Linux back end: sysfs for enumeration, VFIO (type1 IOMMU) for access.
//!
//! One container per process holds the IOMMU groups of the devices opened;
//! DMA memory is mapped into it. A [`super::DmaBuffer`] asked below 4 GiB
//! gets an IOVA from a window under the x86 MSI range; others, and buffers
//! given to [`super::dma_map`], are mapped at IOVA = their address, so a
//! buffer contiguous in the process is contiguous for the device.
//!
//! Mapping a caller's buffer costs a pin of every page and an IOMMU
//! invalidation on unmap (0.5–2.8 ms for 1 MiB in the TCG test bed), so an
//! unmapped buffer's mapping is kept idle (a registration cache, bounded
//! by [`IDLE_BUDGET`]) and taken again when the same range is mapped and
//! its page frames, read from `/proc/self/pagemap`, are still the ones
//! pinned. Memory freed and mapped anew gets new frames, so a stale
//! mapping is never used: it is dropped and the range mapped afresh.
//!
//! With physical addressing (devices that bypass the IOMMU) a caller's
//! buffer is pinned the same way once a device is open, and its bus
//! addresses are the frames read when it was pinned; before any device is
//! open it is only `mlock`ed (page by page counted, so that unmapping one
//! range leaves locked the pages another still holds). No other memory has
//! a bus address: a page not held in place may move under a device.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use vfio_bindings::bindings::vfio as raw;

use super::{
    Address, Bar, BarMaps, Info, Mmio, PAGE, contiguous, decode_bars, mmap_shared, page_span,
    range_lookup, segments,
};
use crate::errno::{HyResult, NetbsdErrno, nb};

/// VFIO's ioctl numbers: `_IO(VFIO_TYPE, VFIO_BASE + n)`.
const fn io(n: u32) -> libc::c_ulong {
    ((raw::VFIO_TYPE as libc::c_ulong) << 8) | (raw::VFIO_BASE + n) as libc::c_ulong
}
const GET_API_VERSION: libc::c_ulong = io(0);
const CHECK_EXTENSION: libc::c_ulong = io(1);
const SET_IOMMU: libc::c_ulong = io(2);
const GROUP_GET_STATUS: libc::c_ulong = io(3);
const GROUP_SET_CONTAINER: libc::c_ulong = io(4);
const GROUP_GET_DEVICE_FD: libc::c_ulong = io(6);
const DEVICE_GET_REGION_INFO: libc::c_ulong = io(8);
const DEVICE_GET_IRQ_INFO: libc::c_ulong = io(9);
const DEVICE_SET_IRQS: libc::c_ulong = io(10);
const IOMMU_MAP_DMA: libc::c_ulong = io(13);
const IOMMU_UNMAP_DMA: libc::c_ulong = io(14);

/// The IOVA window for DMA memory below 4 GiB: above the first MiB, under
/// the MSI doorbells at `0xfee0_0000`.
const LOW_WINDOW: (u64, u64) = (0x10_0000, 0xfee0_0000);

fn last_err() -> NetbsdErrno {
    NetbsdErrno::last_os_error()
}

/// `ioctl` with a pointer argument; errors as NetBSD errno.
///
/// # Safety
/// `arg` must be what request `req` expects.
unsafe fn ioctl_ptr<T>(fd: RawFd, req: libc::c_ulong, arg: *mut T) -> HyResult<i32> {
    // SAFETY: the caller's contract.
    let r = unsafe { libc::ioctl(fd, req, arg) };
    if r < 0 { Err(last_err()) } else { Ok(r) }
}

fn ioctl_val(fd: RawFd, req: libc::c_ulong, arg: libc::c_ulong) -> HyResult<i32> {
    // SAFETY: the requests used with this take an integer argument.
    let r = unsafe { libc::ioctl(fd, req, arg) };
    if r < 0 { Err(last_err()) } else { Ok(r) }
}

fn sysfs(a: Address) -> PathBuf {
    PathBuf::from(format!("/sys/bus/pci/devices/{a}"))
}

fn read_hex(p: &std::path::Path) -> HyResult<u32> {
    let s = fs::read_to_string(p).map_err(|e| NetbsdErrno::from_io(&e))?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).map_err(|_| NetbsdErrno(nb::EIO))
}

pub(super) fn devices() -> HyResult<Vec<Info>> {
    let dir = fs::read_dir("/sys/bus/pci/devices").map_err(|e| NetbsdErrno::from_io(&e))?;
    let mut v = Vec::new();
    for e in dir.flatten() {
        let Ok(address) = e.file_name().to_string_lossy().parse::<Address>() else {
            continue;
        };
        let p = e.path();
        v.push(Info {
            address,
            vendor: read_hex(&p.join("vendor"))? as u16,
            device: read_hex(&p.join("device"))? as u16,
            class: read_hex(&p.join("class"))? & 0xff_ffff,
        });
    }
    Ok(v)
}

/// The process's VFIO state.
#[derive(Default)]
struct State {
    container: Option<OwnedFd>,
    groups: BTreeMap<u32, OwnedFd>,
    /// DMA buffers by process address: (length, IOVA).
    dma: BTreeMap<usize, (usize, u64)>,
    /// IOVAs of the low window in use: start → length.
    low: BTreeMap<u64, u64>,
    /// Identity mappings of callers' buffers by start, in use or idle.
    mapped: BTreeMap<usize, Mapping>,
    /// Bytes of idle mappings.
    idle: usize,
    /// Use counter: the idle mapping with the smallest stamp goes first.
    clock: u64,
    /// Pages `dma_map` locked in memory for lack of a container (physical
    /// addressing), with how many mapped ranges hold each: only these, and
    /// the two kinds above, have bus addresses.
    locked: BTreeMap<usize, u32>,
}

/// An identity mapping of a caller's buffer.
struct Mapping {
    len: usize,
    /// Callers that mapped it and have not unmapped it (0: idle).
    users: u32,
    /// The physical addresses of the pages pinned, when this process may
    /// read them (root): only such a mapping is kept idle.
    frames: Option<Vec<u64>>,
    /// When it was last unmapped.
    stamp: u64,
}

/// Bytes of idle mappings kept pinned for reuse.
const IDLE_BUDGET: usize = 32 << 20;

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut g = STATE.lock();
    f(g.get_or_insert_with(State::default))
}

impl State {
    fn container(&mut self) -> HyResult<RawFd> {
        if let Some(c) = &self.container {
            return Ok(c.as_raw_fd());
        }
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/vfio/vfio".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(last_err());
        }
        // SAFETY: just opened, owned here.
        let c = unsafe { OwnedFd::from_raw_fd(fd) };
        if ioctl_val(fd, GET_API_VERSION, 0)? != raw::VFIO_API_VERSION as i32
            || ioctl_val(fd, CHECK_EXTENSION, raw::VFIO_TYPE1_IOMMU.into())? != 1
        {
            return Err(NetbsdErrno(nb::ENXIO));
        }
        self.container = Some(c);
        Ok(fd)
    }

    fn iommu(&self) -> HyResult<RawFd> {
        match &self.container {
            // The IOMMU was set when the first group joined.
            Some(c) if !self.groups.is_empty() => Ok(c.as_raw_fd()),
            // The container gets its IOMMU with the first device's group.
            _ => Err(NetbsdErrno(nb::ENXIO)),
        }
    }

    fn attach_group(&mut self, group: u32) -> HyResult<RawFd> {
        if let Some(g) = self.groups.get(&group) {
            return Ok(g.as_raw_fd());
        }
        let container = self.container()?;
        let path = CString::new(format!("/dev/vfio/{group}")).expect("no NUL");
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(last_err());
        }
        // SAFETY: just opened, owned here.
        let g = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut status = raw::vfio_group_status {
            argsz: size_of::<raw::vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: the status structure this request fills.
        unsafe { ioctl_ptr(fd, GROUP_GET_STATUS, &raw mut status)? };
        if status.flags & raw::VFIO_GROUP_FLAGS_VIABLE == 0 {
            // Another device of the group is bound to a host driver.
            return Err(NetbsdErrno(nb::EBUSY));
        }
        let mut cfd = container;
        // SAFETY: the request takes a pointer to the container's fd.
        unsafe { ioctl_ptr(fd, GROUP_SET_CONTAINER, &raw mut cfd)? };
        if self.groups.is_empty() {
            ioctl_val(container, SET_IOMMU, raw::VFIO_TYPE1_IOMMU.into())?;
        }
        self.groups.insert(group, g);
        Ok(fd)
    }
}

/// Binds `a` to vfio-pci unless it is already.
fn bind_vfio(a: Address) -> HyResult<()> {
    let dev = sysfs(a);
    let driver = fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if driver.as_deref() == Some("vfio-pci") {
        return Ok(());
    }
    let write = |p: PathBuf, v: &str| fs::write(p, v).map_err(|e| NetbsdErrno::from_io(&e));
    if driver.is_some() {
        write(dev.join("driver/unbind"), &a.to_string())?;
    }
    write(dev.join("driver_override"), "vfio-pci")?;
    write(PathBuf::from("/sys/bus/pci/drivers_probe"), &a.to_string())?;
    let now = fs::read_link(dev.join("driver")).ok();
    if now.as_ref().and_then(|p| p.file_name()) != Some("vfio-pci".as_ref()) {
        log::warn!("{a}: vfio-pci did not take the device (module not loaded?)");
        return Err(NetbsdErrno(nb::ENXIO));
    }
    Ok(())
}

/// An open function.
#[derive(Debug)]
pub(super) struct Device {
    address: Address,
    fd: OwnedFd,
    regions: Vec<raw::vfio_region_info>,
    bars: Vec<Bar>,
    maps: BarMaps,
}

const CONFIG: usize = raw::VFIO_PCI_CONFIG_REGION_INDEX as usize;

impl Device {
    pub(super) fn open(address: Address) -> HyResult<Arc<Self>> {
        let dev = sysfs(address);
        if !dev.exists() {
            return Err(NetbsdErrno(nb::ENOENT));
        }
        bind_vfio(address)?;
        let group: u32 = fs::read_link(dev.join("iommu_group"))
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            // No IOMMU group: the host has no IOMMU (Debian's kernels have
            // no VFIO no-IOMMU mode).
            .ok_or(NetbsdErrno(nb::ENXIO))?;
        let name = CString::new(address.to_string()).expect("no NUL");
        let fd = with_state(|s| -> HyResult<RawFd> {
            let g = s.attach_group(group)?;
            // SAFETY: the request takes the device's NUL-terminated name.
            unsafe { ioctl_ptr(g, GROUP_GET_DEVICE_FD, name.as_ptr().cast_mut()) }
        })?;
        // SAFETY: a new descriptor, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut regions = Vec::new();
        for index in 0..=CONFIG as u32 {
            let mut info = raw::vfio_region_info {
                argsz: size_of::<raw::vfio_region_info>() as u32,
                index,
                ..Default::default()
            };
            // SAFETY: the structure this request fills.
            if unsafe { ioctl_ptr(fd.as_raw_fd(), DEVICE_GET_REGION_INFO, &raw mut info) }.is_err()
            {
                info.size = 0;
            }
            regions.push(info);
        }
        let mut this = Self {
            address,
            fd,
            regions,
            bars: Vec::new(),
            maps: BarMaps::default(),
        };
        let mut raw_bars = [0u32; 6];
        for (i, r) in raw_bars.iter_mut().enumerate() {
            let mut b = [0; 4];
            this.config_read(0x10 + 4 * i as u16, &mut b)?;
            *r = u32::from_le_bytes(b);
        }
        let sizes: [u64; 6] = std::array::from_fn(|i| this.regions[i].size);
        this.bars = decode_bars(raw_bars, sizes);
        Ok(Arc::new(this))
    }

    pub(super) fn address(&self) -> Address {
        self.address
    }

    fn region_io(&self, index: usize, offset: u64, len: usize) -> HyResult<i64> {
        let r = self.regions.get(index).ok_or(NetbsdErrno(nb::EINVAL))?;
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > r.size)
        {
            return Err(NetbsdErrno(nb::EINVAL));
        }
        i64::try_from(r.offset + offset).map_err(|_| NetbsdErrno(nb::EINVAL))
    }

    pub(super) fn config_read(&self, offset: u16, buf: &mut [u8]) -> HyResult<()> {
        let at = self.region_io(CONFIG, offset.into(), buf.len())?;
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::pread(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), at) };
        if n < 0 {
            return Err(last_err());
        }
        if n as usize != buf.len() {
            return Err(NetbsdErrno(nb::EIO));
        }
        Ok(())
    }

    pub(super) fn config_write(&self, offset: u16, data: &[u8]) -> HyResult<()> {
        let at = self.region_io(CONFIG, offset.into(), data.len())?;
        // SAFETY: `data` is readable for its length.
        let n = unsafe { libc::pwrite(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), at) };
        if n < 0 {
            return Err(last_err());
        }
        if n as usize != data.len() {
            return Err(NetbsdErrno(nb::EIO));
        }
        Ok(())
    }

    pub(super) fn bars(&self) -> &[Bar] {
        &self.bars
    }

    pub(super) fn map_bar(&self, index: u8) -> HyResult<Mmio> {
        self.maps.get(&self.bars, index, |len| {
            let r = &self.regions[usize::from(index)];
            if r.flags & raw::VFIO_REGION_INFO_FLAG_MMAP == 0 {
                return Err(NetbsdErrno(nb::EOPNOTSUPP));
            }
            mmap_shared(self.fd.as_raw_fd(), len, r.offset)
        })
    }

    fn irq_count(&self, index: u32) -> u32 {
        let mut info = raw::vfio_irq_info {
            argsz: size_of::<raw::vfio_irq_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: the structure this request fills.
        match unsafe { ioctl_ptr(self.fd.as_raw_fd(), DEVICE_GET_IRQ_INFO, &raw mut info) } {
            Ok(_) => info.count,
            Err(_) => 0,
        }
    }

    fn set_irqs(&self, index: u32, flags: u32, eventfd: Option<RawFd>) -> HyResult<()> {
        // vfio_irq_set followed by one eventfd (or no data).
        #[repr(C)]
        struct Set {
            head: raw::vfio_irq_set,
            fd: i32,
        }
        let mut set = Set {
            head: raw::vfio_irq_set {
                argsz: if eventfd.is_some() {
                    size_of::<Set>() as u32
                } else {
                    size_of::<raw::vfio_irq_set>() as u32
                },
                flags,
                index,
                start: 0,
                count: 1,
                ..Default::default()
            },
            fd: eventfd.unwrap_or(-1),
        };
        // SAFETY: a vfio_irq_set with `argsz` bytes of header and data.
        unsafe { ioctl_ptr(self.fd.as_raw_fd(), DEVICE_SET_IRQS, &raw mut set)? };
        Ok(())
    }

    pub(super) fn interrupt(self: &Arc<Self>, prefer_msix: bool) -> HyResult<Interrupt> {
        let index = if prefer_msix && self.irq_count(raw::VFIO_PCI_MSIX_IRQ_INDEX) > 0 {
            raw::VFIO_PCI_MSIX_IRQ_INDEX
        } else if self.irq_count(raw::VFIO_PCI_INTX_IRQ_INDEX) > 0 {
            raw::VFIO_PCI_INTX_IRQ_INDEX
        } else {
            return Err(NetbsdErrno(nb::ENXIO));
        };
        // SAFETY: eventfd has no memory arguments.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(last_err());
        }
        // SAFETY: just created, owned here.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        self.set_irqs(
            index,
            raw::VFIO_IRQ_SET_DATA_EVENTFD | raw::VFIO_IRQ_SET_ACTION_TRIGGER,
            Some(efd.as_raw_fd()),
        )?;
        Ok(Interrupt {
            device: Arc::clone(self),
            eventfd: efd,
            index,
        })
    }
}

/// An interrupt delivered to an eventfd.
#[derive(Debug)]
pub(super) struct Interrupt {
    device: Arc<Device>,
    eventfd: OwnedFd,
    index: u32,
}

impl Interrupt {
    pub(super) fn wait(&self) -> HyResult<u64> {
        let mut n = [0u8; 8];
        loop {
            // SAFETY: reads 8 bytes into `n`.
            let r = unsafe { libc::read(self.eventfd.as_raw_fd(), n.as_mut_ptr().cast(), 8) };
            if r == 8 {
                return Ok(u64::from_ne_bytes(n));
            }
            let e = last_err();
            if e.0 != nb::EINTR {
                return Err(e);
            }
        }
    }

    pub(super) fn ack(&self) -> HyResult<()> {
        if self.is_intx() {
            // VFIO masked the line when it fired.
            self.device.set_irqs(
                self.index,
                raw::VFIO_IRQ_SET_DATA_NONE | raw::VFIO_IRQ_SET_ACTION_UNMASK,
                None,
            )?;
        }
        Ok(())
    }

    pub(super) fn is_intx(&self) -> bool {
        self.index == raw::VFIO_PCI_INTX_IRQ_INDEX
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        let _ = self.device.set_irqs(
            self.index,
            raw::VFIO_IRQ_SET_DATA_NONE | raw::VFIO_IRQ_SET_ACTION_TRIGGER,
            None,
        );
    }
}

fn map_dma(container: RawFd, vaddr: usize, iova: u64, len: usize) -> HyResult<()> {
    let mut m = raw::vfio_iommu_type1_dma_map {
        argsz: size_of::<raw::vfio_iommu_type1_dma_map>() as u32,
        flags: raw::VFIO_DMA_MAP_FLAG_READ | raw::VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: vaddr as u64,
        iova,
        size: len as u64,
    };
    // SAFETY: the structure this request reads.
    unsafe { ioctl_ptr(container, IOMMU_MAP_DMA, &raw mut m)? };
    Ok(())
}

fn unmap_dma(container: RawFd, iova: u64, len: usize) {
    let mut u = raw::vfio_iommu_type1_dma_unmap {
        argsz: size_of::<raw::vfio_iommu_type1_dma_unmap>() as u32,
        flags: 0,
        iova,
        size: len as u64,
        ..Default::default()
    };
    // SAFETY: the structure this request reads and updates.
    if let Err(e) = unsafe { ioctl_ptr(container, IOMMU_UNMAP_DMA, &raw mut u) } {
        log::warn!("VFIO unmap of {len} bytes at IOVA {iova:#x}: {e}");
    }
}

/// The first free, `align`ed stretch of `len` bytes in the low window.
fn low_iova(used: &BTreeMap<u64, u64>, len: u64, align: u64) -> Option<u64> {
    let mut at = LOW_WINDOW.0.next_multiple_of(align);
    for (&start, &l) in used {
        if at + len <= start {
            break;
        }
        at = at.max((start + l).next_multiple_of(align));
    }
    (at + len <= LOW_WINDOW.1).then_some(at)
}

/// Huge pages: physically contiguous DMA memory in physical addressing.
const HUGE: usize = 2 << 20;

/// `/proc/self/pagemap`, opened once (`None`: not readable).
static PAGEMAP: std::sync::OnceLock<Option<fs::File>> = std::sync::OnceLock::new();

fn pagemap() -> Option<&'static fs::File> {
    PAGEMAP
        .get_or_init(|| fs::File::open("/proc/self/pagemap").ok())
        .as_ref()
}

/// The physical address of byte `va` (its page faulted in first), if
/// this process may see frames (root).
fn phys_addr(va: usize) -> Option<u64> {
    // SAFETY: a read of one byte the caller says is mapped memory.
    let _ = unsafe { std::ptr::read_volatile(va as *const u8) };
    let page = va / PAGE * PAGE;
    Some(frames(page, PAGE)?[0] + (va - page) as u64)
}

/// DMA memory by physical address: one whole huge page.
fn phys_alloc(len: usize, below_4g: bool) -> HyResult<(*mut u8, usize, u64)> {
    if len > HUGE {
        // Two huge pages are not known to be adjacent.
        return Err(NetbsdErrno(nb::ENOMEM));
    }
    // SAFETY: a fresh anonymous huge-page mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            HUGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        // No huge pages reserved (vm.nr_hugepages).
        return Err(NetbsdErrno(nb::ENOMEM));
    }
    let start = p as usize;
    let Some(pa) = phys_addr(start).filter(|pa| !below_4g || pa + HUGE as u64 <= 1 << 32) else {
        // SAFETY: mapped above, never handed out.
        unsafe { libc::munmap(p, HUGE) };
        return Err(NetbsdErrno(nb::ENOMEM));
    };
    with_state(|s| {
        // Devices that do translate through the IOMMU see the same address.
        if let Ok(c) = s.iommu()
            && let Err(e) = map_dma(c, start, pa, HUGE)
        {
            log::debug!("no IOMMU mapping at the physical address {pa:#x}: {e}");
        }
        s.dma.insert(start, (HUGE, pa));
    });
    Ok((p.cast(), HUGE, pa))
}

pub(super) fn dma_alloc(
    len: usize,
    align: usize,
    below_4g: bool,
) -> HyResult<(*mut u8, usize, u64)> {
    if super::dma_addressing() == super::DmaAddressing::Physical {
        return phys_alloc(len.next_multiple_of(PAGE), below_4g);
    }
    let len = len.next_multiple_of(PAGE);
    let align = align.next_power_of_two().max(PAGE);
    // Aligned (IOVA = address when not below 4 GiB); mapping it for the
    // device pins, and so faults in, every page.
    let start = crate::mem::anon_map(0, len, align.trailing_zeros(), false)? as usize;
    let r = with_state(|s| -> HyResult<u64> {
        let container = s.iommu()?;
        let iova = if below_4g {
            low_iova(&s.low, len as u64, align as u64).ok_or(NetbsdErrno(nb::ENOMEM))?
        } else {
            start as u64
        };
        map_dma(container, start, iova, len)?;
        if below_4g {
            s.low.insert(iova, len as u64);
        }
        s.dma.insert(start, (len, iova));
        Ok(iova)
    });
    match r {
        Ok(iova) => Ok((start as *mut u8, len, iova)),
        Err(e) => {
            // SAFETY: mapped above, never handed out.
            unsafe { libc::munmap(start as *mut libc::c_void, len) };
            Err(e)
        }
    }
}

/// # Safety
/// `vaddr`/`len` come from [`dma_alloc`] and nothing uses the memory.
pub(super) unsafe fn dma_free(vaddr: *mut u8, len: usize) {
    with_state(|s| {
        if let Some((l, iova)) = s.dma.remove(&(vaddr as usize)) {
            if let Ok(c) = s.iommu() {
                unmap_dma(c, iova, l);
            }
            s.low.remove(&iova);
        }
        // Huge pages (physical addressing) are unmapped whole: `len` is
        // what `dma_alloc` returned.
    });
    // SAFETY: the caller's contract; the device can no longer reach it.
    unsafe { libc::munmap(vaddr.cast(), len) };
}

/// # Safety
/// As [`super::dma_map`] (`len` is not zero).
pub(super) unsafe fn dma_map(addr: usize, len: usize) -> HyResult<Option<u64>> {
    let (start, span) = page_span(addr, len);
    let physical = super::dma_addressing() == super::DmaAddressing::Physical;
    // Pinned through the container: the IOMMU mapping at IOVA = address
    // also keeps the pages in place for a device that bypasses the IOMMU.
    let pinned = with_state(|s| {
        let c = match s.iommu() {
            Ok(c) => c,
            // No container yet: with physical addressing, locking will do.
            Err(_) if physical => return None,
            Err(e) => return Some(Err(e)),
        };
        Some(s.pin(c, start, span).map(|()| {
            if physical {
                let frames = s.mapped[&start].frames.as_deref();
                frames.and_then(|f| contiguous(start, addr, len, f.iter().copied().map(Some)))
            } else {
                // IOVA = address: contiguous by construction.
                Some(addr as u64)
            }
        }))
    });
    if let Some(r) = pinned {
        return r;
    }
    // The pages stay where they are (locked), and `virt_to_bus` answers
    // their frames.
    // SAFETY: mlock of the caller's mapped range.
    if unsafe { libc::mlock(start as *const libc::c_void, span) } < 0 {
        return Err(last_err());
    }
    with_state(|s| {
        for page in (start..start + span).step_by(PAGE) {
            *s.locked.entry(page).or_default() += 1;
        }
    });
    // The pages are resident now (mlock faults them in).
    Ok(frames(start, span).and_then(|f| contiguous(start, addr, len, f.into_iter().map(Some))))
}

pub(super) fn dma_unmap(addr: usize, len: usize) -> HyResult<()> {
    let (start, span) = page_span(addr, len);
    let unlock = with_state(|s| {
        // A mapping in use (an idle one at the same start is not this
        // range's: that may be locked).
        if matches!(s.mapped.get(&start), Some(m) if m.len == span && m.users > 0) {
            let c = s.iommu()?;
            s.release(c, start, span)?;
            return Ok(Vec::new());
        }
        // Locked: the pages no other mapped range holds are unlocked.
        let pages = (start..start + span).step_by(PAGE);
        if !pages.clone().all(|p| s.locked.contains_key(&p)) {
            return Err(NetbsdErrno(nb::EINVAL));
        }
        let mut unlock = Vec::new();
        for p in pages {
            let n = s.locked.get_mut(&p).expect("locked page");
            *n -= 1;
            if *n == 0 {
                s.locked.remove(&p);
                unlock.push(p);
            }
        }
        Ok(unlock)
    })?;
    for page in unlock {
        // SAFETY: munlock of a page `dma_map` locked that no mapped range
        // holds any more.
        unsafe { libc::munlock(page as *const libc::c_void, PAGE) };
    }
    Ok(())
}

impl State {
    /// Pins `[start, start+span)` (page-aligned) at IOVA = address into
    /// `mapped[start]`, taking a mapping in use or an idle one whose frames
    /// are unchanged.
    fn pin(&mut self, c: RawFd, start: usize, span: usize) -> HyResult<()> {
        if let Some(m) = self.mapped.get_mut(&start)
            && m.len == span
        {
            if m.users > 0 {
                m.users += 1;
                return Ok(());
            }
            // Idle: still ours if the range holds the frames pinned.
            if m.frames.is_some() && m.frames == frames(start, span) {
                m.users = 1;
                self.idle -= span;
                return Ok(());
            }
        }
        self.drop_idle(c, start, span);
        map_dma(c, start, start as u64, span)?;
        self.mapped.insert(
            start,
            Mapping {
                len: span,
                users: 1,
                frames: frames(start, span),
                stamp: 0,
            },
        );
        Ok(())
    }

    /// One user fewer of the mapping at `start`: unused, it stays idle
    /// when its frames are known and it fits the budget.
    fn release(&mut self, c: RawFd, start: usize, span: usize) -> HyResult<()> {
        self.clock += 1;
        let stamp = self.clock;
        let m = match self.mapped.get_mut(&start) {
            Some(m) if m.len == span && m.users > 0 => m,
            _ => return Err(NetbsdErrno(nb::EINVAL)),
        };
        m.users -= 1;
        if m.users > 0 {
            return Ok(());
        }
        if m.frames.is_some() && span <= IDLE_BUDGET {
            m.stamp = stamp;
            self.idle += span;
            self.trim_idle(c);
        } else {
            self.mapped.remove(&start);
            unmap_dma(c, start as u64, span);
        }
        Ok(())
    }

    /// Unmaps the idle mappings overlapping `[start, start+len)` (mappings
    /// never overlap one another, so they are the last ones starting
    /// before its end).
    fn drop_idle(&mut self, c: RawFd, start: usize, len: usize) {
        let overlapping: Vec<usize> = self
            .mapped
            .range(..start + len)
            .rev()
            .take_while(|&(&at, m)| at + m.len > start)
            .filter(|(_, m)| m.users == 0)
            .map(|(&at, _)| at)
            .collect();
        for at in overlapping {
            self.unmap_idle(c, at);
        }
    }

    fn unmap_idle(&mut self, c: RawFd, at: usize) {
        if let Some(m) = self.mapped.remove(&at) {
            self.idle -= m.len;
            unmap_dma(c, at as u64, m.len);
        }
    }

    /// Unmaps the least recently used idle mappings over the budget.
    fn trim_idle(&mut self, c: RawFd) {
        while self.idle > IDLE_BUDGET {
            let Some(at) = self
                .mapped
                .iter()
                .filter(|(_, m)| m.users == 0)
                .min_by_key(|(_, m)| m.stamp)
                .map(|(&at, _)| at)
            else {
                return;
            };
            self.unmap_idle(c, at);
        }
    }
}

/// The physical addresses of the pages of `[start, start+len)`
/// (page-aligned), if this process may see frames and every page is
/// present.
fn frames(start: usize, len: usize) -> Option<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let f = pagemap()?;
    let mut raw = vec![0u8; len / PAGE * 8];
    f.read_exact_at(&mut raw, (start / PAGE * 8) as u64).ok()?;
    raw.chunks_exact(8)
        .map(|e| {
            let e = u64::from_ne_bytes(e.try_into().expect("8 bytes"));
            let pfn = e & ((1 << 55) - 1);
            (e >> 63 == 1 && pfn != 0).then_some(pfn * PAGE as u64)
        })
        .collect()
}

pub(super) fn dma_segments(addr: usize, len: usize) -> HyResult<Vec<(usize, u64)>> {
    let (start, span) = page_span(addr, len);
    let physical = super::dma_addressing() == super::DmaAddressing::Physical;
    let by_frames = |f: &[u64]| segments(start, addr, len, f.iter().copied().map(Some));
    with_state(|s| match s.mapped.get(&start) {
        Some(m) if m.len == span && m.users > 0 => {
            if physical {
                m.frames.as_deref().and_then(by_frames)
            } else {
                // IOVA = address.
                Some(vec![(len, addr as u64)])
            }
        }
        // Locked (no container when it was mapped).
        _ if (start..start + span)
            .step_by(PAGE)
            .all(|p| s.locked.contains_key(&p)) =>
        {
            frames(start, span).as_deref().and_then(by_frames)
        }
        _ => None,
    })
    .ok_or(NetbsdErrno(nb::EINVAL))
}

pub(super) fn virt_to_bus(va: usize) -> Option<u64> {
    let physical = super::dma_addressing() == super::DmaAddressing::Physical;
    with_state(|s| {
        let mapped = || {
            let (&start, m) = s.mapped.range(..=va).next_back()?;
            if m.users == 0 || va >= start + m.len {
                return None;
            }
            if physical {
                let page = m.frames.as_ref()?[(va - start) / PAGE];
                Some(page + (va % PAGE) as u64)
            } else {
                Some(va as u64)
            }
        };
        // A page `dma_map` locked, by its frame (never any other page: one
        // not held in place may move under the device).
        let locked = || {
            s.locked
                .contains_key(&(va & !(PAGE - 1)))
                .then(|| phys_addr(va))
                .flatten()
        };
        range_lookup(&s.dma, va, 1).or_else(mapped).or_else(locked)
    })
}

pub(super) fn dma_buffer_bus(va: usize, len: usize) -> Option<u64> {
    with_state(|s| range_lookup(&s.dma, va, len))
}

/// `iopl(3)` for the calling thread and the threads it starts afterwards
/// (Linux keeps the I/O privilege level per thread).
pub(super) fn iospace_init() -> HyResult<()> {
    // SAFETY: iopl changes only the calling thread's I/O privilege level
    // (and that of threads it creates afterwards).
    if unsafe { libc::iopl(3) } < 0 {
        return Err(last_err());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_window_allocation_is_first_fit_aligned_and_bounded() {
        let mut used = BTreeMap::new();
        let a = low_iova(&used, 0x2000, 0x1000).unwrap();
        assert_eq!(a, LOW_WINDOW.0);
        used.insert(a, 0x2000);
        let b = low_iova(&used, 0x1000, 0x10000).unwrap();
        assert_eq!(b, 0x11_0000);
        used.insert(b, 0x1000);
        // The gap before `b` is reused for what fits.
        assert_eq!(low_iova(&used, 0x1000, 0x1000), Some(0x10_2000));
        assert_eq!(low_iova(&used, 0x1_0000_0000, 0x1000), None);
    }

    fn mapping(len: usize, users: u32) -> Mapping {
        Mapping {
            len,
            users,
            frames: Some(vec![1; len / PAGE]),
            stamp: 0,
        }
    }

    /// Bookkeeping only: the container is an invalid descriptor, so the
    /// unmaps fail (logged) and nothing else happens.
    #[test]
    fn idle_mappings_are_kept_within_budget_least_recently_used_first() {
        let c = -1;
        let mut s = State::default();
        let half = IDLE_BUDGET / 2;
        for at in [0x1000_0000, 0x2000_0000, 0x3000_0000] {
            s.mapped.insert(at, mapping(half, 1));
        }
        s.release(c, 0x2000_0000, half).unwrap();
        s.release(c, 0x1000_0000, half).unwrap();
        assert_eq!(s.idle, IDLE_BUDGET);
        // A third idle one is over the budget: the oldest goes.
        s.release(c, 0x3000_0000, half).unwrap();
        assert_eq!(s.idle, IDLE_BUDGET);
        assert!(!s.mapped.contains_key(&0x2000_0000));
        assert_eq!(s.mapped[&0x1000_0000].users, 0);
        // Unmapping what is not mapped (or not with that length) is EINVAL.
        assert_eq!(
            s.release(c, 0x2000_0000, half),
            Err(NetbsdErrno(nb::EINVAL))
        );
        assert_eq!(
            s.release(c, 0x1000_0000, PAGE),
            Err(NetbsdErrno(nb::EINVAL))
        );
        // A mapping without known frames is never kept.
        s.mapped.insert(
            0x5000_0000,
            Mapping {
                frames: None,
                ..mapping(PAGE, 1)
            },
        );
        s.release(c, 0x5000_0000, PAGE).unwrap();
        assert!(!s.mapped.contains_key(&0x5000_0000));
    }

    #[test]
    fn a_new_mapping_evicts_only_the_idle_mappings_it_overlaps() {
        let c = -1;
        let mut s = State::default();
        s.mapped.insert(0x10_0000, mapping(0x2000, 0));
        s.mapped.insert(0x10_2000, mapping(0x1000, 1));
        s.mapped.insert(0x10_3000, mapping(0x3000, 0));
        s.mapped.insert(0x10_8000, mapping(0x1000, 0));
        s.idle = 0x6000;
        // [0x10_1000, 0x10_4000) touches the first and third (idle) and
        // the second (in use, kept).
        s.drop_idle(c, 0x10_1000, 0x3000);
        let left: Vec<usize> = s.mapped.keys().copied().collect();
        assert_eq!(left, [0x10_2000, 0x10_8000]);
        assert_eq!(s.idle, 0x1000);
        // Adjacent but not overlapping: kept.
        s.drop_idle(c, 0x10_9000, 0x1000);
        s.drop_idle(c, 0x10_7000, 0x1000);
        assert_eq!(s.mapped.len(), 2);
    }
}
