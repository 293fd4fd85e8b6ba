//! The Hurd's `fs` interface (subsystem 20000, `hurd/fs.defs`): lookups,
//! directories and file attributes on a file's port.

use mach::KernReturn;
use mach::msg::{self, Builder, Header, MsgBuf, TypeDesc};
use mach::port::{PortName, type_name as tn};

use crate::fsys::{put_string, read_string as string};
use crate::io::{self, Data, INT64, int64};
use crate::rpc::{INT32, ReplyTo, bad, check, int32, reply_body, reply_header, ret_code};

/// `file_chown`.
pub const ID_CHOWN: i32 = 20001;
/// `file_chmod`.
pub const ID_CHMOD: i32 = 20003;
/// `file_set_size`.
pub const ID_SET_SIZE: i32 = 20006;
/// `file_check_access`.
pub const ID_CHECK_ACCESS: i32 = 20009;
/// `file_lock`.
pub const ID_LOCK: i32 = 20007;
/// `file_lock_stat`.
pub const ID_LOCK_STAT: i32 = 20008;
/// `file_statfs`.
pub const ID_STATFS: i32 = 20012;
/// `file_sync`.
pub const ID_SYNC: i32 = 20013;
/// `file_syncfs`.
pub const ID_SYNCFS: i32 = 20014;
/// `dir_lookup`.
pub const ID_LOOKUP: i32 = 20018;
/// `dir_readdir`.
pub const ID_READDIR: i32 = 20019;
/// `dir_mkdir`.
pub const ID_MKDIR: i32 = 20020;
/// `dir_rmdir`.
pub const ID_RMDIR: i32 = 20021;
/// `dir_unlink`.
pub const ID_UNLINK: i32 = 20022;
/// `dir_link`.
pub const ID_LINK: i32 = 20023;
/// `dir_rename`.
pub const ID_RENAME: i32 = 20024;
/// `dir_mkfile`.
pub const ID_MKFILE: i32 = 20025;
/// `file_getlinknode`.
pub const ID_GETLINKNODE: i32 = 20016;
/// `file_set_translator`.
pub const ID_SET_TRANSLATOR: i32 = 20027;
/// `file_get_translator`.
pub const ID_GET_TRANSLATOR: i32 = 20028;
/// `file_get_translator_cntl`.
pub const ID_GET_TRANSLATOR_CNTL: i32 = 20029;
/// `file_utimens`.
pub const ID_UTIMENS: i32 = 20035;
/// `file_record_lock`.
pub const ID_RECORD_LOCK: i32 = 20036;
/// Last routine of the subsystem (`file_record_lock`).
pub const ID_LAST: i32 = ID_RECORD_LOCK;

/// Bytes of an `fsys_statfsbuf_t` (14 64-bit words on `x86_64`).
pub const STATFSBUF_LEN: usize = 112;

/// `FS_RETRY_NORMAL`: done if the name is empty, else look it up at the
/// port.
pub const FS_RETRY_NORMAL: i32 = 1;
/// `FS_RETRY_REAUTH`: reauthenticate the port, then look the name up there.
pub const FS_RETRY_REAUTH: i32 = 2;
/// `FS_RETRY_MAGICAL`: the name says what to do (an absolute path: from
/// the client's root).
pub const FS_RETRY_MAGICAL: i32 = 3;

/// `timespec_t`: two `INTEGER_64`.
pub(crate) const TIMESPEC: TypeDesc = TypeDesc::inline(tn::INTEGER_64, 64, 2);

/// `flock_t` (glibc's `struct flock64`): four `INTEGER_64` to MIG.
const FLOCK: TypeDesc = TypeDesc::inline(tn::INTEGER_64, 64, 4);

