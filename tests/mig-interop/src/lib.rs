//! The C side of the MIG stubs talks to the loopback kernel through these
//! functions: each C caller runs on a thread bound to a loopback task with
//! [`bind`]. `mach_msg` and the `mig_*` support calls of glibc on the Hurd
//! are provided here with the same prototypes.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_uint};
use std::sync::Arc;

use mach::ipc::Ipc;
use mach::loopback::Task;
use mach::port::Right;
use mach::{KernReturn, PortName};

thread_local! {
    static TASK: RefCell<Option<Arc<Task>>> = const { RefCell::new(None) };
    static REPLY: Cell<u32> = const { Cell::new(0) };
}

/// Runs C code on this thread as `task`.
pub fn bind(task: &Arc<Task>) {
    TASK.with(|t| *t.borrow_mut() = Some(Arc::clone(task)));
    REPLY.with(|r| r.set(0));
}

fn task() -> Arc<Task> {
    TASK.with(|t| t.borrow().clone())
        .expect("C code ran on a thread not bound to a task")
}

/// `mach_msg` for C stubs.
///
/// # Safety
/// As `Ipc::mach_msg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mach_msg(
    msg: *mut u8,
    option: c_int,
    send_size: c_uint,
    rcv_size: c_uint,
    rcv_name: c_uint,
    timeout: c_uint,
    notify: c_uint,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        task()
            .mach_msg(
                msg,
                option as u32,
                send_size,
                rcv_size,
                PortName(rcv_name),
                timeout,
                PortName(notify),
            )
            .0
    }
}

/// The thread's reply port (made on first use).
#[unsafe(no_mangle)]
pub extern "C" fn mig_get_reply_port() -> c_uint {
    REPLY.with(|r| {
        if r.get() == 0 {
            r.set(task().reply_port().0);
        }
        r.get()
    })
}

/// Destroys the thread's reply port after a failed RPC.
#[unsafe(no_mangle)]
pub extern "C" fn mig_dealloc_reply_port(port: c_uint) {
    let _ = task().port_mod_refs(PortName(port), Right::Receive, -1);
    REPLY.with(|r| r.set(0));
}

/// Gives the reply port back for the next RPC (it stays the thread's).
#[unsafe(no_mangle)]
pub extern "C" fn mig_put_reply_port(_port: c_uint) {}

/// `vm_allocate` in the current task.
///
/// # Safety
/// `addr` must be a valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn interop_vm_allocate(addr: *mut usize, size: usize) -> c_int {
    match task().vm_allocate(size) {
        Ok(a) => {
            // SAFETY: valid out-pointer.
            unsafe { *addr = a as usize };
            0
        }
        Err(e) => e.0,
    }
}

/// `vm_deallocate` in the current task.
///
/// # Safety
/// The region must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn interop_vm_deallocate(addr: usize, size: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { task().vm_deallocate(addr as u64, size).0 }
}

/// `mach_msg_destroy` of a received request's body.
///
/// # Safety
/// `msg` must be a received message of `msgh_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn interop_msg_destroy(msg: *const u8) {
    // SAFETY: the header's size field is within the received message.
    let size = unsafe { std::ptr::read_unaligned(msg.add(4).cast::<u32>()) } as usize;
    // SAFETY: the message is `size` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(msg, size) };
    mig_bindings::device::destroy_request_resources(&*task(), bytes);
}

unsafe extern "C" {
    fn interop_user_run(master: c_uint) -> c_int;
    fn interop_server_run(port: c_uint) -> c_int;
    fn interop_irq_state(acks: *mut c_int) -> c_int;
}

/// What the C server's "irq" device saw: the registered line (-1: none)
/// and the number of acknowledgements.
#[must_use]
pub fn irq_state() -> (i32, i32) {
    let mut acks = 0;
    // SAFETY: a valid out-pointer.
    let line = unsafe { interop_irq_state(&raw mut acks) };
    (line, acks)
}

/// Runs the MIG user stubs against the device master `master` (a send
/// right of `task`); returns the number of failed checks.
#[must_use]
pub fn run_user_stubs(task: &Arc<Task>, master: PortName) -> i32 {
    bind(task);
    // SAFETY: the C driver only uses `master` through the stubs.
    unsafe { interop_user_run(master.0) }
}

/// Serves `port` (a receive right of `task`) with the MIG server stubs
/// until the port is destroyed; returns 0 or the receive error.
#[must_use]
pub fn run_server_stubs(task: &Arc<Task>, port: PortName) -> KernReturn {
    bind(task);
    // SAFETY: the C loop only uses `port` through mach_msg.
    KernReturn(unsafe { interop_server_run(port.0) })
}
