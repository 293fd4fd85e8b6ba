//! A device server on the in-process loopback kernel, and client tasks that
//! hold a send right to its master port: how rumpdisk serves on Linux, and
//! how tests and benchmarks drive drivers.

use std::sync::Arc;

use mach::ipc::Ipc;
use mach::loopback::{Kernel, Task};
use mach::{KernReturn, PortName};

use crate::pool::Serve;
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
