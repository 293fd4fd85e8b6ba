//! The bootstrap chain over the loopback kernel: a parent link (the
//! kernel's side of the chain), this server in the middle, and the next
//! task (ext2fs's part) above it.

#![allow(
    clippy::items_after_statements,
    clippy::too_many_lines,
    clippy::needless_pass_by_value,
    clippy::doc_markdown
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mach::ipc::{Ipc, option};
use mach::loopback::{Kernel, Task};
use mach::msg::{Builder, Header, MsgBuf};
use mach::port::{Right, type_name as tn};
use mach::{KernReturn, PortName};
use machdev::boot::{HURD_EBUSY, HURD_EOPNOTSUPP};
use machdev::{BootHost, Chain, Device, DeviceServer, Driver, Mode, PoolConfig};
use mig_bindings::device::Client;
use mig_bindings::rpc::{ReplyTo, reply_to, rpc, simple_reply};
use mig_bindings::{device as dev, fsys, startup};

struct Disk;

impl Device for Disk {
    fn read(&self, _: u64, len: usize) -> Result<Vec<u8>, KernReturn> {
        Ok(vec![7; len])
    }

    fn write(&self, _: u64, data: &[u8]) -> Result<usize, KernReturn> {
        Ok(data.len())
    }
}

/// Claims names with a prefix; counts syncs.
struct Disks {
    prefix: &'static str,
    syncs: Arc<AtomicUsize>,
}

impl Driver for Disks {
    fn claims(&self, name: &str) -> bool {
        name.starts_with(self.prefix)
    }

    fn open(&self, _: &str, _: Mode) -> Result<Arc<dyn Device>, KernReturn> {
        Ok(Arc::new(Disk))
    }

    fn sync(&self) {
        self.syncs.fetch_add(1, Ordering::SeqCst);
    }
}

