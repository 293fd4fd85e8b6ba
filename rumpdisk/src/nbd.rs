//! An NBD server (Linux front end): the fixed newstyle handshake with
//! `NBD_OPT_GO`/`INFO`/`LIST`/`EXPORT_NAME`/`ABORT`, then READ, WRITE (with
//! FUA), FLUSH, TRIM (where the back end can discard) and DISCONNECT.
//! Export names are device names. Listens on a Unix socket or on 127.0.0.1
//! only. Malformed requests get an NBD error or, when the stream cannot be
//! trusted any more, the connection is closed; the server goes on.
//! Requests of one connection run up to 16 at a time (within 64 MiB of
//! buffers), answered as they finish.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, mpsc};

use parking_lot::{Condvar, Mutex};

use crate::device::Disks;
use crate::disk::{AlignedBuf, Disk, PAGE};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const C_FLAG_NO_ZEROES: u32 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = 0x8000_0001;
const REP_ERR_INVALID: u32 = 0x8000_0003;
const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TF_HAS_FLAGS: u16 = 1;
const TF_READ_ONLY: u16 = 2;
const TF_SEND_FLUSH: u16 = 4;
const TF_SEND_FUA: u16 = 8;
const TF_SEND_TRIM: u16 = 32;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_FLAG_FUA: u16 = 1;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const ENOTSUP: u32 = 95;

/// Largest request payload accepted (32 MiB, as the NBD reference server).
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Largest option payload accepted.
const MAX_OPTION: u32 = 4096;

/// Where to listen.
#[derive(Debug, Clone)]
pub enum Listen {
    /// A Unix socket at this path (replaced if it exists).
    Unix(std::path::PathBuf),
    /// TCP on 127.0.0.1 at this port.
    Loopback(u16),
}

/// Serves `disks` until the process ends (one thread per connection).
pub fn serve(disks: &Arc<Disks>, listen: &Listen) -> io::Result<()> {
    match listen {
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path)?;
            log::info!("NBD on unix:{}", path.display());
            for conn in l.incoming() {
                spawn(Arc::clone(disks), conn?);
            }
        }
        Listen::Loopback(port) => {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, *port))?;
            log::info!("NBD on 127.0.0.1:{port}");
            for conn in l.incoming() {
                let c = conn?;
                c.set_nodelay(true)?;
                spawn(Arc::clone(disks), c);
            }
        }
    }
    Ok(())
}

/// Binds a Unix socket now (so callers know it exists) and serves it on a
/// thread.
pub fn serve_unix_in_background(disks: Arc<Disks>, path: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("nbd-listen".into())
        .spawn(move || {
            for conn in l.incoming().flatten() {
                spawn(Arc::clone(&disks), conn);
            }
        })?;
    Ok(())
}

fn spawn<S: Conn + 'static>(disks: Arc<Disks>, stream: S) {
    let r = std::thread::Builder::new()
        .name("nbd-conn".into())
        .spawn(move || {
            if let Err(e) = connection(&disks, stream) {
                log::info!("NBD connection ended: {e}");
            }
        });
    if let Err(e) = r {
        log::error!("cannot start an NBD connection thread: {e}");
    }
}

fn read_u16(s: &mut impl Read) -> io::Result<u16> {
    let mut b = [0; 2];
    s.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(s: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(s: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn protocol(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn option_reply(s: &mut impl Write, opt: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b)
}

fn transmission_flags(disk: &dyn Disk) -> u16 {
    let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA;
    if disk.read_only() {
        f |= TF_READ_ONLY;
    }
    if disk.can_discard() {
        f |= TF_SEND_TRIM;
    }
    f
}

/// The handshake; returns the chosen export.
fn handshake<S: Read + Write>(
    disks: &Disks,
    s: &mut S,
) -> io::Result<Option<(String, Arc<dyn Disk>)>> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let client_flags = read_u32(s)?;
    let no_zeroes = client_flags & C_FLAG_NO_ZEROES != 0;
    loop {
        if read_u64(s)? != IHAVEOPT {
            return Err(protocol("bad option magic"));
        }
        let opt = read_u32(s)?;
        let len = read_u32(s)?;
        if len > MAX_OPTION {
            return Err(protocol("option too long"));
        }
        let mut data = vec![0; len as usize];
        s.read_exact(&mut data)?;
        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(disk) = disks.get(&name).cloned() else {
                    return Err(protocol("unknown export"));
                };
                let size = disk.size()?;
                let mut b = Vec::new();
                b.extend_from_slice(&size.to_be_bytes());
                b.extend_from_slice(&transmission_flags(&*disk).to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0; 124]);
                }
                s.write_all(&b)?;
                return Ok(Some((name, disk)));
            }
            OPT_ABORT => {
                option_reply(s, opt, REP_ACK, &[])?;
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    option_reply(s, opt, REP_ERR_INVALID, &[])?;
                    continue;
                }
                for name in disks.names() {
                    let mut d = (name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    option_reply(s, opt, REP_SERVER, &d)?;
                }
                option_reply(s, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some(name) = info_name(&data) else {
                    option_reply(s, opt, REP_ERR_INVALID, &[])?;
                    continue;
                };
                let Some(disk) = disks.get(&name).cloned() else {
                    option_reply(
                        s,
                        opt,
                        REP_ERR_UNKNOWN,
                        format!("no export {name:?}").as_bytes(),
                    )?;
                    continue;
                };
                let size = disk.size()?;
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&transmission_flags(&*disk).to_be_bytes());
                option_reply(s, opt, REP_INFO, &info)?;
                let sector = disk.sector_size();
                let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                for v in [sector, 4096.max(sector), MAX_PAYLOAD] {
                    bs.extend_from_slice(&v.to_be_bytes());
                }
                option_reply(s, opt, REP_INFO, &bs)?;
                option_reply(s, opt, REP_ACK, &[])?;
                if opt == OPT_GO {
                    return Ok(Some((name, disk)));
                }
            }
            _ => option_reply(s, opt, REP_ERR_UNSUP, &[])?,
        }
    }
}

