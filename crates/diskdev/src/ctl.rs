//! Device-interface client commands (`--ctl`): what a Hurd client does,
//! run against the server through the Mach device RPCs.
//!
//! Commands, separated by `;`:
//! `size NAME` · `write NAME OFFSET LEN BYTE` · `read NAME OFFSET LEN` ·
//! `verify NAME OFFSET LEN BYTE` · `flush NAME`. Offsets and lengths are
//! bytes (multiples of 512; `k`/`m` suffixes allowed), BYTE is a value.
//!
//! For disks that come and go (USB sticks): `wait NAME SECS` (until it
//! opens), `gone NAME SECS` (until it no longer does), `hold NAME` (keep an
//! open across commands), `held-read OFFSET LEN` (read through it, printing
//! the outcome, error or not), `release`, and `print TEXT` (a marker, at
//! once, for whoever watches the output).
//!
//! Concurrency: `clients NAME N LEN` (N clients at once, each with its own
//! open, writing a pattern of its own over LEN bytes at `i * LEN` in 4 KiB
//! requests and reading it back; a torn or lost block fails).
//!
//! Timings: `rate NAME read|write MIB` (sequential 1 MiB transfers; a write
//! run ends with a cache flush) and `random NAME COUNT` (4 KiB reads at
//! pseudo-random offsets).

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
///
/// # Errors
/// The first command that fails.
pub fn run<I: Ipc + ?Sized>(
    ipc: &I,
    master: PortName,
    script: &str,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    run_each(ipc, master, script, |l| out.push(l))?;
    Ok(out)
}

/// As [`run`], handing each line to `emit` as soon as its command is done.
///
/// # Errors
/// The first command that fails.
pub fn run_each<I: Ipc + ?Sized>(
    ipc: &I,
    master: PortName,
    script: &str,
    mut emit: impl FnMut(String),
) -> Result<(), String> {
    let mut s = Session {
        ipc,
        c: Client::new(ipc),
        master,
        held: None,
    };
    let result = script
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .try_for_each(|cmd| s.command(cmd).map(&mut emit));
    s.release();
    result
}

/// A script's client, with the open `hold` keeps.
struct Session<'a, I: Ipc + ?Sized> {
    ipc: &'a I,
    c: Client<'a, I>,
    master: PortName,
    held: Option<(String, PortName)>,
}

