//! The Hurd front end: the mounted [`Volume`] as a
//! [`machdev::netfs::Netfs`], whose server answers `io`, `fs` and `fsys`
//! RPCs on protids (on the Hurd, and on the loopback kernel in tests).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use machdev::netfs::{self, Cred, Errno, Made, Netfs, Node, Special, errno, oflag};
use mig_bindings::fs::Statfs;
use mig_bindings::io::Stat;
use parking_lot::Mutex;
use rump::vfs::mode::{S_IFBLK, S_IFCHR, S_IFIFO, S_IFSOCK};
use rump::vfs::{self, Timespec};
use rump::{Fd, oflags};

use crate::detect::FsType;
use crate::volume::{Error, SetAttr, Volume};

/// `FSTYPE_*` of `io_stat` and `file_statfs` (`<hurd/hurd_types.h>`).
const FSTYPE_UFS: u32 = 0x00;
const FSTYPE_MSLOSS: u32 = 0x09;
const FSTYPE_EXT2FS: u32 = 0x17;

/// A NetBSD errno as the Hurd numbers it: both follow 4.4BSD up to
/// `EFTYPE` (79); the few later ones have no Hurd twin and become `EIO`.
fn errno_of(e: &Error) -> Errno {
    if let Some(n @ 1..=79) = e.errno().map(|n| n.0) {
        n
    } else {
        log::debug!("no Hurd errno for {e}: EIO");
        errno::EIO
    }
}

fn map<T>(r: Result<T, Error>) -> Result<T, Errno> {
    r.map_err(|e| {
        log::debug!("{e}");
        errno_of(&e)
    })
}

/// Names of the files `dir_mkfile` makes before they are linked: hidden
/// from lookups and listings.
const UNNAMED: &[u8] = b".rumpfs-mkfile-";

/// A file `dir_mkfile` made, under its hidden name until `dir_link` names
/// it (or removed when its last reference goes).
#[derive(Debug)]
struct Unnamed {
    dir: Node,
    name: Vec<u8>,
    refs: u64,
    mode: u32,
    owner: (u32, u32),
    /// What a short-circuited translator made of it.
    special: Option<Special>,
}

/// A device number as NetBSD's `makedev` makes it.
fn netbsd_dev(major: u32, minor: u32) -> u64 {
    u64::from(((major << 8) & 0x000f_ff00) | ((minor << 12) & 0xfff0_0000) | (minor & 0xff))
}

/// NetBSD's device number as glibc's `makedev` on GNU/Hurd makes it.
fn hurd_dev(rdev: u64) -> u64 {
    let major = (rdev & 0x000f_ff00) >> 8;
    let minor = (rdev & 0xff) | ((rdev & 0xfff0_0000) >> 12);
    ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
}

/// The Hurd front end of a mounted volume.
#[derive(Debug)]
pub struct HurdFs {
    vol: Arc<Volume>,
    unnamed: Mutex<HashMap<Node, Unnamed>>,
    next_unnamed: AtomicU64,
}

impl HurdFs {
    /// Serves `vol`.
    #[must_use]
    pub fn new(vol: Arc<Volume>) -> Self {
        Self {
            vol,
            unnamed: Mutex::new(HashMap::new()),
            next_unnamed: AtomicU64::new(0),
        }
    }

    /// Removes the hidden file of a `dir_mkfile` node.
    fn remove_unnamed(&self, u: &Unnamed) {
        if let Err(e) = self.vol().remove(u.dir, &u.name, false) {
            log::warn!("removing an unlinked dir_mkfile file: {e}");
        }
    }

