//! An NBD server (Linux front end): the fixed newstyle handshake with
//! `NBD_OPT_GO`/`INFO`/`LIST`/`EXPORT_NAME`/`ABORT`, then READ, WRITE (with
//! FUA), FLUSH, TRIM (where the back end can discard) and DISCONNECT.
//! Export names are device names. Listens on a Unix socket or on 127.0.0.1
//! only. Malformed requests get an NBD error or, when the stream cannot be
//! trusted any more, the connection is closed; the server goes on.
//! Requests of one connection run up to 16 at a time (within 64 MiB of
//! buffers), answered as they finish.

use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::device::Disks;
use crate::disk::{AlignedBuf, Disk, PAGE, splice_all, whole};

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
const TF_CAN_MULTI_CONN: u16 = 256;

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

/// The export's flags. Every connection to an export shares its one back
/// end, whose flush is the whole disk's (an image's `fdatasync`, the
/// drive's cache flush), so a flush on any connection makes writes that
/// any connection completed stable: several connections are safe.
fn transmission_flags(disk: &dyn Disk) -> u16 {
    let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_CAN_MULTI_CONN;
    if disk.read_only() {
        f |= TF_READ_ONLY;
    }
    if disk.can_discard() {
        f |= TF_SEND_TRIM;
    }
    f
}

/// The chosen export: its name, disk and the size announced for it.
type Export = (String, Arc<dyn Disk>, u64);

/// The handshake; returns the chosen export.
fn handshake<S: Read + Write>(disks: &Disks, s: &mut S) -> io::Result<Option<Export>> {
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
                return Ok(Some((name, disk, size)));
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
                    return Ok(Some((name, disk, size)));
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

/// Requests one connection carries out at once (QEMU's NBD client keeps up
/// to 16 in flight). Replies go out as requests finish, matched by handle,
/// as NBD allows.
const IN_FLIGHT: usize = 16;

/// Bytes of transfers one connection holds in buffers at most; the reader
/// waits for room before it takes the next read or write (any one fits:
/// payloads are at most [`MAX_PAYLOAD`]).
const IN_FLIGHT_BYTES: usize = 64 << 20;

/// A worker's buffer larger than this is freed after its request, not kept.
const KEEP_BUFFER: usize = 4 << 20;

/// Requests of a kind that takes longer than this on average are worth a
/// second worker reading the next request meanwhile; quicker ones are
/// carried out between two reads by the thread that read them, since
/// waking a sleeping thread costs more (5-15 µs on a loaded or nested host)
/// than a 4 KiB copy from the page cache.
const SLOW_NS: u64 = 20_000;

/// Reads at least this long go from the page cache to the socket by
/// `splice`, through a pipe, with no copy in this process (Linux hands the
/// socket the page-cache pages themselves); shorter ones take fewer calls
/// through a buffer.
const SPLICE_MIN: usize = 64 << 10;

/// The size asked for a worker's splice pipe (the most an unprivileged
/// process may, by default).
const PIPE_SIZE: usize = 1 << 20;

/// A pipe a worker splices reads through.
struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    /// Its capacity: a page per slot.
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two new descriptors, ours alone.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our descriptor; no memory is passed.
        let size = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as i32) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            rd,
            wr,
            size: size as usize,
        })
    }

    /// Whether the pages holding `len` bytes at `offset` fit.
    fn fits(&self, offset: u64, len: usize) -> bool {
        (offset as usize % PAGE + len).div_ceil(PAGE) * PAGE <= self.size
    }

    /// Moves `len` bytes from the pipe to `to`.
    fn drain(&self, to: BorrowedFd<'_>, len: usize) -> io::Result<()> {
        splice_all(
            self.rd.as_raw_fd(),
            None,
            to.as_raw_fd(),
            None,
            len,
            libc::SPLICE_F_MOVE,
        )
    }

    /// Whether the pipe has no free slot (the pages a splice moves in do
    /// not always fill their slots, so its bytes do not tell).
    fn full(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.wr.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: poll of one descriptor, without waiting.
        unsafe { libc::poll(&raw mut p, 1, 0) == 0 }
    }

    /// Writes `data` into the pipe, whole (it has room: the caller knows).
    fn put(&self, data: &[u8]) -> io::Result<()> {
        // SAFETY: writes from the caller's buffer, inside it, into our pipe.
        whole(data.len(), |done, left| unsafe {
            libc::write(self.wr.as_raw_fd(), data[done..].as_ptr().cast(), left)
        })
    }

    /// Reads and drops what the pipe holds (the rest of a write that
    /// failed, so the pipe serves again).
    fn empty(&self) -> io::Result<()> {
        let mut held: libc::c_int = 0;
        // SAFETY: FIONREAD on our pipe writes one int.
        if unsafe { libc::ioctl(self.rd.as_raw_fd(), libc::FIONREAD, &raw mut held) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut scrap = [0u8; 4096];
        // SAFETY: reads into the local buffer, at most its size.
        whole(usize::try_from(held).unwrap_or(0), |_, left| unsafe {
            libc::read(
                self.rd.as_raw_fd(),
                scrap.as_mut_ptr().cast(),
                scrap.len().min(left),
            )
        })
    }
}