impl<I: Ipc + ?Sized> Session<'_, I> {
    fn open(&self, name: &str, mode: u32) -> Result<PortName, String> {
        self.c
            .open(self.master, mode, name)
            .map_err(|e| kr(&format!("open {name}"), e))
    }

    fn close(&self, d: PortName) -> Result<(), String> {
        self.c.close(d).map_err(|e| kr("close", e))
    }

    fn command(&mut self, cmd: &str) -> Result<String, String> {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["size", name] => self.size(name),
            ["write", name, off, len, byte] => {
                self.write(name, number(off)?, number(len)?, number(byte)?)
            }
            ["read", name, off, len] => self.read(name, number(off)?, number(len)?),
            ["verify", name, off, len, byte] => {
                self.verify(name, number(off)?, number(len)?, number(byte)?)
            }
            ["flush", name] => {
                let d = self.open(name, Mode::WRITE)?;
                self.c
                    .set_status(d, DEV_FLUSH_CACHE, &[])
                    .map_err(|e| kr("DEV_FLUSH_CACHE", e))?;
                self.close(d)?;
                Ok(format!("{name}: cache flushed"))
            }
            ["wait", name, secs] => self.wait(name, number(secs)?, true),
            ["gone", name, secs] => self.wait(name, number(secs)?, false),
            ["hold", name] => {
                self.release();
                self.held = Some(((*name).to_owned(), self.open(name, Mode::READ)?));
                Ok(format!("{name}: held open"))
            }
            ["held-read", off, len] => self.held_read(number(off)?, number(len)?),
            ["release"] => {
                self.release();
                Ok("released".to_owned())
            }
            ["print", text @ ..] => Ok(text.join(" ")),
            ["rate", name, dir @ ("read" | "write"), mib] => {
                self.rate(name, *dir == "write", number(mib)?)
            }
            ["random", name, count] => self.random(name, number(count)?),
            ["clients", name, n, len] => self.clients(name, number(n)?, number(len)?),
            _ => Err(format!(
                "unknown command {cmd:?} (size, write, read, verify, flush, wait, gone, hold, \
                 held-read, release, print, rate, random, clients)"
            )),
        }
    }

    fn size(&self, name: &str) -> Result<String, String> {
        let d = self.open(name, Mode::READ)?;
        let size = self
            .c
            .get_status(d, DEV_GET_SIZE, 2)
            .map_err(|e| kr("DEV_GET_SIZE", e))?;
        let recs = self
            .c
            .get_status(d, DEV_GET_RECORDS, 2)
            .map_err(|e| kr("DEV_GET_RECORDS", e))?;
        self.close(d)?;
        Ok(format!(
            "{name}: {} bytes, {} records of {} bytes",
            size[0], recs[0], recs[1]
        ))
    }

    fn write(&self, name: &str, off: u64, len: u64, byte: u64) -> Result<String, String> {
        let d = self.open(name, Mode::READ | Mode::WRITE)?;
        let data = vec![
            u8::try_from(byte).map_err(|_| "BYTE must be 0..255".to_owned())?;
            usize::try_from(len).map_err(|_| "LEN too large".to_owned())?
        ];
        let n = self
            .c
            .write(d, off / 512, &data)
            .map_err(|e| kr("device_write", e))?;
        self.close(d)?;
        Ok(format!("{name}: wrote {n} bytes of {byte:#04x} at {off}"))
    }

    fn read_all(&self, name: &str, off: u64, len: u64) -> Result<Vec<u8>, String> {
        let d = self.open(name, Mode::READ)?;
        let len = i32::try_from(len).map_err(|_| "LEN too large".to_owned())?;
        let data = self
            .c
            .read(d, off / 512, len)
            .map_err(|e| kr("device_read", e))?;
        self.close(d)?;
        Ok(data)
    }

    fn read(&self, name: &str, off: u64, len: u64) -> Result<String, String> {
        let data = self.read_all(name, off, len)?;
        let head: Vec<String> = data.iter().take(16).map(|b| format!("{b:02x}")).collect();
        Ok(format!(
            "{name}: read {} bytes at {off}: {} ...",
            data.len(),
            head.join(" ")
        ))
    }

    fn verify(&self, name: &str, off: u64, len: u64, byte: u64) -> Result<String, String> {
        let data = self.read_all(name, off, len)?;
        if data.len() as u64 != len || data.iter().any(|&b| u64::from(b) != byte) {
            return Err(format!(
                "{name}: verify of {len} bytes at {off} against {byte:#04x} FAILED"
            ));
        }
        Ok(format!(
            "{name}: verified {len} bytes of {byte:#04x} at {off}"
        ))
    }

    /// `n` clients at once, each with an open of its own: client `i`
    /// writes `len` bytes of a pattern of its own at `i * len`, in 4 KiB
    /// requests, then reads them back and compares; any torn or lost
    /// block fails the command.
    fn clients(&self, name: &str, n: u64, len: u64) -> Result<String, String> {
        const BLOCK: u64 = 4096;
        if n == 0 || n > 64 || len == 0 || !len.is_multiple_of(BLOCK) {
            return Err("clients: N must be 1..64, LEN a multiple of 4096".to_owned());
        }
        let (ipc, master) = (self.ipc, self.master);
        let client = |i: u64| -> Result<(), String> {
            let c = Client::new(ipc);
            let d = c
                .open(master, Mode::READ | Mode::WRITE, name)
                .map_err(|e| kr(&format!("client {i}: open {name}"), e))?;
            let pattern = |off: u64| -> Vec<u8> {
                (0..BLOCK)
                    .map(|b| (i * 131 + (off + b) / 512 * 7 + b) as u8)
                    .collect()
            };
            let base = i * len;
            for off in (0..len).step_by(BLOCK as usize) {
                c.write(d, (base + off) / 512, &pattern(off))
                    .map_err(|e| kr(&format!("client {i}: device_write"), e))?;
            }
            for off in (0..len).step_by(BLOCK as usize) {
                let got = c
                    .read(d, (base + off) / 512, BLOCK as i32)
                    .map_err(|e| kr(&format!("client {i}: device_read"), e))?;
                if got != pattern(off) {
                    return Err(format!(
                        "{name}: client {i}: the block at {} came back torn",
                        base + off
                    ));
                }
            }
            c.close(d).map_err(|e| kr("close", e))
        };
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..n).map(|i| s.spawn(move || client(i))).collect();
            threads
                .into_iter()
                .try_for_each(|t| t.join().map_err(|_| "a client panicked".to_owned())?)
        })?;
        Ok(format!(
            "{name}: {n} clients verified {len} bytes each at once"
        ))
    }

    /// Opens `name` until it is there (`present`) or until it is not, or
    /// `secs` have passed.
    fn wait(&self, name: &str, secs: u64, present: bool) -> Result<String, String> {
        let limit = std::time::Duration::from_secs(secs);
        let start = std::time::Instant::now();
        loop {
            match self.c.open(self.master, Mode::READ, name) {
                Ok(d) if present => {
                    self.close(d)?;
                    break;
                }
                Err(KernReturn::D_NO_SUCH_DEVICE) if !present => break,
                Ok(d) => self.close(d)?,
                Err(KernReturn::D_NO_SUCH_DEVICE) => {}
                Err(e) => return Err(kr(&format!("open {name}"), e)),
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "{name}: still {} after {secs} s",
                    if present { "absent" } else { "there" }
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(format!(
            "{name}: {} after {:.1} s",
            if present { "there" } else { "gone" },
            start.elapsed().as_secs_f64()
        ))
    }

    fn held_read(&self, off: u64, len: u64) -> Result<String, String> {
        let (name, d) = self
            .held
            .as_ref()
            .ok_or_else(|| "held-read without hold".to_owned())?;
        let len = i32::try_from(len).map_err(|_| "LEN too large".to_owned())?;
        Ok(match self.c.read(*d, off / 512, len) {
            Ok(data) => format!("{name}: held read of {} bytes at {off}: ok", data.len()),
            Err(e) => format!("{name}: held read at {off}: {e}"),
        })
    }

    /// Sequential 1 MiB `device_read`s (or `device_write`s, then a cache
    /// flush) of the first `mib` MiB of `name`, timed.
    // Rates are floating point; the counts are far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    fn rate(&self, name: &str, write: bool, mib: u64) -> Result<String, String> {
        const MIB: u32 = 1 << 20;
        let d = self.open(
            name,
            if write {
                Mode::READ | Mode::WRITE
            } else {
                Mode::READ
            },
        )?;
        let data = vec![0xc3u8; MIB as usize];
        let start = std::time::Instant::now();
        for i in 0..mib {
            let rec = i * u64::from(MIB) / 512;
            let n = if write {
                self.c
                    .write(d, rec, &data)
                    .map_err(|e| kr("device_write", e))?
            } else {
                let got = self
                    .c
                    .read(d, rec, MIB as i32)
                    .map_err(|e| kr("device_read", e))?;
                i32::try_from(got.len()).unwrap_or(0)
            };
            if n != MIB as i32 {
                return Err(format!("{name}: a 1 MiB transfer moved {n} bytes"));
            }
        }
        if write {
            self.c
                .set_status(d, DEV_FLUSH_CACHE, &[])
                .map_err(|e| kr("DEV_FLUSH_CACHE", e))?;
        }
        let secs = start.elapsed().as_secs_f64();
        self.close(d)?;
        Ok(format!(
            "RATE {name} {} {mib} MiB in {secs:.3} s: {:.2} MiB/s",
            if write { "write" } else { "read" },
            mib as f64 / secs.max(1e-9)
        ))
    }

    /// `count` 4 KiB `device_read`s at pseudo-random 4 KiB-aligned offsets
    /// of `name`, timed.
    #[allow(clippy::cast_precision_loss)]
    fn random(&self, name: &str, count: u64) -> Result<String, String> {
        let d = self.open(name, Mode::READ)?;
        let size = self
            .c
            .get_status(d, DEV_GET_SIZE, 2)
            .map_err(|e| kr("DEV_GET_SIZE", e))?;
        let blocks = (u64::try_from(size[0]).unwrap_or(0) / 4096).max(1);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let start = std::time::Instant::now();
        for _ in 0..count {
            // xorshift: the same offsets in every run.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let rec = (x % blocks) * 8;
            self.c
                .read(d, rec, 4096)
                .map_err(|e| kr("device_read", e))?;
        }
        let secs = start.elapsed().as_secs_f64();
        self.close(d)?;
        Ok(format!(
            "RANDOM {name} {count} reads of 4 KiB in {secs:.3} s: {:.0} IOPS",
            count as f64 / secs.max(1e-9)
        ))
    }

    fn release(&mut self) {
        if let Some((_, d)) = self.held.take() {
            let _ = self.c.close(d);
        }
    }
}

/// Runs `script` against the server `local` (`--ctl`), printing each
/// command's result as it is done.
///
/// # Errors
/// The first command that fails.
pub fn run_local(local: &machdev::loopback::LocalServer, script: &str) -> Result<(), String> {
    let (client, master) = local.client().map_err(|e| e.to_string())?;
    run_each(&client, master, script, |line| println!("{line}"))
}
