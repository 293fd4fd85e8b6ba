//! The bootstrap chain on the Hurd: the task's bootstrap port, handing the
//! next task our control port and resuming it, and registering with the
//! startup server once the system is initialised.

use std::ffi::{c_char, c_int};
use std::sync::Arc;

use mach::ipc::Ipc;
use mach::kernel_rpc::{KernelRpc, TASK_BOOTSTRAP_PORT};
use mach::port::type_name as tn;
use mach::sys::hurd::HurdIpc;
use mach::{KernReturn, PortName};
use mig_bindings::rpc::{decode_simple_reply, rpc};
use mig_bindings::{fsys, startup};

use crate::boot::{BootHost, BootOptions, Chain};

unsafe extern "C" {
    fn task_set_special_port(task: u32, which: c_int, port: u32) -> c_int;
    fn task_resume(task: u32) -> c_int;
    fn file_name_lookup(name: *const c_char, flags: c_int, mode: u32) -> u32;
    fn get_privileged_ports(host_priv: *mut u32, device_master: *mut u32) -> c_int;
    fn getauth() -> u32;
}

/// The calling task's bootstrap port (`NULL` if it has none).
#[must_use]
pub fn bootstrap_port() -> PortName {
    HurdIpc
        .task_get_special_port(HurdIpc.task_self(), TASK_BOOTSTRAP_PORT)
        .unwrap_or(PortName::NULL)
}

/// The chain this task is in: the bootstrap port, and the privileged ports
/// from the command line or else from `fsys_getpriv` on the bootstrap port.
/// Returns the chain and the device master to forward unknown names to.
pub fn chain_from(options: &BootOptions) -> Result<(Chain, Option<PortName>), KernReturn> {
    let bootstrap = Some(bootstrap_port()).filter(|p| p.is_valid());
    let (mut host_priv, mut master) = (options.host_priv, options.device_master);
    if let Some(b) = bootstrap
        && (host_priv.is_none() || master.is_none())
    {
        let m = rpc(&HurdIpc, |r| fsys::getpriv_request(b, r))?;
        let [h, d, _task] = fsys::decode_getpriv_reply(m.as_bytes())?;
        host_priv = host_priv.or(Some(h));
        master = master.or(Some(d));
    }
    Ok((
        Chain {
            bootstrap,
            host_priv,
        },
        master,
    ))
}

/// Gives `next_task` a send right to `control` as its bootstrap port and
/// resumes it (`--next-task`).
pub fn resume_next_task(next_task: PortName, control: PortName) -> Result<(), KernReturn> {
    HurdIpc
        .port_insert_right(control, control, tn::MAKE_SEND)
        .result()?;
    // SAFETY: kernel RPCs on a task port we were given.
    KernReturn(unsafe { task_set_special_port(next_task.0, TASK_BOOTSTRAP_PORT, control.0) })
        .result()?;
    // SAFETY: as above.
    KernReturn(unsafe { task_resume(next_task.0) }).result()
}

/// Passive translator mode (`settrans /dev/rumpdisk /hurd/rumpdisk`): tells
/// the parent file system, through the bootstrap port, that `control` is
/// the translator's control port; returns the node it sits on. Lookups of
/// that node then reach `control` as `fsys_getroot`, answered with the
/// device master.
pub fn start_translator(control: PortName, openflags: i32) -> Result<PortName, KernReturn> {
    let bootstrap = bootstrap_port();
    if !bootstrap.is_valid() {
        return Err(KernReturn::INVALID_NAME);
    }
    let m = rpc(&HurdIpc, |r| {
        fsys::startup_request(bootstrap, r, openflags, control, tn::MAKE_SEND)
    })?;
    fsys::decode_startup_reply(m.as_bytes())
}

/// Registers the task with the startup server as `name`: an essential
/// task, notified (`startup_dosync`) at shutdown.
#[derive(Debug)]
pub struct StartupRegistration {
    /// Name shown by the startup server.
    pub name: String,
    /// The host privileged port (the credential startup asks for).
    pub host_priv: PortName,
}

impl BootHost for StartupRegistration {
    fn system_initialized(
        &self,
        _proc: PortName,
        _auth: PortName,
        sync_port: PortName,
    ) -> Result<(), KernReturn> {
        let startup = startup_server()?;
        let ipc = HurdIpc;
        let task = ipc.task_self();
        let m = rpc(&ipc, |r| {
            startup::essential_task_request(
                startup,
                r,
                task,
                PortName::NULL,
                &self.name,
                self.host_priv,
            )
        })?;
        decode_simple_reply(m.as_bytes(), startup::ID_ESSENTIAL_TASK)?;
        let notified = notify_at_shutdown(startup, &self.name, sync_port);
        let _ = ipc.port_deallocate(startup);
        notified
    }
}

