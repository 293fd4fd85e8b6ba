//! Fuzzes the file server's decoders and dispatcher (`machdev::netfs`):
//! arbitrary io/fs/fsys requests (any id in and around the three
//! subsystems, size, header bits, descriptors, ports, out-of-line data) go
//! through the loopback kernel to a server of a small RAM file system,
//! which must answer or drop each without panicking or hanging, and give
//! back every right, region, protid, identity port and node reference a
//! request made.
//!
//! Input layout: byte 0 picks the destination (root, a file, the control
//! port), byte 1 the reply disposition and the complex bit, bytes 2..4 the
//! message id, the rest is the body (port slots and out-of-line addresses
//! mapped onto real rights and memory by `harness.rs`).

#![no_main]

mod harness;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use mach::ipc::Ipc;
use mach::loopback::{Kernel, Task};
use mach::msg::MsgBuf;
use mach::port::{Right, type_name as tn};
use mach::PortName;
use machdev::PoolConfig;
use machdev::netfs::{Cred, Errno, Made, Netfs, NetfsServer, Node, errno};
use mig_bindings::fs::Statfs;
use mig_bindings::io::Stat;

enum Body {
    Dir(BTreeMap<Vec<u8>, Node>),
    File(Vec<u8>),
    Link(Vec<u8>),
}

struct RNode {
    body: Body,
    mode: u32,
    uid: u32,
    parent: Node,
}

/// A RAM file system counting the node references it handed out.
struct RamFs {
    nodes: Mutex<HashMap<Node, RNode>>,
    next: Mutex<Node>,
    refs: AtomicI64,
}

const ROOT: Node = 1;

impl RamFs {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, RNode { body: Body::Dir(BTreeMap::new()), mode: 0o040_755, uid: 0, parent: ROOT });
        let fs = Self { nodes: Mutex::new(nodes), next: Mutex::new(2), refs: AtomicI64::new(0) };
        let f = fs.add(ROOT, b"file", Body::File(b"contents".repeat(600)), 0o100_644).unwrap();
        fs.add(ROOT, b"link", Body::Link(b"file".to_vec()), 0o120_777).unwrap();
        fs.add(ROOT, b"abs", Body::Link(b"/etc".to_vec()), 0o120_777).unwrap();
        fs.add(ROOT, b"dir", Body::Dir(BTreeMap::new()), 0o040_700).unwrap();
        let _ = f;
        fs
    }

    fn add(&self, dir: Node, name: &[u8], body: Body, mode: u32) -> Result<Node, Errno> {
        let mut nodes = self.nodes.lock().unwrap();
        let id = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            *n
        };
        let Some(RNode { body: Body::Dir(entries), .. }) = nodes.get_mut(&dir) else { return Err(errno::ENOTDIR) };
        if entries.len() > 64 {
            return Err(28);
        }
        if entries.contains_key(name) {
            return Err(errno::EEXIST);
        }
        entries.insert(name.to_vec(), id);
        nodes.insert(id, RNode { body, mode, uid: 0, parent: dir });
        Ok(id)
    }

    fn with<T>(&self, node: Node, f: impl FnOnce(&mut RNode) -> Result<T, Errno>) -> Result<T, Errno> {
        f(self.nodes.lock().unwrap().get_mut(&node).ok_or(errno::ENOENT)?)
    }
}

impl Netfs for RamFs {
    type Open = ();

