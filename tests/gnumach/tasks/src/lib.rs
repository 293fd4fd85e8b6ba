//! A minimal runtime for test programs that GNU Mach starts as bootstrap
//! tasks (one `module` line each in the boot script), without libc:
//!
//! - entry: `_start` takes the System V stack the kernel builds (argc,
//!   argv; port names arrive as decimal words) and calls the program's
//!   `main` given to [`entry!`];
//! - memory: a global allocator over `vm_allocate` ([`heap`]);
//! - output: the kernel's `console` device through `device_open` and
//!   `device_write_inband` ([`console`]), with the test bed's markers
//!   ([`pass`], [`fail`], [`end`]) that the runner reads from the serial
//!   line;
//! - a panic prints a failure marker and ends the run with `host_reboot`.
//!
//! Everything Mach goes through `mach::sys::gnumach` (traps) and the same
//! message code and device codecs the translators use.

#![no_std]

extern crate alloc;

pub mod console;
pub mod heap;
mod mem;

use alloc::string::String;
use alloc::vec::Vec;
use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, Ordering};

use mach::ipc::{Ipc, option};
use mach::kernel_rpc::KernelRpc;
use mach::port::Right;
pub use mach::sys::gnumach::GnuMach;
use mach::{KernReturn, PortName};

/// The transport every task uses.
pub static MACH: GnuMach = GnuMach::new();

static HOST_PRIV: AtomicU32 = AtomicU32::new(0);

/// What the boot script gave the task.
#[derive(Debug)]
pub struct Args {
    /// The words of the `module` line after the file name (argv[0] is the
    /// task's name).
    pub argv: Vec<String>,
}

impl Args {
    /// Word `i` as a port name (`${host-port}`, `${device-port}`,
    /// `${some-task}`, ...).
    #[must_use]
    pub fn port(&self, i: usize) -> PortName {
        match self.argv.get(i).and_then(|w| w.parse::<u32>().ok()) {
            Some(n) => PortName(n),
            None => panic!("argument {i} is not a port name: {:?}", self.argv.get(i)),
        }
    }

    /// The task's name (argv[0]).
    #[must_use]
    pub fn name(&self) -> &str {
        self.argv.first().map_or("task", String::as_str)
    }
}

/// Defines the program's entry: `main(&args)` must not return (end with
/// [`end`]).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "Rust" fn gnumach_task_main(args: $crate::Args) -> ! {
            $main(&args)
        }
    };
}

unsafe extern "Rust" {
    fn gnumach_task_main(args: Args) -> !;
}

global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "    mov rdi, rsp",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {start}",
    "    ud2",
    start = sym start,
);

/// Reads argv from the entry stack and runs the program.
unsafe extern "C" fn start(sp: *const usize) -> ! {
    // SAFETY: the kernel's entry stack: argc, then argc pointers to
    // NUL-terminated strings.
    let words = unsafe {
        let count = *sp;
        let pointers = sp.add(1).cast::<*const core::ffi::c_char>();
        (0..count)
            .map(|i| {
                let word = core::ffi::CStr::from_ptr(*pointers.add(i));
                String::from_utf8_lossy(word.to_bytes()).into_owned()
            })
            .collect::<Vec<_>>()
    };
    let args = Args { argv: words };
    if let Some(h) = args.argv.get(1).and_then(|w| w.parse::<u32>().ok()) {
        HOST_PRIV.store(h, Ordering::Relaxed);
    }
    console::init(
        args.name(),
        args.argv.get(2).and_then(|w| w.parse::<u32>().ok()),
    );
    // SAFETY: defined by `entry!` in the program.
    unsafe { gnumach_task_main(args) }
}

/// Prints `GMT-PASS <what>`.
pub fn pass(what: &str) {
    console::line(&alloc::format!("GMT-PASS {what}"));
}

/// Prints `GMT-FAIL <what>: <why>`.
pub fn fail(what: &str, why: &str) {
    console::line(&alloc::format!("GMT-FAIL {what}: {why}"));
}

/// Prints a pass or a failure for `what`.
pub fn check(what: &str, ok: bool, why: impl FnOnce() -> String) {
    if ok {
        pass(what);
    } else {
        fail(what, &why());
    }
}

/// The value of `r`, or (failure `what` printed) the end of the run.
pub fn must<T, E: core::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| {
        fail(what, &alloc::format!("{e}"));
        end(true)
    })
}

/// Status flavors of `devserver`'s `ctl` device, which `devclient` uses.
pub mod ctl {
    /// Get-status: `[opens, closes]` of `ram0`.
    pub const STATS: u32 = 0x4d01;
    /// Set-status: the client is about to terminate.
    pub const EXPECT_DEATH: u32 = 0x4d02;
}

/// `GMT-END <task>` then, if `reboot`, the end of the run (`host_reboot`:
/// QEMU exits); otherwise the task terminates itself.
pub fn end(reboot: bool) -> ! {
    console::line(&alloc::format!("GMT-END {}", console::task_name()));
    if reboot {
        halt()
    }
    let _ = MACH.task_terminate(MACH.task_self());
    halt()
}

/// Ends the run: `host_reboot` (QEMU runs with `-no-reboot` and exits).
pub fn halt() -> ! {
    let host = PortName(HOST_PRIV.load(Ordering::Relaxed));
    let r = MACH.host_reboot(host, mach::sys::gnumach::RB_AUTOBOOT);
    console::line(&alloc::format!("GMT-FAIL host_reboot: {r}"));
    loop {
        sleep_ms(1000);
    }
}

/// Waits `ms` milliseconds (a receive that times out on a port nobody
/// sends to).
pub fn sleep_ms(ms: u32) {
    static PORT: AtomicU32 = AtomicU32::new(0);
    let mut p = PORT.load(Ordering::Relaxed);
    if p == 0 {
        p = MACH.port_allocate(Right::Receive).map_or(0, |n| n.0);
        PORT.store(p, Ordering::Relaxed);
    }
    let mut buf = [0u64; 8];
    // SAFETY: a 64-byte receive buffer.
    let r = unsafe {
        MACH.mach_msg(
            buf.as_mut_ptr().cast(),
            option::RCV_MSG | option::RCV_TIMEOUT,
            0,
            64,
            PortName(p),
            ms,
            PortName::NULL,
        )
    };
    debug_assert!(r == KernReturn::RCV_TIMED_OUT || p == 0);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::line(&alloc::format!(
        "GMT-PANIC {}: {info}",
        console::task_name()
    ));
    halt()
}
