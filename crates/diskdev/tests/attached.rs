//! `AttachedDisks` over the loopback kernel: disks that come and go, as USB
//! sticks do under rumpusbdisk. A stick that is absent is
//! `D_NO_SUCH_DEVICE`; one plugged in later opens; I/O on an open whose
//! stick was pulled is `D_NO_SUCH_DEVICE` (the back end answers `EIO`, as
//! NetBSD's revoked devices do, and the name no longer opens), with no
//! stale data, while a medium error of a stick that is there stays
//! `D_IO_ERROR`; plugged in again, it opens again and shows what it holds.

#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use diskdev::device::{AttachedDisks, DEV_FLUSH_CACHE, DEV_GET_SIZE};
use diskdev::disk::Disk;
use mach::KernReturn;
use machdev::loopback::LocalServer;
use machdev::{Mode, PoolConfig};
use mig_bindings::device::Client;

/// One stick's medium; `present` says whether it is plugged in.
#[derive(Default)]
struct Stick {
    data: Mutex<Vec<u8>>,
    present: Mutex<bool>,
    read_only: bool,
    flushes: Mutex<u32>,
    /// Reads fail with a medium error (`EIO`) while it is there.
    failing: Mutex<bool>,
}

/// The disk an open gets: the stick while it stays plugged in.
struct Attached(Arc<Stick>);

/// What a new open of a pulled stick answers.
fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ENXIO)
}

/// What I/O on an open of a pulled stick answers (NetBSD revokes the
/// device: its reads and writes fail with `EIO`).
fn revoked() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl Disk for Attached {
    fn size(&self) -> io::Result<u64> {
        if !*self.0.present.lock().unwrap() {
            return Err(revoked());
        }
        Ok(self.0.data.lock().unwrap().len() as u64)
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn read_only(&self) -> bool {
        self.0.read_only
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if !*self.0.present.lock().unwrap() {
            return Err(revoked());
        }
        if *self.0.failing.lock().unwrap() {
            return Err(revoked());
        }
        let d = self.0.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if !*self.0.present.lock().unwrap() {
            return Err(revoked());
        }
        self.0.data.lock().unwrap()[offset as usize..offset as usize + data.len()]
            .copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        *self.0.flushes.lock().unwrap() += 1;
        Ok(())
    }
    fn ops(&self) -> u64 {
        0
    }
}

struct Rig {
    local: LocalServer,
    sticks: BTreeMap<&'static str, Arc<Stick>>,
}

impl Rig {
    fn new() -> Self {
        let mut sticks = BTreeMap::new();
        for (name, ro) in [("sd0", false), ("sd1", true)] {
            sticks.insert(
                name,
                Arc::new(Stick {
                    data: Mutex::new(vec![0x5a; 64 * 1024]),
                    read_only: ro,
                    ..Stick::default()
                }),
            );
        }
        let table = sticks.clone();
        let driver = AttachedDisks::new(
            |n| n.starts_with("sd"),
            move |n| {
                let stick = table
                    .get(n)
                    .filter(|s| *s.present.lock().unwrap())
                    .ok_or_else(gone)?;
                Ok(Arc::new(Attached(Arc::clone(stick))) as Arc<dyn Disk>)
            },
        );
        let local = LocalServer::start(vec![Arc::new(driver)], PoolConfig::default()).unwrap();
        Self { local, sticks }
    }

    fn plug(&self, name: &str, present: bool) {
        *self.sticks[name].present.lock().unwrap() = present;
    }
}

#[test]
fn sticks_come_and_go_and_their_opens_fail_cleanly_while_gone() {
    let rig = Rig::new();
    let (task, master) = rig.local.client().unwrap();
    let c = Client::new(&task);
    let rw = Mode::READ | Mode::WRITE;
    // Not plugged in yet; a name no stick will ever have.
    assert_eq!(c.open(master, rw, "sd0"), Err(KernReturn::D_NO_SUCH_DEVICE));
    assert_eq!(c.open(master, rw, "sd7"), Err(KernReturn::D_NO_SUCH_DEVICE));
    assert_eq!(c.open(master, rw, "wd0"), Err(KernReturn::D_NO_SUCH_DEVICE));
    // Plugged in after the start.
    rig.plug("sd0", true);
    let d = c.open(master, rw, "sd0").unwrap();
    assert_eq!(c.get_status(d, DEV_GET_SIZE, 2), Ok(vec![65536, 512]));
    assert_eq!(c.write(d, 8, &[0xa5; 4096]), Ok(4096));
    assert_eq!(c.read(d, 8, 4096).unwrap(), vec![0xa5; 4096]);
    // Pulled while open: pending and later I/O fail, nothing stale comes.
    rig.plug("sd0", false);
    assert_eq!(c.read(d, 0, 512), Err(KernReturn::D_NO_SUCH_DEVICE));
    assert_eq!(c.write(d, 0, &[1; 512]), Err(KernReturn::D_NO_SUCH_DEVICE));
    assert_eq!(
        c.get_status(d, DEV_GET_SIZE, 2),
        Err(KernReturn::D_NO_SUCH_DEVICE)
    );
    assert_eq!(c.open(master, rw, "sd0"), Err(KernReturn::D_NO_SUCH_DEVICE));
    c.close(d).unwrap();
    // A medium error of a stick that is there stays D_IO_ERROR.
    rig.plug("sd0", true);
    let d = c.open(master, rw, "sd0").unwrap();
    *rig.sticks["sd0"].failing.lock().unwrap() = true;
    assert_eq!(c.read(d, 0, 512), Err(KernReturn::D_IO_ERROR));
    *rig.sticks["sd0"].failing.lock().unwrap() = false;
    c.close(d).unwrap();
    // Back: it opens again and holds what was written before.
    let d = c.open(master, Mode::READ, "sd0").unwrap();
    assert_eq!(c.read(d, 8, 512).unwrap(), vec![0xa5; 512]);
    c.close(d).unwrap();
}

#[test]
fn a_read_only_stick_refuses_write_opens_and_sync_flushes_the_open_ones() {
    let rig = Rig::new();
    rig.plug("sd0", true);
    rig.plug("sd1", true);
    let (task, master) = rig.local.client().unwrap();
    let c = Client::new(&task);
    assert_eq!(
        c.open(master, Mode::READ | Mode::WRITE, "sd1"),
        Err(KernReturn::D_READ_ONLY)
    );
    let ro = c.open(master, Mode::READ, "sd1").unwrap();
    assert_eq!(c.read(ro, 0, 512).unwrap(), vec![0x5a; 512]);
    let d = c.open(master, Mode::READ | Mode::WRITE, "sd0").unwrap();
    c.set_status(d, DEV_FLUSH_CACHE, &[]).unwrap();
    assert_eq!(*rig.sticks["sd0"].flushes.lock().unwrap(), 1);
    // startup_dosync flushes every writable disk that is open.
    rig.local.server().sync_all();
    assert_eq!(*rig.sticks["sd0"].flushes.lock().unwrap(), 2);
    assert_eq!(*rig.sticks["sd1"].flushes.lock().unwrap(), 0);
}
