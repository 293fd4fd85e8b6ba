//! A file server's Hurd front end, as libnetfs gives one: a control port
//! (`fsys_getroot`, `fsys_syncfs`, `fsys_goaway`), and a port of its own
//! for every open of a node — a protid, with the user's ids, and its
//! open (open modes, file pointer, the `..` of the root) shared by
//! `io_duplicate` — answering `io` and `fs` RPCs by calling a [`Netfs`].
//! Lookups walk paths as `netfs_S_dir_lookup` does (`..` at the root:
//! `FS_RETRY_REAUTH` to the parent; an absolute symbolic link:
//! `FS_RETRY_MAGICAL`; relative ones followed here, at most
//! [`MAX_SYMLINKS`]). Permissions are checked against the node's owner,
//! group and mode as libnetfs's `fshelp_access` checks them (uid 0 may do
//! anything).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use mach::ipc::Ipc;
use mach::msg::{self, Header};
use mach::port::{notify, type_name as tn};
use mach::{KernReturn, PortName};
use mig_bindings::fs::{self, FS_RETRY_MAGICAL, FS_RETRY_NORMAL, FS_RETRY_REAUTH};
use mig_bindings::io::{self, Stat};
use mig_bindings::{auth, fsys, rpc, startup};

pub use crate::boot::hurd_error;
mod identity;
mod lock;
mod rlock;

pub use lock::{LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN};

use crate::boot::hurd_error as err;
use crate::pool::{self, Object, Objects, Pool, PoolConfig, Serve};
use crate::reply::{Responder, region_with};
use crate::sync::Mutex;

/// The errno numbers this module answers (the Hurd's, as BSD numbers them).
#[allow(missing_docs)]
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const ENXIO: i32 = 6;
    pub const EBADF: i32 = 9;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    /// Also `EWOULDBLOCK` on the Hurd.
    pub const EAGAIN: i32 = 35;
    pub const EOPNOTSUPP: i32 = 45;
    pub const ELOOP: i32 = 62;
    pub const ENAMETOOLONG: i32 = 63;
    pub const ENOTEMPTY: i32 = 66;
}

/// The Hurd's open flags (glibc's `<bits/fcntl.h>` for GNU/Hurd).
#[allow(missing_docs)]
pub mod oflag {
    pub const O_READ: i32 = 0x0001;
    pub const O_WRITE: i32 = 0x0002;
    pub const O_EXEC: i32 = 0x0004;
    pub const O_NONBLOCK: i32 = 0x0008;
    pub const O_CREAT: i32 = 0x0010;
    pub const O_EXCL: i32 = 0x0020;
    pub const O_NOLINK: i32 = 0x0040;
    pub const O_NOTRANS: i32 = 0x0080;
    pub const O_APPEND: i32 = 0x0100;
    pub const O_ASYNC: i32 = 0x0200;
    pub const O_FSYNC: i32 = 0x0400;
    pub const O_NOATIME: i32 = 0x0800;
    pub const O_TRUNC: i32 = 0x0001_0000;
    pub const O_SHLOCK: i32 = 0x0002_0000;
    pub const O_EXLOCK: i32 = 0x0004_0000;
    pub const O_NOFOLLOW: i32 = 0x0010_0000;
    pub const O_DIRECTORY: i32 = 0x0020_0000;
    /// What an open keeps (libnetfs drops the rest after the lookup).
    pub const KEPT: i32 = O_READ | O_WRITE | O_EXEC | HONORED;
    /// What `io_set_all_openmodes` and friends may change.
    pub const HONORED: i32 = O_APPEND | O_ASYNC | O_FSYNC | O_NONBLOCK | O_NOATIME;
}

/// glibc's `_PC_*` names, as `io_pathconf` receives them.
#[allow(missing_docs)]
pub mod pc {
    pub const LINK_MAX: i32 = 0;
    pub const MAX_CANON: i32 = 1;
    pub const MAX_INPUT: i32 = 2;
    pub const NAME_MAX: i32 = 3;
    pub const PATH_MAX: i32 = 4;
    pub const PIPE_BUF: i32 = 5;
    pub const CHOWN_RESTRICTED: i32 = 6;
    pub const NO_TRUNC: i32 = 7;
    pub const VDISABLE: i32 = 8;
    pub const SYNC_IO: i32 = 9;
    pub const ASYNC_IO: i32 = 10;
    pub const PRIO_IO: i32 = 11;
    pub const SOCK_MAXBUF: i32 = 12;
    pub const FILESIZEBITS: i32 = 13;
    pub const REC_INCR_XFER_SIZE: i32 = 14;
    pub const REC_MAX_XFER_SIZE: i32 = 15;
    pub const REC_MIN_XFER_SIZE: i32 = 16;
    pub const REC_XFER_ALIGN: i32 = 17;
    pub const ALLOC_SIZE_MIN: i32 = 18;
    pub const SYMLINK_MAX: i32 = 19;
    pub const TWO_SYMLINKS: i32 = 20;
}

/// Most bytes one `io_read` answers (the region is allocated before the
/// read; a client asking more gets a short read, as from a pipe).
pub const READ_MAX: usize = 16 << 20;

/// Relative symbolic links followed in one lookup (libnetfs's
/// `netfs_maxsymlinks`).
pub const MAX_SYMLINKS: usize = 12;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

/// Who is asking: the ids of a protid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    /// User ids (the first is the effective one).
    pub uids: Vec<u32>,
    /// Group ids.
    pub gids: Vec<u32>,
}

impl Cred {
    fn is_root(&self) -> bool {
        self.uids.contains(&0)
    }

    /// Whether the user may `want` (a mask of 4 read, 2 write, 1 execute)
    /// on a node with status `st`.
    #[must_use]
    pub fn may(&self, st: &Stat, want: u32) -> bool {
        if self.is_root() {
            // Root executes only what someone may execute (fshelp_access).
            return want & 1 == 0 || st.mode & 0o111 != 0 || is_dir(st);
        }
        let shift = if self.uids.contains(&st.uid) {
            6
        } else if self.gids.contains(&st.gid) {
            3
        } else {
            0
        };
        (st.mode >> shift) & want == want
    }

    /// What `io_restrict_auth` leaves: root takes the ids given; others
    /// keep those of theirs that were given (libiohelp's
    /// `iohelp_restrict_iouser`).
    #[must_use]
    pub fn restricted(&self, uids: Vec<u32>, gids: Vec<u32>) -> Self {
        if self.is_root() {
            return Self { uids, gids };
        }
        let keep = |mine: &[u32], given: &[u32]| -> Vec<u32> {
            mine.iter()
                .copied()
                .filter(|id| given.contains(id))
                .collect()
        };
        Self {
            uids: keep(&self.uids, &uids),
            gids: keep(&self.gids, &gids),
        }
    }

    /// Whether the user owns `st` (or is root).
    #[must_use]
    pub fn owns(&self, st: &Stat) -> bool {
        self.is_root() || self.uids.contains(&st.uid)
    }

    fn check(&self, st: &Stat, want: u32) -> Result<(), i32> {
        if self.may(st, want) {
            Ok(())
        } else {
            Err(errno::EACCES)
        }
    }
}

/// The open modes and the permission bits (4 read, 2 write, 1 execute)
/// they need.
const ACCESS: [(i32, u32); 3] = [(oflag::O_READ, 4), (oflag::O_WRITE, 2), (oflag::O_EXEC, 1)];

fn is_dir(st: &Stat) -> bool {
    st.mode & S_IFMT == S_IFDIR
}

/// An errno number (BSD numbering, as the Hurd's).
pub type Errno = i32;

/// A node id of the file system (stable while referenced).
pub type Node = u64;

/// What [`Netfs::create`] and [`Netfs::mkfile`] answer: the new node, its
/// status, and the open its making left for the modes asked, if any.
pub type Made<O> = (Node, Stat, Option<O>);