/// `file_record_lock`'s commands and lock types, as the Hurd's glibc
/// numbers them (`<bits/fcntl.h>`).
pub mod record {
    /// `F_GETLK64`: the first lock that would keep this one out.
    pub const F_GETLK64: i32 = 10;
    /// `F_SETLK64`: lock or unlock, failing with `EAGAIN` on a conflict.
    pub const F_SETLK64: i32 = 11;
    /// `F_SETLKW64`: lock, waiting while a conflict lasts.
    pub const F_SETLKW64: i32 = 12;
    /// A read (shared) lock.
    pub const F_RDLCK: i32 = 1;
    /// A write (exclusive) lock.
    pub const F_WRLCK: i32 = 2;
    /// No lock (unlock).
    pub const F_UNLCK: i32 = 3;
}

/// A `flock_t` (glibc's `struct flock64` on the Hurd).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flock {
    /// `l_type`: [`record::F_RDLCK`], `F_WRLCK` or `F_UNLCK`.
    pub kind: i32,
    /// `l_whence`: `SEEK_SET`, `SEEK_CUR` or `SEEK_END`.
    pub whence: i32,
    /// `l_start`.
    pub start: i64,
    /// `l_len` (0: to the end of the file, however far it grows).
    pub len: i64,
    /// `l_pid`.
    pub pid: i32,
}

impl Flock {
    /// Its 32 bytes (the last 4 padding).
    #[must_use]
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        b[4..8].copy_from_slice(&self.whence.to_ne_bytes());
        b[8..16].copy_from_slice(&self.start.to_ne_bytes());
        b[16..24].copy_from_slice(&self.len.to_ne_bytes());
        b[24..28].copy_from_slice(&self.pid.to_ne_bytes());
        b
    }

    /// From its 32 bytes.
    #[must_use]
    pub fn decode(b: &[u8; 32]) -> Self {
        let i32_at = |o: usize| i32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let i64_at = |o: usize| i64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Self {
            kind: i32_at(0),
            whence: i32_at(4),
            start: i64_at(8),
            len: i64_at(16),
            pid: i32_at(24),
        }
    }
}

