//! The bytes on the wire are MIG's, both ways: MIG-generated user stubs
//! drive the Rust device server, and the Rust client drives MIG-generated
//! server stubs, over the loopback kernel.

use std::sync::{Arc, Mutex};

use mach::KernReturn;
#[cfg(mig_stubs)]
use mach::ipc::Ipc;
#[cfg(mig_stubs)]
use mach::loopback::Kernel;
#[cfg(mig_stubs)]
use mach::port::Right;
use machdev::{Device, Driver, Mode};

/// A 1 MiB RAM disk with 512-byte records and `DEV_GET_SIZE`.
struct Ram(Arc<Mutex<Vec<u8>>>);

impl Device for Ram {
    fn read(&self, recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        let d = self.0.lock().unwrap();
        let start = usize::try_from(recnum)
            .ok()
            .and_then(|r| r.checked_mul(512))
            .filter(|s| s + len <= d.len());
        start
            .map(|s| d[s..s + len].to_vec())
            .ok_or(KernReturn::D_INVALID_RECNUM)
    }

    fn write(&self, recnum: u64, data: &[u8]) -> Result<usize, KernReturn> {
        let mut d = self.0.lock().unwrap();
        let len = d.len();
        let start = usize::try_from(recnum)
            .ok()
            .and_then(|r| r.checked_mul(512))
            .filter(|s| s + data.len() <= len);
        let s = start.ok_or(KernReturn::D_INVALID_RECNUM)?;
        d[s..s + data.len()].copy_from_slice(data);
        Ok(data.len())
    }

    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        if flavor == 0 && max >= 2 {
            Ok(vec![self.0.lock().unwrap().len() as i32, 512])
        } else {
            Err(KernReturn::D_INVALID_OPERATION)
        }
    }

    fn set_status(&self, flavor: u32, status: &[i32]) -> Result<(), KernReturn> {
        if flavor == 7 && status.len() == 3 {
            Ok(())
        } else {
            Err(KernReturn::D_INVALID_OPERATION)
        }
    }
}

struct RamDriver(Arc<Mutex<Vec<u8>>>);

impl Driver for RamDriver {
    fn claims(&self, name: &str) -> bool {
        name.starts_with("ram")
    }

    fn open(&self, _: &str, _: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        Ok(Arc::new(Ram(Arc::clone(&self.0))))
    }
}

#[test]
fn mig_user_stubs_drive_the_rust_server() {
    #[cfg(not(mig_stubs))]
    {
        println!("skipped: MIG toolchain not installed (run mig-bindings/setup-mig.sh)");
        let _ = RamDriver(Arc::default());
    }
    #[cfg(mig_stubs)]
    {
        let kernel = Kernel::new();
        let server_task = Arc::new(kernel.new_task());
        let ipc: Arc<dyn Ipc> = server_task.clone();
        let data = Arc::new(Mutex::new(vec![0u8; 1 << 20]));
        let server = machdev::DeviceServer::new(
            ipc,
            vec![Arc::new(RamDriver(Arc::clone(&data)))],
            None,
            machdev::PoolConfig::default(),
        )
        .unwrap();
        server.start();
        let client = Arc::new(kernel.new_task());
        let master = server_task
            .give_send_right(server.master_port(), &client)
            .unwrap();
        let failures = mig_interop_tests::run_user_stubs(&client, master);
        assert_eq!(failures, 0, "MIG user stubs saw failures (details above)");
        // What the stubs wrote is in the device.
        let d = data.lock().unwrap();
        assert!((0..65536).all(|i| d[16 * 512 + i] == (i * 3 + 1) as u8));
        drop(d);
        assert_eq!(server.open_count(), 0, "every open was closed");
    }
}

#[test]
fn rust_client_drives_mig_server_stubs() {
    #[cfg(not(mig_stubs))]
    println!("skipped: MIG toolchain not installed (run mig-bindings/setup-mig.sh)");
    #[cfg(mig_stubs)]
    {
        use mig_bindings::device::Client;

        let kernel = Kernel::new();
        let server_task = Arc::new(kernel.new_task());
        let port = server_task.port_allocate(Right::Receive).unwrap();
        let client_task = kernel.new_task();
        let master = server_task.give_send_right(port, &client_task).unwrap();
        let st = Arc::clone(&server_task);
        let server = std::thread::spawn(move || mig_interop_tests::run_server_stubs(&st, port));

        let c = Client::new(&client_task);
        assert_eq!(
            c.open(master, Mode::READ, "nothing"),
            Err(KernReturn::D_NO_SUCH_DEVICE)
        );
        let d = c.open(master, Mode::READ | Mode::WRITE, "cram").unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        assert_eq!(c.write(d, 8, &payload).unwrap(), payload.len() as i32);
        assert_eq!(c.read(d, 8, payload.len() as i32).unwrap(), payload);
        assert_eq!(c.write_inband(d, 1, b"via MIG").unwrap(), 7);
        assert_eq!(c.read_inband(d, 1, 7).unwrap(), b"via MIG");
        assert_eq!(c.get_status(d, 0, 2).unwrap(), vec![1 << 20, 512]);
        assert_eq!(c.get_status(d, 0, 1), Err(KernReturn::D_INVALID_OPERATION));
        c.set_status(d, 7, &[1, 2, 3]).unwrap();
        assert_eq!(
            c.set_status(d, 7, &[1]),
            Err(KernReturn::D_INVALID_OPERATION)
        );
        assert_eq!(c.read(d, 1 << 30, 512), Err(KernReturn::D_INVALID_RECNUM));
        // A write refused by the server: its out-of-line data is released.
        assert_eq!(
            c.write(d, (1 << 20) / 512, &payload),
            Err(KernReturn::D_INVALID_RECNUM)
        );
        // The interrupt routines, with a port of the client's own.
        let irq_port = client_task.port_allocate(Right::Receive).unwrap();
        c.intr_register(d, 11, 0, irq_port).unwrap();
        c.intr_ack(d, irq_port).unwrap();
        c.intr_ack(d, irq_port).unwrap();
        assert_eq!(
            c.intr_register(d, 11, 1, irq_port),
            Err(KernReturn::D_INVALID_OPERATION)
        );
        assert_eq!(mig_interop_tests::irq_state(), (11, 2));
        c.close(d).unwrap();

        // Stop the server by destroying its port.
        assert_eq!(
            server_task.port_mod_refs(port, Right::Receive, -1),
            KernReturn::SUCCESS
        );
        assert_eq!(server.join().unwrap(), KernReturn::SUCCESS);
    }
}
