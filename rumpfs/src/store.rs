//! Store names, as libstore spells them (`file:PATH`, `part:N:STORE`,
//! `device:NAME`, or a bare path), and the byte range they name: of a host
//! file or block device, or of a Mach disk device (`device:NAME`) opened
//! through a device master, whose blocks travel as device RPCs.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::PathBuf;
use std::sync::Arc;

use diskdev::remote::MachDisk;
use mach::PortName;
use mach::ipc::Ipc;

use crate::partition;

/// A parsed store name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A host file or block device.
    File(PathBuf),
    /// A Mach disk device, opened through the device master.
    Device(String),
    /// Partition `n` (1-based, MBR or GPT) of another store.
    Part(u32, Box<Store>),
}

impl Store {
    /// Whether the store is (a partition of) a Mach disk device.
    #[must_use]
    pub fn is_device(&self) -> bool {
        match self {
            Self::Device(_) => true,
            Self::Part(_, inner) => inner.is_device(),
            Self::File(_) => false,
        }
    }

    /// Parses a store name.
    pub fn parse(name: &str) -> Result<Self, String> {
        if let Some(rest) = name.strip_prefix("part:") {
            let (n, inner) = rest
                .split_once(':')
                .ok_or_else(|| format!("{name:?}: part:N:STORE wants a partition and a store"))?;
            let n: u32 = n
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name:?}: partition numbers start at 1"))?;
            let inner = Store::parse(inner)?;
            if matches!(inner, Store::Part(..)) {
                return Err(format!(
                    "{name:?}: a partition holds no partition table here"
                ));
            }
            return Ok(Store::Part(n, Box::new(inner)));
        }
        if let Some(path) = name.strip_prefix("file:") {
            return nonempty(name, path).map(|p| Store::File(p.into()));
        }
        if let Some(dev) = name.strip_prefix("device:") {
            return nonempty(name, dev).map(|d| Store::Device(d.into()));
        }
        nonempty(name, name).map(|p| Store::File(p.into()))
    }
}

fn nonempty<'a>(name: &str, s: &'a str) -> Result<&'a str, String> {
    if s.is_empty() {
        Err(format!("{name:?}: empty store name"))
    } else {
        Ok(s)
    }
}

/// Where `device:NAME` stores are opened: a device master (the system's,
/// or a disk translator's such as rumpdisk's) and this task's transport.
#[derive(Clone)]
pub struct DeviceMaster {
    /// The task's transport.
    pub ipc: Arc<dyn Ipc>,
    /// A send right to the device master.
    pub port: PortName,
}

impl std::fmt::Debug for DeviceMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMaster")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// What holds the bytes.
#[derive(Debug)]
enum Backing {
    File(File),
    /// A Mach disk device and the name it is registered under for the rump
    /// kernel (while the window lives: the kernel's open of it stays).
    Device(Arc<MachDisk>, CString),
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Self::Device(_, key) = self {
            hypercall::file::unregister_device(key);
        }
    }
}

impl Backing {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        match self {
            Self::File(f) => f.read_exact_at(buf, off),
            Self::Device(d, _) => d.read_exact_at(off, buf),
        }
    }

    fn write_all_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        match self {
            Self::File(f) => f.write_all_at(data, off),
            Self::Device(d, _) => d.write_all_at(off, data),
        }
    }
}

/// The bytes a store names: a host file or block device, or a Mach disk
/// device, and the window of it that holds the file system.
#[derive(Debug)]
pub struct Window {
    /// The host path the rump kernel opens: the host file, or the name the
    /// Mach device is registered under (`mach-device:NAME`, see
    /// [`hypercall::file::register_device`]).
    pub path: PathBuf,
    /// First byte of the file system.
    pub begin: u64,
    /// Its length.
    pub len: u64,
    /// Whether the window covers the whole host file.
    pub whole: bool,
    backing: Backing,
}