/// A decoded `fs` request. Names are the bytes before the string's NUL.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `file_chown(uid, gid)`.
    Chown {
        /// New owner.
        uid: u32,
        /// New group.
        gid: u32,
    },
    /// `file_chmod(mode)`.
    Chmod(u32),
    /// `file_set_size(size)`.
    SetSize(i64),
    /// `file_statfs()`.
    Statfs,
    /// `file_lock(flags)`: `LOCK_SH`, `LOCK_EX` or `LOCK_UN`, with
    /// `LOCK_NB`.
    Lock(i32),
    /// `file_lock_stat()`.
    LockStat,
    /// `file_getlinknode()`: the port `dir_link` is to be given.
    GetLinknode,
    /// `file_get_translator()`: the passive translator's command line.
    GetTranslator,
    /// `file_get_translator_cntl()`: the active translator's control port.
    GetTranslatorCntl,
    /// `file_check_access()`: which of `O_READ`, `O_WRITE`, `O_EXEC` the
    /// user may.
    CheckAccess,
    /// `file_sync(wait, omit_metadata)`.
    Sync {
        /// Wait for it.
        wait: bool,
        /// Data only.
        omit_metadata: bool,
    },
    /// `file_syncfs(wait, do_children)`.
    Syncfs {
        /// Wait for it.
        wait: bool,
    },
    /// `dir_lookup(name, flags, mode)`.
    Lookup {
        /// The path.
        name: &'a [u8],
        /// `O_*` flags (the Hurd's).
        flags: i32,
        /// Mode of a file `O_CREAT` makes.
        mode: u32,
    },
    /// `dir_readdir(entry, nentries, bufsiz)`.
    Readdir {
        /// First entry (index).
        entry: i32,
        /// How many (−1: any number).
        nentries: i32,
        /// Most bytes (0: any).
        bufsiz: u64,
    },
    /// `dir_mkdir(name, mode)`.
    Mkdir {
        /// Name.
        name: &'a [u8],
        /// Mode.
        mode: u32,
    },
    /// `dir_rmdir(name)`.
    Rmdir(&'a [u8]),
    /// `dir_unlink(name)`.
    Unlink(&'a [u8]),
    /// `dir_link(file, name, excl)`: `file` is a send right now ours.
    Link {
        /// The file to link.
        file: PortName,
        /// The new name.
        name: &'a [u8],
        /// Fail if the name exists.
        excl: bool,
    },
    /// `dir_rename(old, newdir, new, excl)`: `newdir` is a send right now
    /// ours.
    Rename {
        /// Old name (in the port's directory).
        old: &'a [u8],
        /// The target directory.
        newdir: PortName,
        /// New name.
        new: &'a [u8],
        /// Fail if the new name exists.
        excl: bool,
    },
    /// `file_utimens(atime, mtime)`: `(seconds, nanoseconds)`, with the
    /// nanoseconds `UTIME_NOW`/`UTIME_OMIT` as in `utimensat`.
    Utimens {
        /// Access time.
        atime: (i64, i64),
        /// Modification time.
        mtime: (i64, i64),
    },
    /// `file_record_lock(cmd, lock, rendezvous)`: glibc's `fcntl` record
    /// locks.
    RecordLock {
        /// [`record::F_GETLK64`], `F_SETLK64` or `F_SETLKW64`.
        cmd: i32,
        /// The lock asked about or for.
        lock: Flock,
        /// Null for locks per open (what glibc sends), else a send right
        /// naming the process, now the server's.
        rendezvous: PortName,
    },
    /// `dir_mkfile(flags, mode)`: a new file with no name yet.
    Mkfile {
        /// Open flags, as `dir_lookup`'s (`O_CREAT`/`O_TRUNC` implied).
        flags: i32,
        /// Mode.
        mode: u32,
    },
    /// `file_set_translator(passive_flags, active_flags, oldtrans_flags,
    /// passive, active)`: `active` is a send right now ours (or null);
    /// out-of-line `passive` data is ours to deallocate.
    SetTranslator {
        /// `FS_TRANS_*` for the passive translator.
        passive_flags: i32,
        /// `FS_TRANS_*` for the active translator.
        active_flags: i32,
        /// The passive translator's NUL-separated command line.
        passive: Data<'a>,
        /// The active translator's control port.
        active: PortName,
    },
    /// Another routine of the subsystem (its rights and memory must be
    /// released with `destroy_request_resources`).
    Other {
        /// Its id.
        id: i32,
    },
}

impl Request<'_> {
    /// The rights a request carried (to release when it is not served).
    #[must_use]
    pub fn port(&self) -> Option<PortName> {
        match *self {
            Self::RecordLock { rendezvous, .. } if rendezvous.is_valid() => Some(rendezvous),
            Self::Link { file, .. } => Some(file),
            Self::Rename { newdir, .. } => Some(newdir),
            Self::SetTranslator { active, .. } if active.is_valid() => Some(active),
            _ => None,
        }
    }
}

/// Reads a `timespec_t` (seconds, nanoseconds).
pub(crate) fn timespec(r: &mut msg::Reader<'_>) -> Result<(i64, i64), KernReturn> {
    check(r, TIMESPEC)?;
    let b = r.data(16).map_err(|_| bad())?;
    let w = |o: usize| i64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    Ok((w(0), w(8)))
}

fn port(r: &mut msg::Reader<'_>) -> Result<PortName, KernReturn> {
    r.port(tn::MOVE_SEND).map_err(|_| bad())
}

