//! The Linux front end: the volume served through FUSE (the `fuser`
//! crate, several worker threads, `readdirplus`, 1 MiB writes).
//!
//! FUSE's node ids are the file system's inode numbers, with the root
//! (FUSE's 1) and the file system's inode 1 swapped; permissions are
//! checked by the Linux kernel (`default_permissions`) against the
//! attributes the volume reports, and new files are given to the creating
//! client's uid and gid.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use rump::vfs::{DirEntry, Stat, Timespec, UTIME_NOW, dt, mode};
use rump::{Fd, RumpError, oflags};

use crate::volume::{Ino, SetAttr, Volume};

/// How long the Linux kernel may keep attributes and names: the volume is
/// the only writer, so staleness comes only from its own changes, which
/// FUSE invalidates itself.
const TTL: Duration = Duration::from_secs(1);

/// The largest write FUSE is asked to send.
pub const MAX_WRITE: u32 = 1 << 20;

/// An open file's descriptor, closed through the volume.
struct OpenFile {
    fd: Option<Fd>,
    vol: Arc<Volume>,
}

impl std::ops::Deref for OpenFile {
    type Target = Fd;
    fn deref(&self) -> &Fd {
        self.fd.as_ref().expect("open until dropped")
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            self.vol.close(fd);
        }
    }
}

/// An open file or directory.
enum Handle {
    File(OpenFile),
    /// A directory's entries, read whole when a listing starts at offset 0
    /// (offsets are indices into them).
    Dir(Mutex<Vec<DirEntry>>),
}

/// The FUSE file system over a [`Volume`].
pub struct Fuse {
    vol: Arc<Volume>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next: AtomicU64,
}

fn errno(e: &RumpError) -> Errno {
    match e {
        RumpError::Kernel { errno, .. } => Errno::from_i32(errno.to_host().unwrap_or(libc::EIO)),
        RumpError::Nul(_) => Errno::EINVAL,
    }
}

fn time(t: Timespec) -> SystemTime {
    let nsec = t.nsec.clamp(0, 999_999_999) as u32;
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::new(0, nsec)
    }
}

fn timespec(t: TimeOrNow) -> Timespec {
    match t {
        TimeOrNow::Now => Timespec {
            sec: 0,
            nsec: UTIME_NOW,
        },
        TimeOrNow::SpecificTime(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                sec: d.as_secs() as i64,
                nsec: i64::from(d.subsec_nanos()),
            },
            Err(e) => {
                let d = e.duration();
                let (mut sec, mut nsec) = (-(d.as_secs() as i64), -i64::from(d.subsec_nanos()));
                if nsec < 0 {
                    sec -= 1;
                    nsec += 1_000_000_000;
                }
                Timespec { sec, nsec }
            }
        },
    }
}

