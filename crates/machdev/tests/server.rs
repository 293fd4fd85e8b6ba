//! The device server over the loopback kernel, driven by the Rust client:
//! opens and modes, I/O both ways, status, close, no-senders cleanup,
//! bad requests, proxying, and concurrency.

#![allow(clippy::many_single_char_names, clippy::items_after_statements)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use mach::ipc::{Ipc, option};
use mach::loopback::{Kernel, Task};
use mach::msg::{self, Builder, Header, MsgBuf};
use mach::port::{Right, type_name as tn};
use mach::{KernReturn, PortName};
use machdev::{Device, DeviceServer, Driver, Mode, PoolConfig};
use mig_bindings::device::{self as dev, Client};

/// A RAM disk; a name with "slow" makes every read take 2 s, one with
/// "fill" reads straight into the reply (`DataReply::fill`) and fails
/// reads at record `FILL_FAILS`.
struct RamDisk {
    data: Arc<Mutex<Vec<u8>>>,
    slow: bool,
    fill: bool,
    closes: Arc<AtomicUsize>,
}

const RECORD: usize = 512;
const SLOW: Duration = Duration::from_secs(2);
const FILL_FAILS: u64 = 3;

impl Device for RamDisk {
    fn read(&self, recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        if self.slow {
            std::thread::sleep(SLOW);
        }
        let d = self.data.lock().unwrap();
        let start = usize::try_from(recnum).map_err(|_| KernReturn::D_INVALID_RECNUM)? * RECORD;
        if start > d.len() {
            return Err(KernReturn::D_INVALID_RECNUM);
        }
        Ok(d[start..(start + len).min(d.len())].to_vec())
    }

    fn read_async(&self, recnum: u64, len: usize, reply: machdev::DataReply) {
        if !self.fill {
            return reply.send(self.read(recnum, len));
        }
        let d = self.data.lock().unwrap();
        let start = recnum as usize * RECORD;
        let len = len.min(d.len().saturating_sub(start));
        reply.fill(len, |buf| {
            if recnum == FILL_FAILS {
                return Err(KernReturn::D_IO_ERROR);
            }
            buf.copy_from_slice(&d[start..start + len]);
            Ok(())
        });
    }

    fn write(&self, recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        let mut d = self.data.lock().unwrap();
        let start = usize::try_from(recnum).map_err(|_| KernReturn::D_INVALID_RECNUM)? * RECORD;
        if start + data.len() > d.len() {
            return Err(KernReturn::D_INVALID_RECNUM);
        }
        d[start..start + data.len()].copy_from_slice(data);
        Ok(data.len())
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        match flavor {
            // DEV_GET_SIZE-like: record size and count.
            0 => Ok(vec![
                RECORD as i32,
                (self.data.lock().unwrap().len() / RECORD) as i32,
            ][..max.min(2)]
                .to_vec()),
            _ => Err(KernReturn::D_INVALID_OPERATION),
        }
    }

    fn set_status(&self, flavor: u32, status: &[i32]) -> Result<(), KernReturn> {
        if flavor == 7 && status.len() == 3 {
            Ok(())
        } else {
            Err(KernReturn::D_INVALID_OPERATION)
        }
    }