/// The startup server (`/servers/startup`).
fn startup_server() -> Result<PortName, KernReturn> {
    // SAFETY: a NUL-terminated path; glibc's Hurd file name lookup.
    let startup = PortName(unsafe { file_name_lookup(c"/servers/startup".as_ptr(), 0, 0) });
    if startup.is_valid() {
        Ok(startup)
    } else {
        Err(KernReturn::INVALID_NAME)
    }
}

/// Asks `startup` to send `startup_dosync` to `sync_port` at shutdown.
fn notify_at_shutdown(
    startup: PortName,
    name: &str,
    sync_port: PortName,
) -> Result<(), KernReturn> {
    let m = rpc(&HurdIpc, |r| {
        startup::request_notification_request(startup, r, sync_port, tn::MAKE_SEND, name)
    })?;
    decode_simple_reply(m.as_bytes(), startup::ID_REQUEST_NOTIFICATION)
}

/// The device master a translator opens its stores through:
/// `--device-master-port`, else the one the proc server gives root
/// (glibc's `get_privileged_ports`).
pub fn device_master(boot: &BootOptions) -> Result<PortName, KernReturn> {
    if let Some(m) = boot.device_master {
        return Ok(m);
    }
    let (mut host, mut master) = (0u32, 0u32);
    // SAFETY: two valid out-pointers.
    let rc = unsafe { get_privileged_ports(&raw mut host, &raw mut master) };
    if rc != 0 {
        return Err(KernReturn::INVALID_NAME);
    }
    let _ = HurdIpc.port_deallocate(PortName(host));
    Ok(PortName(master))
}

/// Serves `fs` as the translator `name` on the node it was started on
/// (`settrans -c /mnt /hurd/rumpfs ...`: `fsys_startup` through the
/// bootstrap port), for ever; the startup server's `startup_dosync`
/// unmounts it at shutdown, and `fsys_goaway` ends the process once it
/// unmounted.
pub fn serve_netfs<F: crate::netfs::Netfs>(
    name: &str,
    fs: Arc<F>,
    pool: crate::PoolConfig,
) -> Result<std::convert::Infallible, String> {
    let server =
        crate::netfs::NetfsServer::new(ipc(), fs, pool).map_err(|e| format!("file server: {e}"))?;
    server.on_goaway(|| std::process::exit(0));
    // SAFETY: glibc's accessor of the process's auth port (a new send
    // right, null when it has none).
    server.set_auth_server(PortName(unsafe { getauth() }));
    let sync_port = server
        .add_sync_port()
        .map_err(|e| format!("sync port: {e}"))?;
    server.start();
    let _realnode = start_translator(server.control_port(), 0)
        .map_err(|e| format!("fsys_startup (start rumpfs with settrans): {e}"))?;
    match startup_server().and_then(|s| {
        let r = notify_at_shutdown(s, name, sync_port);
        let _ = HurdIpc.port_deallocate(s);
        r
    }) {
        Ok(()) => {}
        Err(e) => log::warn!("no shutdown notification from the startup server: {e}"),
    }
    loop {
        std::thread::park();
    }
}

/// The transport of this task, for `DeviceServer::new`.
#[must_use]
pub fn ipc() -> Arc<dyn Ipc> {
    Arc::new(HurdIpc)
}

/// Serves `drivers` as the translator `name` on the Hurd, for ever: a
/// device server whose unclaimed names go to the next device master
/// (`--device-master-port`, else the one the bootstrap chain gives), a
/// control port in the bootstrap chain (resuming `--next-task`), or
/// `fsys_startup` as a passive translator, and registration with the
/// startup server (whose `startup_dosync` syncs every driver).
pub fn serve_translator(
    name: &str,
    drivers: Vec<Arc<dyn crate::Driver>>,
    boot: &BootOptions,
    pool: crate::PoolConfig,
) -> Result<std::convert::Infallible, String> {
    let (chain, master_from_chain) = chain_from(boot).map_err(|e| format!("bootstrap: {e}"))?;
    let next_master = boot.device_master.or(master_from_chain);
    let server = crate::DeviceServer::new(ipc(), drivers, next_master, pool)
        .map_err(|e| format!("device server: {e}"))?;
    let host = Arc::new(StartupRegistration {
        name: name.into(),
        host_priv: chain.host_priv.unwrap_or(PortName::NULL),
    });
    let control = server
        .add_control_port(chain, Some(host))
        .map_err(|e| format!("control port: {e}"))?;
    server.start();
    if let Some(next) = boot.next_task {
        resume_next_task(next, control).map_err(|e| format!("resuming the next task: {e}"))?;
    } else if chain.bootstrap.is_some() {
        start_translator(control, 0).map_err(|e| format!("fsys_startup: {e}"))?;
    }
    loop {
        std::thread::park();
    }
}
