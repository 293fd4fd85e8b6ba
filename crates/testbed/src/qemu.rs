//! One QEMU run: started with a serial console in a file, waited for under a
//! time limit, killed past it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The accelerator: TCG, or what `VMTEST_ACCEL` names.
#[must_use]
pub fn accel() -> String {
    std::env::var("VMTEST_ACCEL").unwrap_or_else(|_| "tcg".to_owned())
}

/// QEMU opens its serial console file as it starts. One that has not after
/// this long never will: seen once in CI on this shared machine, a QEMU
/// that had neither written its console file nor anything on stderr after
/// 240 s. It is killed (what it was waiting in is printed) and started once
/// more.
const STUCK_AT_START: Duration = Duration::from_secs(30);

/// Runs `qemu-system-x86_64` with `args` plus `-serial file:<serial>` and no
/// display, for at most `limit`; QEMU's stderr goes to `qemu.stderr` beside
/// the serial log (a pipe nobody drains could stall it). Prints how long
/// `what` took. Returns the serial console.
///
/// # Panics
/// If QEMU cannot be started (tests/setup.sh installs QEMU 10), fails, or
/// runs past `limit` (it is killed): with the console, naming `what`.
#[must_use]
pub fn run(args: &[String], serial: &Path, limit: Duration, what: &str) -> String {
    run_with_hooks(args, serial, limit, what, &[])
}

/// A QEMU monitor command sent when the guest prints a line.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The whole line the guest's console shows first.
    pub marker: String,
    /// The human monitor command then (`device_del stick` ...).
    pub command: String,
}

/// [`run`], with a human monitor on a Unix socket beside the serial log
/// and `hooks` carried out in order: each command once its marker line
/// is on the console (what the guest does next must wait for its effect).
///
/// # Panics
/// As [`run`]; and if the monitor cannot be reached.
#[must_use]
pub fn run_with_hooks(
    args: &[String],
    serial: &Path,
    limit: Duration,
    what: &str,
    hooks: &[Hook],
) -> String {
    let stderr_path = serial.with_file_name("qemu.stderr");
    let mut args = args.to_vec();
    if !hooks.is_empty() {
        let sock = serial.with_file_name("monitor.sock");
        let _ = std::fs::remove_file(&sock);
        args.extend([
            "-monitor".to_owned(),
            format!("unix:{},server=on,wait=off", sock.display()),
        ]);
    }
    let (end, elapsed) = match attempt(&args, serial, limit, true, what, hooks) {
        (End::Stuck, _) => attempt(&args, serial, limit, false, what, hooks),
        ended => ended,
    };
    let log = String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned();
    match end {
        End::Exited(s) if s.success() => {}
        End::Exited(s) => panic!(
            "QEMU failed ({s}): {}\n{log}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        ),
        End::TimedOut | End::Stuck => panic!("{what} did not end within {limit:?}\n{log}"),
    }
    eprintln!("{what}: {elapsed:.2?} from QEMU start to exit");
    log
}

/// How one QEMU run ended.
enum End {
    Exited(std::process::ExitStatus),
    /// Killed at the time limit.
    TimedOut,
    /// Killed for not opening its console ([`STUCK_AT_START`]).
    Stuck,
}

/// Starts QEMU once and waits for it (see [`run`]); with `watch_start`, a
/// QEMU that has not opened its console after [`STUCK_AT_START`] is killed.
fn attempt(
    args: &[String],
    serial: &Path,
    limit: Duration,
    watch_start: bool,
    what: &str,
    hooks: &[Hook],
) -> (End, Duration) {
    let mut pending = hooks.iter();
    let mut next = pending.next();
    let _ = std::fs::remove_file(serial);
    let stderr =
        std::fs::File::create(serial.with_file_name("qemu.stderr")).expect("QEMU's stderr file");
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", &accel(), "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("qemu-system-x86_64 (tests/setup.sh installs QEMU 10)");
    let end = loop {
        if let Some(s) = child.try_wait().expect("wait for QEMU") {
            break End::Exited(s);
        }
        if watch_start && start.elapsed() > STUCK_AT_START && !serial.exists() {
            eprintln!(
                "{what}: QEMU has not opened its console after {STUCK_AT_START:?} ({}); \
                 starting it again",
                waiting_in(child.id())
            );
            break End::Stuck;
        }
        if start.elapsed() > limit {
            break End::TimedOut;
        }
        if let Some(h) = next {
            let console = std::fs::read(serial).unwrap_or_default();
            if String::from_utf8_lossy(&console)
                .lines()
                .any(|l| l.trim_end_matches('\r') == h.marker)
            {
                let reply = monitor(&serial.with_file_name("monitor.sock"), &h.command);
                eprintln!(
                    "{what}: {:?} -> monitor {:?}: {}",
                    h.marker,
                    h.command,
                    reply.trim()
                );
                next = pending.next();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !matches!(end, End::Exited(_)) {
        let _ = child.kill();
        let _ = child.wait();
    }
    (end, start.elapsed())
}

/// Sends `command` to the human monitor at `sock`; returns what it printed
/// up to its next prompt.
fn monitor(sock: &Path, command: &str) -> String {
    use std::io::{Read, Write};
    let mut m = std::os::unix::net::UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("QEMU monitor {}: {e}", sock.display()));
    m.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The banner and first prompt, then the command's output and the next.
    let mut prompts = 0;
    let mut sent = false;
    while prompts < 2 {
        let n = m.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        prompts = String::from_utf8_lossy(&seen).matches("(qemu)").count();
        if prompts >= 1 && !sent {
            m.write_all(format!("{command}\n").as_bytes())
                .expect("write to the monitor");
            sent = true;
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    text.split_once(command)
        .map_or(text.clone(), |(_, after)| after.replace("(qemu)", ""))
}

/// Where the threads of process `pid` are: each one's state and the kernel
/// function it sleeps in.
fn waiting_in(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "gone".to_owned();
    };
    tasks
        .flatten()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            let stat = read("stat");
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_owned();
            format!(
                "{} {state} in {}",
                read("comm").trim(),
                read("wchan").trim()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