/// What a worker carries from request to request: its transfer buffer and
/// its splice pipe (made at its first long read; `Err` once the host
/// refused one, so that worker reads through its buffer).
struct Tools {
    buf: AlignedBuf,
    pipe: Option<io::Result<Pipe>>,
}

impl Tools {
    /// The pipe for a read of `len` bytes at `offset`, when it fits.
    fn pipe(&mut self, offset: u64, len: usize) -> Option<&Pipe> {
        let pipe = self.pipe.get_or_insert_with(|| {
            Pipe::new()
                .inspect_err(|e| log::info!("NBD: no splice pipe ({e}): reads go through a buffer"))
        });
        pipe.as_ref().ok().filter(|p| p.fits(offset, len))
    }

    /// The pipe a write's payload goes through, any length.
    fn write_pipe(&mut self) -> Option<&Pipe> {
        self.pipe(0, 0)
    }
}

/// How long the reader polls a quiet socket before it sleeps in `recv`.
const SPIN_NS: u64 = 30_000;

/// The reader polls while reads lately waited at most this long on average
/// (a wait it slept through counts its wake-up too).
const POLL_GAP_NS: u64 = 200_000;

/// Whether this process may run on more than one processor (asked once:
/// the answer reads cgroup files).
static SEVERAL_CPUS: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1));

/// The socket as the reader reads it. A client that keeps one request in
/// flight sends the next within microseconds of each reply; sleeping in
/// `recv` until then, and being woken, costs more than that wait (20-40 µs
/// a round trip on this nested VM, where the wait itself is 10-20 µs). So
/// while the client has lately answered quickly ([`POLL_GAP_NS`]), a read
/// for the next request polls the socket for up to [`SPIN_NS`] before it
/// sleeps; a client that pauses longer (an idle one) stops the polling
/// after a few reads. Never on a single processor, where polling would
/// only keep the client from running.
struct Input<S> {
    s: S,
    /// How long reads lately waited for data, in nanoseconds (an
    /// exponentially weighted mean).
    gap: u64,
    poll: bool,
    /// The next read starts a request (only there does the reader poll:
    /// in the middle of a payload the client is sending already, and
    /// polling would take a processor it needs).
    at_request: bool,
}

impl<S> Input<S> {
    fn new(s: S) -> Self {
        Self {
            s,
            gap: 0,
            poll: *SEVERAL_CPUS,
            at_request: false,
        }
    }

    fn waited(&mut self, since: Instant) {
        // At most 1 ms, so a client busy again after a pause is soon polled.
        let ns = u64::try_from(since.elapsed().as_nanos()).map_or(1_000_000, |n| n.min(1_000_000));
        self.gap = self.gap - self.gap / 4 + ns / 4;
    }
}

