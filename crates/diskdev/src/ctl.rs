//! Device-interface client commands (`--ctl`): what a Hurd client does,
//! run against the server through the Mach device RPCs.
//!
//! Commands, separated by `;`:
//! `size NAME` · `write NAME OFFSET LEN BYTE` · `read NAME OFFSET LEN` ·
//! `verify NAME OFFSET LEN BYTE` · `flush NAME`. Offsets and lengths are
//! bytes (multiples of 512; `k`/`m` suffixes allowed), BYTE is a value.

use mach::ipc::Ipc;
use mach::{KernReturn, PortName};
use machdev::Mode;
use mig_bindings::device::Client;

use crate::device::{DEV_FLUSH_CACHE, DEV_GET_RECORDS, DEV_GET_SIZE};

fn number(s: &str) -> Result<u64, String> {
    let (digits, mul) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1 << 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16)
    } else {
        digits.parse()
    };
    v.map(|v| v * mul)
        .map_err(|_| format!("{s:?} is not a number"))
}

fn kr(what: &str, e: KernReturn) -> String {
    format!("{what}: {e}")
}

/// Runs `script` against the device master `master`; returns what it
/// printed, or the first failure.
pub fn run<I: Ipc + ?Sized>(
    ipc: &I,
    master: PortName,
    script: &str,
) -> Result<Vec<String>, String> {
    let c = Client::new(ipc);
    let mut out = Vec::new();
    for cmd in script.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let open = |name: &str, mode: u32| {
            c.open(master, mode, name)
                .map_err(|e| kr(&format!("open {name}"), e))
        };
        match words.as_slice() {
            ["size", name] => {
                let d = open(name, Mode::READ)?;
                let size = c
                    .get_status(d, DEV_GET_SIZE, 2)
                    .map_err(|e| kr("DEV_GET_SIZE", e))?;
                let recs = c
                    .get_status(d, DEV_GET_RECORDS, 2)
                    .map_err(|e| kr("DEV_GET_RECORDS", e))?;
                c.close(d).map_err(|e| kr("close", e))?;
                out.push(format!(
                    "{name}: {} bytes, {} records of {} bytes",
                    size[0], recs[0], recs[1]
                ));
            }
            ["write", name, off, len, byte] => {
                let (off, len, byte) = (number(off)?, number(len)?, number(byte)?);
                let d = open(name, Mode::READ | Mode::WRITE)?;
                let data = vec![
                    u8::try_from(byte).map_err(|_| "BYTE must be 0..255".to_owned())?;
                    len as usize
                ];
                let n = c
                    .write(d, off / 512, &data)
                    .map_err(|e| kr("device_write", e))?;
                c.close(d).map_err(|e| kr("close", e))?;
                out.push(format!("{name}: wrote {n} bytes of {byte:#04x} at {off}"));
            }
            ["read", name, off, len] => {
                let (off, len) = (number(off)?, number(len)?);
                let d = open(name, Mode::READ)?;
                let len = i32::try_from(len).map_err(|_| "LEN too large".to_owned())?;
                let data = c
                    .read(d, off / 512, len)
                    .map_err(|e| kr("device_read", e))?;
                c.close(d).map_err(|e| kr("close", e))?;
                let head: Vec<String> = data.iter().take(16).map(|b| format!("{b:02x}")).collect();
                out.push(format!(
                    "{name}: read {} bytes at {off}: {} ...",
                    data.len(),
                    head.join(" ")
                ));
            }
            ["verify", name, off, len, byte] => {
                let (off, len, byte) = (number(off)?, number(len)?, number(byte)?);
                let d = open(name, Mode::READ)?;
                let len = i32::try_from(len).map_err(|_| "LEN too large".to_owned())?;
                let data = c
                    .read(d, off / 512, len)
                    .map_err(|e| kr("device_read", e))?;
                c.close(d).map_err(|e| kr("close", e))?;
                if data.len() != len as usize || data.iter().any(|&b| u64::from(b) != byte) {
                    return Err(format!(
                        "{name}: verify of {len} bytes at {off} against {byte:#04x} FAILED"
                    ));
                }
                out.push(format!(
                    "{name}: verified {len} bytes of {byte:#04x} at {off}"
                ));
            }
            ["flush", name] => {
                let d = open(name, Mode::WRITE)?;
                c.set_status(d, DEV_FLUSH_CACHE, &[])
                    .map_err(|e| kr("DEV_FLUSH_CACHE", e))?;
                c.close(d).map_err(|e| kr("close", e))?;
                out.push(format!("{name}: cache flushed"));
            }
            ["wait", name, secs] => out.push(wait(&c, master, name, number(secs)?)?),
            _ => {
                return Err(format!(
                    "unknown command {cmd:?} (size, write, read, verify, flush, wait)"
                ));
            }
        }
    }
    Ok(out)
}

/// Runs `script` against the server `local` (`--ctl`), printing each
/// command's result.
///
/// # Errors
/// The first command that fails.
pub fn run_local(local: &machdev::loopback::LocalServer, script: &str) -> Result<(), String> {
    let (client, master) = local.client().map_err(|e| e.to_string())?;
    for line in run(&client, master, script)? {
        println!("{line}");
    }
    Ok(())
}

/// Opens `name` until it is there (a disk that attaches after the start, as
/// USB sticks do) or `secs` have passed.
fn wait<I: Ipc + ?Sized>(
    c: &Client<'_, I>,
    master: PortName,
    name: &str,
    secs: u64,
) -> Result<String, String> {
    let limit = std::time::Duration::from_secs(secs);
    let start = std::time::Instant::now();
    let d = loop {
        match c.open(master, Mode::READ, name) {
            Ok(d) => break d,
            Err(KernReturn::D_NO_SUCH_DEVICE) if start.elapsed() < limit => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(kr(&format!("open {name}"), e)),
        }
    };
    c.close(d).map_err(|e| kr("close", e))?;
    Ok(format!(
        "{name}: there after {:.1} s",
        start.elapsed().as_secs_f64()
    ))
}
