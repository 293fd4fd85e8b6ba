//! Disks as Mach devices: names, records, status flavors and the error
//! codes GNU Mach's disk drivers answer.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, Weak};

use mach::KernReturn;
use machdev::{Device, Driver, Mode};

use crate::disk::Disk;

/// `DEV_GET_SIZE`: [device size in bytes, record size].
pub const DEV_GET_SIZE: u32 = 0;
/// `DEV_GET_RECORDS`: [device size in records, record size].
pub const DEV_GET_RECORDS: u32 = 1;
/// `BLKRRPART` (re-read partitions; partitions live in libstore: a no-op).
pub const BLKRRPART: u32 = 0x125f;
/// `DEV_FLUSH_CACHE`: write the drive's cache out (GNU Mach 2026,
/// `device/device_types.h`).
pub const DEV_FLUSH_CACHE: u32 = 2;

/// What opening a disk answered, as a device code (`SUCCESS` if it
/// opened).
fn dev_err_or_ok(r: io::Result<Arc<dyn Disk>>) -> KernReturn {
    r.map_or_else(|e| dev_err(&e), |_| KernReturn::SUCCESS)
}

/// Maps a back-end error to a device error.
fn dev_err(e: &io::Error) -> KernReturn {
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            KernReturn::D_READ_ONLY
        }
        io::ErrorKind::OutOfMemory => KernReturn::D_NO_MEMORY,
        io::ErrorKind::NotFound => KernReturn::D_NO_SUCH_DEVICE,
        // The host's device went away under the open.
        _ if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) => {
            KernReturn::D_NO_SUCH_DEVICE
        }
        _ => KernReturn::D_IO_ERROR,
    }
}

/// One open of a disk.
struct OpenDisk {
    name: String,
    disk: Arc<dyn Disk>,
    /// For disks that come and go: opens the name again, to tell an I/O
    /// error of a disk that went away (`D_NO_SUCH_DEVICE`) from one of a
    /// disk that is there (`D_IO_ERROR`).
    reopen: Option<Arc<DiskOpener>>,
}

impl OpenDisk {
    /// The device error for back-end error `e`.
    fn err(&self, e: &io::Error) -> KernReturn {
        match dev_err(e) {
            KernReturn::D_IO_ERROR
                if self.reopen.as_ref().is_some_and(|open| {
                    dev_err_or_ok(open(&self.name)) == KernReturn::D_NO_SUCH_DEVICE
                }) =>
            {
                KernReturn::D_NO_SUCH_DEVICE
            }
            k => k,
        }
    }

    /// The bytes a transfer of `len` at record `recnum` covers, as GNU
    /// Mach's block glue decides: a start past the end is `D_INVALID_SIZE`,
    /// a start at the end covers nothing, a transfer running past the end
    /// is cut there. Returns the byte offset and length.
    fn span(&self, recnum: u64, len: usize) -> Result<(u64, usize), KernReturn> {
        let sector = u64::from(self.disk.sector_size());
        let size = self.disk.size().map_err(|e| self.err(&e))?;
        let offset = recnum
            .checked_mul(sector)
            .ok_or(KernReturn::D_INVALID_SIZE)?;
        if offset > size {
            return Err(KernReturn::D_INVALID_SIZE);
        }
        let len = len.min(usize::try_from(size - offset).unwrap_or(usize::MAX));
        Ok((offset, len))
    }

    /// `len` rounded up to whole sectors (the disk ends on a sector).
    fn whole(&self, len: usize) -> usize {
        len.next_multiple_of(self.disk.sector_size() as usize)
    }

    fn fail(&self, what: &str, len: usize, offset: u64, e: &io::Error) -> KernReturn {
        log::warn!("{}: {what} of {len} bytes at {offset}: {e}", self.name);
        self.err(e)
    }
}

impl Device for OpenDisk {
    fn read(&self, recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        let (offset, len) = self.span(recnum, len)?;
        // A partial last sector is read whole and cut.
        let mut buf = vec![0u8; self.whole(len)];
        if !buf.is_empty() {
            self.disk
                .read_at(offset, &mut buf)
                .map_err(|e| self.fail("read", buf.len(), offset, &e))?;
        }
        buf.truncate(len);
        Ok(buf)
    }

    fn read_async(&self, recnum: u64, len: usize, reply: machdev::DataReply) {
        match self.span(recnum, len) {
            // Whole sectors go straight from the disk into the reply's pages.
            Ok((offset, len)) if self.whole(len) == len => reply.fill(len, |buf| {
                self.disk
                    .read_at(offset, buf)
                    .map_err(|e| self.fail("read", len, offset, &e))
            }),
            Ok(_) => reply.send(self.read(recnum, len)),
            Err(e) => reply.send(Err(e)),
        }
    }

    fn write(&self, recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        if self.disk.read_only() {
            return Err(KernReturn::D_READ_ONLY);
        }
        let (offset, len) = self.span(recnum, data.len())?;
        let data = &data[..len];
        let whole = self.whole(len);
        if whole == len {
            if len > 0 {
                self.disk
                    .write_at(offset, data)
                    .map_err(|e| self.fail("write", len, offset, &e))?;
            }
            return Ok(len);
        }
        // A partial last sector: read, modify, write back.
        let mut buf = vec![0u8; whole];
        self.disk
            .read_at(offset, &mut buf)
            .map_err(|e| self.fail("read", whole, offset, &e))?;
        buf[..len].copy_from_slice(data);
        self.disk
            .write_at(offset, &buf)
            .map_err(|e| self.fail("write", whole, offset, &e))?;
        Ok(len)
    }