/// The file system a [`NetfsServer`] serves. Calls that return a node
/// hand the caller one reference to it, given back with
/// [`Netfs::release`].
pub trait Netfs: Send + Sync + 'static {
    /// What an open of a node holds (a descriptor).
    type Open: Send + Sync + 'static;

    /// The root directory (the server holds it for its whole life).
    fn root(&self) -> Node;
    /// Entry `name` of directory `dir` (`..` included; never `.` or an
    /// empty name), with one reference, and its status.
    fn lookup(&self, dir: Node, name: &[u8]) -> Result<(Node, Stat), Errno>;
    /// One more reference to `node`.
    fn retain(&self, node: Node);
    /// Gives one reference back.
    fn release(&self, node: Node);
    /// The status of `node`.
    fn stat(&self, node: Node) -> Result<Stat, Errno>;
    /// The status of `node` through an open of it (which an unlinked file
    /// still has).
    fn fstat(&self, node: Node, open: &Self::Open) -> Result<Stat, Errno>;
    /// The target of symbolic link `node`.
    fn readlink(&self, node: Node) -> Result<Vec<u8>, Errno>;
    /// Creates regular file `name` in `dir` (failing with `EEXIST` if it
    /// is there), owned by `cred`'s first ids, with one reference: the
    /// node, its status, and the file opened for `modes` (`O_READ`/
    /// `O_WRITE`, 0 for none) if making it left one open (else the server
    /// calls [`Netfs::open`]).
    fn create(
        &self,
        cred: &Cred,
        dir: Node,
        name: &[u8],
        mode: u32,
        modes: i32,
    ) -> Result<Made<Self::Open>, Errno>;
    /// Opens `node` for `modes` (`O_READ`/`O_WRITE` of [`oflag`]).
    fn open(&self, node: Node, modes: i32) -> Result<Self::Open, Errno>;
    /// Closes an open.
    fn close(&self, node: Node, open: Self::Open);
    /// Reads into `buf` at `offset` (short only at the end of the file);
    /// returns how much was read.
    fn read(
        &self,
        node: Node,
        open: &Self::Open,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno>;
    /// Writes `data` at `offset`; returns how much was written.
    fn write(
        &self,
        node: Node,
        open: &Self::Open,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Errno>;
    /// Truncates or extends `node`.
    fn set_size(&self, node: Node, open: Option<&Self::Open>, size: u64) -> Result<(), Errno>;
    /// Writes `node` back (its data only with `data_only`).
    fn sync(&self, node: Node, open: Option<&Self::Open>, data_only: bool) -> Result<(), Errno>;
    /// Changes the mode bits.
    fn chmod(&self, node: Node, mode: u32) -> Result<(), Errno>;
    /// Changes owner and group (`u32::MAX`: unchanged).
    fn chown(&self, node: Node, uid: u32, gid: u32) -> Result<(), Errno>;
    /// Sets the access and modification times (`utimensat`'s
    /// `UTIME_NOW`/`UTIME_OMIT` nanoseconds).
    fn utimens(&self, node: Node, atime: (i64, i64), mtime: (i64, i64)) -> Result<(), Errno>;
    /// The entries of directory `dir` (`.` and `..` first): node, `DT_*`
    /// type, name.
    fn read_dir(&self, dir: Node) -> Result<Vec<(Node, u8, Vec<u8>)>, Errno>;
    /// Makes directory `name` in `dir`, owned by `cred`'s first ids.
    fn mkdir(&self, cred: &Cred, dir: Node, name: &[u8], mode: u32) -> Result<(), Errno>;
    /// Removes `name` from `dir` (a directory with `is_dir`).
    fn remove(&self, dir: Node, name: &[u8], is_dir: bool) -> Result<(), Errno>;
    /// Renames; fails with `EEXIST` when `excl` and the new name exists.
    fn rename(
        &self,
        dir: Node,
        old: &[u8],
        newdir: Node,
        new: &[u8],
        excl: bool,
    ) -> Result<(), Errno>;
    /// Gives `node` the further name `name` in `dir`.
    fn link(&self, dir: Node, node: Node, name: &[u8]) -> Result<(), Errno>;
    /// A new regular file in `dir` with no name yet (`dir_mkfile`: glibc
    /// makes symbolic links and device nodes this way), owned by `cred`'s
    /// first ids, with one reference, as [`Netfs::create`] answers;
    /// [`Netfs::link`] names it.
    fn mkfile(
        &self,
        _cred: &Cred,
        _dir: Node,
        _mode: u32,
        _modes: i32,
    ) -> Result<Made<Self::Open>, Errno> {
        Err(errno::EOPNOTSUPP)
    }
    /// Makes `node`, a file from [`Netfs::mkfile`] not yet named, the
    /// special file a short-circuited passive translator stands for
    /// (`/hurd/symlink`, `/hurd/chrdev`, ...).
    fn make_special(&self, _node: Node, _special: &Special) -> Result<(), Errno> {
        Err(errno::EOPNOTSUPP)
    }
    /// The file system's status.
    fn statfs(&self) -> Result<fs::Statfs, Errno>;
    /// Bits a file's size takes at most, sign included (`_PC_FILESIZEBITS`).
    fn file_size_bits(&self) -> i32 {
        64
    }
    /// What `io_server_version` answers: the server's name and its
    /// major, minor and edit numbers.
    fn server_version(&self) -> (&str, [i32; 3]) {
        ("machdev-netfs", [0, 1, 0])
    }
    /// Writes everything back.
    fn syncfs(&self) -> Result<(), Errno>;
    /// `fsys_goaway`: unmount cleanly (the server stops after answering).
    fn goaway(&self, flags: i32) -> Result<(), Errno>;
}

/// What a short-circuited passive translator makes of a node (libnetfs's
/// `netfs_attempt_mksymlink`, `_mkdev`, and the mode of `/hurd/fifo` and
/// `/hurd/ifsock`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Special {
    /// `/hurd/symlink TARGET`.
    Symlink(Vec<u8>),
    /// `/hurd/chrdev MAJOR MINOR`.
    CharDevice(u32, u32),
    /// `/hurd/blkdev MAJOR MINOR`.
    BlockDevice(u32, u32),
    /// `/hurd/fifo`.
    Fifo,
    /// `/hurd/ifsock`.
    Socket,
}

impl Special {
    /// The special file a passive translator's command line (its
    /// NUL-separated words, NUL-terminated) stands for, `None` for other
    /// translators, `EINVAL` for a malformed one.
    pub fn parse(passive: &[u8]) -> Result<Option<Self>, Errno> {
        if passive.last() != Some(&0) {
            return Err(errno::EINVAL);
        }
        let words: Vec<&[u8]> = passive[..passive.len() - 1].split(|&c| c == 0).collect();
        let number = |w: Option<&&[u8]>| -> Result<u32, Errno> {
            let w = std::str::from_utf8(w.ok_or(errno::EINVAL)?).map_err(|_| errno::EINVAL)?;
            let parsed = match w.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => w.parse(),
            };
            parsed.map_err(|_| errno::EINVAL)
        };
        Ok(Some(match words[0] {
            b"/hurd/symlink" => Self::Symlink(words.get(1).ok_or(errno::EINVAL)?.to_vec()),
            b"/hurd/chrdev" => Self::CharDevice(number(words.get(1))?, number(words.get(2))?),
            b"/hurd/blkdev" => Self::BlockDevice(number(words.get(1))?, number(words.get(2))?),
            b"/hurd/fifo" => Self::Fifo,
            b"/hurd/ifsock" => Self::Socket,
            _ => return Ok(None),
        }))
    }

    /// The passive translator's command line that stands for it, as
    /// `file_get_translator` answers it (what [`Special::parse`] reads).
    #[must_use]
    pub fn command_line(&self) -> Vec<u8> {
        let device = |name: &str, major: u32, minor: u32| {
            vec![name.into(), major.to_string(), minor.to_string()]
        };
        let words: Vec<String> = match self {
            Self::Symlink(target) => {
                let mut line = b"/hurd/symlink\0".to_vec();
                line.extend_from_slice(target);
                line.push(0);
                return line;
            }
            Self::CharDevice(major, minor) => device("/hurd/chrdev", *major, *minor),
            Self::BlockDevice(major, minor) => device("/hurd/blkdev", *major, *minor),
            Self::Fifo => vec!["/hurd/fifo".into()],
            Self::Socket => vec!["/hurd/ifsock".into()],
        };
        words
            .into_iter()
            .flat_map(|w| w.into_bytes().into_iter().chain([0]))
            .collect()
    }

    /// The special file `node` with status `st` is, if any (a symbolic
    /// link's target read from `fs`).
    fn of<F: Netfs>(fs: &F, node: Node, st: &Stat) -> Result<Option<Self>, Errno> {
        // glibc's dev_t: major in bits 8-19 and from 32, minor in 0-7 and
        // from 20.
        let major = ((st.rdev >> 8) & 0xfff | (st.rdev >> 32) & !0xfff) as u32;
        let minor = (st.rdev & 0xff | (st.rdev >> 12) & !0xff) as u32;
        Ok(Some(match st.mode & S_IFMT {
            S_IFLNK => Self::Symlink(fs.readlink(node)?),
            S_IFCHR => Self::CharDevice(major, minor),
            S_IFBLK => Self::BlockDevice(major, minor),
            S_IFIFO => Self::Fifo,
            S_IFSOCK => Self::Socket,
            _ => return Ok(None),
        }))
    }
}

