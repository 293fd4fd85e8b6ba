//! The bytes on the wire are MIG's, both ways: MIG-generated user stubs
//! drive the Rust device server, and the Rust client drives MIG-generated
//! server stubs, over the loopback kernel. `device_set_filter` goes both
//! ways too, and the `net_rcv_msg` of a frame is GNU Mach's, byte for
//! byte, as C compiles `struct net_rcv_msg` and as pfinet reads it.

use std::sync::{Arc, Mutex};

use mach::KernReturn;
#[cfg(mig_stubs)]
use mach::PortName;
#[cfg(mig_stubs)]
use mach::ipc::Ipc;
#[cfg(mig_stubs)]
use mach::loopback::Kernel;
#[cfg(mig_stubs)]
use mach::port::Right;
#[cfg(mig_stubs)]
use mach::port::type_name as tn;
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

/// Receives one message on `port` of `task` into `buf`.
#[cfg(mig_stubs)]
fn receive(task: &dyn Ipc, port: PortName, buf: &mut mach::msg::MsgBuf) -> KernReturn {
    buf.resize(8192);
    // SAFETY: `buf` is 8192 writable, aligned bytes.
    let kr = unsafe {
        task.mach_msg(
            buf.as_mut_ptr(),
            mach::ipc::option::RCV_MSG | mach::ipc::option::RCV_TIMEOUT,
            0,
            8192,
            port,
            10_000,
            PortName::NULL,
        )
    };
    if kr == KernReturn::SUCCESS {
        let size = buf.header().unwrap().size as usize;
        buf.resize(size);
    }
    kr
}

/// Sends the complete message `m` from `task`.
#[cfg(mig_stubs)]
fn send(task: &dyn Ipc, m: &mut mach::msg::MsgBuf, len: usize) -> KernReturn {
    // SAFETY: `m` holds a complete message of `len` bytes.
    unsafe {
        task.mach_msg(
            m.as_mut_ptr(),
            mach::ipc::option::SEND_MSG | mach::ipc::option::SEND_TIMEOUT,
            len as u32,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    }
}

#[test]
fn mig_set_filter_user_stub_reaches_the_rust_decoder() {
    #[cfg(not(mig_stubs))]
    println!("skipped: MIG toolchain not installed (run mig-bindings/setup-mig.sh)");
    #[cfg(mig_stubs)]
    {
        use mig_bindings::device::{self as dev, Request};
        use mig_bindings::net;

        let kernel = Kernel::new();
        let server_task = Arc::new(kernel.new_task());
        let port = server_task.port_allocate(Right::Receive).unwrap();
        let client = Arc::new(kernel.new_task());
        let device = server_task.give_send_right(port, &client).unwrap();
        let rcv = client.port_allocate(Right::Receive).unwrap();
        let frame = mig_interop_tests::test_frame();
        let bpf = mig_interop_tests::bpf_program();

        let st = Arc::clone(&server_task);
        let (f, program) = (frame.clone(), bpf.clone());
        let server = std::thread::spawn(move || {
            let mut m = mach::msg::MsgBuf::new();
            let mut out = net::net_rcv_buffer();
            let mut seen = Vec::new();
            for _ in 0..4 {
                assert_eq!(receive(&*st, port, &mut m), KernReturn::SUCCESS);
                let bytes = m.as_bytes();
                let to = dev::reply_to(&m.header().unwrap()).expect("a reply port");
                let reply = match dev::decode_request(bytes) {
                    Ok(req) => {
                        let Request::SetFilter {
                            port: right,
                            priority,
                            ref filter,
                        } = req
                        else {
                            panic!("decoded {req:?}")
                        };
                        assert!(right.is_valid());
                        // Laid out as the Rust builder lays it out (but
                        // for the priority's padding, which MIG's stub
                        // leaves as it finds it).
                        let built = dev::set_filter_request(
                            port,
                            PortName::NULL,
                            right,
                            tn::MAKE_SEND,
                            priority,
                            filter,
                        );
                        assert_eq!(built.len(), bytes.len());
                        assert_eq!(built.as_bytes()[40..60], bytes[40..60]);
                        assert_eq!(built.as_bytes()[64..], bytes[64..]);
                        if *filter == program {
                            // The right works: the frame goes to the client.
                            let size = net::write_net_rcv_msg(
                                &mut out,
                                right,
                                &f[..net::ETHER_HEADER],
                                [f[12], f[13]],
                                &f[net::ETHER_HEADER..],
                            );
                            assert_eq!(send(&*st, &mut out, size), KernReturn::SUCCESS);
                        }
                        seen.push(Ok((priority, filter.clone())));
                        req.release(&*st);
                        // Released: the name is gone.
                        assert_ne!(st.port_deallocate(right), KernReturn::SUCCESS);
                        dev::simple_reply(&to)
                    }
                    Err(code) => {
                        dev::destroy_request_resources(&*st, bytes);
                        seen.push(Err(code));
                        dev::error_reply(&to, code)
                    }
                };
                let mut reply = reply;
                let len = reply.len();
                assert_eq!(send(&*st, &mut reply, len), KernReturn::SUCCESS);
            }
            seen
        });

        let failures = mig_interop_tests::run_set_filter_user(&client, device, rcv, &frame);
        assert_eq!(
            failures, 0,
            "device_set_filter checks failed (details above)"
        );
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            vec![
                Ok((mig_interop_tests::filter_priority(), bpf.clone())),
                Err(KernReturn::MIG_BAD_ARGUMENTS),
                Err(KernReturn::MIG_BAD_ARGUMENTS),
                Ok((
                    net::NET_PRI_MAX,
                    (0..net::NET_MAX_FILTER).map(|i| (i * 257) as u16).collect()
                )),
            ]
        );
        // The program is pfinet's BPF filter: a NETF_BPF | NETF_IN header
        // and 6 instructions of 4 words, the first a 16-bit load at
        // offset 12 (BPF_LD | BPF_H | BPF_ABS).
        assert_eq!((bpf.len(), bpf[0], bpf[4], bpf[6]), (28, 0x0401, 0x28, 12));
        assert_eq!(
            server_task.port_mod_refs(port, Right::Receive, -1),
            KernReturn::SUCCESS
        );
    }
}