    fn root(&self) -> Node {
        ROOT
    }
    fn lookup(&self, dir: Node, name: &[u8]) -> Result<(Node, Stat), Errno> {
        let n = self.with(dir, |d| match &d.body {
            Body::Dir(_) if name == b".." => Ok(d.parent),
            Body::Dir(e) => e.get(name).copied().ok_or(errno::ENOENT),
            _ => Err(errno::ENOTDIR),
        })?;
        let st = self.stat(n)?;
        self.refs.fetch_add(1, Ordering::Relaxed);
        Ok((n, st))
    }
    fn retain(&self, _: Node) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }
    fn release(&self, _: Node) {
        self.refs.fetch_sub(1, Ordering::Relaxed);
    }
    fn stat(&self, node: Node) -> Result<Stat, Errno> {
        self.with(node, |n| {
            let size = match &n.body {
                Body::File(d) | Body::Link(d) => d.len() as i64,
                Body::Dir(e) => e.len() as i64,
            };
            Ok(Stat { ino: node, mode: n.mode, uid: n.uid, size, nlink: 1, ..Stat::default() })
        })
    }
    fn fstat(&self, node: Node, (): &()) -> Result<Stat, Errno> {
        self.stat(node)
    }
    fn readlink(&self, node: Node) -> Result<Vec<u8>, Errno> {
        self.with(node, |n| match &n.body {
            Body::Link(t) => Ok(t.clone()),
            _ => Err(errno::EINVAL),
        })
    }
    fn create(&self, _: &Cred, dir: Node, name: &[u8], mode: u32, _: i32) -> Result<Made<()>, Errno> {
        let n = self.add(dir, name, Body::File(Vec::new()), mode)?;
        let st = self.stat(n)?;
        self.refs.fetch_add(1, Ordering::Relaxed);
        Ok((n, st, None))
    }
    fn open(&self, _: Node, _: i32) -> Result<(), Errno> {
        Ok(())
    }
    fn close(&self, _: Node, (): ()) {}
    fn read(&self, node: Node, (): &(), offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.with(node, |n| match &n.body {
            Body::File(d) => {
                let at = (offset as usize).min(d.len());
                let len = buf.len().min(d.len() - at);
                buf[..len].copy_from_slice(&d[at..at + len]);
                Ok(len)
            }
            _ => Err(errno::EISDIR),
        })
    }
    fn write(&self, node: Node, (): &(), offset: u64, data: &[u8]) -> Result<usize, Errno> {
        self.with(node, |n| match &mut n.body {
            Body::File(d) => {
                let end = (offset as usize).checked_add(data.len()).filter(|e| *e <= 1 << 16).ok_or(28)?;
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[offset as usize..end].copy_from_slice(data);
                Ok(data.len())
            }
            _ => Err(errno::EISDIR),
        })
    }
    fn set_size(&self, node: Node, _: Option<&()>, size: u64) -> Result<(), Errno> {
        self.with(node, |n| match &mut n.body {
            Body::File(d) if size <= 1 << 16 => {
                d.resize(size as usize, 0);
                Ok(())
            }
            _ => Err(errno::EINVAL),
        })
    }
    fn sync(&self, _: Node, _: Option<&()>, _: bool) -> Result<(), Errno> {
        Ok(())
    }
    fn chmod(&self, node: Node, mode: u32) -> Result<(), Errno> {
        self.with(node, |n| {
            n.mode = (n.mode & 0o170_000) | mode;
            Ok(())
        })
    }
    fn chown(&self, node: Node, uid: u32, _: u32) -> Result<(), Errno> {
        self.with(node, |n| {
            if uid != u32::MAX {
                n.uid = uid;
            }
            Ok(())
        })
    }
    fn utimens(&self, node: Node, _: (i64, i64), _: (i64, i64)) -> Result<(), Errno> {
        self.with(node, |_| Ok(()))
    }
    fn read_dir(&self, dir: Node) -> Result<Vec<(Node, u8, Vec<u8>)>, Errno> {
        self.with(dir, |d| match &d.body {
            Body::Dir(e) => {
                let mut v = vec![(dir, 4, b".".to_vec()), (d.parent, 4, b"..".to_vec())];
                v.extend(e.iter().map(|(n, i)| (*i, 0, n.clone())));
                Ok(v)
            }
            _ => Err(errno::ENOTDIR),
        })
    }
    fn mkdir(&self, _: &Cred, dir: Node, name: &[u8], mode: u32) -> Result<(), Errno> {
        self.add(dir, name, Body::Dir(BTreeMap::new()), 0o040_000 | mode).map(drop)
    }
    fn remove(&self, dir: Node, name: &[u8], _: bool) -> Result<(), Errno> {
        // The fixture's own entries stay, so every run starts alike.
        if dir == ROOT && [&b"file"[..], b"link", b"abs", b"dir"].contains(&name) {
            return Err(errno::EPERM);
        }
        self.with(dir, |d| match &mut d.body {
            Body::Dir(e) => e.remove(name).map(drop).ok_or(errno::ENOENT),
            _ => Err(errno::ENOTDIR),
        })
    }
    fn rename(&self, _: Node, _: &[u8], _: Node, _: &[u8], _: bool) -> Result<(), Errno> {
        Err(errno::EOPNOTSUPP)
    }
    fn link(&self, _: Node, _: Node, _: &[u8]) -> Result<(), Errno> {
        Err(errno::EOPNOTSUPP)
    }
    fn statfs(&self) -> Result<Statfs, Errno> {
        Ok(Statfs { bsize: 512, namelen: 255, ..Statfs::default() })
    }
    fn syncfs(&self) -> Result<(), Errno> {
        Ok(())
    }
    fn goaway(&self, _: i32) -> Result<(), Errno> {
        // The run goes on: this server stays.
        Err(16)
    }
}

