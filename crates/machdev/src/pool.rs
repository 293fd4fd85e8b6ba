//! What every server of the suite shares, whatever its interface: a port
//! set its workers receive on, ports of its own for every open (each with
//! a no-senders notification) and the table of what each port stands for
//! ([`Objects`]), and a pool of worker threads that grows
//! while all are busy. [`DeviceServer`](crate::DeviceServer) (the Mach
//! device interface) and [`NetfsServer`](crate::netfs::NetfsServer) (the
//! Hurd's io/fs/fsys protids) are built on it.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "std")]
use core::sync::atomic::{AtomicIsize, AtomicUsize};

use mach::ipc::{Ipc, option};
use mach::msg::MsgBuf;
use mach::port::{Right, notify, type_name as tn};
use mach::{KernReturn, PortName};

use crate::sync::RwLock;

/// What a port of a server's set stands for, as [`Objects::get`] tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object<O, K> {
    /// An open: its own port ([`Pool::new_open_port`]).
    Open(O),
    /// The no-senders notification port of the open on this port.
    Notify(PortName),
    /// One of the server's own ports (a master or control port, ...).
    Server(K),
}

enum Slot<O, K> {
    Open(O, PortName),
    Notify(PortName),
    Server(K),
}

/// A server's ports and what each stands for: a port per open (with the
/// port its no-senders notification comes to) and the server's own ports
/// of kinds `K`.
pub struct Objects<O, K> {
    slots: RwLock<BTreeMap<PortName, Slot<O, K>>>,
}

impl<O, K> Default for Objects<O, K> {
    fn default() -> Self {
        Self {
            slots: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<O: Clone, K: Clone> Objects<O, K> {
    /// Serves `port` as one of the server's own.
    pub fn add(&self, port: PortName, kind: K) {
        self.slots.write().insert(port, Slot::Server(kind));
    }

    /// Serves `port` as `open`, with its no-senders notification on
    /// `notify` (the pair [`Pool::new_open_port`] made).
    pub fn add_open(&self, port: PortName, notify: PortName, open: O) {
        let mut slots = self.slots.write();
        slots.insert(port, Slot::Open(open, notify));
        slots.insert(notify, Slot::Notify(port));
    }

    /// What `port` stands for.
    #[must_use]
    pub fn get(&self, port: PortName) -> Option<Object<O, K>> {
        self.slots.read().get(&port).map(|s| match s {
            Slot::Open(o, _) => Object::Open(o.clone()),
            Slot::Notify(p) => Object::Notify(*p),
            Slot::Server(k) => Object::Server(k.clone()),
        })
    }

    /// How many opens are served.
    #[must_use]
    pub fn open_count(&self) -> usize {
        let slots = self.slots.read();
        slots
            .values()
            .filter(|s| matches!(s, Slot::Open(..)))
            .count()
    }

    /// How many opens `which` picks.
    #[must_use]
    pub fn count(&self, which: impl Fn(&O) -> bool) -> usize {
        let slots = self.slots.read();
        slots
            .values()
            .filter(|s| matches!(s, Slot::Open(o, _) if which(o)))
            .count()
    }

    /// Ends the open on `port`: both its ports are destroyed, and the open
    /// is handed back (`None`, and nothing done, for another kind of
    /// port or one already retired).
    pub fn retire(&self, pool: &Pool, port: PortName) -> Option<O> {
        let mut slots = self.slots.write();
        match slots.remove(&port) {
            Some(Slot::Open(open, notify)) => {
                slots.remove(&notify);
                drop(slots);
                pool.destroy(port);
                pool.destroy(notify);
                Some(open)
            }
            Some(other) => {
                slots.insert(port, other);
                None
            }
            None => None,
        }
    }

    /// Destroys every port (a server stopping), handing back the opens.
    pub fn clear(&self, pool: &Pool) -> Vec<O> {
        let slots = core::mem::take(&mut *self.slots.write());
        let mut opens = Vec::new();
        for (port, slot) in slots {
            if let Slot::Open(o, _) = slot {
                opens.push(o);
            }
            pool.destroy(port);
        }
        opens
    }
}

/// Largest request a server receives.
pub(crate) const RCV_SIZE: usize = 8192;

/// Sizes of the worker pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Threads started at once (at least 1).
    pub min_threads: usize,
    /// The pool grows while every thread is busy, up to this many.
    pub max_threads: usize,
}

impl PoolConfig {
    /// The default pool with at most `max` threads (`--threads`), if given.
    #[must_use]
    pub fn with_max_threads(max: Option<usize>) -> Self {
        let d = Self::default();
        Self {
            max_threads: max.unwrap_or(d.max_threads).max(1),
            ..d
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_threads: 2,
            max_threads: 64,
        }
    }
}

/// A server the pool's workers hand every received message to.
pub trait Serve: Send + Sync + 'static {
    /// The server's pool.
    fn pool(&self) -> &Pool;
    /// Handles one received message (its rights and memory are the
    /// server's from now on).
    fn handle(&self, bytes: &[u8]);
}

/// The port set, the ports in it, and the workers receiving on it.
pub struct Pool {
    ipc: Arc<dyn Ipc>,
    portset: PortName,
    #[cfg(feature = "std")]
    config: PoolConfig,
    #[cfg(feature = "std")]
    threads: AtomicUsize,
    /// Workers waiting for a message, less those a hand-off lent (below
    /// zero while a lent worker also took a message).
    #[cfg(feature = "std")]
    idle: AtomicIsize,
    stopping: AtomicBool,
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("portset", &self.portset)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A new, empty port set.
    pub fn new(ipc: Arc<dyn Ipc>, config: PoolConfig) -> Result<Self, KernReturn> {
        // A `no_std` task has no threads: it calls `serve_one`.
        #[cfg(not(feature = "std"))]
        let _ = config;
        let portset = ipc.port_allocate(Right::PortSet)?;
        Ok(Self {
            ipc,
            portset,
            #[cfg(feature = "std")]
            config,
            #[cfg(feature = "std")]
            threads: AtomicUsize::new(0),
            #[cfg(feature = "std")]
            idle: AtomicIsize::new(0),
            stopping: AtomicBool::new(false),
        })
    }