    fn inband(&self) -> bool {
        false
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        let sector = self.disk.sector_size();
        let size = self.disk.size().map_err(|e| self.err(&e))?;
        let value = match flavor {
            DEV_GET_SIZE => size,
            DEV_GET_RECORDS => size / u64::from(sector),
            _ => return Err(KernReturn::D_INVALID_OPERATION),
        };
        if max < 2 {
            return Err(KernReturn::D_INVALID_OPERATION);
        }
        // The interface carries 32-bit integers: a value that does not fit
        // is an error, never a silent truncation.
        let value = i32::try_from(value).map_err(|_| {
            log::warn!(
                "{}: status flavor {flavor} value {value} does not fit in 32 bits",
                self.name
            );
            KernReturn::D_INVALID_SIZE
        })?;
        Ok(vec![value, sector as i32])
    }

    fn set_status(&self, flavor: u32, _status: &[i32]) -> Result<(), KernReturn> {
        match flavor {
            BLKRRPART => Ok(()),
            DEV_FLUSH_CACHE => self.disk.flush().map_err(|e| self.err(&e)),
            _ => Err(KernReturn::D_INVALID_OPERATION),
        }
    }
}

/// The disks of this translator, by device name.
pub struct Disks {
    disks: BTreeMap<String, Arc<dyn Disk>>,
}

impl std::fmt::Debug for Disks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.disks.keys()).finish()
    }
}

impl Disks {
    /// A driver serving `disks`.
    #[must_use]
    pub fn new(disks: BTreeMap<String, Arc<dyn Disk>>) -> Self {
        Self { disks }
    }

    /// The device names served.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.disks.keys().map(String::as_str)
    }

    /// The disk named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Disk>> {
        self.disks.get(name)
    }
}

impl Driver for Disks {
    fn claims(&self, name: &str) -> bool {
        self.disks.contains_key(name)
    }

    fn open(&self, name: &str, mode: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        let disk = self.disks.get(name).ok_or(KernReturn::D_NO_SUCH_DEVICE)?;
        if mode.can_write() && disk.read_only() {
            return Err(KernReturn::D_READ_ONLY);
        }
        Ok(Arc::new(OpenDisk {
            name: name.to_owned(),
            disk: Arc::clone(disk),
            reopen: None,
        }))
    }

    fn sync(&self) {
        for (name, disk) in &self.disks {
            if !disk.read_only()
                && let Err(e) = disk.flush()
            {
                log::warn!("{name}: flush: {e}");
            }
        }
    }
}

/// Opens the disk a name stands for at the moment of `device_open`.
pub type DiskOpener = dyn Fn(&str) -> io::Result<Arc<dyn Disk>> + Send + Sync;

/// Disks that come and go while the translator runs (USB sticks NetBSD
/// attaches and detaches): every `device_open` of a name `claims` accepts
/// opens the disk anew, so a stick plugged in after the start is served
/// once its driver attached it, and one plugged in again opens again. An
/// open whose disk went away fails its I/O with `D_NO_SUCH_DEVICE`: an I/O
/// error is checked by opening the name again (NetBSD answers a revoked
/// device's reads with `EIO`, new opens with `ENXIO`). The same device
/// semantics as [`Disks`] otherwise.
pub struct AttachedDisks {
    claims: Box<dyn Fn(&str) -> bool + Send + Sync>,
    open: Arc<DiskOpener>,
    opened: Mutex<Vec<(String, Weak<dyn Disk>)>>,
}

impl std::fmt::Debug for AttachedDisks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedDisks").finish_non_exhaustive()
    }
}

impl AttachedDisks {
    /// A driver for the names `claims` accepts, opened by `open` (whose
    /// `NotFound`, or host `ENXIO`/`ENODEV`, mean no such disk now).
    pub fn new(
        claims: impl Fn(&str) -> bool + Send + Sync + 'static,
        open: impl Fn(&str) -> io::Result<Arc<dyn Disk>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            claims: Box::new(claims),
            open: Arc::new(open),
            opened: Mutex::new(Vec::new()),
        }
    }
}

impl Driver for AttachedDisks {
    fn claims(&self, name: &str) -> bool {
        (self.claims)(name)
    }

    fn open(&self, name: &str, mode: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        let disk = (self.open)(name).map_err(|e| {
            log::debug!("{name}: {e}");
            dev_err(&e)
        })?;
        if mode.can_write() && disk.read_only() {
            return Err(KernReturn::D_READ_ONLY);
        }
        {
            let mut opened = self
                .opened
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            opened.retain(|(_, d)| d.strong_count() > 0);
            opened.push((name.to_owned(), Arc::downgrade(&disk)));
        }
        Ok(Arc::new(OpenDisk {
            name: name.to_owned(),
            disk,
            reopen: Some(Arc::clone(&self.open)),
        }))
    }

    fn sync(&self) {
        let opened: Vec<(String, Arc<dyn Disk>)> = self
            .opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(n, d)| Some((n.clone(), d.upgrade()?)))
            .collect();
        for (name, disk) in opened {
            if !disk.read_only()
                && let Err(e) = disk.flush()
            {
                log::warn!("{name}: flush: {e}");
            }
        }
    }
}