fn file_type(m: u32) -> FileType {
    match m & mode::S_IFMT {
        mode::S_IFDIR => FileType::Directory,
        mode::S_IFLNK => FileType::Symlink,
        mode::S_IFCHR => FileType::CharDevice,
        mode::S_IFBLK => FileType::BlockDevice,
        mode::S_IFIFO => FileType::NamedPipe,
        mode::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn dirent_type(kind: u8) -> Option<FileType> {
    Some(match kind {
        dt::DIR => FileType::Directory,
        dt::LNK => FileType::Symlink,
        dt::CHR => FileType::CharDevice,
        dt::BLK => FileType::BlockDevice,
        dt::FIFO => FileType::NamedPipe,
        dt::SOCK => FileType::Socket,
        dt::REG => FileType::RegularFile,
        _ => return None,
    })
}

/// Linux `open(2)` flags as NetBSD's. `O_APPEND` is dropped: FUSE sends
/// every write with its offset, the end of file for appends.
#[must_use]
pub fn netbsd_open_flags(linux: i32) -> i32 {
    let mut f = linux & libc::O_ACCMODE;
    for (l, n) in [
        (libc::O_CREAT, oflags::CREAT),
        (libc::O_EXCL, oflags::EXCL),
        (libc::O_TRUNC, oflags::TRUNC),
        (libc::O_NONBLOCK, oflags::NONBLOCK),
        (libc::O_DSYNC, oflags::DSYNC),
        (libc::O_DIRECTORY, oflags::DIRECTORY),
        (libc::O_NOFOLLOW, oflags::NOFOLLOW),
    ] {
        if linux & l == l {
            f |= n;
        }
    }
    if linux & libc::O_SYNC == libc::O_SYNC {
        f |= oflags::SYNC;
    }
    f
}

impl Fuse {
    /// A FUSE file system over `vol`.
    #[must_use]
    pub fn new(vol: Arc<Volume>) -> Self {
        Fuse {
            vol,
            handles: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// FUSE's node id for inode `ino` and back (the swap is its own
    /// inverse).
    fn swap(&self, ino: u64) -> u64 {
        let root = self.vol.root();
        if ino == root {
            1
        } else if ino == 1 {
            root
        } else {
            ino
        }
    }

    fn ino(&self, node: INodeNo) -> Ino {
        self.vol.bind();
        self.swap(node.0)
    }

    fn attr(&self, st: &Stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.swap(st.ino)),
            size: st.size.max(0) as u64,
            blocks: st.blocks.max(0) as u64,
            atime: time(st.atime),
            mtime: time(st.mtime),
            ctime: time(st.ctime),
            crtime: time(st.birthtime),
            kind: file_type(st.mode),
            perm: (st.mode & 0o7777) as u16,
            nlink: st.nlink,
            uid: st.uid,
            gid: st.gid,
            // NetBSD's and Linux's 32-bit device encodings are the same.
            rdev: st.rdev as u32,
            blksize: st.blksize.max(512),
            flags: 0,
        }
    }

    fn entry(&self, reply: ReplyEntry, r: Result<Stat, RumpError>) {
        match r {
            Ok(st) => reply.entry(&TTL, &self.attr(&st), Generation(u64::from(st.gen_))),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn file_handle(&self, fd: Fd) -> Handle {
        Handle::File(OpenFile {
            fd: Some(fd),
            vol: self.vol.clone(),
        })
    }

    fn insert(&self, h: Handle) -> FileHandle {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(h));
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> Option<Arc<Handle>> {
        self.handles.lock().get(&fh.0).cloned()
    }

    /// Runs `f` on the open file `fh` (`EBADF` if it is not one).
    fn on_file<T>(
        &self,
        fh: FileHandle,
        f: impl FnOnce(&Fd) -> Result<T, RumpError>,
    ) -> Result<T, Errno> {
        match self.handle(fh).as_deref() {
            Some(Handle::File(fd)) => f(fd).map_err(|e| errno(&e)),
            _ => Err(Errno::EBADF),
        }
    }

    /// Runs `each` on the entries of `ino` from index `offset` on (with
    /// the offset of the entry after it) until it returns true; the
    /// directory is read again when a listing starts over at 0.
    fn listing(
        &self,
        ino: Ino,
        fh: FileHandle,
        offset: u64,
        mut each: impl FnMut(u64, &DirEntry) -> bool,
    ) -> Result<(), Errno> {
        let h = self.handle(fh).ok_or(Errno::EBADF)?;
        let Handle::Dir(entries) = &*h else {
            return Err(Errno::EBADF);
        };
        let mut entries = entries.lock();
        if offset == 0 {
            *entries = self.vol.read_dir(ino).map_err(|e| errno(&e))?;
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(skip) {
            if each(i as u64 + 1, e) {
                break;
            }
        }
        Ok(())
    }
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        self.vol.bind();
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            if config.add_capabilities(cap).is_err() {
                log::info!("the kernel's FUSE lacks {cap:?}");
            }
        }
        Ok(())
    }

    fn destroy(&mut self) {
        // Open files close before the volume unmounts (`serve`).
        self.handles.lock().clear();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = self.ino(parent);
        self.entry(reply, self.vol.lookup(parent, name.as_bytes()));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let ino = self.swap(ino.0);
        self.vol.forget(ino, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let ino = self.ino(ino);
        // An open file answers through its descriptor (it may have no
        // name left); anything else by its path.
        let r = match fh.map(|fh| self.on_file(fh, |fd| self.vol.fstat(ino, fd))) {
            Some(Ok(st)) => Ok(st),
            _ => self.vol.stat(ino).map_err(|e| errno(&e)),
        };
        match r {
            Ok(st) => reply.attr(&TTL, &self.attr(&st)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = self.ino(ino);
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(timespec),
            mtime: mtime.map(timespec),
        };
        let h = fh.and_then(|fh| self.handle(fh));
        let fd = match h.as_deref() {
            Some(Handle::File(fd)) => Some(&**fd),
            _ => None,
        };
        match self.vol.set_attr(ino, fd, &set) {
            Ok(st) => reply.attr(&TTL, &self.attr(&st)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let ino = self.ino(ino);
        match self.vol.readlink(ino) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let parent = self.ino(parent);
        let mode = mode & !(umask & 0o777);
        let r = self.vol.mknod(
            parent,
            name.as_bytes(),
            mode,
            u64::from(rdev),
            req.uid(),
            req.gid(),
        );
        self.entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let parent = self.ino(parent);
        let mode = mode & !umask & 0o7777;
        self.entry(
            reply,
            self.vol
                .mkdir(parent, name.as_bytes(), mode, req.uid(), req.gid()),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = self.ino(parent);
        match self.vol.remove(parent, name.as_bytes(), false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = self.ino(parent);
        match self.vol.remove(parent, name.as_bytes(), true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let parent = self.ino(parent);
        let r = self.vol.symlink(
            parent,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
            req.uid(),
            req.gid(),
        );
        self.entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let parent = self.ino(parent);
        let newparent = self.swap(newparent.0);
        if flags.intersects(!RenameFlags::RENAME_NOREPLACE) {
            // NetBSD has no atomic exchange or whiteouts.
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.vol.rename(
            parent,
            name.as_bytes(),
            newparent,
            newname.as_bytes(),
            noreplace,
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let ino = self.ino(ino);
        let newparent = self.swap(newparent.0);
        self.entry(reply, self.vol.link(ino, newparent, newname.as_bytes()));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let ino = self.ino(ino);
        let nflags = netbsd_open_flags(flags.0) & !(oflags::CREAT | oflags::EXCL);
        match self.vol.open(ino, nflags) {
            Ok(fd) => reply.opened(self.insert(self.file_handle(fd)), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let ino = self.ino(ino);
        // Each worker reads into a buffer of its own, kept across reads
        // (a fresh 1 MiB buffer costs the host a page fault per page).
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let buf = &mut buf[..size as usize];
            match self.on_file(fh, |fd| self.vol.read(ino, fd, buf, offset)) {
                Ok(got) => reply.data(&buf[..got]),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let ino = self.ino(ino);
        match self.on_file(fh, |fd| self.vol.write(ino, fd, data, offset)) {
            Ok(put) => reply.written(put as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.vol.bind();
        self.handles.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let ino = self.ino(ino);
        match self.on_file(fh, |fd| self.vol.fsync(ino, fd, datasync)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let ino = self.ino(ino);
        match self.vol.stat(ino) {
            Ok(st) if st.is_dir() => {
                reply.opened(
                    self.insert(Handle::Dir(Mutex::new(Vec::new()))),
                    FopenFlags::empty(),
                );
            }
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let ino = self.ino(ino);
        let listed = self.listing(ino, fh, offset, |next, e| {
            let kind = dirent_type(e.kind).unwrap_or(FileType::RegularFile);
            let id = self.vol.entry_id(ino, &e.name, e.ino);
            reply.add(
                INodeNo(self.swap(id)),
                next,
                kind,
                OsStr::from_bytes(&e.name),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ino = self.ino(ino);
        let listed = self.listing(ino, fh, offset, |next, e| {
            let dots = e.name == b"." || e.name == b"..";
            // FUSE neither links nor counts "." and ".."; the others are
            // looked up, which it counts.
            let st = if dots {
                self.vol.stat(ino).map(|mut s| {
                    s.ino = e.ino;
                    s
                })
            } else {
                self.vol.lookup(ino, &e.name)
            };
            let Ok(st) = st else { return false };
            let attr = self.attr(&st);
            let full = reply.add(
                attr.ino,
                next,
                OsStr::from_bytes(&e.name),
                &TTL,
                &attr,
                Generation(u64::from(st.gen_)),
            );
            if full && !dots {
                // Not sent: the kernel will not count it.
                self.vol.forget(st.ino, 1);
            }
            full
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let ino = self.ino(ino);
        match self.vol.fsync_node(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.vol.bind();
        match self.vol.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.bfree,
                s.bavail,
                s.files,
                s.ffree,
                s.bsize as u32,
                (s.namemax as u32).min(self.vol.name_max() as u32),
                s.frsize as u32,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checked the mask (default_permissions); what is left
        // is whether the node still exists.
        let ino = self.ino(ino);
        match self.vol.stat(ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let parent = self.ino(parent);
        let mode = mode & !umask & 0o7777;
        match self.vol.create(
            parent,
            name.as_bytes(),
            mode,
            netbsd_open_flags(flags),
            req.uid(),
            req.gid(),
        ) {
            Ok((st, fd)) => {
                let attr = self.attr(&st);
                let fh = self.insert(self.file_handle(fd));
                reply.created(
                    &TTL,
                    &attr,
                    Generation(u64::from(st.gen_)),
                    fh,
                    FopenFlags::empty(),
                );
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// Mounts `vol` on `mountpoint` and serves it with `threads` workers
/// until it is unmounted (`fusermount -u`) or `stop` fires; then the
/// volume is unmounted cleanly.
pub fn serve(
    vol: &Arc<Volume>,
    mountpoint: &Path,
    threads: usize,
    stop: impl FnOnce(Box<dyn FnOnce() + Send>) + Send + 'static,
) -> std::io::Result<()> {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(format!("rumpfs:{}", vol.fstype())),
        MountOption::Subtype("rumpfs".into()),
        MountOption::DefaultPermissions,
        if vol.readonly() {
            MountOption::RO
        } else {
            MountOption::RW
        },
        MountOption::NoAtime,
    ];
    cfg.n_threads = Some(threads.max(1));
    cfg.clone_fd = true;
    let mut session = fuser::Session::new(Fuse::new(vol.clone()), mountpoint, &cfg)?;
    let mut unmounter = session.unmount_callable();
    let path = mountpoint.to_path_buf();
    stop(Box::new(move || {
        if let Err(e) = unmounter.unmount() {
            log::warn!("unmounting {}: {e}", path.display());
        }
    }));
    let session_end = session.run();
    let clean = vol.unmount();
    session_end?;
    clean.map_err(std::io::Error::from)
}