/// One open of a node: what `io_duplicate` shares.
struct Peropen<F: Netfs> {
    fs: Arc<F>,
    ipc: Arc<dyn Ipc>,
    node: Node,
    modes: AtomicI32,
    offset: Mutex<u64>,
    /// The file system's open when the open reads or writes (made at the
    /// lookup: an unlinked file stays readable, and a read-only file
    /// system refuses a write open at once).
    open: Option<F::Open>,
    /// The `..` of the root this open was reached from (a send right).
    root_parent: PortName,
    /// A symbolic link opened for reading (`O_NOLINK`): reads answer its
    /// target, as libnetfs's do (glibc's `readlink`).
    link: bool,
    /// The server's node locks, and the one this open holds.
    locks: Arc<lock::Locks>,
    lock: AtomicI32,
    /// Who holds this open's record locks in `records`.
    id: u64,
    records: Arc<rlock::RecordLocks>,
}

impl<F: Netfs> Peropen<F> {
    /// The file system's open for I/O in `mode` (`O_READ` or `O_WRITE`).
    fn open_for(&self, modes: i32, mode: i32) -> Result<&F::Open, KernReturn> {
        match &self.open {
            Some(o) if modes & mode != 0 => Ok(o),
            _ => Err(err(errno::EBADF)),
        }
    }
}

impl<F: Netfs> Peropen<F> {
    /// `io_seek`: the new file pointer (`SEEK_SET`, `SEEK_CUR`, `SEEK_END`).
    fn seek(&self, offset: i64, whence: i32) -> Result<i64, Errno> {
        let mut at = self.offset.lock();
        let base = match whence {
            0 => 0,
            1 => *at as i64,
            2 => self.stat()?.size,
            _ => return Err(errno::EINVAL),
        };
        let new = base
            .checked_add(offset)
            .filter(|n| *n >= 0)
            .ok_or(errno::EINVAL)?;
        *at = new as u64;
        Ok(new)
    }

    /// The node's status, through the open when there is one (an unlinked
    /// file has no other way).
    fn stat(&self) -> Result<Stat, Errno> {
        match &self.open {
            Some(open) => self.fs.fstat(self.node, open),
            None => self.fs.stat(self.node),
        }
    }
}

impl<F: Netfs> Drop for Peropen<F> {
    fn drop(&mut self) {
        self.locks.release(self.node, &self.lock);
        self.records.release(self.node, self.id);
        if let Some(open) = self.open.take() {
            self.fs.close(self.node, open);
        }
        self.fs.release(self.node);
        if self.root_parent.is_valid() {
            let _ = self.ipc.port_deallocate(self.root_parent);
        }
    }
}

struct Protid<F: Netfs> {
    po: Arc<Peropen<F>>,
    cred: Arc<Cred>,
}

/// What a port for clients stands for.
enum Opened<F: Netfs> {
    Protid(Arc<Protid<F>>),
    /// A node's identity port (`io_identity`).
    Identity(Node),
}

impl<F: Netfs> Clone for Opened<F> {
    fn clone(&self) -> Self {
        match self {
            Self::Protid(p) => Self::Protid(Arc::clone(p)),
            Self::Identity(n) => Self::Identity(*n),
        }
    }
}

/// The server's own ports.
#[derive(Clone, Copy)]
enum Own {
    Control,
    /// Where the startup server sends `startup_dosync`.
    SyncNotify,
    /// The file system's identity port (`io_identity`).
    Fsid,
}

/// A running file server.
pub struct NetfsServer<F: Netfs> {
    pool: Pool,
    fs: Arc<F>,
    control: PortName,
    /// Protids (an open each) and the server's own ports.
    objects: Objects<Opened<F>, Own>,
    /// The nodes' identity ports, and the file system's.
    identities: identity::Identities,
    fsid: PortName,
    /// Called once after `fsys_goaway` unmounted the file system.
    on_goaway: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The auth server `io_reauthenticate` asks (a send right), or null.
    auth: Mutex<PortName>,
    /// `file_lock`'s locks.
    locks: Arc<lock::Locks>,
    /// `file_record_lock`'s locks, and the id of the next open.
    records: Arc<rlock::RecordLocks>,
    next_open: AtomicU64,
}

/// What a request is answered with (built once the reply port is known).
enum Replied {
    Empty,
    Int32(i32),
    Int64(i64),
    /// `file_lock_stat`'s answer: the open's lock and the node's.
    LockStat(i32, i32),
    /// `file_record_lock`'s answer.
    Flock(fs::Flock),
    Stat(Box<[u8; io::STATBUF_LEN]>),
    Statfs(Box<[u8; fs::STATFSBUF_LEN]>),
    /// A new protid (`io_duplicate`).
    Port(PortName),
    /// A send right made of an existing protid (`file_getlinknode`).
    Same(PortName),
    /// `io_identity`'s answer: `node`'s identity port, its file number.
    Identity {
        node: Node,
        id: PortName,
        fileno: u64,
    },
    /// A new protid of the root (`fsys_getroot`).
    Root(PortName),
    /// `dir_lookup`'s answer; `new` when the port is a new protid.
    Lookup {
        retry: i32,
        name: String,
        port: PortName,
        disp: u8,
    },
    /// `io_server_version`'s answer.
    Version(String, [i32; 3]),
    /// Read data, or (`readdir` with the count) directory entries.
    Data {
        bytes: Vec<u8>,
        readdir: Option<i32>,
    },
    /// Data read straight into a region of this task (`len` bytes at
    /// `addr`), which the reply gives away.
    Region {
        addr: u64,
        len: usize,
    },
}

type Reply = Result<Replied, KernReturn>;

/// The Hurd's `UTIME_NOW` (glibc's `<sys/stat.h>` for GNU/Hurd).
pub const UTIME_NOW: i64 = -1;
/// The Hurd's `UTIME_OMIT`.
pub const UTIME_OMIT: i64 = -2;

impl<F: Netfs> NetfsServer<F> {
    /// A server of `fs` with a new control port (hand out send rights: the
    /// node's active translator, or a client's `fsys_getroot`).
    pub fn new(ipc: Arc<dyn Ipc>, fs: Arc<F>, config: PoolConfig) -> Result<Arc<Self>, KernReturn> {
        let pool = Pool::new(ipc, config)?;
        let control = pool.new_port()?;
        let fsid = pool.new_port()?;
        let objects = Objects::default();
        objects.add(control, Own::Control);
        objects.add(fsid, Own::Fsid);
        Ok(Arc::new(Self {
            pool,
            fs,
            control,
            objects,
            identities: identity::Identities::default(),
            fsid,
            on_goaway: Mutex::new(None),
            auth: Mutex::new(PortName::NULL),
            locks: Arc::default(),
            records: Arc::default(),
            next_open: AtomicU64::new(1),
        }))
    }

    /// The control port (a receive right of this task).
    #[must_use]
    pub fn control_port(&self) -> PortName {
        self.control
    }

    /// A port for the startup server's `startup_dosync` at system
    /// shutdown (hand it a send right with `startup_request_notification`):
    /// the file system is unmounted then, as `fsys_goaway` does.
    pub fn add_sync_port(&self) -> Result<PortName, KernReturn> {
        let port = self.pool.new_port()?;
        self.objects.add(port, Own::SyncNotify);
        Ok(port)
    }

    /// The auth server that tells the ids of a client reauthenticating
    /// (`io_reauthenticate`): a send right of this task, now the server's
    /// (on the Hurd, glibc's `getauth()`). Without one, `io_reauthenticate`
    /// is refused with `EOPNOTSUPP`.
    pub fn set_auth_server(&self, auth: PortName) {
        let old = core::mem::replace(&mut *self.auth.lock(), auth);
        if old.is_valid() {
            let _ = self.ipc().port_deallocate(old);
        }
    }

    /// The file system.
    #[must_use]
    pub fn fs(&self) -> &Arc<F> {
        &self.fs
    }

    /// Calls `f` after `fsys_goaway` or `startup_dosync` unmounted the file
    /// system (e.g. to end the process).
    pub fn on_goaway(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_goaway.lock() = Some(Box::new(f));
    }

    /// Protids alive.
    #[must_use]
    pub fn protid_count(&self) -> usize {
        self.objects.count(|o| matches!(o, Opened::Protid(_)))
    }