#[test]
fn rust_set_filter_drives_mig_server_stub() {
    #[cfg(not(mig_stubs))]
    println!("skipped: MIG toolchain not installed (run mig-bindings/setup-mig.sh)");
    #[cfg(mig_stubs)]
    {
        use mig_bindings::device::Client;
        use mig_bindings::net;

        let kernel = Kernel::new();
        let server_task = Arc::new(kernel.new_task());
        let port = server_task.port_allocate(Right::Receive).unwrap();
        let client_task = kernel.new_task();
        let device = server_task.give_send_right(port, &client_task).unwrap();
        let st = Arc::clone(&server_task);
        let server = std::thread::spawn(move || mig_interop_tests::run_server_stubs(&st, port));

        let c = Client::new(&client_task);
        let rcv = client_task.port_allocate(Right::Receive).unwrap();
        let bpf = mig_interop_tests::bpf_program();
        let priority = mig_interop_tests::filter_priority();
        c.set_filter(device, rcv, tn::MAKE_SEND, priority, &bpf)
            .unwrap();
        // The C server sent the test frame on the right it got, built as
        // GNU Mach's net_deliver builds it.
        let mut m = mach::msg::MsgBuf::new();
        assert_eq!(receive(&client_task, rcv, &mut m), KernReturn::SUCCESS);
        let frame = mig_interop_tests::test_frame();
        let got = net::decode_net_rcv_msg(m.as_bytes()).unwrap();
        assert_eq!(got.header[..net::ETHER_HEADER], frame[..net::ETHER_HEADER]);
        assert!(got.header[net::ETHER_HEADER..].iter().all(|&b| b == 0));
        assert_eq!(got.packet_type, [0x08, 0x00]);
        assert_eq!(usize::from(got.packet_header_len), frame.len() - 14 + 4);
        assert_eq!(got.payload, &frame[net::ETHER_HEADER..]);
        assert_eq!(m.len(), net::net_rcv_msg_size(frame.len() - 14 + 4));

        // What the C routine refuses, and what the stubs refuse.
        assert_eq!(
            c.set_filter(device, rcv, tn::MAKE_SEND, priority + 1, &bpf),
            Err(KernReturn::D_INVALID_OPERATION)
        );
        assert_eq!(
            c.set_filter(device, rcv, tn::MAKE_SEND, priority, &bpf[..4]),
            Err(KernReturn::D_INVALID_OPERATION)
        );
        assert_eq!(
            c.set_filter(device, rcv, tn::PORT_NAME, priority, &bpf),
            Err(KernReturn::MIG_BAD_ARGUMENTS)
        );
        assert_eq!(
            c.set_filter(device, rcv, tn::MAKE_SEND_ONCE, priority, &bpf),
            Err(KernReturn::MIG_BAD_ARGUMENTS)
        );
        assert_eq!(
            c.set_filter(device, rcv, tn::MAKE_SEND, priority, &[0; 129]),
            Err(KernReturn::MIG_ARRAY_TOO_LARGE)
        );

        assert_eq!(
            server_task.port_mod_refs(port, Right::Receive, -1),
            KernReturn::SUCCESS
        );
        assert_eq!(server.join().unwrap(), KernReturn::SUCCESS);
    }
}

