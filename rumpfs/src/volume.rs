//! The mounted file system: NetBSD's FFS, ext2fs or msdosfs on an etfs
//! block device over the store's window, and the node table the front
//! ends name files by.
//!
//! Front ends speak of nodes (inode numbers) where the kernel's calls take
//! paths. The table remembers, for each node a client holds, the
//! directory entries (parent node, name) it was found under, and builds a
//! node's path from them when a call needs one; renames, links and
//! removals made through the volume keep it true. Paths longer than the
//! kernel's `PATH_MAX` are walked with `openat` from an open directory.
//! Every call runs as the kernel's root: permission checks belong to the
//! front end (FUSE's `default_permissions`).
//!
//! File data goes through NetBSD's page cache under one rule: no page of
//! a file is ever busy (under I/O) while another call reads that file.
//! The 2016 kernel's read-ahead takes the pages after a read
//! asynchronously and, when the first of them is busy, hands a NULL page
//! to `uvm_page_unbusy`, whose DIAGNOSTIC assertion dereferences it: a
//! read-ahead still in flight when the next read comes, two readers of one
//! file, or a reader and the syncer writing that file's dirty pages back
//! crash the kernel. So block I/O is done in the calling thread
//! (`RUMP_BIO_THREADS=0`: a read-ahead is complete when its read
//! returns), reads, writes, truncations and fsyncs of one file are
//! serialised ([`Volume::node_io`]), every write's pages are written back
//! to the store before the write is answered (`POSIX_FADV_DONTNEED`, which
//! starts the write-back without waiting for stable storage; with block
//! I/O in the caller it is done on return, and the syncer finds no dirty
//! file pages), and [`Volume::sync`] excludes all file I/O while it runs.
//!
//! NetBSD's msdosfs (2016) loses cluster chains and leaves stale entries
//! when two calls change one FAT file system at once (seen with eight
//! clients renaming and writing: fsck.fat finds shared clusters), so every
//! call into a FAT volume is serialised ([`Volume::serial`]). FFS and
//! ext2 take concurrent calls.

use std::collections::HashMap;
use std::io;

use parking_lot::{Mutex, RwLock};
use rump::vfs::{At, DirEntry, PATH_MAX, Stat, StatVfs, Timespec, UTIME_OMIT};
use rump::{Etfs, EtfsType, Fd, Rump, RumpError, mount, oflags};

use crate::detect::{self, FsType};
use crate::store::{Store, Window};

/// A node: the file system's inode number.
pub type Ino = u64;

/// Locks file I/O is serialised by (files whose inode numbers fall in one
/// shard wait for each other).
const IO_SHARDS: u64 = 64;

/// The kernel's page size.
const PAGE: u64 = 4096;

/// Reads this long or longer are made in two halves, the second first
/// ([`Volume::read`]): each half is then at least the kernel's first
/// read-ahead window (`MAXPHYS`, 64 KiB) past the end of the previous
/// read, so no read is sequential to the kernel.
const SPLIT_READ: usize = 128 << 10;

/// Where the file system is mounted in the kernel.
const MOUNT_POINT: &[u8] = b"/rumpfs";
/// The etfs key of the block device under it.
const DEVICE: &str = "/dev/rumpfs0";

/// How to mount.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store.
    pub store: Store,
    /// The type, or `None` to detect it.
    pub fstype: Option<FsType>,
    /// Mount read-only (and open the host read-only).
    pub readonly: bool,
    /// Every write reaches the store before it is answered.
    pub sync: bool,
    /// Serve FFS and ext2 read-write even on a kernel whose directory
    /// compaction is known to corrupt directories
    /// ([`rump::DIR_COMPACTION_SAFE`]).
    pub accept_kernel_defect: bool,
    /// Where `device:NAME` stores are opened.
    pub device_master: Option<crate::store::DeviceMaster>,
}

/// Why a kernel may not serve `fstype` read-write, if it may not.
#[must_use]
pub fn kernel_defect(fstype: FsType) -> Option<&'static str> {
    (!rump::DIR_COMPACTION_SAFE && matches!(fstype, FsType::Ffs | FsType::Ext2)).then_some(
        "this rump kernel corrupts FFS and ext2 directories when it compacts a directory \
         block after removals or renames (gcc expanded an overlapping memcpy in \
         ufs_direnter/ext2fs_direnter inline; docs/rumpfs.md): serve it --readonly, rebuild \
         the kernel with netbsd-src/build-kernel.sh, or pass --accept-kernel-defect for \
         workloads that only add files",
    )
}

/// An error: the kernel's (a NetBSD errno) or the host's.
pub type Error = RumpError;