/// Decodes a request with the checks of MIG's server stubs; `MIG_BAD_ID`
/// outside the subsystem.
pub fn decode_request(bytes: &[u8]) -> Result<Request<'_>, KernReturn> {
    let (h, mut r) = msg::Reader::new(bytes).map_err(|_| bad())?;
    let (size, complex) = (h.size as usize, h.is_complex());
    let shape = |want: usize, want_complex: bool| {
        if size == want && complex == want_complex {
            Ok(())
        } else {
            Err(bad())
        }
    };
    let r = &mut r;
    let req = match h.id {
        ID_CHOWN => {
            shape(64, false)?;
            let uid = int32(r)? as u32;
            Request::Chown {
                uid,
                gid: int32(r)? as u32,
            }
        }
        ID_CHMOD => {
            shape(48, false)?;
            Request::Chmod(int32(r)? as u32)
        }
        ID_SET_SIZE => {
            shape(48, false)?;
            Request::SetSize(int64(r)?)
        }
        ID_STATFS
        | ID_CHECK_ACCESS
        | ID_LOCK_STAT
        | ID_GETLINKNODE
        | ID_GET_TRANSLATOR
        | ID_GET_TRANSLATOR_CNTL => {
            shape(msg::HEADER_SIZE, false)?;
            match h.id {
                ID_STATFS => Request::Statfs,
                ID_CHECK_ACCESS => Request::CheckAccess,
                ID_GETLINKNODE => Request::GetLinknode,
                ID_GET_TRANSLATOR => Request::GetTranslator,
                ID_GET_TRANSLATOR_CNTL => Request::GetTranslatorCntl,
                _ => Request::LockStat,
            }
        }
        ID_LOCK => {
            shape(48, false)?;
            Request::Lock(int32(r)?)
        }
        ID_SYNC | ID_SYNCFS => {
            shape(64, false)?;
            let wait = int32(r)? != 0;
            let second = int32(r)? != 0;
            if h.id == ID_SYNC {
                Request::Sync {
                    wait,
                    omit_metadata: second,
                }
            } else {
                Request::Syncfs { wait }
            }
        }
        ID_LOOKUP..=ID_RENAME => decode_dir(h.id, &shape, r)?,
        ID_MKFILE => {
            shape(64, false)?;
            let flags = int32(r)?;
            Request::Mkfile {
                flags,
                mode: int32(r)? as u32,
            }
        }
        ID_SET_TRANSLATOR => decode_set_translator(size, complex, r)?,
        ID_RECORD_LOCK => {
            shape(104, true)?;
            let cmd = int32(r)?;
            check(r, FLOCK)?;
            let lock = r.data(32).map_err(|_| bad())?;
            let lock = Flock::decode(lock.try_into().map_err(|_| bad())?);
            Request::RecordLock {
                cmd,
                lock,
                rendezvous: port(r)?,
            }
        }
        ID_UTIMENS => {
            shape(80, false)?;
            let atime = timespec(r)?;
            Request::Utimens {
                atime,
                mtime: timespec(r)?,
            }
        }
        id if (ID_CHOWN - 1..=ID_LAST).contains(&id) => return Ok(Request::Other { id }),
        _ => return Err(KernReturn::MIG_BAD_ID),
    };
    if !r.at_end() {
        return Err(bad());
    }
    Ok(req)
}

/// `file_set_translator`'s request (an arguments vector of any length).
fn decode_set_translator<'a>(
    size: usize,
    complex: bool,
    r: &mut msg::Reader<'a>,
) -> Result<Request<'a>, KernReturn> {
    if size < 104 || !complex {
        return Err(bad());
    }
    let passive_flags = int32(r)?;
    let active_flags = int32(r)?;
    let _oldtrans_flags = int32(r)?;
    let (passive, took) = io::data(r)?;
    if size != 104 + took {
        return Err(bad());
    }
    let d = r.desc().map_err(|_| bad())?;
    if d.name != tn::MOVE_SEND || !d.inline || d.number != 1 {
        return Err(bad());
    }
    let raw = r.data(8).map_err(|_| bad())?;
    let active = PortName(u64::from_ne_bytes(raw.try_into().expect("8 bytes")) as u32);
    Ok(Request::SetTranslator {
        passive_flags,
        active_flags,
        passive,
        active,
    })
}

