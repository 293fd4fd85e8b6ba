//! One QEMU run: started with a serial console in a file, waited for under a
//! time limit, killed past it.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a run ended.
#[derive(Debug)]
pub struct Run {
    /// QEMU's exit status; `None` if it was killed at the limit.
    pub status: Option<ExitStatus>,
    /// The serial console.
    pub log: String,
    /// QEMU's stderr.
    pub stderr: String,
    /// From start to exit.
    pub elapsed: Duration,
}

/// The accelerator: TCG, or what `VMTEST_ACCEL` names.
#[must_use]
pub fn accel() -> String {
    std::env::var("VMTEST_ACCEL").unwrap_or_else(|_| "tcg".to_owned())
}

/// Runs `qemu-system-x86_64` with `args` plus `-serial file:<serial>` and no
/// display, for at most `limit`.
///
/// # Panics
/// If QEMU cannot be started (tests/setup.sh installs QEMU 10).
#[must_use]
pub fn run(args: &[String], serial: &Path, limit: Duration) -> Run {
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", &accel(), "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (tests/setup.sh installs QEMU 10)");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for QEMU") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let stderr = child
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    let log = String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned();
    Run {
        status,
        log,
        stderr,
        elapsed,
    }
}