impl<S: Read + AsFd> Read for Input<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = Instant::now();
        if std::mem::take(&mut self.at_request) && self.poll && self.gap <= POLL_GAP_NS {
            loop {
                // SAFETY: recv into the caller's buffer, without waiting.
                let n = unsafe {
                    libc::recv(
                        self.s.as_fd().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n >= 0 {
                    self.waited(t);
                    return Ok(n as usize);
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock if t.elapsed().as_nanos() < u128::from(SPIN_NS) => {
                        std::hint::spin_loop();
                    }
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
            }
        }
        let n = self.s.read(buf)?;
        self.waited(t);
        Ok(n)
    }
}

/// A connection the workers share.
pub(crate) trait Conn: Read + Write + AsFd + Send + Sized {
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

/// A request read from the client; a write's payload is in the buffer of
/// the worker that read it.
#[derive(Clone, Copy)]
struct Job {
    cmd: u16,
    flags: u16,
    handle: u64,
    offset: u64,
    len: usize,
    /// The answer, when the reader already knows it (a bad request).
    error: Option<u32>,
    /// A write whose payload the reader put on the disk itself
    /// ([`Connection::splice_write`]): left to do, its FUA and reply.
    written: bool,
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

/// What is left of a connection's [`IN_FLIGHT_BYTES`].
struct Budget {
    left: Mutex<usize>,
    room: Condvar,
}

impl Budget {
    /// Takes `len` bytes, once there is room.
    fn take(&self, len: usize) {
        if len == 0 {
            return;
        }
        let mut left = self.left.lock();
        while *left < len {
            self.room.wait(&mut left);
        }
        *left -= len;
    }

    fn give(&self, len: usize) {
        if len == 0 {
            return;
        }
        *self.left.lock() += len;
        // Only the worker reading requests ever waits.
        self.room.notify_one();
    }
}

/// Average time a request of each kind (read, write, other) takes to carry
/// out, in nanoseconds (an exponentially weighted mean; updates from
/// several workers may overwrite each other, which only blurs it).
struct Pace([AtomicU64; 3]);

impl Pace {
    fn new() -> Self {
        // Unknown kinds count as slow until measured.
        Self(std::array::from_fn(|_| AtomicU64::new(2 * SLOW_NS)))
    }

    fn kind(&self, cmd: u16) -> &AtomicU64 {
        &self.0[match cmd {
            CMD_READ => 0,
            CMD_WRITE => 1,
            _ => 2,
        }]
    }

    fn slow(&self, cmd: u16) -> bool {
        self.kind(cmd).load(Ordering::Relaxed) > SLOW_NS
    }

    fn record(&self, cmd: u16, took: Duration) {
        let k = self.kind(cmd);
        let old = k.load(Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        k.store(old - old / 8 + ns / 8, Ordering::Relaxed);
    }
}

/// Who of a connection's workers reads next.
#[derive(Default)]
struct Crew {
    /// A worker is reading (or waiting to read) the next request.
    reading: bool,
    /// Workers asleep until it is their turn to read.
    idle: usize,
    /// Workers started.
    workers: usize,
    /// Set when reading has ended (disconnect, end of stream, a request
    /// that leaves the stream untrustworthy), with how.
    ended: Option<io::Result<()>>,
}

/// One connection after the handshake. Its workers take turns as reader
/// (leader and followers): the reader takes one request off the stream,
/// passes the reading on, then carries out that request and sends its
/// reply itself, so no request is handed between threads. The next reader
/// is woken (or started, up to [`IN_FLIGHT`]) at once only when that can
/// pay: the client keeps several requests in flight and requests of this
/// kind are slow ([`SLOW_NS`]). Quick ones, and those of a client that
/// waits for each reply, run back to back on one thread with no wake-up.
struct Connection<'d, S> {
    disk: &'d dyn Disk,
    /// The size announced in the handshake: NBD fixes it for the
    /// connection, so requests are checked against it without asking the
    /// back end each time.
    size: u64,
    input: Mutex<io::BufReader<Input<S>>>,
    out: Mutex<S>,
    crew: Mutex<Crew>,
    turn: Condvar,
    /// Workers carrying out a request (counted outside the crew's lock,
    /// which a request need not take once more when it ends).
    busy: AtomicUsize,
    /// Workers carrying out a write.
    writing: AtomicUsize,
    budget: Budget,
    pace: Pace,
}

fn connection<S: Conn>(disks: &Disks, mut s: S) -> io::Result<()> {
    let Some((name, disk, size)) = handshake(disks, &mut s)? else {
        return Ok(());
    };
    log::debug!("NBD client on export {name}");
    let c = Connection {
        disk: &*disk,
        size,
        out: Mutex::new(s.try_clone()?),
        // Requests a client sends back to back come in one read.
        input: Mutex::new(io::BufReader::with_capacity(64 << 10, Input::new(s))),
        crew: Mutex::new(Crew {
            workers: 1,
            ..Crew::default()
        }),
        turn: Condvar::new(),
        busy: AtomicUsize::new(0),
        writing: AtomicUsize::new(0),
        budget: Budget {
            left: Mutex::new(IN_FLIGHT_BYTES),
            room: Condvar::new(),
        },
        pace: Pace::new(),
    };
    // The workers finish what they took, and stop.
    std::thread::scope(|scope| c.work(scope));
    c.crew.lock().ended.take().unwrap_or(Ok(()))
}

impl<S: Conn> Connection<'_, S> {
    /// A worker: requests until reading ends.
    fn work<'s>(&'s self, scope: &'s std::thread::Scope<'s, '_>) {
        let mut tools = match AlignedBuf::new(0, PAGE) {
            Ok(buf) => Tools { buf, pipe: None },
            Err(e) => return self.end(Err(e)),
        };
        while let Some(job) = self.next(scope, &mut tools) {
            let t = Instant::now();
            self.answer(job, &mut tools);
            self.pace.record(job.cmd, t.elapsed());
            self.busy.fetch_sub(1, Ordering::Relaxed);
            if job.cmd == CMD_WRITE {
                self.writing.fetch_sub(1, Ordering::Relaxed);
            }
            if tools.buf.as_mut_slice().len() > KEEP_BUFFER {
                match AlignedBuf::new(0, PAGE) {
                    Ok(b) => tools.buf = b,
                    Err(e) => return self.end(Err(e)),
                }
            }
        }
    }

    /// Ends reading with `how`; every worker stops after its request.
    fn end(&self, how: io::Result<()>) {
        let mut crew = self.crew.lock();
        crew.ended.get_or_insert(how);
        crew.reading = false;
        self.turn.notify_all();
    }

    /// Waits for this worker's turn to read, reads one request (a write's
    /// payload into its buffer, or through its pipe onto the disk) and
    /// passes the reading on; `None` once reading has ended.
    fn next<'s>(&'s self, scope: &'s std::thread::Scope<'s, '_>, tools: &mut Tools) -> Option<Job> {
        {
            let mut crew = self.crew.lock();
            loop {
                if crew.ended.is_some() {
                    return None;
                }
                if !crew.reading {
                    break;
                }
                crew.idle += 1;
                self.turn.wait(&mut crew);
                crew.idle -= 1;
            }
            crew.reading = true;
        }
        let (read, buffered) = {
            let mut input = self.input.lock();
            let read = self.read_request(&mut *input, tools);
            (read, !input.buffer().is_empty())
        };
        let job = match read {
            Ok(Some(job)) => job,
            Ok(None) => {
                self.end(Ok(()));
                return None;
            }
            Err(e) => {
                self.end(Err(e));
                return None;
            }
        };
        let mut crew = self.crew.lock();
        crew.reading = false;
        // Another request may come while this one runs only when the client
        // keeps several in flight: some are still being carried out, or
        // already here. (A client that waits for each reply would only see
        // its next request wait for a thread's wake-up.)
        let pipelined = self.busy.fetch_add(1, Ordering::Relaxed) > 0 || buffered;
        // Where the host takes writes one at a time, a write already in
        // progress means this one waits for it anyway: reading the next
        // request is left until this one is done, so at most two writes
        // are under way (one carried out, one queued on the host's lock
        // while the next request comes in).
        let queued_write = job.cmd == CMD_WRITE
            && self.writing.fetch_add(1, Ordering::Relaxed) > 0
            && self.disk.serialises_writes();
        if pipelined && self.pace.slow(job.cmd) && !queued_write {
            if crew.idle > 0 {
                self.turn.notify_one();
            } else if crew.workers < IN_FLIGHT {
                crew.workers += 1;
                drop(crew);
                let started = std::thread::Builder::new()
                    .name("nbd-conn".into())
                    .spawn_scoped(scope, move || self.work(scope));
                if let Err(e) = started {
                    log::warn!("NBD: cannot start another worker: {e}");
                    self.crew.lock().workers -= 1;
                }
            }
        }
        Some(job)
    }

    /// Reads the next request (and a write's payload: into the worker's
    /// buffer, or where the back end serialises writes and takes them from
    /// a pipe, a long one onto the disk at once); `None` at a disconnect;
    /// an error for the end of the stream or a request that leaves the
    /// stream untrustworthy.
    fn read_request(
        &self,
        s: &mut io::BufReader<Input<S>>,
        tools: &mut Tools,
    ) -> io::Result<Option<Job>> {
        // The 28-byte request header in one read.
        let mut req = [0u8; 28];
        s.get_mut().at_request = true;
        let header = s.read_exact(&mut req);
        // (Already buffered, it took no read of the socket.)
        s.get_mut().at_request = false;
        header?;
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
        // Out of the disk or not whole sectors.
        let misplaced = || {
            let sector = u64::from(self.disk.sector_size());
            let end = offset.checked_add(u64::from(len));
            end.is_none_or(|end| end > self.size)
                || !offset.is_multiple_of(sector)
                || !u64::from(len).is_multiple_of(sector)
        };
        self.budget.take(held(cmd, len as usize));
        let error = match cmd {
            CMD_WRITE | CMD_TRIM if self.disk.read_only() => Some(EPERM),
            CMD_READ | CMD_WRITE | CMD_TRIM => misplaced().then_some(EINVAL),
            CMD_FLUSH => None,
            CMD_DISC => return Ok(None),
            _ => Some(ENOTSUP),
        };
        let mut written = false;
        let mut error = error;
        if cmd == CMD_WRITE {
            let len = len as usize;
            let spliced = if error.is_none()
                && len >= SPLICE_MIN
                && self.disk.serialises_writes()
                && let Some(pipe) = tools.write_pipe()
            {
                Some(self.splice_write(s, pipe, offset, len))
            } else {
                None
            };
            let read = match spliced {
                Some(Ok(on_disk)) => {
                    written = on_disk.is_ok();
                    error = on_disk.err().map(|e| errno_of(&e));
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => tools.buf.get(len).and_then(|b| s.read_exact(b)),
            };
            if let Err(e) = read {
                self.budget.give(held(cmd, len));
                return Err(e);
            }
        }
        Ok(Some(Job {
            cmd,
            flags,
            handle,
            offset,
            len: len as usize,
            error,
            written,
        }))
    }

    /// Moves a write's `len`-byte payload from the connection through the
    /// empty `pipe` onto the disk at `offset` (first what the reader's
    /// buffer holds of it), in this reader's turn: the host carries out
    /// one such write at a time anyway, and its data is copied once, from
    /// the socket's pages into the page cache, instead of twice. When the
    /// pipe fills before the payload is in, what it holds goes to the disk
    /// and the rest follows. The outer `Err`: the connection failed (the
    /// stream is lost); the inner one: the disk's answer (the payload is
    /// read whole either way, and the pipe left empty).
    fn splice_write(
        &self,
        s: &mut io::BufReader<Input<S>>,
        pipe: &Pipe,
        offset: u64,
        len: usize,
    ) -> io::Result<io::Result<()>> {
        let mut on_disk = Ok(());
        // Bytes on the disk (or dropped after a failure).
        let mut done = 0usize;
        // Moves what the pipe holds to the disk (after a failure: away).
        let drain = |done: &mut usize, held: &mut usize, on_disk: &mut io::Result<()>| {
            if *held > 0 && on_disk.is_ok() {
                *on_disk =
                    (self.disk).splice_from_pipe(offset + *done as u64, *held, pipe.rd.as_fd());
            }
            if on_disk.is_err() {
                // A failed splice may have left part of it behind.
                pipe.empty()?;
            }
            *done += std::mem::take(held);
            io::Result::Ok(())
        };
        // What came in with the request's header.
        let early = s.buffer().len().min(len);
        pipe.put(&s.buffer()[..early])?;
        s.consume(early);
        // Bytes in the pipe.
        let mut held = early;
        let sock = s.get_ref().s.as_fd().as_raw_fd();
        while done + held < len {
            // Never blocks on the pipe (we are its reader); a Unix socket
            // does not wait for data either, a TCP one does.
            // SAFETY: splice between our socket and our pipe.
            let n = unsafe {
                libc::splice(
                    sock,
                    std::ptr::null_mut(),
                    pipe.wr.as_raw_fd(),
                    std::ptr::null_mut(),
                    len - done - held,
                    libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                )
            };
            if n > 0 {
                held += n as usize;
                continue;
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if pipe.full() => {
                    drain(&mut done, &mut held, &mut on_disk)?;
                }
                io::ErrorKind::WouldBlock => {
                    let mut p = libc::pollfd {
                        fd: sock,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: poll of one descriptor.
                    if unsafe { libc::poll(&raw mut p, 1, -1) } < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
                _ => return Err(e),
            }
        }
        drain(&mut done, &mut held, &mut on_disk)?;
        Ok(on_disk)
    }

    /// Carries out one request and sends its reply.
    fn answer(&self, job: Job, tools: &mut Tools) {
        // A long read straight from the page cache, where the back end can.
        if job.error.is_none()
            && job.cmd == CMD_READ
            && job.len >= SPLICE_MIN
            && let Some(pipe) = tools.pipe(job.offset, job.len)
            && let Some(r) = self
                .disk
                .splice_to_pipe(job.offset, job.len, pipe.wr.as_fd())
        {
            if !self.spliced(job, r, pipe) {
                // It may hold what did not go out.
                tools.pipe = None;
            }
            self.budget.give(job.len);
            return;
        }
        let buf = &mut tools.buf;
        let Job {
            cmd,
            flags,
            handle,
            offset,
            len,
            error,
            written,
        } = job;
        let disk = self.disk;
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
            (None, CMD_WRITE) if written => changed(Ok(())),
            (None, CMD_WRITE) => changed(disk.write_at(offset, &buf.as_mut_slice()[..len])),
            (None, CMD_TRIM) => changed(disk.discard(offset, len as u64)),
            (None, _) => (disk.flush().map_or_else(|e| errno_of(&e), |()| 0), 0),
        };
        {
            let mut out = self.out.lock();
            if let Err(e) = simple_reply(&mut *out, err, handle, &buf.as_mut_slice()[..data]) {
                log::info!("NBD reply to {handle:#x} not sent: {e}");
                out.shut();
            }
        }
        self.budget.give(held(cmd, len));
    }

    /// Replies to a read whose data went into `pipe` (`Ok`), or did not
    /// (`Err`, nothing of it sent); whether the pipe is empty and can serve
    /// again.
    fn spliced(&self, job: Job, r: io::Result<()>, pipe: &Pipe) -> bool {
        let mut out = self.out.lock();
        let (sent, emptied) = match r {
            Ok(()) => {
                let sent = simple_reply(&mut *out, 0, job.handle, &[])
                    .and_then(|()| pipe.drain(out.as_fd(), job.len));
                let ok = sent.is_ok();
                (sent, ok)
            }
            Err(e) => (
                simple_reply(&mut *out, errno_of(&e), job.handle, &[]),
                false,
            ),
        };
        if let Err(e) = sent {
            log::info!("NBD reply to {:#x} not sent: {e}", job.handle);
            out.shut();
        }
        emptied
    }
}
