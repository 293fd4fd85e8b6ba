//! Output on GNU Mach's `console` device (the serial line with
//! `console=com0`): `device_open` on the kernel's device master, then
//! `device_write_inband` of at most 128 bytes at a time.

use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicU32, Ordering};

use mach::PortName;
use mach::kernel_rpc::KernelRpc;
use mig_bindings::device::{self as dev, Client, INBAND_MAX};
use spin::Mutex;

use crate::MACH;

static CONSOLE: AtomicU32 = AtomicU32::new(0);
static NAME: Mutex<String> = Mutex::new(String::new());

/// Opens the console through `master` (the kernel's device master).
pub(crate) fn init(name: &str, master: Option<u32>) {
    *NAME.lock() = name.to_string();
    if let Some(m) = master {
        // D_WRITE
        if let Ok(port) = Client::new(&MACH).open(PortName(m), machdev::Mode::WRITE, "console") {
            CONSOLE.store(port.0, Ordering::Relaxed);
        }
    }
}

/// The task's name (argv[0]).
#[must_use]
pub fn task_name() -> String {
    NAME.lock().clone()
}

/// Writes `text` and a newline; lines of several tasks do not mix within
/// one 128-byte piece.
pub fn line(text: &str) {
    let port = PortName(CONSOLE.load(Ordering::Relaxed));
    if !port.is_valid() {
        return;
    }
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\n');
    // Through the transport's cached reply port: a line costs one RPC per
    // piece, no reply-port allocation and release.
    for piece in s.as_bytes().chunks(INBAND_MAX) {
        let written = MACH
            .kernel_rpc(|r| dev::write_inband_request(port, r, 0, piece))
            .and_then(|m| dev::decode_write_reply(m.as_bytes(), dev::ID_WRITE_INBAND));
        if written.is_err() {
            return;
        }
    }
}

/// `format!` then [`line`].
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::console::line(&alloc::format!($($t)*)) };
}