struct World {
    kernel: Arc<Kernel>,
    server: Arc<NetfsServer<RamFs>>,
    client: Task,
    control: PortName,
    root: PortName,
    file: PortName,
    own: PortName,
    reply: PortName,
    ool: Vec<u8>,
    rcv: MsgBuf,
    /// Protids, identity ports and node references held between runs.
    baseline: (usize, usize, i64),
    iterations: u64,
}

fn serve_pending(server: &NetfsServer<RamFs>) {
    let mut buf = MsgBuf::zeroed(8192);
    while machdev::pool::serve_one_in(server, &mut buf, Some(0)).is_ok() {}
}

fn call(w: &World, m: MsgBuf) -> MsgBuf {
    harness::call(&w.client, m, w.reply, || serve_pending(&w.server))
}

fn world() -> &'static Mutex<World> {
    static W: OnceLock<Mutex<World>> = OnceLock::new();
    W.get_or_init(|| {
        let kernel = Kernel::new();
        let server_task = Arc::new(kernel.new_task());
        let ipc: Arc<dyn Ipc> = server_task.clone();
        let server = NetfsServer::new(ipc, Arc::new(RamFs::new()), PoolConfig::default()).unwrap();
        let client = kernel.new_task();
        let control = server_task.give_send_right(server.control_port(), &client).unwrap();
        let reply = client.port_allocate(Right::Receive).unwrap();
        let own = client.port_allocate(Right::Receive).unwrap();
        std::mem::forget(server_task);
        let mut w = World {
            kernel,
            server,
            client,
            control,
            root: PortName::NULL,
            file: PortName::NULL,
            own,
            reply,
            ool: vec![0x5a; 1 << 16],
            rcv: MsgBuf::zeroed(8192),
            baseline: (0, 0, 0),
            iterations: 0,
        };
        let m = call(&w, mig_bindings::fsys::getroot_request_as(control, reply, (PortName::NULL, tn::COPY_SEND), &[0], &[0], 1));
        w.root = mig_bindings::fsys::decode_getroot_reply(m.as_bytes()).unwrap().2;
        let m = call(&w, mig_bindings::fs::lookup_request(w.root, reply, "file", 3, 0));
        w.file = mig_bindings::fs::decode_lookup_reply(m.as_bytes()).unwrap().2;
        w.baseline = (w.server.protid_count(), w.server.identity_count(), w.server.fs().refs.load(Ordering::Relaxed));
        Mutex::new(w)
    })
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 4 || input.len() > 4096 {
        return;
    }
    let mut guard = world().lock().unwrap();
    let w = &mut *guard;
    let dest = [w.root, w.file, w.control, w.root][usize::from(input[0] % 4)];
    let pick = u16::from_le_bytes([input[2], input[3]]);
    let id = [19_995, 20_995, 21_995][usize::from(pick % 3)] + i32::from(pick / 3 % 50);
    let targets = harness::Targets { own: w.own, reply: w.reply, copies: [w.root, w.file, w.control], ool: &w.ool };
    harness::send(&w.client, input, dest, id, &targets);
    // The request, and the no-senders of protids it made and the drain below
    // releases.
    for _ in 0..2 {
        serve_pending(&w.server);
        harness::drain(&w.client, &[w.reply, w.own], &mut w.rcv);
    }
    serve_pending(&w.server);
    // Nothing may be left behind: regions, names, protids, node references.
    let stats = w.kernel.stats();
    assert_eq!(stats.vm_regions, 0, "{stats:?}");
    assert!(stats.queued == 0, "{stats:?}");
    assert_eq!(
        (w.server.protid_count(), w.server.identity_count(), w.server.fs().refs.load(Ordering::Relaxed)),
        w.baseline,
        "protids, identity ports and node references"
    );
    w.iterations += 1;
    if w.iterations % 20_000 == 0 {
        eprintln!("after {} runs: {:?}", w.iterations, w.kernel.stats());
    }
});
