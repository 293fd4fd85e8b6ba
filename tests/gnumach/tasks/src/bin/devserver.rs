//! A device server on real GNU Mach, through machdev's dispatch core
//! (single-threaded: `serve_one`). It serves `ram0` (an 8 MiB RAM disk of
//! 512-byte records) and `ctl` (the test's control device: status flavor
//! `STATS` = [opens, closes]; set-status `EXPECT_DEATH` arms the check that
//! every open is closed by no-senders once the client task is gone).
//! Names it does not claim go to the kernel's device master.
//!
//! Boot-script words: host port, device master. The server publishes its
//! master port as its task's bootstrap port for the client to fetch.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gnumach_tasks::ctl::{EXPECT_DEATH, STATS};
use gnumach_tasks::{Args, MACH, check, end, entry, fail, must, pass, say};
use mach::port::type_name as tn;
use mach::sys::gnumach::TASK_BOOTSTRAP_PORT;
use mach::{Ipc, KernReturn};
use machdev::{Device, DeviceServer, Driver, Mode, PoolConfig};
use spin::Mutex;

const RECORD: usize = 512;
const DISK: usize = 8 << 20;

#[derive(Default)]
struct State {
    opens: AtomicUsize,
    closes: AtomicUsize,
    expect_death: AtomicBool,
    status: Mutex<Vec<i32>>,
}

struct Ram {
    disk: Arc<Mutex<Vec<u8>>>,
    state: Arc<State>,
}

struct RamDev {
    disk: Arc<Mutex<Vec<u8>>>,
    state: Arc<State>,
    ctl: bool,
}

fn range(recnum: u64, len: usize) -> Result<core::ops::Range<usize>, KernReturn> {
    let start = usize::try_from(recnum)
        .ok()
        .and_then(|r| r.checked_mul(RECORD))
        .ok_or(KernReturn::D_INVALID_RECNUM)?;
    let end = start.checked_add(len).ok_or(KernReturn::D_INVALID_SIZE)?;
    if start > DISK || end > DISK {
        return Err(KernReturn::D_INVALID_RECNUM);
    }
    Ok(start..end)
}

impl Device for RamDev {
    fn read(&self, recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        Ok(self.disk.lock()[range(recnum, len)?].to_vec())
    }

    fn write(&self, recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        self.disk.lock()[range(recnum, data.len())?].copy_from_slice(data);
        Ok(data.len())
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        match flavor {
            STATS if self.ctl => Ok(vec![
                self.state.opens.load(Ordering::Relaxed) as i32,
                self.state.closes.load(Ordering::Relaxed) as i32,
            ]),
            // DEV_GET_SIZE: record size, device size.
            0 if max >= 2 => Ok(vec![RECORD as i32, DISK as i32]),
            EXPECT_DEATH => Ok(self.state.status.lock().clone()),
            _ => Err(KernReturn::D_INVALID_OPERATION),
        }
    }

    fn set_status(&self, flavor: u32, status: &[i32]) -> Result<(), KernReturn> {
        match flavor {
            EXPECT_DEATH if self.ctl => {
                self.state.expect_death.store(true, Ordering::Release);
                Ok(())
            }
            EXPECT_DEATH => {
                *self.state.status.lock() = status.to_vec();
                Ok(())
            }
            _ => Err(KernReturn::D_INVALID_OPERATION),
        }
    }

    fn close(&self) {
        if !self.ctl {
            self.state.closes.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Driver for Ram {
    fn claims(&self, name: &str) -> bool {
        name == "ram0" || name == "ctl"
    }

    fn open(&self, name: &str, _mode: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        let ctl = name == "ctl";
        if !ctl {
            self.state.opens.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Arc::new(RamDev {
            disk: Arc::clone(&self.disk),
            state: Arc::clone(&self.state),
            ctl,
        }))
    }
}

entry!(main);

fn main(args: &Args) -> ! {
    let device_master = args.port(2);
    let state = Arc::new(State::default());
    let ram = Arc::new(Ram {
        disk: Arc::new(Mutex::new(vec![0; DISK])),
        state: Arc::clone(&state),
    });
    let ipc: Arc<dyn Ipc> = Arc::new(gnumach_tasks::GnuMach::new());
    let server = must(
        "server: start",
        DeviceServer::new(ipc, vec![ram], Some(device_master), PoolConfig::default()),
    );
    let master = server.master_port();
    let published = MACH
        .port_insert_right(master, master, tn::MAKE_SEND)
        .result()
        .and_then(|()| {
            MACH.task_set_special_port(MACH.task_self(), TASK_BOOTSTRAP_PORT, master)
                .result()
        });
    check(
        "server: master port published as bootstrap port",
        published.is_ok(),
        || alloc::format!("{published:?}"),
    );
    // Serve until the client has died and every open it held is closed,
    // or give up after 60 s of idle time.
    let mut idle_ms = 0u32;
    let mut buf = mach::msg::MsgBuf::zeroed(0);
    loop {
        match server.serve_one_in(&mut buf, Some(100)) {
            Ok(()) => idle_ms = 0,
            Err(KernReturn::RCV_TIMED_OUT) => idle_ms += 100,
            Err(e) => {
                fail("server: receive", &alloc::format!("{e}"));
                end(true)
            }
        }
        if state.expect_death.load(Ordering::Acquire) && server.open_count() == 0 {
            let (o, c) = (
                state.opens.load(Ordering::Relaxed),
                state.closes.load(Ordering::Relaxed),
            );
            check(
                "server: dead client's opens all closed by no-senders",
                o == c,
                || alloc::format!("{o} opens, {c} closes"),
            );
            say!("server: {o} opens of ram0, {c} closed");
            pass("server: survived every request");
            end(true)
        }
        if idle_ms >= 60_000 {
            fail(
                "server: dead client's opens all closed by no-senders",
                &alloc::format!("still {} open after 60 s", server.open_count()),
            );
            end(true)
        }
    }
}