/// The directory routines of [`decode_request`] (`dir_lookup` ..
/// `dir_rename`).
fn decode_dir<'a>(
    id: i32,
    shape: &dyn Fn(usize, bool) -> Result<(), KernReturn>,
    r: &mut msg::Reader<'a>,
) -> Result<Request<'a>, KernReturn> {
    Ok(match id {
        ID_LOOKUP => {
            shape(1096, false)?;
            let name = string(r)?;
            let flags = int32(r)?;
            Request::Lookup {
                name,
                flags,
                mode: int32(r)? as u32,
            }
        }
        ID_READDIR => {
            shape(80, false)?;
            let entry = int32(r)?;
            let nentries = int32(r)?;
            Request::Readdir {
                entry,
                nentries,
                bufsiz: int64(r)? as u64,
            }
        }
        ID_MKDIR => {
            shape(1080, false)?;
            let name = string(r)?;
            Request::Mkdir {
                name,
                mode: int32(r)? as u32,
            }
        }
        ID_RMDIR | ID_UNLINK => {
            shape(1064, false)?;
            let name = string(r)?;
            if id == ID_RMDIR {
                Request::Rmdir(name)
            } else {
                Request::Unlink(name)
            }
        }
        ID_LINK => {
            shape(1096, true)?;
            let file = port(r)?;
            let name = string(r)?;
            Request::Link {
                file,
                name,
                excl: int32(r)? != 0,
            }
        }
        ID_RENAME => {
            shape(2128, true)?;
            let old = string(r)?;
            let newdir = port(r)?;
            let new = string(r)?;
            Request::Rename {
                old,
                newdir,
                new,
                excl: int32(r)? != 0,
            }
        }
        _ => unreachable!("called for dir_lookup .. dir_rename"),
    })
}

/// `dir_lookup` reply: the retry kind and name, and the port with its
/// disposition (`PortName::NULL` with `FS_RETRY_MAGICAL`).
#[must_use]
pub fn lookup_reply(to: &ReplyTo, retry: i32, name: &str, port: PortName, disp: u8) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(INT32).raw(&retry.to_ne_bytes());
    put_string(&mut b, name);
    b.port(port, disp);
    b.finish()
}

/// `dir_readdir` reply with the entries inline (at most
/// [`io::INLINE_MAX`] bytes) and their count.
#[must_use]
pub fn readdir_reply_inline(to: &ReplyTo, data: &[u8], amount: i32) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    io::put_data_inline(&mut b, data);
    b.desc(INT32).raw(&amount.to_ne_bytes());
    b.finish()
}

/// `dir_readdir` reply with `len` bytes of entries out of line at `addr`
/// (deallocated from the server when sent).
#[must_use]
pub fn readdir_reply_ool(to: &ReplyTo, addr: u64, len: usize, amount: i32) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    io::put_data_ool(&mut b, addr, len, true);
    b.desc(INT32).raw(&amount.to_ne_bytes());
    b.finish()
}

/// `file_statfs` reply.
#[must_use]
pub fn statfs_reply(to: &ReplyTo, buf: &[u8; STATFSBUF_LEN]) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(TypeDesc::inline(tn::INTEGER_64, 64, 14)).raw(buf);
    b.finish()
}

/// `file_lock_stat` reply: the caller's lock and the node's.
#[must_use]
pub fn lock_stat_reply(to: &ReplyTo, mine: i32, node: i32) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.int32(mine).int32(node);
    b.finish()
}

/// `file_record_lock` request (`rendezvous`: a right and its
/// disposition, or null).
#[must_use]
pub fn record_lock_request(
    file: PortName,
    reply: PortName,
    cmd: i32,
    lock: &Flock,
    rendezvous: (PortName, u8),
) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_RECORD_LOCK));
    b.desc(INT32).raw(&cmd.to_ne_bytes());
    b.desc(FLOCK).raw(&lock.encode());
    b.port(rendezvous.0, rendezvous.1);
    b.finish()
}