/// Mounts the etfs device as `fstype` on the mount point, with the flags
/// `opts` ask for.
fn mount_fs(rump: Rump, fstype: FsType, opts: &Options) -> Result<(), Error> {
    let mnt = std::str::from_utf8(MOUNT_POINT).expect("ASCII");
    let mut flags = mount::MNT_NOATIME;
    if opts.readonly {
        flags |= mount::MNT_RDONLY;
    }
    if opts.sync {
        flags |= mount::MNT_SYNCHRONOUS;
    }
    let dev = std::ffi::CString::new(DEVICE).expect("no NUL");
    match fstype {
        FsType::Ffs | FsType::Ext2 => {
            let mut args = mount::UfsArgs {
                fspec: dev.as_ptr(),
            };
            // SAFETY: ufs_args is what ffs and ext2fs take; `dev` lives
            // across the call.
            unsafe { rump.mount(fstype.netbsd_name(), mnt, flags, &mut args) }
        }
        FsType::Fat => {
            let mut args = mount::MsdosfsArgs::new(dev.as_ptr(), 0o755);
            // SAFETY: msdosfs_args is what msdos takes; as above.
            unsafe { rump.mount(fstype.netbsd_name(), mnt, flags, &mut args) }
        }
    }
}

/// The errno (NetBSD's) for `op`.
fn err(op: &str, errno: i32) -> Error {
    RumpError::kernel(op, errno)
}

use hypercall::errno::nb;

#[derive(Debug, Default)]
struct Node {
    /// (parent, name) entries the node was found under.
    links: Vec<(Ino, Box<[u8]>)>,
    /// References front ends hold (FUSE's lookup count).
    lookups: u64,
    /// Links of other nodes that name this one as their parent.
    children: u64,
}

#[derive(Debug)]
struct Table {
    root: Ino,
    nodes: HashMap<Ino, Node>,
    /// Which node each remembered (parent, name) entry names.
    entries: HashMap<(Ino, Box<[u8]>), Ino>,
    /// The next node id handed out where the file system's own numbers do
    /// not stay with a file (FAT's change when it is renamed, and are
    /// reused): far above any FAT file number.
    next_id: Ino,
}

impl Table {
    fn new(root: Ino) -> Self {
        Table {
            root,
            nodes: HashMap::new(),
            entries: HashMap::new(),
            next_id: 1 << 40,
        }
    }

    /// The node entry `name` of `parent` is remembered as naming.
    fn entry(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.entries.get(&(parent, name.into())).copied()
    }

    /// The node for entry `name` of `parent`: the one remembered, else a
    /// new id.
    fn id_for(&mut self, parent: Ino, name: &[u8]) -> Ino {
        if let Some(id) = self.entry(parent, name) {
            return id;
        }
        self.next_id += 1;
        self.next_id
    }

    /// Records that `ino` was found as `name` in `parent`, counting a
    /// front-end reference when `lookup`. A node the entry named before
    /// loses it.
    fn remember(&mut self, parent: Ino, name: &[u8], ino: Ino, lookup: bool) {
        if self.entry(parent, name).is_some_and(|old| old != ino) {
            self.drop_entry(parent, name);
        }
        let node = self.nodes.entry(ino).or_default();
        if lookup {
            node.lookups += 1;
        }
        if self.entries.insert((parent, name.into()), ino).is_none() {
            node.links.push((parent, name.into()));
            self.nodes.entry(parent).or_default().children += 1;
        }
    }