    /// Identity ports alive (`io_identity`'s, one per node asked).
    #[must_use]
    pub fn identity_count(&self) -> usize {
        self.objects.count(|o| matches!(o, Opened::Identity(_)))
    }

    /// Starts the worker pool.
    pub fn start(self: &Arc<Self>) {
        pool::start(self);
    }

    /// Stops serving: every protid goes (its open closed) and the ports.
    pub fn stop(&self) {
        self.pool.stop();
        self.objects.clear(&self.pool);
        self.identities.clear();
    }

    fn ipc(&self) -> &Arc<dyn Ipc> {
        self.pool.ipc()
    }

    /// A new protid for `po` as `cred`: the port and its disposition.
    fn new_protid(&self, po: Arc<Peropen<F>>, cred: Arc<Cred>) -> Result<PortName, KernReturn> {
        let (port, notify_port) = self.pool.new_open_port()?;
        self.add_protid(port, notify_port, po, cred);
        Ok(port)
    }

    /// Serves `port` (with its no-senders notification on `notify_port`)
    /// as a protid of `po` for `cred`.
    fn add_protid(
        &self,
        port: PortName,
        notify_port: PortName,
        po: Arc<Peropen<F>>,
        cred: Arc<Cred>,
    ) {
        self.objects.add_open(
            port,
            notify_port,
            Opened::Protid(Arc::new(Protid { po, cred })),
        );
    }

    /// `io_reauthenticate` as libnetfs answers it: a new protid of the
    /// same open, handed to the client by the auth server's rendezvous
    /// (`auth_server_authenticate` with the client's `rendezvous`, a send
    /// right now the server's), serving the effective ids the auth server
    /// tells. The new port waits, its messages unserved, until they are
    /// known; on an error it is destroyed and the client's
    /// `auth_user_authenticate` gets nothing.
    fn reauthenticate(&self, po: &Arc<Peropen<F>>, rendezvous: PortName) -> Result<(), KernReturn> {
        let ipc = &**self.ipc();
        let auth = *self.auth.lock();
        let opened = if auth.is_valid() {
            self.pool.new_open_port()
        } else {
            Err(err(errno::EOPNOTSUPP))
        };
        let (port, notify_port) = match opened {
            Ok(p) => p,
            Err(e) => {
                let _ = ipc.port_deallocate(rendezvous);
                return Err(e);
            }
        };
        // The rendezvous right stays ours when no message took it.
        let ids = match self.pool.set_serving(port, false) {
            Err(e) => {
                let _ = ipc.port_deallocate(rendezvous);
                Err(e)
            }
            Ok(()) => mach::rpc::rpc(ipc, |reply| {
                auth::server_authenticate_request(
                    auth,
                    reply,
                    (rendezvous, tn::MOVE_SEND),
                    (port, tn::MAKE_SEND),
                )
            })
            .inspect_err(|e| {
                if e.is_send_error() {
                    let _ = ipc.port_deallocate(rendezvous);
                }
            }),
        };
        let ids = ids.and_then(|m| auth::decode_server_authenticate_reply(ipc, m.as_bytes()));
        match ids {
            Ok(ids) => {
                let cred = Cred {
                    uids: ids.euids,
                    gids: ids.egids,
                };
                self.add_protid(port, notify_port, Arc::clone(po), Arc::new(cred));
                self.pool.set_serving(port, true)
            }
            Err(e) => {
                self.pool.destroy(port);
                self.pool.destroy(notify_port);
                Err(e)
            }
        }
    }

    /// Opens `node` (one reference, now the open's) with `flags`.
    fn new_peropen(
        &self,
        node: Node,
        flags: i32,
        root_parent: PortName,
        made: Option<F::Open>,
        link: bool,
    ) -> Result<Arc<Peropen<F>>, Errno> {
        let modes = flags & oflag::KEPT;
        let rw = modes & (oflag::O_READ | oflag::O_WRITE);
        // A link read through this open is read whole each time: the file
        // system has no open of it.
        let link = link && rw == oflag::O_READ;
        let open = if rw == 0 || made.is_some() || link {
            made
        } else {
            match self.fs.open(node, rw) {
                Ok(o) => Some(o),
                Err(e) => {
                    self.fs.release(node);
                    if root_parent.is_valid() {
                        let _ = self.ipc().port_deallocate(root_parent);
                    }
                    return Err(e);
                }
            }
        };
        Ok(Arc::new(Peropen {
            fs: Arc::clone(&self.fs),
            ipc: Arc::clone(self.ipc()),
            node,
            modes: AtomicI32::new(modes),
            offset: Mutex::new(0),
            open,
            root_parent,
            link,
            locks: Arc::clone(&self.locks),
            lock: AtomicI32::new(LOCK_UN),
            id: self.next_open.fetch_add(1, Ordering::Relaxed),
            records: Arc::clone(&self.records),
        }))
    }

    fn retire(&self, port: PortName) {
        self.objects.retire(&self.pool, port);
    }

    fn dispatch(&self, bytes: &[u8]) {
        let Ok(h) = Header::read(bytes) else { return };
        let object = self.objects.get(h.local);
        if let Some(Object::Notify(port)) = object {
            if h.id == notify::NO_SENDERS {
                self.no_senders(port, bytes);
            }
            return;
        }
        let responder = Responder::new(Arc::clone(self.ipc()), rpc::reply_to(&h));
        match object {
            Some(Object::Server(Own::Control)) => self.on_control(bytes, responder),
            Some(Object::Server(Own::SyncNotify)) => match startup::decode_dosync(bytes) {
                Ok(()) => self.go_away(0, responder),
                Err(e) => self.refuse(bytes, responder, e),
            },
            Some(Object::Open(Opened::Protid(p))) => self.on_protid(&p, &h, bytes, responder),
            _ => self.refuse(bytes, responder, err(errno::EOPNOTSUPP)),
        }
    }

    /// The last send right to `port` went: a protid goes; a node's
    /// identity port goes unless rights were made of it after the
    /// notification's count.
    fn no_senders(&self, port: PortName, bytes: &[u8]) {
        let Some(Object::Open(Opened::Identity(node))) = self.objects.get(port) else {
            return self.retire(port);
        };
        let count = msg::Reader::new(bytes)
            .ok()
            .and_then(|(_, mut r)| rpc::int32(&mut r).ok())
            .map_or(u32::MAX, |c| c as u32);
        self.identity_gone(self.identities.gone(node, port, count));
    }