    fn close(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

struct RamDriver {
    data: Arc<Mutex<Vec<u8>>>,
    opens: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
}

impl Driver for RamDriver {
    fn claims(&self, name: &str) -> bool {
        name.starts_with("ram")
    }

    fn open(&self, name: &str, _mode: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        if name.ends_with("missing") {
            return Err(KernReturn::D_NO_SUCH_DEVICE);
        }
        self.opens.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(RamDisk {
            data: Arc::clone(&self.data),
            slow: name.contains("slow"),
            fill: name.contains("fill"),
            closes: Arc::clone(&self.closes),
        }))
    }
}

struct Fixture {
    kernel: Arc<Kernel>,
    server_task: Arc<Task>,
    server: Arc<DeviceServer>,
    client: Task,
    master: PortName,
    closes: Arc<AtomicUsize>,
    data: Arc<Mutex<Vec<u8>>>,
}

fn fixture_with(
    next_master: Option<PortName>,
    server_task: Option<Arc<Task>>,
    kernel: Option<Arc<Kernel>>,
) -> Fixture {
    let kernel = kernel.unwrap_or_default();
    let server_task = server_task.unwrap_or_else(|| Arc::new(kernel.new_task()));
    let data = Arc::new(Mutex::new(
        (0..1 << 20)
            .map(|i: u32| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    ));
    let closes = Arc::new(AtomicUsize::new(0));
    let driver = Arc::new(RamDriver {
        data: Arc::clone(&data),
        opens: Arc::new(AtomicUsize::new(0)),
        closes: Arc::clone(&closes),
    });
    let ipc: Arc<dyn Ipc> = server_task.clone();
    let server = DeviceServer::new(
        ipc,
        vec![driver],
        next_master,
        PoolConfig {
            min_threads: 2,
            max_threads: 64,
        },
    )
    .unwrap();
    server.start();
    let client = kernel.new_task();
    let master = server_task
        .give_send_right(server.master_port(), &client)
        .unwrap();
    Fixture {
        kernel,
        server_task,
        server,
        client,
        master,
        closes,
        data,
    }
}

fn fixture() -> Fixture {
    fixture_with(None, None, None)
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn reads_filled_in_place() {
    let f = fixture();
    let c = Client::new(&f.client);
    let d = c.open(f.master, Mode::READ, "ramfill").unwrap();
    let before = f.kernel.stats().vm_regions;
    let want = f.data.lock().unwrap()[512..512 + 8192].to_vec();
    assert_eq!(c.read(d, 1, 8192).unwrap(), want);
    assert_eq!(c.read_inband(d, 1, 8192).unwrap(), want[..128]);
    assert_eq!(c.read(d, 1, 0).unwrap(), Vec::<u8>::new());
    // A failing fill answers its error and frees the region it was given.
    assert_eq!(c.read(d, FILL_FAILS, 4096), Err(KernReturn::D_IO_ERROR));
    assert_eq!(
        c.read_inband(d, FILL_FAILS, 64),
        Err(KernReturn::D_IO_ERROR)
    );
    assert_eq!(f.kernel.stats().vm_regions, before);
}

#[test]
fn open_read_write_status_close() {
    let f = fixture();
    let c = Client::new(&f.client);
    let d = c.open(f.master, Mode::READ | Mode::WRITE, "ram0").unwrap();
    assert_eq!(f.server.open_count(), 1);

    let got = c.read(d, 2, 4096).unwrap();
    assert_eq!(got, f.data.lock().unwrap()[1024..1024 + 4096]);
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(c.write(d, 100, &payload).unwrap(), payload.len() as i32);
    assert_eq!(c.read(d, 100, payload.len() as i32).unwrap(), payload);
    // The zero-copy read hands over the kernel's pages, and gives them
    // back when dropped.
    let before = f.kernel.stats().vm_regions;
    let region = c.read_region(d, 100, payload.len() as i32).unwrap();
    assert_eq!(&region[..], &payload[..]);
    assert_eq!(f.kernel.stats().vm_regions, before + 1);
    drop(region);
    assert_eq!(f.kernel.stats().vm_regions, before);

    assert_eq!(c.write_inband(d, 3, b"inband!").unwrap(), 7);
    assert_eq!(c.read_inband(d, 3, 7).unwrap(), b"inband!");
    // Inband reads are capped at 128 bytes.
    assert_eq!(c.read_inband(d, 0, 4096).unwrap().len(), 128);

    assert_eq!(c.get_status(d, 0, 16).unwrap(), vec![512, 2048]);
    assert_eq!(c.get_status(d, 0, 1).unwrap(), vec![512]);
    assert_eq!(c.get_status(d, 9, 16), Err(KernReturn::D_INVALID_OPERATION));
    c.set_status(d, 7, &[1, 2, 3]).unwrap();
    assert_eq!(
        c.set_status(d, 8, &[]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(c.read(d, 1 << 40, 512), Err(KernReturn::D_INVALID_RECNUM));

    c.close(d).unwrap();
    assert_eq!(f.closes.load(Ordering::SeqCst), 1);
    assert_eq!(f.server.open_count(), 0);
    // The port is gone: the client's right is a dead name now.
    assert_eq!(c.read(d, 0, 512), Err(KernReturn::SEND_INVALID_DEST));
}

#[test]
fn each_open_keeps_its_own_mode() {
    let f = fixture();
    let c = Client::new(&f.client);
    let ro = c.open(f.master, Mode::READ, "ram0").unwrap();
    let rw = c.open(f.master, Mode::READ | Mode::WRITE, "ram0").unwrap();
    let wo = c.open(f.master, Mode::WRITE, "ram0").unwrap();
    assert_ne!(ro, rw);
    assert_eq!(
        c.write(ro, 0, &[1; 512]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(
        c.write_inband(ro, 0, &[1; 16]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(c.write(rw, 0, &[1; 512]).unwrap(), 512);
    assert_eq!(c.read(wo, 0, 512), Err(KernReturn::D_INVALID_OPERATION));
    assert_eq!(c.read(ro, 0, 512).unwrap(), vec![1; 512]);
    assert_eq!(
        c.open(f.master, 0x100, "ram0"),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(f.server.open_count(), 3);
}

#[test]
fn master_accepts_only_open_and_devices_refuse_open() {
    let f = fixture();
    let c = Client::new(&f.client);
    assert_eq!(
        c.read(f.master, 0, 512),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(c.close(f.master), Err(KernReturn::D_INVALID_OPERATION));
    assert_eq!(
        c.open(f.master, Mode::READ, "nothing9"),
        Err(KernReturn::D_NO_SUCH_DEVICE)
    );
    assert_eq!(
        c.open(f.master, Mode::READ, "ram-missing"),
        Err(KernReturn::D_NO_SUCH_DEVICE)
    );
    let d = c.open(f.master, Mode::READ, "ram0").unwrap();
    assert_eq!(
        c.open(d, Mode::READ, "ram0"),
        Err(KernReturn::D_INVALID_OPERATION)
    );
}

#[test]
fn a_dying_client_leaks_no_open() {
    let f = fixture();
    let other = f.kernel.new_task();
    let master = f
        .server_task
        .give_send_right(f.server.master_port(), &other)
        .unwrap();
    let c = Client::new(&other);
    for _ in 0..5 {
        c.open(master, Mode::READ, "ram0").unwrap();
    }
    assert_eq!(f.server.open_count(), 5);
    drop(c);
    drop(other);
    wait_until("no-senders cleanup", || f.server.open_count() == 0);
    assert_eq!(f.closes.load(Ordering::SeqCst), 5);
}

fn raw_rpc(t: &Task, mut m: MsgBuf) -> Result<MsgBuf, KernReturn> {
    let reply = t.port_allocate(Right::Receive).unwrap();
    let mut h = m.header().unwrap();
    h.local = reply;
    h.bits = (h.bits & msg::BITS_COMPLEX) | msg::bits(tn::COPY_SEND, tn::MAKE_SEND_ONCE);
    h.write(m.as_bytes_mut());
    let len = m.len() as u32;
    m.resize(8192);
    // SAFETY: valid buffer.
    let r = unsafe {
        t.mach_msg(
            m.as_mut_ptr(),
            option::SEND_MSG | option::RCV_MSG | option::RCV_TIMEOUT,
            len,
            8192,
            reply,
            5000,
            PortName::NULL,
        )
    };
    r.result()?;
    Ok(m)
}

fn reply_code(m: &MsgBuf) -> KernReturn {
    assert!(m.len() >= dev::REPLY_HEADER_SIZE);
    KernReturn(i32::from_ne_bytes(m.as_bytes()[40..44].try_into().unwrap()))
}

#[test]
fn malformed_requests_get_mig_errors_and_the_server_goes_on() {
    let f = fixture();
    let c = Client::new(&f.client);
    let d = c.open(f.master, Mode::READ | Mode::WRITE, "ram0").unwrap();

    // Unknown id.
    let m = Builder::new(Header {
        remote: d,
        id: 2899,
        ..Header::default()
    })
    .finish();
    assert_eq!(
        reply_code(&raw_rpc(&f.client, m).unwrap()),
        KernReturn::MIG_BAD_ID
    );
    // device_read with a wrong size (a missing argument).
    let mut m = dev::read_request(d, PortName::NULL, false, 0, 512);
    let short = m.len() - 16;
    m.resize(short);
    let mut h = m.header().unwrap();
    h.size = short as u32;
    h.write(m.as_bytes_mut());
    assert_eq!(
        reply_code(&raw_rpc(&f.client, m).unwrap()),
        KernReturn::MIG_BAD_ARGUMENTS
    );
    // A wrong type descriptor (recnum sent as a 32-bit integer).
    let mut b = Builder::new(Header {
        remote: d,
        id: dev::ID_READ,
        ..Header::default()
    });
    b.int32(0).int32(0).int32(0);
    let mut m = b.finish();
    m.resize(80);
    let mut h = m.header().unwrap();
    h.size = 80;
    h.write(m.as_bytes_mut());
    assert_eq!(
        reply_code(&raw_rpc(&f.client, m).unwrap()),
        KernReturn::MIG_BAD_ARGUMENTS
    );
    // device_write whose data is inline rather than out of line.
    let mut b = Builder::new(Header {
        remote: d,
        id: dev::ID_WRITE,
        ..Header::default()
    });
    b.int32(0).int64(0).bytes_inline(&[0; 8], true);
    assert_eq!(
        reply_code(&raw_rpc(&f.client, b.finish()).unwrap()),
        KernReturn::MIG_BAD_ARGUMENTS
    );
    // Inband write claiming more data than fits.
    let mut m = dev::write_inband_request(d, PortName::NULL, 0, &[1; 8]);
    let b = m.as_bytes_mut();
    b[68..72].copy_from_slice(&4096u32.to_ne_bytes());
    assert_eq!(
        reply_code(&raw_rpc(&f.client, m).unwrap()),
        KernReturn::MIG_BAD_ARGUMENTS
    );
    // A request carrying a port right to a routine that does not take one
    // is refused and the right is released.
    let own = f.client.port_allocate(Right::Receive).unwrap();
    let mut b = Builder::new(Header {
        remote: d,
        id: dev::ID_CLOSE,
        ..Header::default()
    });
    b.port(own, tn::MAKE_SEND);
    assert_eq!(
        reply_code(&raw_rpc(&f.client, b.finish()).unwrap()),
        KernReturn::MIG_BAD_ARGUMENTS
    );
    // A request without a reply port gets no reply, and nothing breaks.
    let m = dev::read_request(d, PortName::NULL, false, 0, 512);
    let mut m2 = m.clone();
    let mut h = m2.header().unwrap();
    h.bits = msg::bits(tn::COPY_SEND, 0);
    h.write(m2.as_bytes_mut());
    let len = m2.len() as u32;
    // SAFETY: valid buffer.
    unsafe {
        f.client.mach_msg(
            m2.as_mut_ptr(),
            option::SEND_MSG,
            len,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    }
    .result()
    .unwrap();

    // Still serving.
    assert_eq!(c.read(d, 0, 512).unwrap().len(), 512);
}

#[test]
fn unknown_names_go_to_the_next_master() {
    let kernel = Kernel::new();
    // The "kernel's" device master: a second server with its own driver.
    let lower = fixture_with(None, None, Some(Arc::clone(&kernel)));
    let upper_task = Arc::new(kernel.new_task());
    let next = lower
        .server_task
        .give_send_right(lower.server.master_port(), &upper_task)
        .unwrap();

    struct Null;
    impl Driver for Null {
        fn claims(&self, name: &str) -> bool {
            name == "null"
        }
        fn open(&self, _: &str, _: Mode) -> Result<Arc<dyn Device>, KernReturn> {
            Err(KernReturn::D_DEVICE_DOWN)
        }
    }
    let ipc: Arc<dyn Ipc> = upper_task.clone();
    let upper =
        DeviceServer::new(ipc, vec![Arc::new(Null)], Some(next), PoolConfig::default()).unwrap();
    upper.start();
    let client = kernel.new_task();
    let master = upper_task
        .give_send_right(upper.master_port(), &client)
        .unwrap();
    let c = Client::new(&client);
    assert_eq!(
        c.open(master, Mode::READ, "null"),
        Err(KernReturn::D_DEVICE_DOWN)
    );
    // "ram0" is the lower server's: the port it made comes back through.
    let d = c.open(master, Mode::READ, "ram0").unwrap();
    assert_eq!(c.read(d, 0, 16).unwrap(), (0..16).collect::<Vec<u8>>());
    assert_eq!(lower.server.open_count(), 1);
    assert_eq!(upper.open_count(), 0);
    assert_eq!(
        c.open(master, Mode::READ, "nope"),
        Err(KernReturn::D_NO_SUCH_DEVICE)
    );
}

#[test]
fn a_slow_request_delays_neither_opens_nor_other_devices_with_32_clients() {
    let f = Arc::new(fixture());
    let slow_client = f.kernel.new_task();
    let slow_master = f
        .server_task
        .give_send_right(f.server.master_port(), &slow_client)
        .unwrap();
    let slow = Client::new(&slow_client)
        .open(slow_master, Mode::READ, "ram-slow")
        .unwrap();
    let slow_started = Arc::new(Barrier::new(2));
    let s2 = Arc::clone(&slow_started);
    let slow_thread = std::thread::spawn(move || {
        s2.wait();
        let t0 = Instant::now();
        Client::new(&slow_client).read(slow, 0, 512).unwrap();
        t0.elapsed()
    });
    slow_started.wait();
    std::thread::sleep(Duration::from_millis(50));

    // 32 clients, each its own task: open a device and do I/O while the
    // slow read is in progress.
    let workers: Vec<_> = (0..32)
        .map(|i| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                let t = f.kernel.new_task();
                let master = f
                    .server_task
                    .give_send_right(f.server.master_port(), &t)
                    .unwrap();
                let c = Client::new(&t);
                let t0 = Instant::now();
                let d = c.open(master, Mode::READ | Mode::WRITE, "ram0").unwrap();
                let open_time = t0.elapsed();
                let rec = 1000 + i as u64 * 8;
                let data = vec![i as u8; 4096];
                assert_eq!(c.write(d, rec, &data).unwrap(), 4096);
                assert_eq!(c.read(d, rec, 4096).unwrap(), data);
                (open_time, t0.elapsed())
            })
        })
        .collect();
    let times: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let slow_time = slow_thread.join().unwrap();
    let worst = times.iter().map(|t| t.1).max().unwrap();
    assert!(slow_time >= SLOW);
    assert!(
        worst < SLOW * 3 / 4,
        "a client waited {worst:?} behind the slow read"
    );
    assert!(f.server.thread_count() >= 2);
}

#[cfg(feature = "loopback")]
#[test]
fn a_local_server_runs_rpcs_on_the_callers_thread_unless_told_not_to() {
    use machdev::loopback::LocalServer;
    for handoff in [true, false] {
        let driver = Arc::new(RamDriver {
            data: Arc::new(Mutex::new(vec![0; 1 << 20])),
            opens: Arc::new(AtomicUsize::new(0)),
            closes: Arc::new(AtomicUsize::new(0)),
        });
        let local = LocalServer::start_with(vec![driver], PoolConfig::default(), handoff).unwrap();
        let (task, master) = local.client().unwrap();
        let k = local.kernel();
        wait_until("a worker receives", || k.stats().waiting > 0);
        let c = Client::new(&task);
        let d = c.open(master, Mode::READ | Mode::WRITE, "ram0").unwrap();
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 3) as u8).collect();
        assert_eq!(c.write(d, 8, &data).unwrap(), 8192);
        assert_eq!(c.read(d, 8, 8192).unwrap(), data);
        c.close(d).unwrap();
        // Open, write, read and close: four requests, each handed off to
        // a waiting worker, or each received by one.
        assert_eq!(k.stats().handoffs, if handoff { 4 } else { 0 }, "{handoff}");
        assert_eq!(local.server().open_count(), 0);
    }
}
