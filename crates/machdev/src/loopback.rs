//! A device server on the in-process loopback kernel, and client tasks that
//! hold a send right to its master port: how rumpdisk serves on Linux, and
//! how tests and benchmarks drive drivers; and the auth server's
//! rendezvous, for tests of a file server's `io_reauthenticate`.

use std::sync::Arc;

use mach::ipc::Ipc;
use mach::loopback::{Kernel, Task};
use mach::{KernReturn, PortName};
use mig_bindings::auth::{self, AuthIds};
use mig_bindings::rpc;

use crate::pool::Serve;
use crate::reply::Responder;
use crate::{DeviceServer, Driver, PoolConfig};

/// A started [`DeviceServer`] in a task of its own on a loopback kernel.
pub struct LocalServer {
    kernel: Arc<Kernel>,
    task: Arc<Task>,
    server: Arc<DeviceServer>,
}

impl LocalServer {
    /// Starts a server for `drivers` on a new loopback kernel. A client's
    /// RPC that finds a worker waiting runs the server's code on the
    /// client's thread, as GNU Mach hands a blocking sender's processor to
    /// the receiving thread ([`Task::set_handoff`]).
    ///
    /// # Errors
    /// What [`DeviceServer::new`] answers.
    pub fn start(drivers: Vec<Arc<dyn Driver>>, config: PoolConfig) -> Result<Self, KernReturn> {
        Self::start_with(drivers, config, true)
    }

    /// [`LocalServer::start`], with hand-offs or (`handoff` false) every
    /// message queued for a worker thread that the kernel wakes.
    ///
    /// # Errors
    /// What [`DeviceServer::new`] answers.
    pub fn start_with(
        drivers: Vec<Arc<dyn Driver>>,
        config: PoolConfig,
        handoff: bool,
    ) -> Result<Self, KernReturn> {
        let kernel = Kernel::new();
        let task = Arc::new(kernel.new_task());
        let ipc: Arc<dyn Ipc> = task.clone();
        let server = DeviceServer::new(ipc, drivers, None, config)?;
        serve_on(&task, &server, handoff)?;
        Ok(Self {
            kernel,
            task,
            server,
        })
    }

    /// A new client task and its send right to the server's master port.
    ///
    /// # Errors
    /// What the kernel answers when the right cannot be given.
    pub fn client(&self) -> Result<(Task, PortName), KernReturn> {
        let client = self.kernel.new_task();
        let master = self
            .task
            .give_send_right(self.server.master_port(), &client)?;
        Ok((client, master))
    }

    /// The kernel (for more tasks, or its [`Kernel::stats`]).
    #[must_use]
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The server.
    #[must_use]
    pub fn server(&self) -> &DeviceServer {
        &self.server
    }
}

/// Starts `server` (any server on a [`Pool`](crate::pool::Pool) of `task`)
/// with hand-offs, as [`LocalServer::start_with`] does, or without.
///
/// # Errors
/// What the kernel answers when the hand-off cannot be set.
pub fn serve_on<S: Serve>(task: &Task, server: &Arc<S>, handoff: bool) -> Result<(), KernReturn> {
    if handoff {
        let weak = Arc::downgrade(server);
        task.set_handoff(
            server.pool().portset(),
            Arc::new(move |msg: &[u8]| {
                if let Some(server) = weak.upgrade() {
                    crate::pool::handle_busy(&server, msg);
                }
            }),
        )?;
    }
    crate::pool::start(server);
    Ok(())
}

/// The Hurd's auth server, as far as the rendezvous goes, for the tasks of
/// a loopback kernel: handles standing for ids, `auth_user_authenticate`
/// (a client with a handle) matched with `auth_server_authenticate` (a
/// server) by their rendezvous port, whichever comes first, the server's
/// new port handed to the client and the client's ids to the server.
/// Tests drive a file server's `io_reauthenticate` through it; on the Hurd
/// the real auth server answers.
pub struct AuthServer {
    pool: crate::pool::Pool,
    task: Arc<Task>,
    state: crate::sync::Mutex<AuthState>,
}