    /// Carries out what [`identity::Identities`] says of an identity port.
    fn identity_gone(&self, gone: identity::Gone) {
        match gone {
            identity::Gone::Retire(port) => self.retire(port),
            identity::Gone::Rearm(port, notify_port, sync) => {
                let ipc = self.ipc();
                let asked = ipc.request_notification(
                    port,
                    notify::NO_SENDERS,
                    sync,
                    notify_port,
                    tn::MAKE_SEND_ONCE,
                );
                match asked {
                    Ok(previous) if previous.is_valid() => {
                        let _ = ipc.port_deallocate(previous);
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("identity port {}: no-senders again: {e}", port.0),
                }
            }
            identity::Gone::Stale => {}
        }
    }

    /// `io_identity`: the node's identity port (one more send right made
    /// of it by the reply), and its file number.
    fn identity(&self, node: Node, st: &Stat) -> Reply {
        let id = self.identities.get(node, || {
            let (port, notify_port) = self.pool.new_open_port()?;
            self.objects
                .add_open(port, notify_port, Opened::Identity(node));
            Ok((port, notify_port))
        })?;
        Ok(Replied::Identity {
            node,
            id,
            fileno: st.ino,
        })
    }

    fn on_control(&self, bytes: &[u8], responder: Responder) {
        let id = Header::read(bytes).map_or(0, |h| h.id);
        if id == fsys::ID_GETROOT {
            let reply = self.getroot(bytes);
            return self.send(responder, reply);
        }
        let req = match fsys::decode_request(bytes) {
            Ok(r) => r,
            Err(e) => return self.refuse(bytes, responder, e),
        };
        match req {
            fsys::Request::Syncfs { .. } => {
                let r = self.fs.syncfs().map_err(err);
                responder.reply_with(|to| match r {
                    Ok(()) => rpc::simple_reply(to),
                    Err(e) => rpc::error_reply(to, e),
                });
            }
            fsys::Request::Goaway { flags } => self.go_away(flags, responder),
            fsys::Request::Startup { control, .. } => {
                let _ = self.ipc().port_deallocate(control);
                responder.error(err(errno::EOPNOTSUPP));
            }
            fsys::Request::Init { proc_server, auth } => {
                let _ = self.ipc().port_deallocate(proc_server);
                let _ = self.ipc().port_deallocate(auth);
                responder.error(err(errno::EOPNOTSUPP));
            }
            _ => self.refuse(bytes, responder, err(errno::EOPNOTSUPP)),
        }
    }

    /// Unmounts, answers, and (if it went) stops serving.
    fn go_away(&self, flags: i32, responder: Responder) {
        let r = self.fs.goaway(flags).map_err(err);
        let ok = r.is_ok();
        responder.reply_with(|to| match r {
            Ok(()) => rpc::simple_reply(to),
            Err(e) => rpc::error_reply(to, e),
        });
        if ok {
            self.stop();
            if let Some(f) = self.on_goaway.lock().take() {
                f();
            }
        }
    }

    fn getroot(&self, bytes: &[u8]) -> Reply {
        let req = fsys::decode_getroot(bytes).inspect_err(|_| {
            rpc::destroy_request_resources(&**self.ipc(), bytes);
        })?;
        let ipc = &**self.ipc();
        // SAFETY: out-of-line id arrays came with this request.
        let cred = Arc::new(unsafe {
            Cred {
                uids: req.uids.take(ipc),
                gids: req.gids.take(ipc),
            }
        });
        let root = self.fs.root();
        let allowed = self
            .fs
            .stat(root)
            .and_then(|st| check_open(&cred, &st, req.flags));
        if let Err(e) = allowed {
            if req.dotdot.is_valid() {
                let _ = ipc.port_deallocate(req.dotdot);
            }
            return Err(err(e));
        }
        self.fs.retain(root);
        let po = self
            .new_peropen(root, req.flags, req.dotdot, None, false)
            .map_err(err)?;
        self.new_protid(po, cred).map(Replied::Root)
    }

    /// Answers `code` to a request not served, releasing what it carried.
    fn refuse(&self, bytes: &[u8], responder: Responder, code: KernReturn) {
        rpc::destroy_request_resources(&**self.ipc(), bytes);
        responder.error(code);
    }

    fn on_protid(&self, p: &Arc<Protid<F>>, h: &Header, bytes: &[u8], responder: Responder) {
        let unserved = err(errno::EOPNOTSUPP);
        if (io::ID_WRITE..=io::ID_LAST).contains(&h.id) {
            match io::decode_request(bytes) {
                Ok(io::Request::Other { .. }) => self.refuse(bytes, responder, unserved),
                Ok(req) => self.on_io(p, &req, responder),
                Err(e) => self.refuse(bytes, responder, e),
            }
            return;
        }
        match fs::decode_request(bytes) {
            Ok(fs::Request::Other { .. }) => self.refuse(bytes, responder, unserved),
            Ok(req) => {
                let carried = req.port();
                let reply = self.on_fs(p, h.local, &req);
                if let Some(port) = carried {
                    let _ = self.ipc().port_deallocate(port);
                }
                self.send(responder, reply);
            }
            Err(e) => self.refuse(bytes, responder, e),
        }
    }

    fn on_io(&self, p: &Arc<Protid<F>>, req: &io::Request<'_>, responder: Responder) {
        let po = &p.po;
        let modes = po.modes.load(Ordering::Acquire);
        let reply: Reply = match *req {
            io::Request::Write { data, offset } => {
                // SAFETY: out-of-line data came with this request.
                let data = unsafe { io::take_data(&**self.ipc(), data) };
                self.write(po, modes, &data, offset)
                    .map(|n| Replied::Int64(n as i64))
            }
            io::Request::Read { offset, amount } => self.read(po, modes, offset, amount),
            io::Request::Seek { offset, whence } => {
                po.seek(offset, whence).map(Replied::Int64).map_err(err)
            }
            io::Request::Readable => {
                if modes & oflag::O_READ == 0 {
                    Err(err(errno::EBADF))
                } else {
                    po.stat().map_err(err).map(|st| {
                        let at = *po.offset.lock() as i64;
                        Replied::Int64((st.size - at).max(0))
                    })
                }
            }
            io::Request::GetOpenmodes => Ok(Replied::Int32(modes)),
            io::Request::SetAllOpenmodes(bits) => {
                let keep = modes & !oflag::HONORED;
                po.modes
                    .store(keep | (bits & oflag::HONORED), Ordering::Release);
                Ok(Replied::Empty)
            }
            io::Request::SetSomeOpenmodes(bits) => {
                po.modes.fetch_or(bits & oflag::HONORED, Ordering::AcqRel);
                Ok(Replied::Empty)
            }
            io::Request::ClearSomeOpenmodes(bits) => {
                po.modes
                    .fetch_and(!(bits & oflag::HONORED), Ordering::AcqRel);
                Ok(Replied::Empty)
            }
            io::Request::Stat => po
                .stat()
                .map(|st| Replied::Stat(Box::new(st.encode())))
                .map_err(err),
            io::Request::Duplicate => self
                .new_protid(Arc::clone(po), Arc::clone(&p.cred))
                .map(Replied::Port),
            io::Request::Reauthenticate { rendezvous } => {
                self.reauthenticate(po, rendezvous).map(|()| Replied::Empty)
            }
            io::Request::RestrictAuth { uids, gids } => {
                let ipc = &**self.ipc();
                // SAFETY: out-of-line id arrays came with this request.
                let (uids, gids) = unsafe { (uids.take(ipc), gids.take(ipc)) };
                let cred = p.cred.restricted(uids, gids);
                self.new_protid(Arc::clone(po), Arc::new(cred))
                    .map(Replied::Port)
            }
            io::Request::ServerVersion => {
                let (name, v) = self.fs.server_version();
                Ok(Replied::Version(name.to_owned(), v))
            }
            // Reads and writes of a file never wait (libnetfs's answer).
            io::Request::Select { select_type }
            | io::Request::SelectTimeout { select_type, .. } => {
                Ok(Replied::Int32(select_type & !io::select::URG))
            }
            io::Request::Pathconf(name) => self.pathconf(name).map(Replied::Int32),
            io::Request::Identity => po
                .stat()
                .map_err(err)
                .and_then(|st| self.identity(po.node, &st)),
            io::Request::Other { .. } => Err(err(errno::EOPNOTSUPP)),
        };
        self.send(responder, reply);
    }

    /// `io_pathconf` as libnetfs answers it, with this file system's
    /// longest name and largest file.
    fn pathconf(&self, name: i32) -> Result<i32, KernReturn> {
        Ok(match name {
            pc::LINK_MAX
            | pc::MAX_CANON
            | pc::MAX_INPUT
            | pc::PIPE_BUF
            | pc::VDISABLE
            | pc::SOCK_MAXBUF
            | pc::PATH_MAX
            | pc::REC_MAX_XFER_SIZE
            | pc::REC_INCR_XFER_SIZE
            | pc::SYMLINK_MAX => -1,
            pc::NAME_MAX => {
                let namelen = self.fs.statfs().map_err(err)?.namelen;
                i32::try_from(namelen).unwrap_or(i32::MAX)
            }
            pc::CHOWN_RESTRICTED | pc::NO_TRUNC | pc::TWO_SYMLINKS => 1,
            pc::PRIO_IO | pc::SYNC_IO | pc::ASYNC_IO => 0,
            pc::FILESIZEBITS => self.fs.file_size_bits(),
            pc::REC_MIN_XFER_SIZE | pc::REC_XFER_ALIGN | pc::ALLOC_SIZE_MIN => 4096,
            _ => return Err(err(errno::EINVAL)),
        })
    }

    fn send(&self, responder: Responder, reply: Reply) {
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return responder.error(e),
        };
        match reply {
            Replied::Data { bytes, readdir } if bytes.len() > io::INLINE_MAX => {
                let len = bytes.len();
                match region_with(&**self.ipc(), &bytes) {
                    Ok(addr) => {
                        responder.reply_with_region(addr, len, |to| match readdir {
                            Some(n) => fs::readdir_reply_ool(to, addr, len, n),
                            None => io::read_reply_ool(to, addr, len),
                        });
                    }
                    Err(_) => responder.error(err(errno::ENOMEM)),
                }
            }
            Replied::Region { addr, len } => {
                responder.reply_with_region(addr, len, |to| io::read_reply_ool(to, addr, len));
            }
            r => {
                let new_protid = match r {
                    Replied::Port(port)
                    | Replied::Root(port)
                    | Replied::Lookup {
                        port,
                        disp: tn::MAKE_SEND,
                        ..
                    } => Some(port),
                    _ => None,
                };
                let identity = match r {
                    Replied::Identity { node, .. } => Some(node),
                    _ => None,
                };
                let sent = responder.reply_with(|to| match r {
                    Replied::Empty => rpc::simple_reply(to),
                    Replied::Int32(v) => io::int32_reply(to, v),
                    Replied::LockStat(mine, node) => fs::lock_stat_reply(to, mine, node),
                    Replied::Flock(lock) => fs::record_lock_reply(to, &lock),
                    Replied::Int64(v) => io::int64_reply(to, v),
                    Replied::Stat(st) => io::stat_reply(to, &st),
                    Replied::Statfs(st) => fs::statfs_reply(to, &st),
                    Replied::Version(name, v) => io::server_version_reply(to, &name, v),
                    Replied::Port(port) | Replied::Same(port) => {
                        io::port_reply(to, port, tn::MAKE_SEND)
                    }
                    Replied::Identity { id, fileno, .. } => {
                        io::identity_reply(to, id, self.fsid, fileno)
                    }
                    Replied::Root(port) => fsys::getroot_reply(to, port, tn::MAKE_SEND),
                    Replied::Lookup {
                        retry,
                        name,
                        port,
                        disp,
                    } => fs::lookup_reply(to, retry, &name, port, disp),
                    Replied::Data { bytes, readdir } => match readdir {
                        Some(n) => fs::readdir_reply_inline(to, &bytes, n),
                        None => io::read_reply_inline(to, &bytes),
                    },
                    Replied::Region { .. } => unreachable!("sent above"),
                });
                if let (Some(port), false) = (new_protid, sent) {
                    // Nobody holds a right to it: no-senders will never come.
                    self.retire(port);
                }
                if let (Some(node), false) = (identity, sent) {
                    self.identity_gone(self.identities.unmade(node));
                }
            }
        }
    }