    /// Names `u` (node `node`) `name` in `dir`: renamed there, or the
    /// special file made there in its place.
    fn name_unnamed(&self, node: Node, u: &Unnamed, dir: Node, name: &[u8]) -> Result<(), Errno> {
        let vol = self.vol();
        let (uid, gid) = u.owner;
        let perms = u.mode & 0o7777;
        let made = match &u.special {
            None => return map(vol.rename(u.dir, &u.name, dir, name, true)),
            Some(Special::Symlink(target)) => vol.symlink(dir, name, target, uid, gid),
            Some(Special::CharDevice(major, minor)) => {
                let rdev = netbsd_dev(*major, *minor);
                vol.mknod(dir, name, S_IFCHR | perms, rdev, uid, gid)
            }
            Some(Special::BlockDevice(major, minor)) => {
                let rdev = netbsd_dev(*major, *minor);
                vol.mknod(dir, name, S_IFBLK | perms, rdev, uid, gid)
            }
            Some(Special::Fifo) => vol.mknod(dir, name, S_IFIFO | perms, 0, uid, gid),
            Some(Special::Socket) => vol.mknod(dir, name, S_IFSOCK | perms, 0, uid, gid),
        };
        let st = map(made)?;
        // No client holds the table's reference to it.
        vol.forget(st.ino, 1);
        self.remove_unnamed(u);
        log::debug!("dir_mkfile node {node} named as a special file");
        Ok(())
    }

    /// The volume, the calling thread bound to a kernel LWP of its own
    /// first (server workers and, on the loopback transport, the clients'
    /// threads a hand-off runs the server on): a kernel call on a thread
    /// without one makes and frees an LWP each time.
    fn vol(&self) -> &Volume {
        self.vol.bind();
        &self.vol
    }

    fn fstype(&self) -> u32 {
        match self.vol.fstype() {
            FsType::Ffs => FSTYPE_UFS,
            FsType::Ext2 => FSTYPE_EXT2FS,
            FsType::Fat => FSTYPE_MSLOSS,
        }
    }

    fn hurd_stat(&self, st: &vfs::Stat) -> Stat {
        Stat {
            fstype: self.fstype() as i32,
            fsid: st.dev,
            ino: st.ino,
            generation: st.gen_,
            rdev: hurd_dev(st.rdev),
            mode: st.mode,
            nlink: u64::from(st.nlink),
            uid: st.uid,
            gid: st.gid,
            size: st.size,
            atime: (st.atime.sec, st.atime.nsec),
            mtime: (st.mtime.sec, st.mtime.nsec),
            ctime: (st.ctime.sec, st.ctime.nsec),
            blksize: i64::from(st.blksize),
            blocks: st.blocks,
            author: st.uid,
            flags: 0,
        }
    }

    /// The descriptor a creation opened, kept when the open asked for
    /// `modes` (else closed: the protid reads and writes nothing).
    fn kept(&self, fd: Fd, modes: i32) -> Option<Fd> {
        if modes & (oflag::O_READ | oflag::O_WRITE) == 0 {
            self.vol().close(fd);
            None
        } else {
            Some(fd)
        }
    }

    fn set(&self, node: Node, fd: Option<&Fd>, set: &SetAttr) -> Result<(), Errno> {
        map(self.vol().set_attr(node, fd, set)).map(drop)
    }
}

/// NetBSD's open flags for the Hurd's `O_READ`/`O_WRITE` `modes`.
fn netbsd_open_flags(modes: i32) -> i32 {
    match modes & (oflag::O_READ | oflag::O_WRITE) {
        oflag::O_WRITE => oflags::WRONLY,
        m if m == oflag::O_READ | oflag::O_WRITE => oflags::RDWR,
        _ => oflags::RDONLY,
    }
}

/// A Hurd time (`UTIME_NOW` −1, `UTIME_OMIT` −2 in the nanoseconds) as
/// NetBSD's `utimensat` takes it.
fn netbsd_time((sec, nsec): (i64, i64)) -> Option<Timespec> {
    match nsec {
        netfs::UTIME_OMIT => None,
        netfs::UTIME_NOW => Some(Timespec {
            sec: 0,
            nsec: vfs::UTIME_NOW,
        }),
        nsec => Some(Timespec { sec, nsec }),
    }
}

impl Netfs for HurdFs {
    type Open = Fd;

    fn root(&self) -> Node {
        self.vol().root()
    }

    fn lookup(&self, dir: Node, name: &[u8]) -> Result<(Node, Stat), Errno> {
        if name.starts_with(UNNAMED) {
            return Err(errno::ENOENT);
        }
        if name == b".." {
            let parent = map(self.vol().lookup_parent(dir))?;
            return match self.stat(parent) {
                Ok(st) => Ok((parent, st)),
                Err(e) => {
                    self.vol().forget(parent, 1);
                    Err(e)
                }
            };
        }
        map(self.vol().lookup(dir, name)).map(|st| (st.ino, self.hurd_stat(&st)))
    }