/// The export name of an `NBD_OPT_INFO`/`GO` payload.
fn info_name(data: &[u8]) -> Option<String> {
    let n = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let name = data.get(4..4 + n)?;
    let nreq = u16::from_be_bytes(data.get(4 + n..6 + n)?.try_into().ok()?) as usize;
    (data.len() == 6 + n + 2 * nreq).then(|| String::from_utf8_lossy(name).into_owned())
}

fn errno_of(e: &io::Error) -> u32 {
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => EPERM,
        io::ErrorKind::StorageFull => ENOSPC,
        io::ErrorKind::Unsupported => ENOTSUP,
        _ => EIO,
    }
}

/// Sends a simple reply: its 16-byte header, then `data` straight from the
/// caller's buffer (no copy of a whole read into a reply buffer).
fn simple_reply(s: &mut impl Write, error: u32, handle: u64, data: &[u8]) -> io::Result<()> {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    h[4..8].copy_from_slice(&error.to_be_bytes());
    h[8..].copy_from_slice(&handle.to_be_bytes());
    let mut parts = [io::IoSlice::new(&h), io::IoSlice::new(data)];
    let mut parts = &mut parts[..];
    while !parts.is_empty() {
        match s.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Requests one connection has in progress at once: the reader takes the
/// next while these run (QEMU's NBD client keeps up to 16 in flight).
/// Replies go out as requests finish, matched by handle, as NBD allows.
const IN_FLIGHT: usize = 16;

/// Bytes of transfers one connection holds in buffers at most; the reader
/// waits for room before it takes the next read or write (any one fits:
/// payloads are at most [`MAX_PAYLOAD`]).
const IN_FLIGHT_BYTES: usize = 64 << 20;

/// Buffers larger than this are freed after their request, not kept.
const KEEP_BUFFER: usize = 4 << 20;

/// A connection the reader and the repliers share.
pub(crate) trait Conn: Read + Write + Send + Sized {
    /// Another handle on the same connection.
    fn try_clone(&self) -> io::Result<Self>;
    /// Ends the connection both ways (after a reply that could not be sent
    /// whole, the client cannot trust the stream).
    fn shut(&self);
}

impl Conn for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn shut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Conn for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// A request for a replier.
struct Job {
    cmd: u16,
    flags: u16,
    handle: u64,
    offset: u64,
    len: usize,
    /// A write's payload, or the buffer a read fills.
    buf: AlignedBuf,
    /// The answer, when the reader already knows it (a bad request).
    error: Option<u32>,
}

/// Bytes of the connection's buffer budget a request of `cmd` for `len`
/// bytes holds: a transfer's length.
fn held(cmd: u16, len: usize) -> usize {
    if matches!(cmd, CMD_READ | CMD_WRITE) {
        len
    } else {
        0
    }
}

/// Page-aligned transfer buffers (an image past the page cache takes them
/// as they are) kept for the connection's next requests, and what is left
/// of its [`IN_FLIGHT_BYTES`].
struct Buffers {
    state: Mutex<(Vec<AlignedBuf>, usize)>,
    room: Condvar,
}

impl Buffers {
    fn new() -> Self {
        Self {
            state: Mutex::new((Vec::new(), IN_FLIGHT_BYTES)),
            room: Condvar::new(),
        }
    }

    /// A buffer for a transfer of `len` bytes, once the budget has room.
    fn take(&self, len: usize) -> io::Result<AlignedBuf> {
        let mut st = self.state.lock();
        while st.1 < len {
            self.room.wait(&mut st);
        }
        st.1 -= len;
        match st.0.pop() {
            Some(b) => Ok(b),
            None => AlignedBuf::new(0, PAGE),
        }
    }

    /// Returns a buffer and the `len` bytes of budget it held.
    fn give(&self, mut b: AlignedBuf, len: usize) {
        let mut st = self.state.lock();
        st.1 += len;
        if b.as_mut_slice().len() <= KEEP_BUFFER {
            st.0.push(b);
        }
        self.room.notify_one();
    }
}

fn connection<S: Conn>(disks: &Disks, mut s: S) -> io::Result<()> {
    let Some((name, disk)) = handshake(disks, &mut s)? else {
        return Ok(());
    };
    log::debug!("NBD client on export {name}");
    let out = Mutex::new(s.try_clone()?);
    let buffers = Buffers::new();
    // Queued jobs wait for a replier without holding the reader up (the
    // buffer budget bounds them).
    let (tx, rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| {
        for _ in 0..IN_FLIGHT {
            scope.spawn(|| {
                // Until the reader stops (the channel closes).
                while let Ok(job) = rx.lock().recv() {
                    answer(&*disk, job, &out, &buffers);
                }
            });
        }
        // Requests a client sends back to back come in one read.
        let read = read_requests(
            &mut io::BufReader::with_capacity(64 << 10, &mut s),
            &*disk,
            &buffers,
            &tx,
        );
        // The repliers finish what they took, and stop.
        drop(tx);
        read
    })
}

/// Reads requests and hands them to the repliers until a disconnect, the
/// end of the stream, or a request that leaves the stream untrustworthy.
fn read_requests(
    s: &mut impl Read,
    disk: &dyn Disk,
    buffers: &Buffers,
    repliers: &mpsc::SyncSender<Job>,
) -> io::Result<()> {
    loop {
        // The 28-byte request header in one read.
        let mut req = [0u8; 28];
        s.read_exact(&mut req)?;
        let mut r = &req[..];
        if read_u32(&mut r)? != REQUEST_MAGIC {
            return Err(protocol("bad request magic"));
        }
        let flags = read_u16(&mut r)?;
        let cmd = read_u16(&mut r)?;
        let handle = read_u64(&mut r)?;
        let offset = read_u64(&mut r)?;
        let len = read_u32(&mut r)?;
        if len > MAX_PAYLOAD && cmd != CMD_TRIM {
            // A write's payload cannot be skipped safely: end the connection.
            return Err(protocol("request too large"));
        }
        // Out of the disk or not whole sectors (the size asked only of
        // requests with a range).
        let misplaced = || {
            let sector = u64::from(disk.sector_size());
            let end = offset.checked_add(u64::from(len));
            !disk
                .size()
                .is_ok_and(|size| end.is_some_and(|end| end <= size))
                || !offset.is_multiple_of(sector)
                || !u64::from(len).is_multiple_of(sector)
        };
        let mut buf = buffers.take(held(cmd, len as usize))?;
        if cmd == CMD_WRITE {
            s.read_exact(buf.get(len as usize)?)?;
        }
        let error = match cmd {
            CMD_WRITE | CMD_TRIM if disk.read_only() => Some(EPERM),
            CMD_READ | CMD_WRITE | CMD_TRIM => misplaced().then_some(EINVAL),
            CMD_FLUSH => None,
            CMD_DISC => return Ok(()),
            _ => Some(ENOTSUP),
        };
        let job = Job {
            cmd,
            flags,
            handle,
            offset,
            len: len as usize,
            buf,
            error,
        };
        if repliers.send(job).is_err() {
            return Ok(());
        }
    }
}

/// Carries out one request and sends its reply.
fn answer(disk: &dyn Disk, job: Job, out: &Mutex<impl Conn>, buffers: &Buffers) {
    let Job {
        cmd,
        flags,
        handle,
        offset,
        len,
        mut buf,
        error,
    } = job;
    // A change made stable when the client asks (FUA), and its errno.
    let changed = |r: io::Result<()>| {
        let r = r.and_then(|()| {
            if flags & CMD_FLAG_FUA != 0 {
                disk.flush()
            } else {
                Ok(())
            }
        });
        (r.map_or_else(|e| errno_of(&e), |()| 0), 0)
    };
    let (err, data) = match (error, cmd) {
        (Some(e), _) => (e, 0),
        (None, CMD_READ) => match buf.get(len).and_then(|b| disk.read_at(offset, b)) {
            Ok(()) => (0, len),
            Err(e) => (errno_of(&e), 0),
        },
        (None, CMD_WRITE) => changed(disk.write_at(offset, &buf.as_mut_slice()[..len])),
        (None, CMD_TRIM) => changed(disk.discard(offset, len as u64)),
        (None, _) => (disk.flush().map_or_else(|e| errno_of(&e), |()| 0), 0),
    };
    {
        let mut out = out.lock();
        if let Err(e) = simple_reply(&mut *out, err, handle, &buf.as_mut_slice()[..data]) {
            log::info!("NBD reply to {handle:#x} not sent: {e}");
            out.shut();
        }
    }
    buffers.give(buf, held(cmd, len));
}