/// `file_record_lock` reply: the lock as answered.
#[must_use]
pub fn record_lock_reply(to: &ReplyTo, lock: &Flock) -> MsgBuf {
    let mut b = Builder::new(reply_header(to));
    ret_code(&mut b, KernReturn::SUCCESS);
    b.desc(FLOCK).raw(&lock.encode());
    b.finish()
}

/// Decodes a `file_record_lock` reply.
pub fn decode_record_lock_reply(bytes: &[u8]) -> Result<Flock, KernReturn> {
    let mut r = reply_body(bytes, ID_RECORD_LOCK, Some(88), false)?;
    check(&mut r, FLOCK).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let b = r.data(32).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok(Flock::decode(
        b.try_into().map_err(|_| KernReturn::MIG_TYPE_ERROR)?,
    ))
}

/// Decodes a `file_lock_stat` reply: (the caller's lock, the node's).
pub fn decode_lock_stat_reply(bytes: &[u8]) -> Result<(i32, i32), KernReturn> {
    let mut r = reply_body(bytes, ID_LOCK_STAT, Some(80), false)?;
    let mine = int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let node = int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok((mine, node))
}

/// `dir_mkfile` request.
#[must_use]
pub fn mkfile_request(dir: PortName, reply: PortName, flags: i32, mode: u32) -> MsgBuf {
    ints_request(dir, reply, ID_MKFILE, &[flags, mode as i32])
}

/// `file_set_translator` request setting the passive translator
/// `passive` (its NUL-separated command line) with `passive_flags`, no
/// active translator.
#[must_use]
pub fn set_translator_request(
    file: PortName,
    reply: PortName,
    passive_flags: i32,
    passive: &[u8],
) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_SET_TRANSLATOR));
    for flags in [passive_flags, 0, 0] {
        b.desc(INT32).raw(&flags.to_ne_bytes());
    }
    io::put_data_inline(&mut b, passive);
    b.port(PortName::NULL, tn::COPY_SEND);
    b.finish()
}

/// `FS_TRANS_SET`: set (or clear) the translator.
pub const FS_TRANS_SET: i32 = 0x4;
/// `FS_TRANS_EXCL`: not if there is one already.
pub const FS_TRANS_EXCL: i32 = 0x2;
/// `FS_TRANS_FORCE`: no short-circuiting (`/hurd/symlink` as a program).
pub const FS_TRANS_FORCE: i32 = 0x1;

/// `dir_lookup` request.
#[must_use]
pub fn lookup_request(dir: PortName, reply: PortName, name: &str, flags: i32, mode: u32) -> MsgBuf {
    let mut b = Builder::new(Header::request(dir, reply, ID_LOOKUP));
    put_string(&mut b, name);
    b.desc(INT32).raw(&flags.to_ne_bytes());
    b.desc(INT32).raw(&mode.to_ne_bytes());
    b.finish()
}

/// `dir_readdir` request.
#[must_use]
pub fn readdir_request(
    dir: PortName,
    reply: PortName,
    entry: i32,
    nentries: i32,
    bufsiz: u64,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dir, reply, ID_READDIR));
    b.desc(INT32).raw(&entry.to_ne_bytes());
    b.desc(INT32).raw(&nentries.to_ne_bytes());
    b.desc(INT64).raw(&bufsiz.to_ne_bytes());
    b.finish()
}

/// A request with one name (`dir_rmdir`, `dir_unlink`) or a name and a
/// mode (`dir_mkdir`).
#[must_use]
pub fn name_request(
    dir: PortName,
    reply: PortName,
    id: i32,
    name: &str,
    mode: Option<u32>,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dir, reply, id));
    put_string(&mut b, name);
    if let Some(mode) = mode {
        b.desc(INT32).raw(&mode.to_ne_bytes());
    }
    b.finish()
}

/// A request with integer arguments only (`file_chmod`, `file_chown`,
/// `file_sync`, `file_syncfs`: `INT32` each).
#[must_use]
pub fn ints_request(file: PortName, reply: PortName, id: i32, args: &[i32]) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, id));
    for a in args {
        b.desc(INT32).raw(&a.to_ne_bytes());
    }
    b.finish()
}