    fn retain(&self, node: Node) {
        if let Some(u) = self.unnamed.lock().get_mut(&node) {
            u.refs += 1;
        }
        self.vol().retain(node);
    }

    fn release(&self, node: Node) {
        let gone = {
            let mut unnamed = self.unnamed.lock();
            match unnamed.get_mut(&node) {
                Some(u) if u.refs <= 1 => unnamed.remove(&node),
                Some(u) => {
                    u.refs -= 1;
                    None
                }
                None => None,
            }
        };
        if let Some(u) = gone {
            // Never linked: it goes with its last reference.
            self.remove_unnamed(&u);
        }
        self.vol().forget(node, 1);
    }

    fn stat(&self, node: Node) -> Result<Stat, Errno> {
        map(self.vol().stat(node)).map(|st| self.hurd_stat(&st))
    }

    fn fstat(&self, node: Node, open: &Fd) -> Result<Stat, Errno> {
        map(self.vol().fstat(node, open)).map(|st| self.hurd_stat(&st))
    }

    fn readlink(&self, node: Node) -> Result<Vec<u8>, Errno> {
        map(self.vol().readlink(node))
    }

    fn create(
        &self,
        cred: &Cred,
        dir: Node,
        name: &[u8],
        mode: u32,
        modes: i32,
    ) -> Result<Made<Fd>, Errno> {
        let (uid, gid) = owner(cred);
        let (st, fd) = map(self.vol().create(
            dir,
            name,
            mode & 0o7777,
            netbsd_open_flags(modes) | oflags::EXCL,
            uid,
            gid,
        ))?;
        Ok((st.ino, self.hurd_stat(&st), self.kept(fd, modes)))
    }

    fn open(&self, node: Node, modes: i32) -> Result<Fd, Errno> {
        map(self.vol().open(node, netbsd_open_flags(modes)))
    }

    fn close(&self, _node: Node, open: Fd) {
        self.vol().close(open);
    }

    fn read(&self, node: Node, open: &Fd, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        map(self.vol().read(node, open, buf, offset))
    }

    fn write(&self, node: Node, open: &Fd, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        if data.is_empty() {
            return Ok(0);
        }
        map(self.vol().write(node, open, data, offset))
    }

    fn set_size(&self, node: Node, open: Option<&Fd>, size: u64) -> Result<(), Errno> {
        let set = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.set(node, open, &set)
    }

    fn sync(&self, node: Node, open: Option<&Fd>, data_only: bool) -> Result<(), Errno> {
        match open {
            Some(fd) => map(self.vol().fsync(node, fd, data_only)),
            None => map(self.vol().fsync_node(node)),
        }
    }

    fn chmod(&self, node: Node, mode: u32) -> Result<(), Errno> {
        let set = SetAttr {
            mode: Some(mode),
            ..SetAttr::default()
        };
        self.set(node, None, &set)
    }

    fn chown(&self, node: Node, uid: u32, gid: u32) -> Result<(), Errno> {
        let set = SetAttr {
            uid: (uid != u32::MAX).then_some(uid),
            gid: (gid != u32::MAX).then_some(gid),
            ..SetAttr::default()
        };
        self.set(node, None, &set)
    }

    fn utimens(&self, node: Node, atime: (i64, i64), mtime: (i64, i64)) -> Result<(), Errno> {
        let set = SetAttr {
            atime: netbsd_time(atime),
            mtime: netbsd_time(mtime),
            ..SetAttr::default()
        };
        self.set(node, None, &set)
    }