fn send(t: &Task, mut m: MsgBuf) {
    let len = m.len() as u32;
    // SAFETY: a complete message.
    unsafe {
        t.mach_msg(
            m.as_mut_ptr(),
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
}

/// The parent link: answers fsys_getpriv, fsys_startup and fsys_init on
/// `control` until it is destroyed; records fsys_init.
fn parent_loop(
    t: Arc<Task>,
    control: PortName,
    host: PortName,
    master: PortName,
    realnode: PortName,
    inits: Arc<Mutex<Vec<(PortName, PortName)>>>,
) {
    let mut buf = MsgBuf::zeroed(8192);
    loop {
        // SAFETY: a valid buffer.
        let r = unsafe {
            t.mach_msg(
                buf.as_mut_ptr(),
                option::RCV_MSG,
                0,
                8192,
                control,
                0,
                PortName::NULL,
            )
        };
        if r != KernReturn::SUCCESS {
            return;
        }
        let h = buf.header().unwrap();
        let to: ReplyTo = reply_to(&h).unwrap();
        let reply = match fsys::decode_request(buf.as_bytes()).unwrap() {
            fsys::Request::Getpriv => fsys::getpriv_reply(
                &to,
                [
                    (host, tn::MAKE_SEND),
                    (master, tn::COPY_SEND),
                    (PortName::NULL, tn::COPY_SEND),
                ],
            ),
            fsys::Request::Startup { .. } => fsys::startup_reply(&to, realnode, tn::MAKE_SEND),
            fsys::Request::Init { proc_server, auth } => {
                inits.lock().unwrap().push((proc_server, auth));
                simple_reply(&to)
            }
            other => panic!("parent got {other:?}"),
        };
        send(&t, reply);
    }
}

struct RecordingHost {
    calls: Mutex<Vec<PortName>>,
}

impl BootHost for RecordingHost {
    fn system_initialized(
        &self,
        _proc: PortName,
        _auth: PortName,
        sync_port: PortName,
    ) -> Result<(), KernReturn> {
        self.calls.lock().unwrap().push(sync_port);
        Ok(())
    }
}

#[test]
fn a_middle_link_serves_the_next_task_and_forwards_up_the_chain() {
    let kernel = Kernel::new();

    // The parent: a fake host port, a lower device master ("lower*"), a
    // control port and the real node it gives out.
    let parent = Arc::new(kernel.new_task());
    let host = parent.port_allocate(Right::Receive).unwrap();
    let lower_syncs = Arc::new(AtomicUsize::new(0));
    let lower_ipc: Arc<dyn Ipc> = parent.clone();
    let lower = DeviceServer::new(
        lower_ipc,
        vec![Arc::new(Disks {
            prefix: "lower",
            syncs: lower_syncs,
        })],
        None,
        PoolConfig::default(),
    )
    .unwrap();
    lower.start();
    let lower_master_send = {
        // A send right in the parent's own space to hand out by COPY_SEND.
        let helper = kernel.new_task();
        let n = parent
            .give_send_right(lower.master_port(), &helper)
            .unwrap();
        helper.give_send_right(n, &parent).unwrap()
    };
    let parent_control = parent.port_allocate(Right::Receive).unwrap();
    let realnode = parent.port_allocate(Right::Receive).unwrap();
    let inits = Arc::new(Mutex::new(Vec::new()));
    {
        let (p, i) = (Arc::clone(&parent), Arc::clone(&inits));
        std::thread::spawn(move || {
            parent_loop(p, parent_control, host, lower_master_send, realnode, i);
        });
    }

    // This server: its bootstrap port is the parent's control port; it
    // learns the host port and the next master through fsys_getpriv.
    let me = Arc::new(kernel.new_task());
    let bootstrap = parent.give_send_right(parent_control, &me).unwrap();
    let m = rpc(&*me, |r| fsys::getpriv_request(bootstrap, r)).unwrap();
    let [host_priv, next_master, _] = fsys::decode_getpriv_reply(m.as_bytes()).unwrap();
    assert!(host_priv.is_valid() && next_master.is_valid());
    let syncs = Arc::new(AtomicUsize::new(0));
    let ipc: Arc<dyn Ipc> = me.clone();
    let server = DeviceServer::new(
        ipc,
        vec![Arc::new(Disks {
            prefix: "wd",
            syncs: Arc::clone(&syncs),
        })],
        Some(next_master),
        PoolConfig::default(),
    )
    .unwrap();
    let boot_host = Arc::new(RecordingHost {
        calls: Mutex::new(Vec::new()),
    });
    let control = server
        .add_control_port(
            Chain {
                bootstrap: Some(bootstrap),
                host_priv: Some(host_priv),
            },
            Some(boot_host.clone()),
        )
        .unwrap();
    server.start();

    // The next task gets our control port as its bootstrap port.
    let next = kernel.new_task();
    let its_bootstrap = me.give_send_right(control, &next).unwrap();

    // fsys_getpriv: the real host port, and OUR master as device master.
    let m = rpc(&next, |r| fsys::getpriv_request(its_bootstrap, r)).unwrap();
    let [its_host, its_master, _] = fsys::decode_getpriv_reply(m.as_bytes()).unwrap();
    assert!(its_host.is_valid());
    let c = Client::new(&next);
    let wd = c.open(its_master, Mode::READ, "wd0").unwrap();
    assert_eq!(c.read(wd, 0, 4).unwrap(), vec![7; 4]);
    assert_eq!(server.open_count(), 1);
    // Names this server does not know go down the chain.
    let low = c.open(its_master, Mode::READ, "lower3").unwrap();
    assert_eq!(c.read(low, 0, 2).unwrap(), vec![7; 2]);
    assert_eq!(lower.open_count(), 1);

    // fsys_startup goes up to the parent, whose real node comes back.
    let its_control = next.port_allocate(Right::Receive).unwrap();
    let m = rpc(&next, |r| {
        fsys::startup_request(its_bootstrap, r, 0, its_control, tn::MAKE_SEND)
    })
    .unwrap();
    let node = fsys::decode_startup_reply(m.as_bytes()).unwrap();
    assert!(node.is_valid());
    let probe = Builder::new(Header {
        bits: mach::msg::bits(tn::COPY_SEND, 0),
        remote: node,
        id: 4242,
        ..Header::default()
    })
    .finish();
    send(&next, probe);
    let mut got = MsgBuf::zeroed(256);
    // SAFETY: a valid buffer.
    unsafe {
        parent.mach_msg(
            got.as_mut_ptr(),
            option::RCV_MSG | option::RCV_TIMEOUT,
            0,
            256,
            realnode,
            2000,
            PortName::NULL,
        )
    }
    .result()
    .unwrap();
    assert_eq!(
        got.header().unwrap().id,
        4242,
        "the real node is the parent's"
    );

    // fsys_init goes up too, then the host registers us with startup.
    let (proc_port, auth_port) = (
        next.port_allocate(Right::Receive).unwrap(),
        next.port_allocate(Right::Receive).unwrap(),
    );
    let m = rpc(&next, |r| {
        fsys::init_request(
            its_bootstrap,
            r,
            (proc_port, tn::MAKE_SEND),
            (auth_port, tn::MAKE_SEND),
        )
    })
    .unwrap();
    dev::decode_simple_reply(m.as_bytes(), fsys::ID_INIT).unwrap();
    assert_eq!(inits.lock().unwrap().len(), 1);
    let sync_port = boot_host.calls.lock().unwrap()[0];

    // The startup server's startup_dosync reaches every driver.
    let startup_task = kernel.new_task();
    let to_sync = me.give_send_right(sync_port, &startup_task).unwrap();
    let m = rpc(&startup_task, |r| {
        Builder::new(Header::request(to_sync, r, startup::ID_DOSYNC)).finish()
    })
    .unwrap();
    dev::decode_simple_reply(m.as_bytes(), startup::ID_DOSYNC).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), 1);

    // fsys_syncfs syncs too; fsys_goaway is refused; the rest of fsys is
    // not provided; malformed requests get MIG's answer.
    let m = rpc(&next, |r| {
        fsys::syncfs_request(its_bootstrap, r, true, false)
    })
    .unwrap();
    dev::decode_simple_reply(m.as_bytes(), fsys::ID_SYNCFS).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), 2);
    let mut goaway = Builder::new(Header::request(
        its_bootstrap,
        PortName::NULL,
        fsys::ID_GOAWAY,
    ));
    goaway.int32(0);
    let m = rpc(&next, |r| {
        let mut m = goaway.finish();
        let mut h = m.header().unwrap();
        h.local = r;
        h.write(m.as_bytes_mut());
        m
    })
    .unwrap();
    assert_eq!(
        dev::decode_simple_reply(m.as_bytes(), fsys::ID_GOAWAY),
        Err(HURD_EBUSY)
    );
    let m = rpc(&next, |r| {
        Builder::new(Header::request(its_bootstrap, r, fsys::ID_GETROOT)).finish()
    })
    .unwrap();
    assert_eq!(
        dev::decode_simple_reply(m.as_bytes(), fsys::ID_GETROOT),
        Err(KernReturn::MIG_BAD_ARGUMENTS)
    );
    // fsys_getfile (22003) is not provided.
    let m = rpc(&next, |r| {
        Builder::new(Header::request(its_bootstrap, r, 22003)).finish()
    })
    .unwrap();
    assert_eq!(
        dev::decode_simple_reply(m.as_bytes(), 22003),
        Err(HURD_EOPNOTSUPP)
    );
    let m = rpc(&next, |r| {
        let mut b = Builder::new(Header::request(its_bootstrap, r, fsys::ID_GETPRIV));
        b.int32(1);
        b.finish()
    })
    .unwrap();
    assert_eq!(
        dev::decode_simple_reply(m.as_bytes(), fsys::ID_GETPRIV),
        Err(KernReturn::MIG_BAD_ARGUMENTS)
    );
    // Device calls on the control port are not fsys: MIG_BAD_ID.
    assert_eq!(c.read(its_bootstrap, 0, 4), Err(KernReturn::MIG_BAD_ID));
}