impl Window {
    /// Opens `store` for reading, and for writing unless `readonly`: a host
    /// file that cannot be written is refused then, with the advice to
    /// serve it read-only. `device:NAME` is opened through `master`.
    pub fn open(store: &Store, readonly: bool, master: Option<&DeviceMaster>) -> io::Result<Self> {
        let (inner, part) = match store {
            Store::Part(n, inner) => (&**inner, Some(*n)),
            other => (other, None),
        };
        let (path, backing, len) = match inner {
            Store::File(p) => {
                let (file, len) = Self::open_file(p, readonly)?;
                (p.clone(), Backing::File(file), len)
            }
            Store::Device(name) => {
                let disk = Arc::new(Self::open_device(name, readonly, master)?);
                let path = format!("mach-device:{name}");
                let key = CString::new(path.clone()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "NUL in a device name")
                })?;
                hypercall::file::register_device(&key, Arc::clone(&disk) as _);
                let len = hypercall::file::BlockDevice::size(&*disk);
                (PathBuf::from(path), Backing::Device(disk, key), len)
            }
            Store::Part(..) => unreachable!("Store::parse makes no nested partitions"),
        };
        let (begin, wlen) = match part {
            None => (0, len),
            Some(n) => {
                let p = partition::find(len, n, &mut |off, buf| backing.read_exact_at(buf, off))
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                (p.start, p.len)
            }
        };
        Ok(Window {
            path,
            begin,
            len: wlen,
            whole: part.is_none(),
            backing,
        })
    }

    fn open_device(
        name: &str,
        readonly: bool,
        master: Option<&DeviceMaster>,
    ) -> io::Result<MachDisk> {
        let Some(master) = master else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "device:{name} is a Mach disk device, reached through a device master (the \
                     Hurd's, or rumpdisk's); on Linux serve an image or block device (file:PATH)"
                ),
            ));
        };
        MachDisk::open(Arc::clone(&master.ipc), master.port, name, readonly)
    }

    fn open_file(path: &PathBuf, readonly: bool) -> io::Result<(File, u64)> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(|e| {
                let hint = if !readonly && e.kind() == io::ErrorKind::PermissionDenied {
                    " (a read-only image is served with --readonly)"
                } else {
                    ""
                };
                io::Error::new(e.kind(), format!("{}: {e}{hint}", path.display()))
            })?;
        let meta = file.metadata()?;
        let len = if meta.file_type().is_block_device() {
            use std::io::Seek;
            (&file).seek(io::SeekFrom::End(0))?
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: neither a file nor a block device", path.display()),
            ));
        };
        Ok((file, len))
    }

    /// Marks FAT32's free-cluster count unknown (0xFFFFFFFF, which the
    /// specification allows) before a read-write mount: NetBSD's msdosfs
    /// neither updates nor trusts it, and a stale count left behind would
    /// mislead the next system (fsck.fat reports it). FAT12/16 have none.
    /// `head` is the window's first bytes (its boot sector at least).
    pub fn forget_fat_free_count(&self, head: &[u8]) -> io::Result<()> {
        use crate::detect::{fat32_fsinfo, fsinfo};
        let Some(at) = fat32_fsinfo(head) else {
            return Ok(());
        };
        let mut sector = [0u8; 512];
        if at + 512 > self.len {
            return Ok(());
        }
        self.backing.read_exact_at(&mut sector, self.begin + at)?;
        let le = |o: usize| u32::from_le_bytes(sector[o..o + 4].try_into().expect("4 bytes"));
        if le(0) != fsinfo::LEAD || le(484) != fsinfo::STRUC {
            return Ok(());
        }
        self.backing.write_all_at(
            &u32::MAX.to_le_bytes(),
            self.begin + at + fsinfo::FREE_COUNT as u64,
        )
    }

    /// The window's first `n` bytes (fewer if it is shorter).
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        let n = n.min(usize::try_from(self.len).unwrap_or(usize::MAX));
        let mut buf = vec![0u8; n];
        self.backing.read_exact_at(&mut buf, self.begin)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_libstore_spells_them() {
        assert_eq!(Store::parse("disk.img"), Ok(Store::File("disk.img".into())));
        assert_eq!(Store::parse("file:/a:b"), Ok(Store::File("/a:b".into())));
        assert_eq!(Store::parse("device:wd0"), Ok(Store::Device("wd0".into())));
        assert_eq!(
            Store::parse("part:2:device:wd0"),
            Ok(Store::Part(2, Box::new(Store::Device("wd0".into()))))
        );
        for bad in [
            "part:0:x",
            "part:x",
            "part:1:part:2:x",
            "file:",
            "",
            "part:-1:x",
        ] {
            assert!(Store::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_checked_when_opened() {
        let dir = std::env::temp_dir().join(format!("rumpfs-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Window::open(&Store::File(dir.join("missing")), true, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "{e}");
        let e = Window::open(&Store::File(dir.clone()), true, None).unwrap_err();
        assert!(e.to_string().contains("neither a file"), "{e}");
        let e = Window::open(&Store::Device("wd0".into()), false, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let img = dir.join("img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let e = Window::open(
            &Store::Part(1, Box::new(Store::File(img.clone()))),
            true,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no MBR signature"), "{e}");
        let w = Window::open(&Store::File(img), true, None).unwrap();
        assert_eq!((w.begin, w.len, w.whole), (0, 4096, true));
        assert_eq!(w.head(100_000).unwrap().len(), 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
