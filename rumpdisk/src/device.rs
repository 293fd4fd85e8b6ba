//! Disks as Mach devices: names, records, status flavors and the error
//! codes GNU Mach's disk drivers answer.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use mach::KernReturn;
use machdev::{Device, Driver, Mode};

use crate::disk::Disk;

/// `DEV_GET_SIZE`: [device size in bytes, record size].
pub const DEV_GET_SIZE: u32 = 0;
/// `DEV_GET_RECORDS`: [device size in records, record size].
pub const DEV_GET_RECORDS: u32 = 1;
/// `BLKRRPART` (re-read partitions; partitions live in libstore: a no-op).
pub const BLKRRPART: u32 = 0x125f;
/// `DEV_FLUSH_CACHE`: write the drive's cache out.
pub const DEV_FLUSH_CACHE: u32 = 0x4;

/// Maps a back-end error to a device error.
fn dev_err(e: &io::Error) -> KernReturn {
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            KernReturn::D_READ_ONLY
        }
        io::ErrorKind::OutOfMemory => KernReturn::D_NO_MEMORY,
        io::ErrorKind::NotFound => KernReturn::D_NO_SUCH_DEVICE,
        _ => KernReturn::D_IO_ERROR,
    }
}

/// One open of a disk.
struct OpenDisk {
    name: String,
    disk: Arc<dyn Disk>,
}

impl OpenDisk {
    /// Checks a transfer of `len` bytes at record `recnum`; returns the
    /// byte offset.
    fn span(&self, recnum: u64, len: usize) -> Result<u64, KernReturn> {
        let sector = u64::from(self.disk.sector_size());
        let size = self.disk.size().map_err(|e| dev_err(&e))?;
        if !(len as u64).is_multiple_of(sector) {
            return Err(KernReturn::D_INVALID_SIZE);
        }
        let offset = recnum
            .checked_mul(sector)
            .ok_or(KernReturn::D_INVALID_RECNUM)?;
        if offset > size {
            return Err(KernReturn::D_INVALID_RECNUM);
        }
        if offset + len as u64 > size {
            return Err(KernReturn::D_INVALID_SIZE);
        }
        Ok(offset)
    }
}

impl Device for OpenDisk {
    fn read(&self, recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        let offset = self.span(recnum, len)?;
        let mut buf = vec![0u8; len];
        if len > 0 {
            self.disk.read_at(offset, &mut buf).map_err(|e| {
                log::warn!("{}: read of {len} bytes at {offset}: {e}", self.name);
                dev_err(&e)
            })?;
        }
        Ok(buf)
    }

    fn write(&self, recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        if self.disk.read_only() {
            return Err(KernReturn::D_READ_ONLY);
        }
        let offset = self.span(recnum, data.len())?;
        if !data.is_empty() {
            self.disk.write_at(offset, data).map_err(|e| {
                log::warn!(
                    "{}: write of {} bytes at {offset}: {e}",
                    self.name,
                    data.len()
                );
                dev_err(&e)
            })?;
        }
        Ok(data.len())
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        let sector = self.disk.sector_size();
        let size = self.disk.size().map_err(|e| dev_err(&e))?;
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
            DEV_FLUSH_CACHE => self.disk.flush().map_err(|e| dev_err(&e)),
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