    /// The task's transport.
    #[must_use]
    pub fn ipc(&self) -> &Arc<dyn Ipc> {
        &self.ipc
    }

    /// The port set the workers receive on.
    #[must_use]
    pub fn portset(&self) -> PortName {
        self.portset
    }

    /// A new port (a receive right) in the set.
    pub fn new_port(&self) -> Result<PortName, KernReturn> {
        let port = self.ipc.port_allocate(Right::Receive)?;
        if let Err(e) = self.ipc.port_move_member(port, self.portset).result() {
            self.destroy(port);
            return Err(e);
        }
        Ok(port)
    }

    /// A new port for one open and the port its no-senders notification
    /// comes to, both in the set.
    pub fn new_open_port(&self) -> Result<(PortName, PortName), KernReturn> {
        let port = self.new_port()?;
        let notify_port = match self.new_port() {
            Ok(n) => n,
            Err(e) => {
                self.destroy(port);
                return Err(e);
            }
        };
        if let Err(e) = self.ipc.request_notification(
            port,
            notify::NO_SENDERS,
            1,
            notify_port,
            tn::MAKE_SEND_ONCE,
        ) {
            self.destroy(port);
            self.destroy(notify_port);
            return Err(e);
        }
        Ok((port, notify_port))
    }

    /// Takes `port` (a port of the set) out of the set, or puts it back:
    /// while out, its messages wait on it unserved.
    pub fn set_serving(&self, port: PortName, serving: bool) -> Result<(), KernReturn> {
        let set = if serving {
            self.portset
        } else {
            PortName::NULL
        };
        self.ipc.port_move_member(port, set).result()
    }

    /// Destroys a receive right of the server.
    pub fn destroy(&self, port: PortName) {
        let _ = self.ipc.port_mod_refs(port, Right::Receive, -1);
    }

    /// Stops serving: the port set goes and the workers exit. The server
    /// destroys its ports.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.ipc.port_mod_refs(self.portset, Right::PortSet, -1);
    }

