//! The kernel console (`rumpuser_putchar`, `rumpuser_dprintf`): lines go to
//! the host's standard error whole, so concurrent kernel threads do not
//! interleave characters.

use std::io::Write;

use parking_lot::Mutex;

static LINE: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn emit(bytes: &[u8]) {
    // Standard error may be closed (a daemon); console output is best
    // effort by definition.
    let _ = std::io::stderr().write_all(bytes);
}

/// One console character; a newline (or a long line) flushes.
pub fn putchar(c: u8) {
    let mut line = LINE.lock();
    line.push(c);
    if c == b'\n' || line.len() >= 1024 {
        emit(&line);
        line.clear();
    }
}

/// Writes `bytes` after whatever partial line is pending.
pub fn write(bytes: &[u8]) {
    let mut line = LINE.lock();
    line.extend_from_slice(bytes);
    emit(&line);
    line.clear();
}

/// Flushes a pending partial line (before the process exits).
pub fn flush() {
    let mut line = LINE.lock();
    if !line.is_empty() {
        emit(&line);
        line.clear();
    }
}
