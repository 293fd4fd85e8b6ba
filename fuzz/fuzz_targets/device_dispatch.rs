//! Fuzzes the device server's decoder and dispatcher: arbitrary requests
//! (any id, size, header bits, descriptors, ports and out-of-line data)
//! go through the loopback kernel to a server with one open device, which
//! must answer or drop each without panicking, hanging or leaking opens.
//!
//! Input layout: byte 0 picks the destination port, byte 1 the reply
//! disposition, bytes 2..4 the message id, the rest is the body. Port slots
//! and out-of-line addresses in the body are mapped onto real rights and
//! memory, so messages get past the kernel's own checks.

#![no_main]

mod harness;

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use mach::ipc::Ipc;
use mach::loopback::{Kernel, Task};
use mach::msg::MsgBuf;
use mach::port::Right;
use mach::{KernReturn, PortName};
use machdev::{Device, DeviceServer, Driver, Mode, PoolConfig};

struct Ram(Mutex<Vec<u8>>);

impl Device for Ram {
    fn read(&self, recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        let d = self.0.lock().unwrap();
        let s = usize::try_from(recnum).ok().and_then(|r| r.checked_mul(512)).filter(|s| len <= 65536 && s + len <= d.len());
        s.map(|s| d[s..s + len].to_vec()).ok_or(KernReturn::D_INVALID_RECNUM)
    }

    fn write(&self, recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        let mut d = self.0.lock().unwrap();
        let n = d.len();
        let s = usize::try_from(recnum).ok().and_then(|r| r.checked_mul(512)).filter(|s| s + data.len() <= n);
        let s = s.ok_or(KernReturn::D_INVALID_RECNUM)?;
        d[s..s + data.len()].copy_from_slice(data);
        Ok(data.len())
    }

    fn get_status(&self, _flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        Ok(vec![1 << 16; max.min(4)])
    }

    fn set_status(&self, _flavor: u32, _status: &[i32]) -> Result<(), KernReturn> {
        Ok(())
    }
}

struct RamDriver;

impl Driver for RamDriver {
    fn claims(&self, name: &str) -> bool {
        name.starts_with("ram")
    }

    fn open(&self, _: &str, _: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        Ok(Arc::new(Ram(Mutex::new(vec![0; 1 << 16]))))
    }
}

struct World {
    kernel: Arc<Kernel>,
    iterations: u64,
    server: Arc<DeviceServer>,
    client: Task,
    master: PortName,
    device: PortName,
    own: PortName,
    reply: PortName,
    ool: Vec<u8>,
    rcv: MsgBuf,
}

/// Opens "ram0" read-write through the server, on this thread.
fn open_device(server: &DeviceServer, client: &Task, master: PortName, reply: PortName) -> PortName {
    let m = mig_bindings::device::open_request(master, reply, 3, "ram0");
    let r = harness::call(client, m, reply, || server.serve_one(Some(1000)).unwrap());
    mig_bindings::device::decode_open_reply(r.as_bytes()).unwrap()
}

fn world() -> &'static Mutex<World> {
    static W: OnceLock<Mutex<World>> = OnceLock::new();
    W.get_or_init(|| {
        let kernel = Kernel::new();
        let server_task = Arc::new(kernel.new_task());
        let ipc: Arc<dyn Ipc> = server_task.clone();
        let server = DeviceServer::new(ipc, vec![Arc::new(RamDriver)], None, PoolConfig::default()).unwrap();
        let client = kernel.new_task();
        let master = server_task.give_send_right(server.master_port(), &client).unwrap();
        let reply = client.port_allocate(Right::Receive).unwrap();
        let device = open_device(&server, &client, master, reply);
        let own = client.port_allocate(Right::Receive).unwrap();
        std::mem::forget(server_task);
        Mutex::new(World { kernel: Arc::clone(&kernel), iterations: 0, server, client, master, device, own, reply, ool: vec![0x5a; 1 << 16], rcv: MsgBuf::zeroed(8192) })
    })
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 4 || input.len() > 4096 {
        return;
    }
    let mut guard = world().lock().unwrap();
    let w = &mut *guard;
    let dest = if input[0] & 1 == 0 { w.device } else { w.master };
    let id = 2790 + i32::from(u16::from_le_bytes([input[2], input[3]]) % 40);
    let targets = harness::Targets { own: w.own, reply: w.reply, copies: [w.own, w.device, w.master], ool: &w.ool };
    let sent = harness::send(&w.client, input, dest, id, &targets);
    if sent == KernReturn::SUCCESS {
        w.server.serve_one(Some(1000)).expect("the server received what was sent");
    }
    // Notifications the request caused (no-senders of opens it released).
    while w.server.serve_one(Some(0)).is_ok() {}
    // Drain replies and anything else that arrived for the client.
    harness::drain(&w.client, &[w.reply, w.own], &mut w.rcv);
    while w.server.serve_one(Some(0)).is_ok() {}
    if sent == KernReturn::SEND_INVALID_DEST && dest == w.device {
        // A fuzzed device_close ended the open: make a new one.
        let _ = w.client.port_deallocate(w.device);
        w.device = open_device(&w.server, &w.client, w.master, w.reply);
    }
    // Nothing may be left behind: every region freed, no names piling up.
    let stats = w.kernel.stats();
    assert_eq!(stats.vm_regions, 0, "{stats:?}");
    assert!(stats.names < 64 && stats.queued == 0, "{stats:?}");
    w.iterations += 1;
    if w.iterations % 20_000 == 0 {
        eprintln!("after {} runs: {:?}, opens {}", w.iterations, w.kernel.stats(), w.server.open_count());
    }
});