    /// Forgets the entry `name` in `parent`.
    fn drop_entry(&mut self, parent: Ino, name: &[u8]) {
        let Some(ino) = self.entries.remove(&(parent, name.into())) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.links.retain(|(p, l)| !(*p == parent && **l == *name));
        }
        self.unpin(parent);
        self.collect(ino);
    }

    /// Moves the entry `name` in `parent` to `new_name` in `new_parent`.
    fn move_entry(&mut self, parent: Ino, name: &[u8], new_parent: Ino, new_name: &[u8]) {
        self.drop_entry(new_parent, new_name);
        let Some(ino) = self.entries.remove(&(parent, name.into())) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&ino) {
            for link in &mut node.links {
                if link.0 == parent && *link.1 == *name {
                    *link = (new_parent, new_name.into());
                }
            }
        }
        self.entries.insert((new_parent, new_name.into()), ino);
        self.nodes.entry(new_parent).or_default().children += 1;
        self.unpin(parent);
    }

    fn unpin(&mut self, parent: Ino) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children = p.children.saturating_sub(1);
            self.collect(parent);
        }
    }

    /// Drops `ino` once nothing refers to it (never the root).
    fn collect(&mut self, ino: Ino) {
        let Some(n) = self.nodes.get(&ino) else {
            return;
        };
        if ino != self.root && n.lookups == 0 && n.children == 0 {
            let n = self.nodes.remove(&ino).expect("present");
            for (p, name) in n.links {
                self.entries.remove(&(p, name));
                self.unpin(p);
            }
        }
    }

    /// One more front-end reference to a known node (or the root).
    fn retain(&mut self, ino: Ino) {
        self.nodes.entry(ino).or_default().lookups += 1;
    }

    /// The directory a known directory was found in (the root's own).
    fn parent(&self, ino: Ino) -> Option<Ino> {
        if ino == self.root {
            return Some(ino);
        }
        self.nodes.get(&ino)?.links.first().map(|l| l.0)
    }

    fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            self.collect(ino);
        }
    }

    /// The names from the root down to `ino` (empty for the root), or
    /// `None` when the node is not known under any name (removed, or
    /// never looked up).
    fn names(&self, ino: Ino) -> Option<Vec<Box<[u8]>>> {
        let mut out = Vec::new();
        let mut at = ino;
        // A chain longer than the table would be a cycle.
        for _ in 0..=self.nodes.len() {
            if at == self.root {
                out.reverse();
                return Some(out);
            }
            let (p, name) = self.nodes.get(&at)?.links.first()?;
            out.push(name.clone());
            at = *p;
        }
        None
    }
}

/// A path in the kernel: relative to an open directory when the whole
/// path would be longer than `PATH_MAX`.
struct Loc {
    base: Option<Fd>,
    rel: Vec<u8>,
}

impl Loc {
    fn at(&self) -> At<'_> {
        match &self.base {
            None => At::Cwd,
            Some(fd) => At::Dir(fd),
        }
    }
}

/// Attributes to change ([`Volume::set_attr`]); `None` leaves one as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Size.
    pub size: Option<u64>,
    /// Access time ([`rump::vfs::UTIME_NOW`] in `nsec` for now).
    pub atime: Option<Timespec>,
    /// Modification time.
    pub mtime: Option<Timespec>,
}