    fn read_dir(&self, dir: Node) -> Result<Vec<(Node, u8, Vec<u8>)>, Errno> {
        let entries = map(self.vol().read_dir(dir))?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.name.starts_with(UNNAMED))
            .map(|e| {
                let id = self.vol().entry_id(dir, &e.name, e.ino);
                (id, e.kind, e.name)
            })
            .collect())
    }

    fn mkdir(&self, cred: &Cred, dir: Node, name: &[u8], mode: u32) -> Result<(), Errno> {
        let (uid, gid) = owner(cred);
        let st = map(self.vol().mkdir(dir, name, mode, uid, gid))?;
        // The table remembered it with a reference no client holds.
        self.vol().forget(st.ino, 1);
        Ok(())
    }

    fn remove(&self, dir: Node, name: &[u8], is_dir: bool) -> Result<(), Errno> {
        map(self.vol().remove(dir, name, is_dir))
    }

    fn rename(
        &self,
        dir: Node,
        old: &[u8],
        newdir: Node,
        new: &[u8],
        excl: bool,
    ) -> Result<(), Errno> {
        map(self.vol().rename(dir, old, newdir, new, excl))
    }

    fn link(&self, dir: Node, node: Node, name: &[u8]) -> Result<(), Errno> {
        if name.starts_with(UNNAMED) {
            return Err(errno::EINVAL);
        }
        let unnamed = self.unnamed.lock().remove(&node);
        if let Some(u) = unnamed {
            return self.name_unnamed(node, &u, dir, name).inspect_err(|_| {
                self.unnamed.lock().insert(node, u);
            });
        }
        let st = map(self.vol().link(node, dir, name))?;
        self.vol().forget(st.ino, 1);
        Ok(())
    }

    fn file_size_bits(&self) -> i32 {
        match self.vol.fstype() {
            // 32-bit sizes, unsigned.
            FsType::Fat => 33,
            FsType::Ffs | FsType::Ext2 => 64,
        }
    }

    fn statfs(&self) -> Result<Statfs, Errno> {
        let s = map(self.vol().statfs())?;
        Ok(Statfs {
            fstype: self.fstype(),
            bsize: s.bsize,
            blocks: s.blocks,
            bfree: s.bfree,
            bavail: s.bavail,
            files: s.files,
            ffree: s.ffree,
            fsid: s.fsid,
            namelen: self.vol().name_max().min(255) as u64,
            favail: s.favail,
            frsize: s.frsize,
            flag: u64::from(self.vol().readonly()),
        })
    }

    fn server_version(&self) -> (&str, [i32; 3]) {
        let mut v = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|n| n.parse().unwrap_or(0));
        let mut next = || v.next().unwrap_or(0);
        ("rumpfs", [next(), next(), next()])
    }

    fn syncfs(&self) -> Result<(), Errno> {
        self.vol().sync();
        Ok(())
    }

    fn mkfile(&self, cred: &Cred, dir: Node, mode: u32, modes: i32) -> Result<Made<Fd>, Errno> {
        let n = self.next_unnamed.fetch_add(1, Ordering::Relaxed);
        let mut name = UNNAMED.to_vec();
        name.extend_from_slice(format!("{}-{n}", std::process::id()).as_bytes());
        let owner = owner(cred);
        let (st, fd) = map(self.vol().create(
            dir,
            &name,
            mode & 0o7777,
            netbsd_open_flags(modes) | oflags::EXCL,
            owner.0,
            owner.1,
        ))?;
        let open = self.kept(fd, modes);
        let unnamed = Unnamed {
            dir,
            name,
            refs: 1,
            mode,
            owner,
            special: None,
        };
        self.unnamed.lock().insert(st.ino, unnamed);
        Ok((st.ino, self.hurd_stat(&st), open))
    }

    fn make_special(&self, node: Node, special: &Special) -> Result<(), Errno> {
        match self.unnamed.lock().get_mut(&node) {
            Some(u) => {
                u.special = Some(special.clone());
                Ok(())
            }
            // Named files stay what they are.
            None => Err(errno::EOPNOTSUPP),
        }
    }

    fn goaway(&self, _flags: i32) -> Result<(), Errno> {
        let left: Vec<Unnamed> = self.unnamed.lock().drain().map(|(_, u)| u).collect();
        for u in &left {
            self.remove_unnamed(u);
        }
        map(self.vol().unmount())
    }
}

/// The owner of what `cred` creates: its first uid and gid (root's when
/// it has none).
fn owner(cred: &Cred) -> (u32, u32) {
    (
        cred.uids.first().copied().unwrap_or(0),
        cred.gids.first().copied().unwrap_or(0),
    )
}