    fn write(
        &self,
        po: &Peropen<F>,
        modes: i32,
        data: &[u8],
        offset: i64,
    ) -> Result<usize, KernReturn> {
        let open = po.open_for(modes, oflag::O_WRITE)?;
        if offset < -1 {
            return Err(err(errno::EINVAL));
        }
        // The file pointer's lock also orders appends.
        let mut at = po.offset.lock();
        let start = if modes & oflag::O_APPEND != 0 {
            po.stat().map_err(err)?.size as u64
        } else if offset == -1 {
            *at
        } else {
            offset as u64
        };
        let n = self.fs.write(po.node, open, start, data).map_err(err)?;
        if offset == -1 || modes & oflag::O_APPEND != 0 {
            *at = start + n as u64;
        }
        if modes & oflag::O_FSYNC != 0 {
            self.fs.sync(po.node, Some(open), true).map_err(err)?;
        }
        Ok(n)
    }

    fn read(
        &self,
        po: &Peropen<F>,
        modes: i32,
        offset: i64,
        amount: u64,
    ) -> Result<Replied, KernReturn> {
        if offset < -1 {
            return Err(err(errno::EINVAL));
        }
        if po.link && modes & oflag::O_READ != 0 {
            return self.read_link(po, offset, amount);
        }
        let open = po.open_for(modes, oflag::O_READ)?;
        let len = amount.min(READ_MAX as u64) as usize;
        // The file pointer's lock is held through a read from it.
        let mut pointer = (offset == -1).then(|| po.offset.lock());
        let at = pointer.as_deref().map_or(offset as u64, |p| *p);
        let (replied, n) = self.read_at(po, open, at, len)?;
        if let Some(p) = pointer.as_deref_mut() {
            *p += n as u64;
        }
        Ok(replied)
    }

    /// `io_read` of a link opened for reading: its target, from `offset`
    /// (−1: the file pointer).
    fn read_link(&self, po: &Peropen<F>, offset: i64, amount: u64) -> Result<Replied, KernReturn> {
        let target = self.fs.readlink(po.node).map_err(err)?;
        let mut pointer = (offset == -1).then(|| po.offset.lock());
        let at = pointer.as_deref().map_or(offset as u64, |p| *p);
        let from = usize::try_from(at).map_or(target.len(), |a| a.min(target.len()));
        let n = (target.len() - from).min(usize::try_from(amount).unwrap_or(usize::MAX));
        if let Some(p) = pointer.as_deref_mut() {
            *p += n as u64;
        }
        Ok(Replied::Data {
            bytes: target[from..from + n].to_vec(),
            readdir: None,
        })
    }

    /// Reads up to `len` bytes at `at`: into a buffer for an inline reply,
    /// or (more than a message holds) straight into the region an
    /// out-of-line reply gives away.
    fn read_at(
        &self,
        po: &Peropen<F>,
        open: &F::Open,
        at: u64,
        len: usize,
    ) -> Result<(Replied, usize), KernReturn> {
        if len <= io::INLINE_MAX {
            let mut bytes = vec![0u8; len];
            let n = self.fs.read(po.node, open, at, &mut bytes).map_err(err)?;
            bytes.truncate(n);
            return Ok((
                Replied::Data {
                    bytes,
                    readdir: None,
                },
                n,
            ));
        }
        let ipc = &**self.ipc();
        // The read overwrites what is sent of it.
        let addr = ipc.vm_allocate_for_overwrite(len)?;
        // SAFETY: a fresh region of `len` bytes, this task's alone until it
        // is sent or deallocated.
        let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
        let read = self.fs.read(po.node, open, at, buf);
        let short = match read {
            Ok(n) if n == len => return Ok((Replied::Region { addr, len }, n)),
            // The end of the file: what was read travels on its own.
            Ok(n) => Ok((buf[..n].to_vec(), n)),
            Err(e) => Err(err(e)),
        };
        // SAFETY: never sent; nothing refers to the region any more.
        let _ = unsafe { ipc.vm_deallocate(addr, len) };
        short.map(|(bytes, n)| {
            (
                Replied::Data {
                    bytes,
                    readdir: None,
                },
                n,
            )
        })
    }

    /// The node of one of our protids that a request carried.
    fn node_of(&self, port: PortName) -> Option<Node> {
        match self.objects.get(port) {
            Some(Object::Open(Opened::Protid(p))) => Some(p.po.node),
            _ => None,
        }
    }

    /// An `fs` request to protid `p` (on `port`).
    fn on_fs(&self, p: &Arc<Protid<F>>, port: PortName, req: &fs::Request<'_>) -> Reply {
        let node = p.po.node;
        let fs = &*self.fs;
        let simple = |r: Result<(), Errno>| r.map(|()| Replied::Empty).map_err(err);
        match *req {
            fs::Request::Lookup { name, flags, mode } => self.lookup(p, name, flags, mode),
            fs::Request::Readdir {
                entry,
                nentries,
                bufsiz,
            } => self.readdir(p, entry, nentries, bufsiz),
            fs::Request::Mkdir { .. }
            | fs::Request::Rmdir(_)
            | fs::Request::Unlink(_)
            | fs::Request::Rename { .. }
            | fs::Request::Link { .. } => simple(self.on_dir_change(p, req)),
            fs::Request::Chmod(_) | fs::Request::Chown { .. } | fs::Request::Utimens { .. } => {
                simple(self.on_attr(p, req))
            }
            fs::Request::SetSize(size) => {
                let modes = p.po.modes.load(Ordering::Acquire);
                if modes & oflag::O_WRITE == 0 {
                    return Err(err(errno::EBADF));
                }
                let size = u64::try_from(size).map_err(|_| err(errno::EINVAL))?;
                simple(fs.set_size(node, p.po.open.as_ref(), size))
            }
            fs::Request::Sync { omit_metadata, .. } => {
                simple(fs.sync(node, p.po.open.as_ref(), omit_metadata))
            }
            fs::Request::Syncfs { .. } => simple(fs.syncfs()),
            fs::Request::Statfs => {
                let s = fs.statfs().map_err(err)?;
                Ok(Replied::Statfs(Box::new(s.encode())))
            }
            fs::Request::Mkfile { flags, mode } => self.mkfile(p, flags, mode),
            fs::Request::Lock(flags) => simple(self.locks.acquire(node, &p.po.lock, flags)),
            fs::Request::RecordLock {
                cmd,
                mut lock,
                rendezvous,
            } => {
                // Locks per process: libfshelp has none either.
                if rendezvous.is_valid() {
                    return Err(err(errno::EOPNOTSUPP));
                }
                let asker = rlock::Asker {
                    owner: p.po.id,
                    modes: p.po.modes.load(Ordering::Acquire),
                    at: *p.po.offset.lock(),
                };
                let size = || p.po.stat().map(|st| st.size.max(0) as u64);
                self.records
                    .tweak(node, &asker, size, cmd, &mut lock)
                    .map_err(err)?;
                Ok(Replied::Flock(lock))
            }
            // libnetfs's answers: a send right to the protid itself (but
            // the root's, EBUSY); the command line a short-circuited
            // special file stands for (no passive translators are kept);
            // no active translator is ever running.
            fs::Request::GetLinknode if node == fs.root() => Err(err(errno::EBUSY)),
            fs::Request::GetLinknode => Ok(Replied::Same(port)),
            fs::Request::GetTranslator => {
                let st = fs.stat(node).map_err(err)?;
                match Special::of(fs, node, &st).map_err(err)? {
                    Some(special) => Ok(Replied::Data {
                        bytes: special.command_line(),
                        readdir: None,
                    }),
                    None => Err(err(errno::EINVAL)),
                }
            }
            fs::Request::GetTranslatorCntl => {
                let st = fs.stat(node).map_err(err)?;
                Err(err(if p.cred.owns(&st) {
                    errno::ENXIO
                } else {
                    errno::EPERM
                }))
            }
            fs::Request::LockStat => Ok(Replied::LockStat(
                p.po.lock.load(Ordering::Acquire),
                self.locks.status(node),
            )),
            fs::Request::CheckAccess => {
                let st = fs.stat(node).map_err(err)?;
                let allowed = ACCESS
                    .iter()
                    .filter(|(_, want)| p.cred.may(&st, *want))
                    .fold(0, |a, (flag, _)| a | flag);
                Ok(Replied::Int32(allowed))
            }
            fs::Request::SetTranslator {
                passive_flags,
                active_flags,
                passive,
                ..
            } => {
                // SAFETY: out-of-line data came with this request.
                let passive = unsafe { io::take_data(&**self.ipc(), passive) };
                simple(self.set_translator(p, passive_flags, active_flags, &passive))
            }
            fs::Request::Other { .. } => Err(err(errno::EOPNOTSUPP)),
        }
    }