#[derive(Default)]
struct AuthState {
    /// The ids of each handle (a port of the server).
    handles: std::collections::BTreeMap<PortName, AuthIds>,
    /// A call waiting for its match, by rendezvous port.
    waiting: std::collections::BTreeMap<PortName, Waiting>,
}

enum Waiting {
    /// A client, to be answered with the new port; its handle's ids.
    User(Responder, AuthIds),
    /// A server, to be answered with the ids; the port for the client.
    Server(Responder, PortName, u8),
}

impl AuthServer {
    /// Starts an auth server in a new task of `kernel`.
    ///
    /// # Errors
    /// What the kernel answers when its ports cannot be made.
    pub fn start(kernel: &Arc<Kernel>) -> Result<Arc<Self>, KernReturn> {
        let task = Arc::new(kernel.new_task());
        let ipc: Arc<dyn Ipc> = task.clone();
        let server = Arc::new(Self {
            pool: crate::pool::Pool::new(ipc, PoolConfig::default())?,
            task,
            state: crate::sync::Mutex::new(AuthState::default()),
        });
        crate::pool::start(&server);
        Ok(server)
    }

    /// A new handle for `ids`, given to `to` as a send right (its name
    /// there).
    ///
    /// # Errors
    /// What the kernel answers when the port cannot be made or given.
    pub fn handle(&self, ids: AuthIds, to: &Task) -> Result<PortName, KernReturn> {
        let port = self.pool.new_port()?;
        self.state.lock().handles.insert(port, ids);
        self.task.give_send_right(port, to)
    }

    /// Calls waiting for their match.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.state.lock().waiting.len()
    }

    fn refuse(&self, bytes: &[u8], responder: Responder, code: KernReturn) {
        rpc::destroy_request_resources(&*self.task, bytes);
        responder.error(code);
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.pool.stop();
    }
}

impl Serve for AuthServer {
    fn pool(&self) -> &crate::pool::Pool {
        &self.pool
    }

    fn handle(&self, bytes: &[u8]) {
        let Ok(h) = mach::msg::Header::read(bytes) else {
            return;
        };
        let to = rpc::reply_to(&h);
        let answerable = to.is_some();
        let responder = Responder::new(self.task.clone(), to);
        let (rendezvous, call) = match auth::decode_request(bytes) {
            Ok(auth::Request::UserAuthenticate { rendezvous }) => (rendezvous, None),
            Ok(auth::Request::ServerAuthenticate {
                rendezvous,
                newport,
                newport_disp,
            }) => (rendezvous, Some((newport, newport_disp))),
            Ok(auth::Request::Other { .. }) => {
                return self.refuse(bytes, responder, KernReturn::MIG_BAD_ID);
            }
            Err(e) => return self.refuse(bytes, responder, e),
        };
        let mut state = self.state.lock();
        let ids = state.handles.get(&h.local).cloned();
        let mine = match (ids, call) {
            (Some(ids), None) if answerable => Waiting::User(responder, ids),
            (Some(_), Some((port, disp))) if answerable => Waiting::Server(responder, port, disp),
            _ => {
                drop(state);
                return self.refuse(bytes, responder, KernReturn::INVALID_ARGUMENT);
            }
        };
        let (user, ids, server, port, disp) = match (state.waiting.remove(&rendezvous), mine) {
            (Some(Waiting::User(user, ids)), Waiting::Server(server, port, disp))
            | (Some(Waiting::Server(server, port, disp)), Waiting::User(user, ids)) => {
                (user, ids, server, port, disp)
            }
            (Some(theirs), mine) => {
                // Two of a kind on one rendezvous: the later is refused.
                state.waiting.insert(rendezvous, theirs);
                drop(state);
                let (Waiting::User(responder, _) | Waiting::Server(responder, ..)) = mine;
                return self.refuse(bytes, responder, KernReturn::INVALID_ARGUMENT);
            }
            (None, mine) => {
                state.waiting.insert(rendezvous, mine);
                return;
            }
        };
        drop(state);
        user.reply_with(|to| auth::user_authenticate_reply(to, port, disp));
        server.reply_with(|to| auth::server_authenticate_reply(to, &ids));
        // Both calls' references to the rendezvous port.
        let _ = self
            .task
            .port_mod_refs(rendezvous, mach::port::Right::Send, -2);
    }
}
