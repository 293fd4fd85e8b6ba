//! Store names, as libstore spells them (`file:PATH`, `part:N:STORE`,
//! `device:NAME`, or a bare path), and the host byte range they name.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::PathBuf;

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

/// The host bytes a store names: a file or block device, and the window
/// of it that holds the file system.
#[derive(Debug)]
pub struct Window {
    /// The host file.
    pub path: PathBuf,
    /// First byte of the file system.
    pub begin: u64,
    /// Its length.
    pub len: u64,
    /// Whether the window covers the whole host file.
    pub whole: bool,
    file: File,
}

impl Window {
    /// Opens the host side of `store` for reading, and for writing unless
    /// `readonly`: a host file that cannot be written is refused then,
    /// with the advice to serve it read-only.
    pub fn open(store: &Store, readonly: bool) -> io::Result<Self> {
        let (path, part) = match store {
            Store::File(p) => (p, None),
            Store::Part(n, inner) => match &**inner {
                Store::File(p) => (p, Some(*n)),
                other => return Self::open(other, readonly),
            },
            Store::Device(name) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "device:{name} is a Mach disk device, reached through the Hurd's device \
                         master; on Linux serve an image or block device (file:PATH)"
                    ),
                ));
            }
        };
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
        let (begin, wlen) = match part {
            None => (0, len),
            Some(n) => {
                let p = partition::find(len, n, &mut |off, buf| file.read_exact_at(buf, off))
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                (p.start, p.len)
            }
        };
        Ok(Window {
            path: path.clone(),
            begin,
            len: wlen,
            whole: part.is_none(),
            file,
        })
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
        self.file.read_exact_at(&mut sector, self.begin + at)?;
        let le = |o: usize| u32::from_le_bytes(sector[o..o + 4].try_into().expect("4 bytes"));
        if le(0) != fsinfo::LEAD || le(484) != fsinfo::STRUC {
            return Ok(());
        }
        self.file.write_all_at(
            &u32::MAX.to_le_bytes(),
            self.begin + at + fsinfo::FREE_COUNT as u64,
        )
    }

    /// The window's first `n` bytes (fewer if it is shorter).
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        let n = n.min(usize::try_from(self.len).unwrap_or(usize::MAX));
        let mut buf = vec![0u8; n];
        self.file.read_exact_at(&mut buf, self.begin)?;
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
        let e = Window::open(&Store::File(dir.join("missing")), true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "{e}");
        let e = Window::open(&Store::File(dir.clone()), true).unwrap_err();
        assert!(e.to_string().contains("neither a file"), "{e}");
        let e = Window::open(&Store::Device("wd0".into()), false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let img = dir.join("img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let e =
            Window::open(&Store::Part(1, Box::new(Store::File(img.clone()))), true).unwrap_err();
        assert!(e.to_string().contains("no MBR signature"), "{e}");
        let w = Window::open(&Store::File(img), true).unwrap();
        assert_eq!((w.begin, w.len, w.whole), (0, 4096, true));
        assert_eq!(w.head(100_000).unwrap().len(), 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