    fn readdir(&self, p: &Protid<F>, entry: i32, nentries: i32, bufsiz: u64) -> Reply {
        let (node, cred) = (p.po.node, &*p.cred);
        let fs = &*self.fs;
        let st = fs.stat(node).map_err(err)?;
        if !is_dir(&st) {
            return Err(err(errno::ENOTDIR));
        }
        cred.check(&st, 4).map_err(err)?;
        let entries = fs.read_dir(node).map_err(err)?;
        let mut out = Vec::new();
        let mut n = 0i32;
        let skip = usize::try_from(entry).unwrap_or(usize::MAX);
        for (ino, kind, name) in entries.iter().skip(skip) {
            if nentries >= 0 && n >= nentries {
                break;
            }
            if bufsiz != 0 && out.len() + fs::dirent_len(name.len()) > bufsiz as usize {
                break;
            }
            fs::put_dirent(&mut out, *ino, *kind, name);
            n += 1;
        }
        Ok(Replied::Data {
            bytes: out,
            readdir: Some(n),
        })
    }

    /// `dir_mkdir`, `dir_rmdir`, `dir_unlink`, `dir_rename`, `dir_link` on
    /// the directory of `p`: write and execute permission on it (and on
    /// the target directory) first.
    fn on_dir_change(&self, p: &Protid<F>, req: &fs::Request<'_>) -> Result<(), Errno> {
        let (node, cred) = (p.po.node, &*p.cred);
        let fs = &*self.fs;
        let writable_dir = |n: Node| self.writable_dir(cred, n);
        match *req {
            fs::Request::Mkdir { name, mode } => {
                check_name(name)?;
                writable_dir(node)?;
                fs.mkdir(cred, node, name, mode & 0o7777)
            }
            fs::Request::Rmdir(name) | fs::Request::Unlink(name) => {
                let is_dir = matches!(*req, fs::Request::Rmdir(_));
                check_name(name)?;
                writable_dir(node)?;
                fs.remove(node, name, is_dir)
            }
            fs::Request::Rename {
                old,
                newdir,
                new,
                excl,
            } => {
                check_name(old)?;
                check_name(new)?;
                let Some(target) = self.node_of(newdir) else {
                    return Err(errno::EXDEV);
                };
                writable_dir(node)?;
                writable_dir(target)?;
                fs.rename(node, old, target, new, excl)
            }
            fs::Request::Link { file, name, excl } => {
                check_name(name)?;
                let Some(target) = self.node_of(file) else {
                    return Err(errno::EXDEV);
                };
                writable_dir(node)?;
                match fs.lookup(node, name) {
                    Ok((existing, _)) => {
                        fs.release(existing);
                        if excl {
                            return Err(errno::EEXIST);
                        }
                        fs.remove(node, name, false)?;
                    }
                    Err(errno::ENOENT) => {}
                    Err(e) => return Err(e),
                }
                fs.link(node, target, name)
            }
            _ => unreachable!("on_fs sends only directory changes"),
        }
    }

    /// That `dir` is a directory `cred` may change (write and search it).
    fn writable_dir(&self, cred: &Cred, dir: Node) -> Result<(), Errno> {
        let st = self.fs.stat(dir)?;
        if !is_dir(&st) {
            return Err(errno::ENOTDIR);
        }
        cred.check(&st, 3)
    }

    /// `file_chmod`, `file_chown`, `file_utimens`: the owner's (or root's),
    /// and setting both times to now for whoever may write.
    fn on_attr(&self, p: &Protid<F>, req: &fs::Request<'_>) -> Result<(), Errno> {
        let (node, cred) = (p.po.node, &*p.cred);
        let fs = &*self.fs;
        let st = fs.stat(node)?;
        match *req {
            fs::Request::Chmod(mode) => {
                if !cred.owns(&st) {
                    return Err(errno::EPERM);
                }
                fs.chmod(node, mode & 0o7777)
            }
            fs::Request::Chown { uid, gid } => {
                // The owner may change the group to one of theirs; only root
                // gives files away.
                let allowed = cred.is_root()
                    || (cred.owns(&st)
                        && (uid == u32::MAX || uid == st.uid)
                        && (gid == u32::MAX || cred.gids.contains(&gid)));
                if !allowed {
                    return Err(errno::EPERM);
                }
                fs.chown(node, uid, gid)
            }
            fs::Request::Utimens { atime, mtime } => {
                let now_only = |t: (i64, i64)| t.1 == UTIME_NOW || t.1 == UTIME_OMIT;
                let ok = cred.owns(&st) || (now_only(atime) && now_only(mtime) && cred.may(&st, 2));
                if !ok {
                    return Err(errno::EPERM);
                }
                fs.utimens(node, atime, mtime)
            }
            _ => unreachable!("on_fs sends only attribute changes"),
        }
    }

    /// `dir_mkfile`: a new file with no name, opened as `flags` asks (and
    /// for writing).
    fn mkfile(&self, p: &Arc<Protid<F>>, flags: i32, mode: u32) -> Reply {
        self.writable_dir(&p.cred, p.po.node).map_err(err)?;
        let flags = flags | oflag::O_WRITE;
        let (node, st, open) = self
            .fs
            .mkfile(
                &p.cred,
                p.po.node,
                (mode & 0o6777) | 0o100_000,
                flags & (oflag::O_READ | oflag::O_WRITE),
            )
            .map_err(err)?;
        self.open_node(p, (node, st), flags, Found::Made(open), false)
            .map(|r| match r {
                Replied::Lookup { port, .. } => Replied::Port(port),
                other => other,
            })
    }

    /// `file_set_translator` as libnetfs answers it without translators
    /// of its own: the short-circuited ones (`/hurd/symlink`, `chrdev`,
    /// `blkdev`, `fifo`, `ifsock`) make a new file the special file they
    /// stand for; anything else is `EOPNOTSUPP`.
    fn set_translator(
        &self,
        p: &Protid<F>,
        passive_flags: i32,
        active_flags: i32,
        passive: &[u8],
    ) -> Result<(), Errno> {
        if passive_flags & fs::FS_TRANS_SET == 0 && active_flags & fs::FS_TRANS_SET == 0 {
            return Ok(());
        }
        if active_flags & fs::FS_TRANS_SET != 0 || passive_flags & fs::FS_TRANS_FORCE != 0 {
            return Err(errno::EOPNOTSUPP);
        }
        let st = self.fs.stat(p.po.node)?;
        if !p.cred.owns(&st) {
            return Err(errno::EPERM);
        }
        match Special::parse(passive)? {
            Some(special) => self.fs.make_special(p.po.node, &special),
            None => Err(errno::EOPNOTSUPP),
        }
    }