/// `file_set_size` request.
#[must_use]
pub fn set_size_request(file: PortName, reply: PortName, size: i64) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_SET_SIZE));
    b.desc(INT64).raw(&size.to_ne_bytes());
    b.finish()
}

/// `file_utimens` request.
#[must_use]
pub fn utimens_request(
    file: PortName,
    reply: PortName,
    atime: (i64, i64),
    mtime: (i64, i64),
) -> MsgBuf {
    let mut b = Builder::new(Header::request(file, reply, ID_UTIMENS));
    for (s, ns) in [atime, mtime] {
        b.desc(TIMESPEC)
            .raw(&s.to_ne_bytes())
            .raw(&ns.to_ne_bytes());
    }
    b.finish()
}

/// `dir_link` request (`file` sent with `disp`).
#[must_use]
pub fn link_request(
    dir: PortName,
    reply: PortName,
    file: (PortName, u8),
    name: &str,
    excl: bool,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dir, reply, ID_LINK));
    b.port(file.0, file.1);
    put_string(&mut b, name);
    b.desc(INT32).raw(&i32::from(excl).to_ne_bytes());
    b.finish()
}

/// `dir_rename` request (`newdir` sent with `disp`).
#[must_use]
pub fn rename_request(
    dir: PortName,
    reply: PortName,
    old: &str,
    newdir: (PortName, u8),
    new: &str,
    excl: bool,
) -> MsgBuf {
    let mut b = Builder::new(Header::request(dir, reply, ID_RENAME));
    put_string(&mut b, old);
    b.port(newdir.0, newdir.1);
    put_string(&mut b, new);
    b.desc(INT32).raw(&i32::from(excl).to_ne_bytes());
    b.finish()
}

/// Decodes a `dir_lookup` reply: retry kind, retry name, and the port
/// (a send right now the caller's, or null).
pub fn decode_lookup_reply(
    bytes: &[u8],
) -> Result<(i32, alloc::string::String, PortName), KernReturn> {
    decode_retry_reply(bytes, ID_LOOKUP)
}