#[test]
fn net_rcv_msg_layout_is_gnu_machs() {
    #[cfg(not(mig_stubs))]
    println!("skipped: MIG toolchain not installed (run mig-bindings/setup-mig.sh)");
    #[cfg(mig_stubs)]
    {
        use mig_bindings::net;

        assert_eq!(
            mig_interop_tests::net_layout(),
            [
                net::HEADER_TYPE_OFFSET,
                net::HEADER_OFFSET,
                net::PACKET_TYPE_OFFSET,
                net::PACKET_OFFSET,
                net::PACKET_OFFSET + net::NET_RCV_MAX + 1,
                net::NET_RCV_MSG_SIZE,
                net::PACKET_HEADER_SIZE,
                2,
            ]
        );
        for count in 0..=net::NET_RCV_MAX {
            assert_eq!(
                net::net_rcv_msg_size(count),
                mig_interop_tests::net_rcv_size(count as u32),
                "count {count}"
            );
        }
        assert_eq!(net::NET_RCV_MSG_MAX, net::NET_RCV_MSG_SIZE);
        assert_eq!(
            mig_interop_tests::net_constants(),
            [
                i64::from(net::NET_STATUS),
                i64::from(net::NET_ADDRESS),
                i64::from(net::NET_DSTADDR),
                i64::from(net::NET_FLAGS),
                net::NET_STATUS_COUNT as i64,
                i64::from(net::HDR_ETHERNET),
                i64::from(net::NET_HI_PRI),
                i64::from(net::NET_PRI_MAX),
                net::NET_RCV_MAX as i64,
                net::NET_HDW_HDR_MAX as i64,
                i64::from(net::NET_RCV_MSG_ID),
                net::NET_MAX_FILTER as i64,
                4 * net::NET_STATUS_COUNT as i64,
            ]
        );
    }
}

#[test]
fn net_rcv_msg_is_byte_for_byte_net_delivers_and_pfinet_reads_it() {
    #[cfg(not(mig_stubs))]
    println!("skipped: MIG toolchain not installed (run mig-bindings/setup-mig.sh)");
    #[cfg(mig_stubs)]
    {
        use mig_bindings::net;

        let dest = PortName(0x1234);
        let mut buf = net::net_rcv_buffer();
        for payload in [0usize, 1, 3, 4, 5, 28, 46, 47, 100, 1500, 4090, 4091] {
            let frame: Vec<u8> = (0..14 + payload).map(|i| (i * 7 + payload) as u8).collect();
            let (hdr, body) = frame.split_at(net::ETHER_HEADER);
            let size = net::write_net_rcv_msg(&mut buf, dest, hdr, [hdr[12], hdr[13]], body);
            let c = mig_interop_tests::net_build(dest, tn::COPY_SEND, &frame);
            assert_eq!(size, c.len(), "payload {payload}");
            assert_eq!(buf.as_bytes(), c.as_bytes(), "payload {payload}");
            // pfinet's reading of the Rust message.
            let (rebuilt, length, ty) = mig_interop_tests::ethernet_demux(&buf).unwrap();
            assert_eq!(rebuilt, frame);
            assert_eq!(usize::from(length), payload + 4);
            assert_eq!(ty.to_ne_bytes(), [hdr[12], hdr[13]]);
            // The Rust reading of the C message.
            let got = net::decode_net_rcv_msg(c.as_bytes()).unwrap();
            assert_eq!(got.payload, body);
            assert_eq!(got.header[..14], *hdr);
        }
        // Too long for one message: both cut the payload to 4091 bytes and
        // keep the frame's length in the packet header.
        let frame: Vec<u8> = (0..14 + 5000).map(|i| i as u8).collect();
        let (hdr, body) = frame.split_at(net::ETHER_HEADER);
        let size = net::write_net_rcv_msg(&mut buf, dest, hdr, [hdr[12], hdr[13]], body);
        let c = mig_interop_tests::net_build(dest, tn::COPY_SEND, &frame);
        assert_eq!(buf.as_bytes()[..size], *c.as_bytes());
        let (rebuilt, length, _) = mig_interop_tests::ethernet_demux(&buf).unwrap();
        assert_eq!(rebuilt, frame[..14 + net::MAX_PAYLOAD]);
        assert_eq!(length, 5004);
        // Another id is not the demuxer's.
        let mut other = buf.clone();
        other.as_bytes_mut()[28..32].copy_from_slice(&2998i32.to_ne_bytes());
        assert_eq!(mig_interop_tests::ethernet_demux(&other), Err(-1));
    }
}