    /// `dir_lookup`, as `netfs_S_dir_lookup` walks.
    fn lookup(&self, p: &Arc<Protid<F>>, name: &[u8], flags: i32, mode: u32) -> Reply {
        let fs = &*self.fs;
        let mut path: Vec<u8> = name.iter().copied().skip_while(|&c| c == b'/').collect();
        let start = fs.stat(p.po.node).map_err(err)?;
        fs.retain(p.po.node);
        if path.is_empty() {
            return self.open_node(p, (p.po.node, start), flags, Found::Existing, false);
        }
        let excl = flags & oflag::O_EXCL != 0;
        let mut create = flags & oflag::O_CREAT != 0;
        let modes = flags & (oflag::O_READ | oflag::O_WRITE);
        let mut dir = (p.po.node, start);
        let mut symlinks = 0;
        loop {
            let (comp, rest, mustbedir) = split(&path);
            let lastcomp = rest.is_empty();
            if mustbedir {
                create = false;
            }
            let creating = (lastcomp && create).then_some(modes);
            let step = self.step(p, &dir, &comp, creating, excl, mode);
            let (np, found) = match step {
                Ok(Step::Node(np, found)) => (np, found),
                Ok(Step::Up) => {
                    fs.release(dir.0);
                    let retry = if lastcomp && mustbedir {
                        "/".into()
                    } else {
                        String::from_utf8_lossy(&rest).into_owned()
                    };
                    return Ok(Replied::Lookup {
                        retry: FS_RETRY_REAUTH,
                        name: retry,
                        port: p.po.root_parent,
                        disp: tn::COPY_SEND,
                    });
                }
                Err(e) => {
                    fs.release(dir.0);
                    return Err(err(e));
                }
            };
            let follow = !lastcomp
                || mustbedir
                || flags & (oflag::O_NOLINK | oflag::O_NOTRANS | oflag::O_NOFOLLOW) == 0;
            // A node just made is a regular file, never a link.
            if np.1.mode & S_IFMT == S_IFLNK && follow {
                symlinks += 1;
                let target = fs.readlink(np.0);
                fs.release(np.0);
                let target = match target {
                    Ok(_) if symlinks > MAX_SYMLINKS => Err(errno::ELOOP),
                    t => t,
                };
                let mut target = match target {
                    Ok(t) => t,
                    Err(e) => {
                        fs.release(dir.0);
                        return Err(err(e));
                    }
                };
                if !rest.is_empty() {
                    target.push(b'/');
                    target.extend_from_slice(&rest);
                }
                if mustbedir {
                    target.push(b'/');
                }
                if target.first() == Some(&b'/') {
                    fs.release(dir.0);
                    return Ok(Replied::Lookup {
                        retry: FS_RETRY_MAGICAL,
                        name: String::from_utf8_lossy(&target).into_owned(),
                        port: PortName::NULL,
                        disp: tn::COPY_SEND,
                    });
                }
                // Symbolic links to nothing do not create it.
                if lastcomp {
                    create = false;
                }
                path = target;
                continue;
            }
            fs.release(dir.0);
            if lastcomp {
                return self.open_node(p, np, flags, found, mustbedir);
            }
            dir = np;
            path = rest;
        }
    }

    /// One component of a lookup from `dir` (a node and its status),
    /// made if missing when `create` gives the modes to open it for.
    fn step(
        &self,
        p: &Protid<F>,
        dir: &(Node, Stat),
        comp: &[u8],
        create: Option<i32>,
        excl: bool,
        mode: u32,
    ) -> Result<Step<F::Open>, Errno> {
        let fs = &*self.fs;
        let (dnode, dst) = dir;
        if !is_dir(dst) {
            return Err(errno::ENOTDIR);
        }
        p.cred.check(dst, 1)?;
        if comp == b"." || (comp == b".." && *dnode == fs.root()) {
            if comp == b".." && p.po.root_parent.is_valid() {
                return Ok(Step::Up);
            }
            fs.retain(*dnode);
            return Ok(Step::Node((*dnode, *dst), Found::Existing));
        }
        check_name(comp)?;
        loop {
            match fs.lookup(*dnode, comp) {
                Ok((np, _)) if create.is_some() && excl => {
                    fs.release(np);
                    return Err(errno::EEXIST);
                }
                Ok(found) => return Ok(Step::Node(found, Found::Existing)),
                Err(errno::ENOENT) if let Some(modes) = create => {
                    p.cred.check(dst, 2)?;
                    let mode = (mode & 0o6777) | 0o100_000;
                    match fs.create(&p.cred, *dnode, comp, mode, modes) {
                        Ok((node, st, open)) => {
                            return Ok(Step::Node((node, st), Found::Made(open)));
                        }
                        // Someone made it meanwhile: look again.
                        Err(errno::EEXIST) if !excl => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The end of a lookup: a new protid for node `np` (whose reference it
    /// takes; with its status) opened with `flags`.
    fn open_node(
        &self,
        p: &Arc<Protid<F>>,
        (np, st): (Node, Stat),
        flags: i32,
        found: Found<F::Open>,
        mustbedir: bool,
    ) -> Reply {
        let fs = &*self.fs;
        let newnode = matches!(found, Found::Made(_));
        let checked = if (mustbedir || flags & oflag::O_DIRECTORY != 0) && !is_dir(&st) {
            Err(errno::ENOTDIR)
        } else if newnode {
            Ok(())
        } else {
            check_open(&p.cred, &st, flags)
        };
        let made = match found {
            Found::Made(open) => open,
            Found::Existing => None,
        };
        // The new open holds a reference to the root's parent too.
        let root_parent = p.po.root_parent;
        let refused = checked.err().or_else(|| {
            (root_parent.is_valid()
                && self
                    .ipc()
                    .port_mod_refs(root_parent, mach::port::Right::Send, 1)
                    != KernReturn::SUCCESS)
                .then_some(errno::EIO)
        });
        if let Some(e) = refused {
            if let Some(open) = made {
                fs.close(np, open);
            }
            fs.release(np);
            return Err(err(e));
        }
        let po = self
            .new_peropen(np, flags, root_parent, made, st.mode & S_IFMT == S_IFLNK)
            .map_err(err)?;
        if flags & oflag::O_TRUNC != 0
            && flags & oflag::O_WRITE != 0
            && st.size != 0
            && !is_dir(&st)
        {
            fs.set_size(np, po.open.as_ref(), 0).map_err(err)?;
        }
        let port = self.new_protid(po, Arc::clone(&p.cred))?;
        Ok(Replied::Lookup {
            retry: FS_RETRY_NORMAL,
            name: String::new(),
            port,
            disp: tn::MAKE_SEND,
        })
    }
}

enum Step<O> {
    /// The node (one reference) with its status, and how it came.
    Node((Node, Stat), Found<O>),
    /// `..` at the root: the client goes on at the root's parent.
    Up,
}

/// How a lookup's node came: there already, or made by it (with the open
/// its making left, if any).
enum Found<O> {
    Existing,
    Made(Option<O>),
}

/// The first component of `path`, the rest (slashes skipped), and whether
/// the component must be a directory (the path ended in `/`).
fn split(path: &[u8]) -> (Vec<u8>, Vec<u8>, bool) {
    match path.iter().position(|&c| c == b'/') {
        None => (path.to_vec(), Vec::new(), false),
        Some(i) => {
            let rest: Vec<u8> = path[i..]
                .iter()
                .copied()
                .skip_while(|&c| c == b'/')
                .collect();
            let mustbedir = rest.is_empty();
            (path[..i].to_vec(), rest, mustbedir)
        }
    }
}

/// A name a directory call may take: not empty, no `/`, at most 255
/// bytes (a `struct dirent`'s `d_namlen`).
fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name.contains(&b'/') {
        Err(errno::EINVAL)
    } else if name.len() > 255 {
        Err(errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

/// libnetfs's `netfs_check_open_permissions`: read, write, execute as the
/// open asks; no writing to a directory.
fn check_open(cred: &Cred, st: &Stat, flags: i32) -> Result<(), Errno> {
    if flags & oflag::O_WRITE != 0 && is_dir(st) {
        return Err(errno::EISDIR);
    }
    let want = ACCESS
        .iter()
        .filter(|(flag, _)| flags & flag != 0)
        .fold(0, |w, (_, bit)| w | bit);
    cred.check(st, want)
}

impl<F: Netfs> Serve for NetfsServer<F> {
    fn pool(&self) -> &Pool {
        &self.pool
    }

    fn handle(&self, bytes: &[u8]) {
        self.dispatch(bytes);
    }
}
