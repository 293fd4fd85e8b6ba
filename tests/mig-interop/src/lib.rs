//! The C side of the MIG stubs talks to the loopback kernel through these
//! functions: each C caller runs on a thread bound to a loopback task with
//! [`bind`]. `mach_msg` and the `mig_*` support calls of glibc on the Hurd
//! are provided here with the same prototypes.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_long, c_uint, c_ushort};
use std::sync::Arc;

use mach::ipc::Ipc;
use mach::loopback::Task;
use mach::msg::MsgBuf;
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
    fn interop_set_filter_user(dev: c_uint, rcv: c_uint, frame: *const u8, len: usize) -> c_int;
    fn interop_net_layout(out: *mut usize);
    fn interop_net_rcv_size(count: c_uint) -> usize;
    fn interop_net_constants(out: *mut c_long);
    fn interop_net_build(
        m: *mut u8,
        dest: c_uint,
        disp: c_uint,
        frame: *const u8,
        len: usize,
    ) -> c_uint;
    fn interop_ethernet_demux(
        msg: *const u8,
        frame: *mut u8,
        room: usize,
        length: *mut c_ushort,
        ty: *mut c_ushort,
    ) -> c_int;
    fn interop_bpf_program(cnt: *mut c_uint) -> *const u16;
    fn interop_filter_priority() -> c_int;
    fn interop_test_frame(len: *mut usize) -> *const u8;
}

/// Bytes of `struct net_rcv_msg` in C.
const NET_RCV_MSG_BYTES: usize = mig_bindings::net::NET_RCV_MSG_SIZE;

/// Runs `device_set_filter` through the MIG user stub on `dev` (a send
/// right of `task`) with `rcv` (a receive right of `task`), then reads the
/// `net_rcv_msg` of `frame` the server is to send there as pfinet does
/// (`c/client.c`); returns the number of failed checks.
#[must_use]
pub fn run_set_filter_user(task: &Arc<Task>, dev: PortName, rcv: PortName, frame: &[u8]) -> i32 {
    bind(task);
    // SAFETY: `frame` is valid for `len` bytes; the ports are the task's.
    unsafe { interop_set_filter_user(dev.0, rcv.0, frame.as_ptr(), frame.len()) }
}

/// `offsetof` of `header_type`, `header`, `packet_type`, `packet` and
/// `sent` in `struct net_rcv_msg`, its `sizeof`, `sizeof(struct
/// packet_header)` and the offset of its `type`, as C compiles them.
#[must_use]
pub fn net_layout() -> [usize; 8] {
    let mut out = [0; 8];
    // SAFETY: room for the 8 values the C function writes.
    unsafe { interop_net_layout(out.as_mut_ptr()) };
    out
}

/// `msgh_size` of a `net_rcv_msg` of `count` packet bytes by GNU Mach's
/// expression in `net_deliver`, compiled by C.
#[must_use]
pub fn net_rcv_size(count: u32) -> usize {
    // SAFETY: a pure function.
    unsafe { interop_net_rcv_size(count) }
}

/// `NET_STATUS`, `NET_ADDRESS`, `NET_DSTADDR`, `NET_FLAGS`,
/// `NET_STATUS_COUNT`, `HDR_ETHERNET`, `NET_HI_PRI`, `NET_PRI_MAX`,
/// `NET_RCV_MAX`, `NET_HDW_HDR_MAX`, `NET_RCV_MSG_ID`, `NET_MAX_FILTER` and
/// `sizeof(struct net_status)` from `<device/net_status.h>`.
#[must_use]
pub fn net_constants() -> [i64; 13] {
    let mut out: [c_long; 13] = [0; 13];
    // SAFETY: room for the 13 values the C function writes.
    unsafe { interop_net_constants(out.as_mut_ptr()) };
    out.map(i64::from)
}

/// The `net_rcv_msg` C builds for the Ethernet `frame` (at least 14 bytes)
/// as `net_deliver` does, to `dest` with disposition `disp`; the buffer is
/// as long as its `msgh_size`.
#[must_use]
pub fn net_build(dest: PortName, disp: u8, frame: &[u8]) -> MsgBuf {
    assert!(frame.len() >= mig_bindings::net::ETHER_HEADER);
    let mut m = MsgBuf::zeroed(NET_RCV_MSG_BYTES);
    // SAFETY: the buffer is 8-aligned and as large as `struct
    // net_rcv_msg`; `frame` is valid for its length.
    let size = unsafe {
        interop_net_build(
            m.as_mut_ptr(),
            dest.0,
            c_uint::from(disp),
            frame.as_ptr(),
            frame.len(),
        )
    };
    m.resize(size as usize);
    m
}

/// What a receiver written like pfinet's `ethernet_demuxer` makes of
/// `msg`: the frame it rebuilds, and the packet header's length and type
/// (as stored); `Err` with -1 for another id, -2 for descriptors not GNU
/// Mach's.
pub fn ethernet_demux(msg: &MsgBuf) -> Result<(Vec<u8>, u16, u16), i32> {
    let h = msg.header().map_err(|_| -1)?;
    assert!(
        msg.len() >= h.size as usize && msg.len() >= mig_bindings::net::PACKET_OFFSET,
        "a whole message"
    );
    let mut frame = vec![0u8; 64 + 4095];
    let (mut length, mut ty) = (0, 0);
    // SAFETY: the C side reads the header, the descriptors and the
    // `msgt_number` packet bytes the message holds, and writes at most
    // `frame.len()` bytes into `frame`.
    let n = unsafe {
        interop_ethernet_demux(
            msg.as_bytes().as_ptr(),
            frame.as_mut_ptr(),
            frame.len(),
            &raw mut length,
            &raw mut ty,
        )
    };
    let n = usize::try_from(n).map_err(|_| n)?;
    frame.truncate(n);
    Ok((frame, length, ty))
}

/// pfinet's BPF program (ARP, IPv4, IPv6) as `filter_t` words.
#[must_use]
pub fn bpf_program() -> Vec<u16> {
    let mut n = 0;
    // SAFETY: a pointer to a static array of `n` words.
    unsafe {
        let p = interop_bpf_program(&raw mut n);
        std::slice::from_raw_parts(p, n as usize).to_vec()
    }
}

/// The priority the C server accepts the program with.
#[must_use]
pub fn filter_priority() -> i32 {
    // SAFETY: a pure function.
    unsafe { interop_filter_priority() }
}

/// The frame the C server sends when a filter is installed.
#[must_use]
pub fn test_frame() -> Vec<u8> {
    let mut n = 0;
    // SAFETY: a pointer to a static array of `n` bytes.
    unsafe {
        let p = interop_test_frame(&raw mut n);
        std::slice::from_raw_parts(p, n).to_vec()
    }
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
