//! The device server: a master port for `device_open`, one port per open,
//! a pool of threads receiving on one port set, no-senders cleanup, and
//! names no driver claims forwarded to the next device master.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use mach::ipc::{Ipc, option};
use mach::msg::{Header, MsgBuf};
use mach::port::{Right, notify, type_name as tn};
use mach::{KernReturn, PortName};
use mig_bindings::device::{self as dev, Request};
use mig_bindings::{fsys, rpc, startup};

use crate::boot::{BootHost, Chain, HURD_EBUSY, HURD_EOPNOTSUPP};
use crate::device::{Device, Driver, Mode};
use crate::pool::{self, Object, Objects, Pool, PoolConfig, RCV_SIZE, Serve};
use crate::reply::{Data, DataReply, Responder, WriteReply};
use crate::sync::Mutex;

/// Largest read one request may ask for.
pub const MAX_READ: usize = 1 << 30;

struct Open {
    device: Arc<dyn Device>,
    mode: Mode,
    name: String,
    closed: AtomicBool,
}

impl Open {
    /// Ends the open once (explicit close or no senders).
    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.device.close();
        }
    }
}

/// The server's own ports.
#[derive(Clone, Copy)]
enum Own {
    Master,
    /// The bootstrap-chain control port (`fsys`).
    Control,
    /// Where the startup server sends `startup_dosync`.
    SyncNotify,
    /// Where dead-name notifications of filter ports arrive.
    FilterNotify,
}

/// The bootstrap chain this server is part of, once it has a control port.
struct Boot {
    chain: Chain,
    host: Option<Arc<dyn BootHost>>,
    sync_port: PortName,
}

/// A running device server.
pub struct DeviceServer {
    pool: Pool,
    master: PortName,
    drivers: Vec<Arc<dyn Driver>>,
    next_master: Option<PortName>,
    /// Device ports (an open each) and the server's own.
    objects: Objects<Arc<Open>, Own>,
    boot: Mutex<Option<Boot>>,
    filter_notify: PortName,
    /// The devices that hold a filter for each filter port (a name in this
    /// task), told when it dies.
    filter_ports: Mutex<BTreeMap<PortName, Vec<Arc<dyn Device>>>>,
}