/// The mounted file system.
pub struct Volume {
    rump: Rump,
    root: Ino,
    fstype: FsType,
    readonly: bool,
    table: Mutex<Table>,
    /// Serialises I/O on one file (by inode, in shards).
    io: Box<[Mutex<()>]>,
    /// Taken shared by file I/O, exclusively by [`Volume::sync`].
    gate: RwLock<()>,
    /// Every call into a FAT file system takes it ([`Volume::serial`]).
    fat: Mutex<()>,
    /// The block device, registered while the file system is mounted.
    etfs: Mutex<Option<Etfs>>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("fstype", &self.fstype)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Volume {
    /// Boots the kernel, registers the store's window as a block device,
    /// detects or checks the type, and mounts it.
    pub fn mount(opts: &Options) -> io::Result<Self> {
        let window = Window::open(&opts.store, opts.readonly, opts.device_master.as_ref())?;
        let head = window.head(detect::PROBE_LEN)?;
        let found = detect::detect(&head);
        let fstype = match (opts.fstype, found.clone()) {
            (Some(t), _) | (None, Ok(t)) => t,
            (None, Err(what)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {what}; name the type with -t", window.path.display()),
                ));
            }
        };
        if !opts.readonly
            && !opts.accept_kernel_defect
            && let Some(why) = kernel_defect(fstype)
        {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{}: {why}", window.path.display()),
            ));
        }
        if fstype == FsType::Fat && !opts.readonly {
            window.forget_fat_free_count(&head)?;
        }
        // Block I/O done in the caller: see the module's notes.
        hypercall::param::set("RUMP_BIO_THREADS", "0");
        // The host's page cache as the store's write cache (see
        // `Volume::flush`), or, with `--sync`, every write the kernel waits
        // for stable on the host's storage before it completes.
        hypercall::bio::set_sync_writes_stable(opts.sync);
        let rump = Rump::init()?;
        rump.bind_thread()?;
        let etfs = if window.whole {
            rump.etfs_register(DEVICE, &window.path, EtfsType::Blk)?
        } else {
            rump.etfs_register_window(
                DEVICE,
                &window.path,
                EtfsType::Blk,
                window.begin,
                window.len,
            )?
        };
        let mnt = std::str::from_utf8(MOUNT_POINT).expect("ASCII");
        match rump.mkdir(mnt, 0o755) {
            Ok(()) => {}
            Err(e) if e.errno().map(|e| e.0) == Some(nb::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        mount_fs(rump, fstype, opts).map_err(|e| {
            let looks = match (&found, opts.fstype) {
                (Ok(t), Some(asked)) if *t != asked => format!("; the store looks like {t}"),
                (Err(w), Some(_)) => format!("; the store looks like {w}"),
                _ => String::new(),
            };
            io::Error::new(
                e.errno().map_or(io::ErrorKind::Other, |n| n.to_io().kind()),
                format!(
                    "{}: NetBSD's {fstype} refused to mount it ({e}){looks}",
                    window.path.display()
                ),
            )
        })?;
        let root = rump.stat_at(At::Cwd, MOUNT_POINT, true)?.ino;
        log::info!(
            "mounted {fstype} from {} ({} bytes at {}){}",
            window.path.display(),
            window.len,
            window.begin,
            if opts.readonly { ", read-only" } else { "" }
        );
        Ok(Volume {
            rump,
            root,
            fstype,
            readonly: opts.readonly,
            table: Mutex::new(Table::new(root)),
            io: (0..IO_SHARDS).map(|_| Mutex::new(())).collect(),
            gate: RwLock::new(()),
            fat: Mutex::new(()),
            etfs: Mutex::new(Some(etfs)),
        })
    }

    /// The root's node.
    #[must_use]
    pub fn root(&self) -> Ino {
        self.root
    }

    /// The file system type.
    #[must_use]
    pub fn fstype(&self) -> FsType {
        self.fstype
    }

    /// Whether it is mounted read-only.
    #[must_use]
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Gives the calling thread its own kernel LWP (front ends' worker
    /// threads call this first).
    pub fn bind(&self) {
        if let Err(e) = self.rump.bind_thread() {
            log::warn!("{e}");
        }
    }

    /// The lock a FAT volume's calls are serialised by (see the module's
    /// notes); `None` for FFS and ext2.
    fn serial(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        (self.fstype == FsType::Fat).then(|| self.fat.lock())
    }

    /// Closes a descriptor of this volume (in the volume's order for FAT).
    pub fn close(&self, fd: Fd) {
        let _fat = self.serial();
        if let Err(e) = fd.close() {
            log::warn!("{e}");
        }
    }

    fn locate(&self, ino: Ino, child: Option<&[u8]>) -> Result<Loc, Error> {
        let names = self
            .table
            .lock()
            .names(ino)
            .ok_or_else(|| err("node not known under any name", nb::ENOENT))?;
        let mut loc = Loc {
            base: None,
            rel: MOUNT_POINT.to_vec(),
        };
        for name in names.iter().map(|n| &**n).chain(child) {
            if loc.rel.len() + 1 + name.len() >= PATH_MAX {
                let fd =
                    self.rump
                        .open_at(loc.at(), &loc.rel, oflags::RDONLY | oflags::DIRECTORY, 0)?;
                loc = Loc {
                    base: Some(fd),
                    rel: Vec::new(),
                };
            }
            if !loc.rel.is_empty() {
                loc.rel.push(b'/');
            }
            loc.rel.extend_from_slice(name);
        }
        Ok(loc)
    }

    /// Checks a name a client gave for one directory entry.
    fn check_name(&self, name: &[u8]) -> Result<(), Error> {
        if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
            return Err(err("name with '/' or NUL, or empty", nb::EINVAL));
        }
        if name.len() > self.name_max() {
            return Err(err(
                "name longer than the file system takes",
                nb::ENAMETOOLONG,
            ));
        }
        Ok(())
    }

    /// The longest name served. NetBSD's msdosfs (2016) makes long names
    /// of 254 and 255 characters that its own lookup then cannot find, so
    /// FAT names stop at 253 bytes; FFS and ext2 check their 255 themselves.
    #[must_use]
    pub fn name_max(&self) -> usize {
        match self.fstype {
            FsType::Fat => 253,
            FsType::Ffs | FsType::Ext2 => rump::vfs::NAME_MAX,
        }
    }

    /// Gives the status `st` of entry `name` in `parent` its node id
    /// (`st.ino` from then on): the inode number where the file system
    /// keeps one per file (FFS, ext2), else the id the entry was given
    /// (FAT, whose numbers follow a file's directory slot). The entry is
    /// remembered, with a front-end reference.
    fn identify(&self, parent: Ino, name: &[u8], st: &mut Stat) {
        let mut t = self.table.lock();
        if self.fstype == FsType::Fat {
            st.ino = t.id_for(parent, name);
        }
        t.remember(parent, name, st.ino, true);
    }

    /// Looks `name` up in directory `parent`; the node (`st.ino`) is
    /// remembered and counts one front-end reference.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Stat, Error> {
        let _fat = self.serial();
        self.check_name(name)?;
        if name == b"." || name == b".." {
            return Err(err("lookup of . or ..", nb::EINVAL));
        }
        let loc = self.locate(parent, Some(name))?;
        let mut st = self.rump.stat_at(loc.at(), &loc.rel, false)?;
        self.identify(parent, name, &mut st);
        Ok(st)
    }

    /// The node id entry `name` of `parent` is known by, if it is known
    /// (for listings without attributes), else `fallback`.
    #[must_use]
    pub fn entry_id(&self, parent: Ino, name: &[u8], fallback: Ino) -> Ino {
        match self.fstype {
            FsType::Fat => self.table.lock().entry(parent, name).unwrap_or(fallback),
            FsType::Ffs | FsType::Ext2 => fallback,
        }
    }

    /// One more front-end reference to `ino`, a node a front end holds.
    pub fn retain(&self, ino: Ino) {
        self.table.lock().retain(ino);
    }

    /// The parent of directory `ino` (a node a front end holds), with a
    /// front-end reference.
    pub fn lookup_parent(&self, ino: Ino) -> Result<Ino, Error> {
        let mut t = self.table.lock();
        let parent = t
            .parent(ino)
            .ok_or_else(|| err("the parent of a removed directory", nb::ENOENT))?;
        t.retain(parent);
        Ok(parent)
    }

    /// Drops `n` front-end references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.table.lock().forget(ino, n);
    }

    /// The status of `ino`.
    pub fn stat(&self, ino: Ino) -> Result<Stat, Error> {
        let _fat = self.serial();
        let loc = self.locate(ino, None)?;
        let mut st = self.rump.stat_at(loc.at(), &loc.rel, false)?;
        st.ino = ino;
        Ok(st)
    }

    /// The status of `ino` through its open descriptor `fd`.
    pub fn fstat(&self, ino: Ino, fd: &Fd) -> Result<Stat, Error> {
        let _fat = self.serial();
        Self::fstat_unserialised(ino, fd)
    }

    fn fstat_unserialised(ino: Ino, fd: &Fd) -> Result<Stat, Error> {
        let mut st = fd.stat()?;
        st.ino = ino;
        Ok(st)
    }

    /// Opens `ino` with NetBSD `flags`.
    pub fn open(&self, ino: Ino, flags: i32) -> Result<Fd, Error> {
        let _fat = self.serial();
        self.open_unserialised(ino, flags)
    }

    fn open_unserialised(&self, ino: Ino, flags: i32) -> Result<Fd, Error> {
        let loc = self.locate(ino, None)?;
        self.rump
            .open_at(loc.at(), &loc.rel, flags | oflags::NOFOLLOW, 0)
    }

    /// Writes node `ino` to the store with no open of the caller's: a
    /// directory's entries and metadata, a regular file's data and
    /// metadata (opened read-only for it). Other nodes (symbolic links,
    /// devices, FIFOs) cannot be opened without side effects, so the whole
    /// file system is written for them.
    pub fn fsync_node(&self, ino: Ino) -> Result<(), Error> {
        let serial = self.serial();
        let loc = self.locate(ino, None)?;
        let flags = match self.rump.stat_at(loc.at(), &loc.rel, false)?.kind() {
            rump::vfs::mode::S_IFDIR => oflags::RDONLY | oflags::DIRECTORY,
            rump::vfs::mode::S_IFREG => oflags::RDONLY,
            _ => {
                // `sync` waits for all file I/O, which may wait for FAT's
                // serialisation.
                drop(serial);
                self.sync();
                return Ok(());
            }
        };
        let fd = self
            .rump
            .open_at(loc.at(), &loc.rel, flags | oflags::NOFOLLOW, 0)?;
        let synced = fd.fsync();
        fd.close()?;
        synced?;
        Self::flush()
    }

    /// Gives a new node the creating client's ids (the kernel made it as
    /// root).
    fn own(&self, loc: &Loc, uid: u32, gid: u32) -> Result<(), Error> {
        if uid == 0 && gid == 0 || self.fstype == FsType::Fat {
            return Ok(());
        }
        self.rump.chown_at(loc.at(), &loc.rel, uid, gid)
    }

    fn made(&self, parent: Ino, name: &[u8], loc: &Loc) -> Result<Stat, Error> {
        let mut st = self.rump.stat_at(loc.at(), &loc.rel, false)?;
        self.identify(parent, name, &mut st);
        Ok(st)
    }

    /// Creates and opens regular file `name` in `parent` (NetBSD `flags`
    /// with `CREAT`), owned by `uid`/`gid`.
    pub fn create(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> Result<(Stat, Fd), Error> {
        let _fat = self.serial();
        self.check_name(name)?;
        let loc = self.locate(parent, Some(name))?;
        let fd = self.rump.open_at(
            loc.at(),
            &loc.rel,
            flags | oflags::CREAT | oflags::NOFOLLOW,
            mode,
        )?;
        self.own(&loc, uid, gid)?;
        let mut st = fd.stat()?;
        self.identify(parent, name, &mut st);
        Ok((st, fd))
    }

    /// Makes entry `name` in `parent` with `create` (the kernel makes it as
    /// root), gives it to `uid`/`gid`, and remembers it.
    fn make(
        &self,
        parent: Ino,
        name: &[u8],
        uid: u32,
        gid: u32,
        create: impl FnOnce(&Loc) -> Result<(), Error>,
    ) -> Result<Stat, Error> {
        let _fat = self.serial();
        self.check_name(name)?;
        let loc = self.locate(parent, Some(name))?;
        create(&loc)?;
        self.own(&loc, uid, gid)?;
        self.made(parent, name, &loc)
    }

    /// Makes directory `name` in `parent`.
    pub fn mkdir(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Stat, Error> {
        self.make(parent, name, uid, gid, |loc| {
            self.rump.mkdir_at(loc.at(), &loc.rel, mode)
        })
    }

    /// Makes a device node, named pipe or empty regular file (`mode`
    /// carries the `S_IF*` type).
    pub fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
    ) -> Result<Stat, Error> {
        self.make(parent, name, uid, gid, |loc| {
            if mode & rump::vfs::mode::S_IFMT == rump::vfs::mode::S_IFREG {
                self.rump
                    .open_at(
                        loc.at(),
                        &loc.rel,
                        oflags::WRONLY | oflags::CREAT | oflags::EXCL,
                        mode & 0o7777,
                    )?
                    .close()
            } else if mode & rump::vfs::mode::S_IFMT == rump::vfs::mode::S_IFIFO {
                self.rump.mkfifo_at(loc.at(), &loc.rel, mode & 0o7777)
            } else {
                self.rump.mknod_at(loc.at(), &loc.rel, mode, rdev)
            }
        })
    }

    /// Makes `name` in `parent` a symbolic link to `target`.
    pub fn symlink(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Stat, Error> {
        self.make(parent, name, uid, gid, |loc| {
            if target.is_empty() || target.contains(&0) {
                return Err(err(
                    "empty symbolic link target or one with NUL",
                    nb::EINVAL,
                ));
            }
            self.rump.symlink_at(target, loc.at(), &loc.rel)
        })
    }

    /// Gives `ino` the further name `name` in `parent`.
    pub fn link(&self, ino: Ino, parent: Ino, name: &[u8]) -> Result<Stat, Error> {
        let _fat = self.serial();
        self.check_name(name)?;
        let from = self.locate(ino, None)?;
        let to = self.locate(parent, Some(name))?;
        self.rump.link_at(from.at(), &from.rel, to.at(), &to.rel)?;
        self.made(parent, name, &to)
    }

    /// Removes `name` from `parent` (a directory with `dir`).
    pub fn remove(&self, parent: Ino, name: &[u8], dir: bool) -> Result<(), Error> {
        let _fat = self.serial();
        self.check_name(name)?;
        let loc = self.locate(parent, Some(name))?;
        self.rump.unlink_at(loc.at(), &loc.rel, dir)?;
        self.table.lock().drop_entry(parent, name);
        Ok(())
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`, replacing
    /// what is there unless `noreplace`.
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        noreplace: bool,
    ) -> Result<(), Error> {
        let _fat = self.serial();
        self.check_name(name)?;
        self.check_name(new_name)?;
        let from = self.locate(parent, Some(name))?;
        let to = self.locate(new_parent, Some(new_name))?;
        if noreplace {
            match self.rump.stat_at(to.at(), &to.rel, false) {
                Ok(_) => return Err(err("rename target exists", nb::EEXIST)),
                Err(e) if e.errno().map(|e| e.0) == Some(nb::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        self.rump
            .rename_at(from.at(), &from.rel, to.at(), &to.rel)?;
        self.table
            .lock()
            .move_entry(parent, name, new_parent, new_name);
        Ok(())
    }

    /// The target of symbolic link `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Error> {
        let _fat = self.serial();
        let loc = self.locate(ino, None)?;
        self.rump.readlink_at(loc.at(), &loc.rel)
    }

    /// Changes attributes of `ino` (through `fd` when the client has it
    /// open: an unlinked open file has no path), returning the new status.
    pub fn set_attr(&self, ino: Ino, fd: Option<&Fd>, set: &SetAttr) -> Result<Stat, Error> {
        let _fat = self.serial();
        let loc = match fd {
            Some(_) if self.table.lock().names(ino).is_none() => None,
            _ => Some(self.locate(ino, None)?),
        };
        if let Some(size) = set.size {
            self.node_io(ino, || match (fd, &loc) {
                (Some(fd), _) => fd.truncate(size),
                (None, Some(loc)) => self
                    .rump
                    .open_at(loc.at(), &loc.rel, oflags::WRONLY | oflags::NOFOLLOW, 0)?
                    .truncate(size),
                (None, None) => unreachable!("a path without a descriptor"),
            })?;
        }
        if let Some(loc) = &loc {
            if let Some(mode) = set.mode {
                self.rump.chmod_at(loc.at(), &loc.rel, mode & 0o7777)?;
            }
            if set.uid.is_some() || set.gid.is_some() {
                self.rump.chown_at(
                    loc.at(),
                    &loc.rel,
                    set.uid.unwrap_or(u32::MAX),
                    set.gid.unwrap_or(u32::MAX),
                )?;
            }
            if set.atime.is_some() || set.mtime.is_some() {
                let omit = Timespec {
                    sec: 0,
                    nsec: UTIME_OMIT,
                };
                self.rump.utimens_at(
                    loc.at(),
                    &loc.rel,
                    set.atime.unwrap_or(omit),
                    set.mtime.unwrap_or(omit),
                )?;
            }
            let mut st = self.rump.stat_at(loc.at(), &loc.rel, false)?;
            st.ino = ino;
            Ok(st)
        } else {
            if set.mode.is_some()
                || set.uid.is_some()
                || set.gid.is_some()
                || set.atime.is_some()
                || set.mtime.is_some()
            {
                return Err(err("attributes of a removed file", nb::ENOENT));
            }
            Self::fstat_unserialised(ino, fd.expect("no path without one"))
        }
    }

    /// Runs `f`, an I/O call on file `ino`, with that file's I/O lock (see
    /// the module's notes).
    pub fn node_io<T>(&self, ino: Ino, f: impl FnOnce() -> T) -> T {
        let _gate = self.gate.read();
        let _node = self.io[(ino % IO_SHARDS) as usize].lock();
        f()
    }

    /// Reads up to `buf.len()` bytes of file `ino` (open as `fd`) at `off`;
    /// short only at the end of the file.
    ///
    /// A read of [`SPLIT_READ`] bytes or more is made as two, the second
    /// half first: the kernel's read-ahead then never sees sequential
    /// requests. The 2016 kernel's read-ahead reads the pages ahead
    /// asynchronously and leaves them marked as never read (its
    /// `uvm_aio_aiodone` does not clear `PG_FAKE`), so the read that
    /// follows reads them from the store again: every page of a sequential
    /// read was read twice.
    pub fn read(&self, ino: Ino, fd: &Fd, buf: &mut [u8], off: u64) -> Result<usize, Error> {
        let _fat = self.serial();
        self.node_io(ino, || {
            if buf.len() < SPLIT_READ {
                return Self::read_full(fd, buf, off);
            }
            let mid = (buf.len() / 2) & !(PAGE as usize - 1);
            let (head, tail) = buf.split_at_mut(mid);
            let got_tail = Self::read_full(fd, tail, off + mid as u64)?;
            let got_head = Self::read_full(fd, head, off)?;
            // Short in the head: the file ends there (the tail got none).
            Ok(if got_head < mid {
                got_head
            } else {
                mid + got_tail
            })
        })
    }

    /// Reads `buf` whole at `off`, short only at the end of the file.
    fn read_full(fd: &Fd, buf: &mut [u8], off: u64) -> Result<usize, Error> {
        let mut got = 0;
        while got < buf.len() {
            match fd.pread(&mut buf[got..], off + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    }

    /// Writes `data` to file `ino` (open as `fd`) at `off`, through to the
    /// store. What landed before an error (`ENOSPC`) is counted, as
    /// `write(2)` counts it; an error with nothing written is the error.
    pub fn write(&self, ino: Ino, fd: &Fd, data: &[u8], off: u64) -> Result<usize, Error> {
        let _fat = self.serial();
        self.node_io(ino, || {
            let mut put = 0;
            let mut failed = None;
            while put < data.len() {
                match fd.pwrite(&data[put..], off + put as u64) {
                    Ok(0) => {
                        failed = Some(err("pwrite wrote nothing", nb::EIO));
                        break;
                    }
                    Ok(n) => put += n,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if put > 0 {
                // Written back now, without waiting for stable storage: the
                // whole pages the write touched.
                let start = off & !(PAGE - 1);
                let end = (off + put as u64).next_multiple_of(PAGE);
                fd.advise(start, end - start, rump::vfs::POSIX_FADV_DONTNEED)?;
                return Ok(put);
            }
            Err(failed.unwrap_or_else(|| err("empty write", nb::EINVAL)))
        })
    }

    /// Writes file `ino`'s data (and, unless `data_only`, its metadata) to
    /// the store.
    pub fn fsync(&self, ino: Ino, fd: &Fd, data_only: bool) -> Result<(), Error> {
        let _fat = self.serial();
        self.node_io(ino, || if data_only { fd.datasync() } else { fd.fsync() })?;
        Self::flush()
    }

    /// Makes what the kernel wrote to the store stable on the host's
    /// storage (the write cache's flush: `fdatasync` of the image, or the
    /// Mach device's `DEV_FLUSH_CACHE`). Without `--sync`, the kernel's
    /// synchronous writes complete once the host has them — they survive
    /// the death of rumpfs, not of the host — and every `fsync`, `sync` and
    /// unmount ends with this flush.
    fn flush() -> Result<(), Error> {
        hypercall::bio::flush().map_err(|e| RumpError::kernel("flushing the store", e.0))
    }

    /// Every entry of directory `ino`, "." and ".." included.
    pub fn read_dir(&self, ino: Ino) -> Result<Vec<DirEntry>, Error> {
        let _fat = self.serial();
        let fd = self.open_unserialised(ino, oflags::RDONLY | oflags::DIRECTORY)?;
        let mut out = Vec::new();
        while fd.read_dir(64 * 1024, &mut out)? {}
        fd.close()?;
        Ok(out)
    }

    /// Space and inode counts.
    pub fn statfs(&self) -> Result<StatVfs, Error> {
        let _fat = self.serial();
        self.rump.statvfs(MOUNT_POINT)
    }

    /// Writes everything the kernel holds for the file system, with no
    /// file I/O under way.
    pub fn sync(&self) {
        let _gate = self.gate.write();
        self.rump.sync();
        if let Err(e) = Self::flush() {
            log::error!("{e}");
        }
    }

    /// Unmounts (writing everything back and marking the file system
    /// clean) and releases the block device. Later calls do nothing.
    pub fn unmount(&self) -> Result<(), Error> {
        // The block device is registered exactly while mounted.
        let mut etfs = self.etfs.lock();
        if etfs.is_none() {
            return Ok(());
        }
        self.bind();
        let mnt = std::str::from_utf8(MOUNT_POINT).expect("ASCII");
        let _gate = self.gate.write();
        // unmount(2) writes everything back itself.
        if let Err(e) = self.rump.unmount(mnt, 0) {
            log::warn!("{e}; forcing the unmount");
            self.rump.unmount(mnt, mount::MNT_FORCE)?;
        }
        Self::flush()?;
        etfs.take().expect("checked above").remove()?;
        log::info!("unmounted {}", self.fstype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn the_table_follows_renames_links_and_removals() {
        let root = 2;
        let mut t = Table::new(root);
        t.remember(root, b"a", 10, true);
        t.remember(10, b"f", 11, true);
        assert_eq!(t.names(11).unwrap().concat(), b"af".to_vec());
        // A hard link: either name reaches the node.
        t.remember(root, b"g", 11, true);
        t.drop_entry(10, b"f");
        assert_eq!(t.names(11).unwrap().concat(), b"g".to_vec());
        // Renaming the directory moves everything under it.
        t.remember(10, b"h", 12, true);
        t.move_entry(root, b"a", root, b"b");
        assert_eq!(t.names(12).unwrap().concat(), b"bh".to_vec());
        // Renaming over an entry forgets the node it named.
        t.move_entry(root, b"g", 10, b"h");
        assert!(t.names(12).is_none());
        assert_eq!(t.names(11).unwrap().concat(), b"bh".to_vec());
        // Forgotten nodes leave, and free their parents once unreferenced.
        t.forget(12, 1);
        assert!(!t.nodes.contains_key(&12));
        t.forget(10, 1);
        assert!(t.nodes.contains_key(&10), "a child still names it");
        t.forget(11, 2);
        assert!(!t.nodes.contains_key(&11));
        assert!(!t.nodes.contains_key(&10));
        assert!(t.names(root).unwrap().is_empty());
    }
}