#[test]
fn a_lookup_of_the_translated_node_gives_a_device_master() {
    let kernel = Kernel::new();
    let me = Arc::new(kernel.new_task());
    let ipc: Arc<dyn Ipc> = me.clone();
    let syncs = Arc::new(AtomicUsize::new(0));
    let server = DeviceServer::new(
        ipc,
        vec![Arc::new(Disks {
            prefix: "wd",
            syncs,
        })],
        None,
        PoolConfig::default(),
    )
    .unwrap();
    let control = server.add_control_port(Chain::default(), None).unwrap();
    server.start();
    // The parent file system forwards a lookup of /dev/rumpdisk.
    let fs = kernel.new_task();
    let to_control = me.give_send_right(control, &fs).unwrap();
    let dotdot = fs.port_allocate(Right::Receive).unwrap();
    let m = rpc(&fs, |r| {
        fsys::getroot_request(to_control, r, (dotdot, tn::MAKE_SEND), 0)
    })
    .unwrap();
    let (retry, name, node) = fsys::decode_getroot_reply(m.as_bytes()).unwrap();
    assert_eq!(
        (retry, name.as_str()),
        (mig_bindings::fs::FS_RETRY_NORMAL, "")
    );
    // What the lookup returned is a device master.
    let c = Client::new(&fs);
    let d = c.open(node, Mode::READ, "wd0").unwrap();
    assert_eq!(c.read(d, 0, 3).unwrap(), vec![7; 3]);
}

#[test]
fn the_top_of_a_chain_answers_startup_itself() {
    let kernel = Kernel::new();
    let me = Arc::new(kernel.new_task());
    let ipc: Arc<dyn Ipc> = me.clone();
    let server = DeviceServer::new(ipc, Vec::new(), None, PoolConfig::default()).unwrap();
    let control = server.add_control_port(Chain::default(), None).unwrap();
    server.start();
    let next = kernel.new_task();
    let b = me.give_send_right(control, &next).unwrap();
    let own = next.port_allocate(Right::Receive).unwrap();
    let m = rpc(&next, |r| {
        fsys::startup_request(b, r, 0, own, tn::MAKE_SEND)
    })
    .unwrap();
    assert_eq!(
        fsys::decode_startup_reply(m.as_bytes()),
        Err(HURD_EOPNOTSUPP)
    );
    // Without a host port, getpriv still hands out the master.
    let m = rpc(&next, |r| fsys::getpriv_request(b, r)).unwrap();
    let [host, master, _] = fsys::decode_getpriv_reply(m.as_bytes()).unwrap();
    assert_eq!(host, PortName::NULL);
    assert!(master.is_valid());
    assert_eq!(
        Client::new(&next).open(master, Mode::READ, "wd0"),
        Err(KernReturn::D_NO_SUCH_DEVICE)
    );
}