impl core::fmt::Debug for DeviceServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceServer")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl DeviceServer {
    /// A server with a new master port. Names no driver claims go to
    /// `next_master` (a send right: the kernel's device master, or the
    /// previous translator's in a bootstrap chain); without one they are
    /// answered `D_NO_SUCH_DEVICE`.
    pub fn new(
        ipc: Arc<dyn Ipc>,
        drivers: Vec<Arc<dyn Driver>>,
        next_master: Option<PortName>,
        config: PoolConfig,
    ) -> Result<Arc<Self>, KernReturn> {
        let pool = Pool::new(ipc, config)?;
        let master = pool.new_port()?;
        let filter_notify = pool.new_port()?;
        let server = Arc::new(Self {
            pool,
            master,
            drivers,
            next_master,
            objects: Objects::default(),
            boot: Mutex::new(None),
            filter_notify,
            filter_ports: Mutex::new(BTreeMap::new()),
        });
        server.objects.add(master, Own::Master);
        server.objects.add(filter_notify, Own::FilterNotify);
        Ok(server)
    }

    /// The master port (a receive right of this task; hand out send rights).
    #[must_use]
    pub fn master_port(&self) -> PortName {
        self.master
    }

    /// Makes this server a link of a bootstrap chain: returns a new control
    /// port (a receive right of this task; hand the next task a send right
    /// as its bootstrap port). It answers `fsys_getpriv` with this server's
    /// master port as device master, forwards `fsys_startup` and
    /// `fsys_init` to `chain.bootstrap`, then calls `host` to register with
    /// the startup server, whose `startup_dosync` syncs every driver.
    pub fn add_control_port(
        &self,
        chain: Chain,
        host: Option<Arc<dyn BootHost>>,
    ) -> Result<PortName, KernReturn> {
        let control = self.pool.new_port()?;
        let sync_port = self.pool.new_port()?;
        self.objects.add(control, Own::Control);
        self.objects.add(sync_port, Own::SyncNotify);
        *self.boot.lock() = Some(Boot {
            chain,
            host,
            sync_port,
        });
        Ok(control)
    }

    /// Opens currently alive.
    #[must_use]
    pub fn open_count(&self) -> usize {
        self.objects.open_count()
    }

    /// Worker threads currently running.
    #[cfg(feature = "std")]
    #[must_use]
    pub fn thread_count(&self) -> usize {
        self.pool.thread_count()
    }

    /// Starts the worker pool.
    #[cfg(feature = "std")]
    pub fn start(self: &Arc<Self>) {
        pool::start(self);
    }

    /// Asks every driver to flush (system shutdown).
    pub fn sync_all(&self) {
        for d in &self.drivers {
            d.sync();
        }
    }

    /// Stops serving: the port set and every port go away; workers exit.
    pub fn stop(&self) {
        self.pool.stop();
        for open in self.objects.clear(&self.pool) {
            open.close();
        }
    }

    /// Receives and handles one message on the calling thread, waiting at
    /// most `timeout_ms` (`None`: until one comes): a server without a pool,
    /// for single-threaded hosts and for fuzzing the dispatch path.
    pub fn serve_one(&self, timeout_ms: Option<u32>) -> Result<(), KernReturn> {
        self.serve_one_in(&mut MsgBuf::zeroed(RCV_SIZE), timeout_ms)
    }

    /// [`DeviceServer::serve_one`] receiving into `buf` (grown to the largest
    /// request on first use), which a serving loop keeps from one message
    /// to the next.
    pub fn serve_one_in(
        &self,
        buf: &mut MsgBuf,
        timeout_ms: Option<u32>,
    ) -> Result<(), KernReturn> {
        pool::serve_one_in(self, buf, timeout_ms)
    }

    /// Handles one received message.
    fn dispatch(&self, bytes: &[u8]) {
        let Ok(h) = Header::read(bytes) else { return };
        let object = self.objects.get(h.local);
        if let Some(Object::Notify(device_port)) = object {
            if h.id == notify::NO_SENDERS {
                self.no_senders(device_port);
            }
            return;
        }
        if let Some(Object::Server(Own::FilterNotify)) = object {
            return self.on_filter_notification(&h, bytes);
        }
        let to = dev::reply_to(&h);
        let responder = Responder::new(Arc::clone(self.pool.ipc()), to);
        match object {
            Some(Object::Server(Own::Control)) => return self.on_control(bytes, responder),
            Some(Object::Server(Own::SyncNotify)) => {
                match startup::decode_dosync(bytes) {
                    Ok(()) => {
                        self.sync_all();
                        responder.reply_with(dev::simple_reply);
                    }
                    Err(e) => {
                        dev::destroy_request_resources(&**self.pool.ipc(), bytes);
                        responder.error(e);
                    }
                }
                return;
            }
            _ => {}
        }
        let req = match dev::decode_request(bytes) {
            Ok(req) => req,
            Err(code) => {
                dev::destroy_request_resources(&**self.pool.ipc(), bytes);
                responder.error(code);
                return;
            }
        };
        if matches!(req, Request::Unsupported { .. }) {
            // Nothing of it is used: release whatever it carried.
            dev::destroy_request_resources(&**self.pool.ipc(), bytes);
        }
        match object {
            Some(Object::Server(Own::Master)) => self.on_master(req, responder),
            Some(Object::Open(open)) => self.on_device(&open, h.local, req, responder),
            _ => {
                dev::destroy_request_resources(&**self.pool.ipc(), bytes);
                responder.error(KernReturn::D_NO_SUCH_DEVICE);
            }
        }
    }

    fn on_master(&self, req: Request<'_>, responder: Responder) {
        let (mode, name) = match req {
            Request::Open { mode, name } | Request::OpenNew { mode, name } => (mode, name),
            other => {
                other.release(&**self.pool.ipc());
                responder.error(KernReturn::D_INVALID_OPERATION);
                return;
            }
        };
        let opened = self.open(mode, name);
        let delivered = responder.reply_with(|to| match opened {
            Ok((port, disp)) => dev::open_reply(to, port, disp),
            Err(e) => dev::error_reply(to, e),
        });
        // An open nobody received would never see no-senders: end it now.
        if let Ok((port, tn::MAKE_SEND)) = opened
            && !delivered
        {
            self.retire(port);
        }
    }

    /// Opens `name`: a new port for a driver's device, or the next master's
    /// answer. Returns the right to hand to the client and its disposition.
    fn open(&self, mode: u32, name: &str) -> Result<(PortName, u8), KernReturn> {
        if mode & !Mode::ALL != 0 {
            return Err(KernReturn::D_INVALID_OPERATION);
        }
        let Some(driver) = self.drivers.iter().find(|d| d.claims(name)) else {
            return match self.next_master {
                Some(next) => self
                    .forward_open(next, mode, name)
                    .map(|p| (p, tn::MOVE_SEND)),
                None => Err(KernReturn::D_NO_SUCH_DEVICE),
            };
        };
        let device = driver.open(name, Mode(mode))?;
        let (port, notify_port) = match self.pool.new_open_port() {
            Ok(ports) => ports,
            Err(e) => {
                device.close();
                return Err(e);
            }
        };
        let open = Arc::new(Open {
            device,
            mode: Mode(mode),
            name: name.to_owned(),
            closed: AtomicBool::new(false),
        });
        log::debug!("open {name} mode {mode:#x} -> port {}", port.0);
        self.objects.add_open(port, notify_port, open);
        Ok((port, tn::MAKE_SEND))
    }

    fn forward_open(&self, next: PortName, mode: u32, name: &str) -> Result<PortName, KernReturn> {
        let reply = self.pool.ipc().port_allocate(Right::Receive)?;
        let mut msg = dev::open_request(next, reply, mode, name);
        let len = msg.len() as u32;
        // SAFETY: a complete request; the buffer also receives the reply.
        let r = unsafe {
            msg.resize(RCV_SIZE);
            self.pool.ipc().mach_msg(
                msg.as_mut_ptr(),
                option::SEND_MSG | option::RCV_MSG,
                len,
                RCV_SIZE as u32,
                reply,
                0,
                PortName::NULL,
            )
        };
        let _ = self.pool.ipc().port_mod_refs(reply, Right::Receive, -1);
        r.result().map_err(|_| KernReturn::D_NO_SUCH_DEVICE)?;
        dev::decode_open_reply(msg.as_bytes())
    }

    fn on_device(&self, open: &Arc<Open>, port: PortName, req: Request<'_>, responder: Responder) {
        if open.closed.load(Ordering::Acquire) {
            req.release(&**self.pool.ipc());
            responder.error(KernReturn::D_NO_SUCH_DEVICE);
            return;
        }
        match req {
            Request::Read { recnum, len, .. } | Request::ReadInband { recnum, len, .. } => {
                let inband = matches!(req, Request::ReadInband { .. });
                if !open.mode.can_read() || (inband && !open.device.inband()) {
                    responder.error(KernReturn::D_INVALID_OPERATION);
                } else if len > MAX_READ {
                    responder.error(KernReturn::D_INVALID_SIZE);
                } else {
                    let len = if inband {
                        len.min(dev::INBAND_MAX)
                    } else {
                        len
                    };
                    open.device
                        .read_async(recnum, len, DataReply::new(responder, inband));
                }
            }
            Request::Write {
                recnum, addr, len, ..
            } => {
                // SAFETY: the kernel mapped this region into our task with
                // the request, and nothing else refers to it.
                let data = unsafe { Data::ool(Arc::clone(self.pool.ipc()), addr, len) };
                if !open.mode.can_write() {
                    responder.error(KernReturn::D_INVALID_OPERATION);
                } else if data.is_empty() {
                    // GNU Mach: no data arrived, so there is nothing to write.
                    responder.error(KernReturn::D_INVALID_SIZE);
                } else {
                    open.device
                        .write_async(recnum, data, WriteReply::new(responder));
                }
            }
            Request::WriteInband { recnum, data, .. } => {
                if open.mode.can_write() && open.device.inband() {
                    open.device.write_async(
                        recnum,
                        Data::inline(data.to_vec()),
                        WriteReply::new(responder),
                    );
                } else {
                    responder.error(KernReturn::D_INVALID_OPERATION);
                }
            }
            Request::GetStatus { flavor, count } => {
                let max = count.min(dev::STATUS_MAX);
                let result = open.device.get_status(flavor, max);
                responder.reply_with(|to| match result {
                    Ok(words) if words.len() <= max => dev::get_status_reply(to, &words),
                    Ok(_) => dev::error_reply(to, KernReturn::MIG_ARRAY_TOO_LARGE),
                    Err(e) => dev::error_reply(to, e),
                });
            }
            Request::SetStatus { flavor, status } => {
                let result = open.device.set_status(flavor, &status);
                responder.reply_with(|to| match result {
                    Ok(()) => dev::simple_reply(to),
                    Err(e) => dev::error_reply(to, e),
                });
            }
            Request::Close => {
                log::debug!("close {} (port {})", open.name, port.0);
                self.retire(port);
                responder.reply_with(dev::simple_reply);
            }
            Request::Open { .. } | Request::OpenNew { .. } | Request::Unsupported { .. } => {
                responder.error(KernReturn::D_INVALID_OPERATION);
            }
            Request::SetFilter {
                port,
                priority,
                ref filter,
            } => {
                // GNU Mach does not check the open's mode here either.
                let result = open
                    .device
                    .set_filter(self.pool.ipc(), port, priority, filter);
                match result {
                    Ok(()) => self.watch_filter_port(port, &open.device),
                    Err(_) => {
                        let _ = self.pool.ipc().port_deallocate(port);
                    }
                }
                responder.reply_with(|to| match result {
                    Ok(()) => dev::simple_reply(to),
                    Err(e) => dev::error_reply(to, e),
                });
            }
        }
    }

    /// Asks for a dead-name notification of filter port `port`, so that
    /// its filter goes when the client dies, not at the next frame (which
    /// still removes it if the request fails or comes late).
    fn watch_filter_port(&self, port: PortName, device: &Arc<dyn Device>) {
        {
            let mut ports = self.filter_ports.lock();
            let devices = ports.entry(port).or_default();
            if !devices.iter().any(|d| Arc::ptr_eq(d, device)) {
                devices.push(Arc::clone(device));
            }
        }
        match self.pool.ipc().request_notification(
            port,
            notify::DEAD_NAME,
            1,
            self.filter_notify,
            tn::MAKE_SEND_ONCE,
        ) {
            // A second filter on the same port replaced the request.
            Ok(previous) if previous != PortName::NULL => {
                let _ = self.pool.ipc().port_deallocate(previous);
            }
            Ok(_) => {}
            Err(e) => log::debug!("no dead-name notification for port {}: {e:?}", port.0),
        }
    }

    /// A notification about a filter port: dead (its filters go and the
    /// notification's reference is released) or deleted (its filters
    /// released it already); others (the send-once notification of a
    /// replaced request) carry nothing to keep.
    fn on_filter_notification(&self, h: &Header, bytes: &[u8]) {
        let name = || {
            let d = mach::msg::TypeDesc::read(bytes.get(mach::msg::HEADER_SIZE..)?).ok()?;
            let at = mach::msg::HEADER_SIZE + d.desc_len();
            let raw = bytes.get(at..at + 4)?;
            Some(PortName(u32::from_ne_bytes(raw.try_into().ok()?)))
        };
        match h.id {
            notify::DEAD_NAME | notify::PORT_DELETED => {
                let Some(port) = name() else {
                    log::warn!("a malformed notification {} on the filter port", h.id);
                    return;
                };
                let devices = self.filter_ports.lock().remove(&port).unwrap_or_default();
                if h.id == notify::DEAD_NAME {
                    for d in &devices {
                        if d.remove_filter(port) {
                            log::debug!("filter port {} died: filter removed", port.0);
                        }
                    }
                    // The reference the notification added to the dead name.
                    let _ = self.pool.ipc().port_deallocate(port);
                }
            }
            _ => dev::destroy_request_resources(&**self.pool.ipc(), bytes),
        }
    }

    /// A request on the control port (`fsys`).
    fn on_control(&self, bytes: &[u8], responder: Responder) {
        let req = match fsys::decode_request(bytes) {
            Ok(r) => r,
            Err(e) => {
                dev::destroy_request_resources(&**self.pool.ipc(), bytes);
                responder.error(e);
                return;
            }
        };
        let (chain, host, sync_port) = match &*self.boot.lock() {
            Some(b) => (b.chain, b.host.clone(), b.sync_port),
            None => (Chain::default(), None, PortName::NULL),
        };
        match req {
            fsys::Request::Getpriv => {
                let host_priv = chain.host_priv.unwrap_or(PortName::NULL);
                let rights = [
                    (host_priv, tn::COPY_SEND),
                    (self.master, tn::MAKE_SEND),
                    (self.pool.ipc().task_self(), tn::COPY_SEND),
                ];
                responder.reply_with(|to| fsys::getpriv_reply(to, rights));
            }
            fsys::Request::Startup { openflags, control } => {
                let Some(up) = chain.bootstrap else {
                    let _ = self.pool.ipc().port_deallocate(control);
                    responder.error(HURD_EOPNOTSUPP);
                    return;
                };
                let forwarded = rpc::rpc(&**self.pool.ipc(), |r| {
                    fsys::startup_request(up, r, openflags, control, tn::MOVE_SEND)
                })
                .and_then(|m| fsys::decode_startup_reply(m.as_bytes()));
                responder.reply_with(|to| match forwarded {
                    Ok(realnode) => fsys::startup_reply(to, realnode, tn::MOVE_SEND),
                    Err(e) => dev::error_reply(to, e),
                });
            }
            fsys::Request::Init { proc_server, auth } => {
                let mut result = Ok(());
                if let Some(up) = chain.bootstrap {
                    result = rpc::rpc(&**self.pool.ipc(), |r| {
                        fsys::init_request(
                            up,
                            r,
                            (proc_server, tn::COPY_SEND),
                            (auth, tn::COPY_SEND),
                        )
                    })
                    .and_then(|m| dev::decode_simple_reply(m.as_bytes(), fsys::ID_INIT));
                }
                if result.is_ok()
                    && let Some(host) = host
                {
                    result = host.system_initialized(proc_server, auth, sync_port);
                }
                let _ = self.pool.ipc().port_deallocate(proc_server);
                let _ = self.pool.ipc().port_deallocate(auth);
                responder.reply_with(|to| match result {
                    Ok(()) => dev::simple_reply(to),
                    Err(e) => dev::error_reply(to, e),
                });
            }
            fsys::Request::Getroot { .. } => {
                // A lookup of the node we sit on (passive translator mode):
                // the result is a master port, so `device_open` works on what
                // `file_name_lookup` returns (libstore's `@node:name`).
                dev::destroy_request_resources(&**self.pool.ipc(), bytes);
                responder.reply_with(|to| fsys::getroot_reply(to, self.master, tn::MAKE_SEND));
            }
            fsys::Request::Syncfs { .. } => {
                self.sync_all();
                responder.reply_with(dev::simple_reply);
            }
            fsys::Request::Goaway { .. } => responder.error(HURD_EBUSY),
            fsys::Request::Other { .. } => {
                dev::destroy_request_resources(&**self.pool.ipc(), bytes);
                responder.error(HURD_EOPNOTSUPP);
            }
        }
    }

    /// The client's last send right to a device port went away.
    fn no_senders(&self, device_port: PortName) {
        log::debug!("no senders on port {}", device_port.0);
        self.retire(device_port);
    }

    /// Ends an open: closes the device once and destroys its ports.
    fn retire(&self, port: PortName) {
        if let Some(open) = self.objects.retire(&self.pool, port) {
            open.close();
        }
    }
}

impl Serve for DeviceServer {
    fn pool(&self) -> &Pool {
        &self.pool
    }

    fn handle(&self, bytes: &[u8]) {
        self.dispatch(bytes);
    }
}