/// Decodes a reply of a lookup's shape (`dir_lookup`, `fsys_getroot`):
/// retry kind, retry name, port.
pub(crate) fn decode_retry_reply(
    bytes: &[u8],
    request_id: i32,
) -> Result<(i32, alloc::string::String, PortName), KernReturn> {
    let mut r = reply_body(bytes, request_id, Some(1112), true)?;
    let retry = int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let name = string(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let name = alloc::string::String::from_utf8_lossy(name).into_owned();
    let d = r.desc().map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    if !tn::is_port(d.name) || d.number != 1 {
        return Err(KernReturn::MIG_TYPE_ERROR);
    }
    let raw = r.data(8).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let port = PortName(u64::from_ne_bytes(raw.try_into().expect("8 bytes")) as u32);
    Ok((retry, name, port))
}

/// Decodes a `dir_readdir` reply: the entries (an out-of-line region is
/// the caller's to deallocate) and their count.
pub fn decode_readdir_reply(bytes: &[u8]) -> Result<(Data<'_>, i32), KernReturn> {
    let complex = Header::read(bytes).is_ok_and(|h| h.is_complex());
    let mut r = reply_body(bytes, ID_READDIR, None, complex)?;
    let (d, _) = io::data(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    let amount = int32(&mut r).map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok((d, amount))
}

/// Decodes a `file_statfs` reply.
pub fn decode_statfs_reply(bytes: &[u8]) -> Result<[u8; STATFSBUF_LEN], KernReturn> {
    let mut r = reply_body(bytes, ID_STATFS, Some(168), false)?;
    let raw = r
        .expect(tn::INTEGER_64, 64, 14)
        .map_err(|_| KernReturn::MIG_TYPE_ERROR)?;
    Ok(raw.try_into().expect("112 bytes"))
}

/// The fields of an `fsys_statfsbuf_t` (glibc's `struct statfs64` on
/// `x86_64` GNU/Hurd).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Statfs {
    pub fstype: u32,
    pub bsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub fsid: u64,
    pub namelen: u64,
    pub favail: u64,
    pub frsize: u64,
    pub flag: u64,
}

impl Statfs {
    /// The wire bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; STATFSBUF_LEN] {
        let mut b = [0u8; STATFSBUF_LEN];
        b[0..4].copy_from_slice(&self.fstype.to_ne_bytes());
        let words = [
            self.bsize,
            self.blocks,
            self.bfree,
            self.bavail,
            self.files,
            self.ffree,
            self.fsid,
            self.namelen,
            self.favail,
            self.frsize,
            self.flag,
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }

    /// Decodes the wire bytes.
    #[must_use]
    pub fn decode(b: &[u8; STATFSBUF_LEN]) -> Self {
        let w = |i: usize| u64::from_ne_bytes(b[8 + 8 * i..16 + 8 * i].try_into().expect("8"));
        Self {
            fstype: u32::from_ne_bytes(b[0..4].try_into().expect("4")),
            bsize: w(0),
            blocks: w(1),
            bfree: w(2),
            bavail: w(3),
            files: w(4),
            ffree: w(5),
            fsid: w(6),
            namelen: w(7),
            favail: w(8),
            frsize: w(9),
            flag: w(10),
        }
    }
}

/// `DT_*` types of a directory entry.
pub mod dt {
    #![allow(missing_docs)]
    pub const UNKNOWN: u8 = 0;
    pub const FIFO: u8 = 1;
    pub const CHR: u8 = 2;
    pub const DIR: u8 = 4;
    pub const BLK: u8 = 6;
    pub const REG: u8 = 8;
    pub const LNK: u8 = 10;
    pub const SOCK: u8 = 12;
}

/// Offset of `d_name` in glibc's `struct dirent` on `x86_64` GNU/Hurd
/// (`d_ino` 8 bytes, `d_reclen` 2, `d_type` 1, `d_namlen` 1).
pub const DIRENT_NAME: usize = 12;

/// The record length of an entry named `len` bytes: the name's NUL
/// included, rounded to 8 (`d_ino`'s alignment).
#[must_use]
pub const fn dirent_len(len: usize) -> usize {
    (DIRENT_NAME + len + 1 + 7) & !7
}

/// Appends one `struct dirent` to `out` (names are at most 255 bytes:
/// `d_namlen` is one byte).
pub fn put_dirent(out: &mut alloc::vec::Vec<u8>, ino: u64, kind: u8, name: &[u8]) {
    let n = name.len().min(255);
    let len = dirent_len(n);
    let at = out.len();
    out.resize(at + len, 0);
    out[at..at + 8].copy_from_slice(&ino.to_ne_bytes());
    out[at + 8..at + 10].copy_from_slice(&(len as u16).to_ne_bytes());
    out[at + 10] = kind;
    out[at + 11] = n as u8;
    out[at + DIRENT_NAME..at + DIRENT_NAME + n].copy_from_slice(&name[..n]);
}

/// Decodes a buffer of `struct dirent`: (inode, type, name) each.
#[must_use]
pub fn parse_dirents(mut b: &[u8]) -> alloc::vec::Vec<(u64, u8, alloc::vec::Vec<u8>)> {
    let mut out = alloc::vec::Vec::new();
    while b.len() >= DIRENT_NAME {
        let reclen = usize::from(u16::from_ne_bytes([b[8], b[9]]));
        let namlen = usize::from(b[11]);
        if reclen < DIRENT_NAME + namlen || reclen > b.len() {
            break;
        }
        let ino = u64::from_ne_bytes(b[0..8].try_into().expect("8 bytes"));
        out.push((ino, b[10], b[DIRENT_NAME..DIRENT_NAME + namlen].to_vec()));
        b = &b[reclen..];
    }
    out
}