    /// Whether [`Pool::stop`] was called.
    #[must_use]
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Worker threads currently running.
    #[cfg(feature = "std")]
    #[must_use]
    pub fn thread_count(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    /// One receive on the port set into `buf`, waiting at most
    /// `timeout_ms` (`None`: until a message comes).
    fn receive(&self, buf: &mut MsgBuf, timeout_ms: Option<u32>) -> KernReturn {
        if buf.len() < RCV_SIZE {
            buf.resize(RCV_SIZE);
        }
        let opt = option::RCV_MSG
            | if timeout_ms.is_some() {
                option::RCV_TIMEOUT
            } else {
                0
            };
        // SAFETY: a valid buffer of at least RCV_SIZE bytes.
        unsafe {
            self.ipc.mach_msg(
                buf.as_mut_ptr(),
                opt,
                0,
                RCV_SIZE as u32,
                self.portset,
                timeout_ms.unwrap_or(0),
                PortName::NULL,
            )
        }
    }
}

/// Receives and handles one message on the calling thread, waiting at most
/// `timeout_ms` (`None`: until one comes), into `buf` (grown to the largest
/// request on first use): a server without a pool, for single-threaded
/// hosts and for fuzzing the dispatch path.
pub fn serve_one_in<S: Serve + ?Sized>(
    server: &S,
    buf: &mut MsgBuf,
    timeout_ms: Option<u32>,
) -> Result<(), KernReturn> {
    server.pool().receive(buf, timeout_ms).result()?;
    server.handle(buf.as_bytes());
    Ok(())
}

/// Starts the worker pool of `server`.
#[cfg(feature = "std")]
pub fn start<S: Serve>(server: &Arc<S>) {
    for _ in 0..server.pool().config.min_threads.max(1) {
        spawn_worker(server);
    }
}

#[cfg(feature = "std")]
fn spawn_worker<S: Serve>(server: &Arc<S>) {
    let me = Arc::clone(server);
    let pool = server.pool();
    pool.threads.fetch_add(1, Ordering::AcqRel);
    pool.idle.fetch_add(1, Ordering::AcqRel);
    let spawned = std::thread::Builder::new()
        .name("machdev-worker".into())
        .spawn(move || worker(&me));
    if let Err(e) = spawned {
        log::error!("cannot start a server thread: {e}");
        pool.threads.fetch_sub(1, Ordering::AcqRel);
        pool.idle.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(feature = "std")]
fn worker<S: Serve>(server: &Arc<S>) {
    let mut buf = MsgBuf::zeroed(RCV_SIZE);
    let pool = server.pool();
    loop {
        let r = pool.receive(&mut buf, None);
        if pool.stopping() {
            break;
        }
        match r {
            KernReturn::SUCCESS => {}
            KernReturn::RCV_TOO_LARGE => continue,
            KernReturn::RCV_INVALID_NAME | KernReturn::RCV_PORT_DIED => break,
            e => {
                log::warn!("receive failed: {e}");
                continue;
            }
        }
        handle_busy(server, buf.as_bytes());
    }
    pool.threads.fetch_sub(1, Ordering::AcqRel);
    pool.idle.fetch_sub(1, Ordering::AcqRel);
}

/// Handles one message as a busy worker of the pool, which keeps a thread
/// receiving meanwhile: on the worker that received it, or on a thread a
/// waiting worker was lent to by a hand-off.
#[cfg(feature = "std")]
pub fn handle_busy<S: Serve>(server: &Arc<S>, bytes: &[u8]) {
    let pool = server.pool();
    if pool.idle.fetch_sub(1, Ordering::AcqRel) <= 1
        && pool.threads.load(Ordering::Acquire) < pool.config.max_threads
    {
        spawn_worker(server);
    }
    server.handle(bytes);
    pool.idle.fetch_add(1, Ordering::AcqRel);
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use mach::loopback::Kernel;

    /// Whether `port` still names a receive right of the task.
    fn alive(pool: &Pool, port: PortName) -> bool {
        pool.ipc().port_move_member(port, PortName::NULL) == KernReturn::SUCCESS
    }

    #[test]
    fn an_open_and_its_notification_port_go_together() {
        let ipc: Arc<dyn Ipc> = Arc::new(Kernel::new().new_task());
        let pool = Pool::new(ipc, PoolConfig::default()).unwrap();
        let objects: Objects<&str, u8> = Objects::default();
        let own = pool.new_port().unwrap();
        objects.add(own, 7);
        let (a, a_notify) = pool.new_open_port().unwrap();
        objects.add_open(a, a_notify, "a");
        let (b, b_notify) = pool.new_open_port().unwrap();
        objects.add_open(b, b_notify, "b");
        assert_eq!(objects.get(a), Some(Object::Open("a")));
        assert_eq!(objects.get(a_notify), Some(Object::Notify(a)));
        assert_eq!(objects.get(own), Some(Object::Server(7)));
        assert_eq!(objects.open_count(), 2);
        // Only an open retires; the other ports stay.
        assert_eq!(objects.retire(&pool, own), None);
        assert_eq!(objects.retire(&pool, a_notify), None);
        assert!(alive(&pool, own) && alive(&pool, a_notify));
        assert_eq!(objects.retire(&pool, a), Some("a"));
        assert_eq!(objects.retire(&pool, a), None);
        assert!(!alive(&pool, a) && !alive(&pool, a_notify));
        assert_eq!((objects.get(a), objects.get(a_notify)), (None, None));
        assert_eq!(objects.open_count(), 1);
        assert_eq!(objects.clear(&pool), ["b"]);
        assert!(!alive(&pool, b) && !alive(&pool, b_notify) && !alive(&pool, own));
        assert_eq!(objects.get(own), None);
    }
}
