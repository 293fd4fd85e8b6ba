//! rumpnet's network device interface over the loopback kernel: many
//! clients with NETF and BPF filters, priorities and exclusive takers,
//! full and dead client ports, frame sizes, status and flags. The NIC is a
//! wire the test holds both ends of.

#![cfg(target_os = "linux")]

use std::sync::{Arc, Mutex, OnceLock};

use mach::ipc::{Ipc, option};
use mach::loopback::Task;
use mach::msg::MsgBuf;
use mach::port::{Right, type_name as tn};
use mach::{KernReturn, PortName};
use machdev::PoolConfig;
use machdev::loopback::LocalServer;
use mig_bindings::device::Client;
use mig_bindings::net::{
    IFF_PROMISC, IFF_RUNNING, IFF_UP, NET_ADDRESS, NET_FLAGS, NET_STATUS, NET_STATUS_COUNT,
    decode_net_rcv_msg,
};
use rumpnet::device::{Interface, Interfaces};
use rumpnet::nic::{Nic, NicStats, Receiver};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const PEER: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const IPV4: u16 = 0x0800;
const ARP: u16 = 0x0806;
const IPV6: u16 = 0x86dd;

const NETF_IN: u16 = 0x1;
const NETF_OUT: u16 = 0x2;
const NETF_BPF: u16 = 1 << 10;

/// The NIC: frames sent are kept; the test injects received ones.
#[derive(Default)]
struct Wire {
    rx: OnceLock<Receiver>,
    sent: Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

impl Nic for Wire {
    fn name(&self) -> &'static str {
        "vioif0"
    }
    fn mac(&self) -> [u8; 6] {
        MAC
    }
    fn mtu(&self) -> usize {
        1500
    }
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        self.sent.lock().unwrap().push(frame.to_vec());
        Ok(())
    }
    fn start(&self, rx: Receiver) -> std::io::Result<()> {
        self.rx
            .set(rx)
            .map_err(|_| std::io::Error::other("started twice"))
    }
    fn stats(&self) -> NicStats {
        NicStats::default()
    }
}

impl Wire {
    fn inject(&self, frame: &[u8]) {
        (self.rx.get().expect("started"))(frame);
    }
}

fn frame(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One BPF instruction as `filter_t` words (`struct bpf_insn`).
fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u16; 4] {
    [
        code,
        u16::from_ne_bytes([jt, jf]),
        (k & 0xffff) as u16,
        (k >> 16) as u16,
    ]
}

fn bpf(flags: u16, prog: &[[u16; 4]]) -> Vec<u16> {
    let mut w = insn(NETF_BPF | flags, 0, 0, 0).to_vec();
    for i in prog {
        w.extend_from_slice(i);
    }
    w
}

const LDH_ABS: u16 = 0x28;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;

/// pfinet's filter: IPv4 and ARP, whole frames.
fn ipv4_arp() -> Vec<u16> {
    bpf(
        NETF_IN,
        &[
            insn(LDH_ABS, 0, 0, 12),
            insn(JEQ_K, 1, 0, u32::from(ARP)),
            insn(JEQ_K, 0, 1, u32::from(IPV4)),
            insn(RET_K, 0, 0, 1500),
            insn(RET_K, 0, 0, 0),
        ],
    )
}

/// One ethertype, `len` payload bytes at most.
fn only(ethertype: u16, len: u32, flags: u16) -> Vec<u16> {
    bpf(
        flags,
        &[
            insn(LDH_ABS, 0, 0, 12),
            insn(JEQ_K, 0, 1, u32::from(ethertype)),
            insn(RET_K, 0, 0, len),
            insn(RET_K, 0, 0, 0),
        ],
    )
}

/// Everything, in the old NETF language (an empty program accepts).
fn netf_all(flags: u16) -> Vec<u16> {
    vec![flags]
}

struct Rig {
    local: LocalServer,
    wire: Arc<Wire>,
    iface: Arc<Interface>,
}

impl Rig {
    fn new() -> Self {
        let wire = Arc::new(Wire::default());
        let nic: Arc<dyn Nic> = wire.clone();
        let iface = Interface::start(nic).unwrap();
        let ifaces = Interfaces::new(vec![Arc::clone(&iface)]).unwrap();
        let local = LocalServer::start(vec![Arc::new(ifaces)], PoolConfig::default()).unwrap();
        Self { local, wire, iface }
    }

    /// A client task with `eth0` open read/write.
    fn client(&self) -> Listener {
        let (task, master) = self.local.client().unwrap();
        let device = Client::new(&task).open(master, 3, "eth0").unwrap();
        Listener {
            task,
            device,
            port: PortName::NULL,
        }
    }
}

struct Listener {
    task: Task,
    device: PortName,
    port: PortName,
}

impl Listener {
    fn listen(&mut self, priority: i32, filter: &[u16]) -> Result<(), KernReturn> {
        if self.port == PortName::NULL {
            self.port = self.task.port_allocate(Right::Receive).unwrap();
        }
        Client::new(&self.task).set_filter(self.device, self.port, tn::MAKE_SEND, priority, filter)
    }

    /// The next frame delivered (header and payload joined), if one comes
    /// within `ms`.
    fn next(&self, ms: u32) -> Option<Vec<u8>> {
        let mut buf = MsgBuf::zeroed(8192);
        // SAFETY: a buffer of the size given.
        let r = unsafe {
            self.task.mach_msg(
                buf.as_mut_ptr(),
                option::RCV_MSG | option::RCV_TIMEOUT,
                0,
                8192,
                self.port,
                ms,
                PortName::NULL,
            )
        };
        if r == KernReturn::RCV_TIMED_OUT {
            return None;
        }
        assert_eq!(r, KernReturn::SUCCESS);
        let m = decode_net_rcv_msg(buf.as_bytes()).expect("a net_rcv_msg");
        let mut f = m.header[..14].to_vec();
        f.extend_from_slice(m.payload);
        Some(f)
    }

    fn all(&self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.next(50)).collect()
    }
}

#[test]
fn many_clients_get_what_their_filters_accept() {
    let rig = Rig::new();
    let mut stack = rig.client();
    let mut arp = rig.client();
    let mut capture = rig.client();
    let mut netf = rig.client();
    stack.listen(0, &ipv4_arp()).unwrap();
    arp.listen(0, &only(ARP, 1500, NETF_IN)).unwrap();
    capture
        .listen(0, &bpf(NETF_IN, &[insn(RET_K, 0, 0, u32::MAX)]))
        .unwrap();
    netf.listen(0, &netf_all(NETF_IN)).unwrap();
    let frames = [
        frame(MAC, IPV4, &[1; 100]),
        frame([0xff; 6], ARP, &[2; 28]),
        frame(MAC, IPV6, &[3; 60]),
        frame(MAC, IPV4, &[4; 1500]),
    ];
    for f in &frames {
        rig.wire.inject(f);
    }
    assert_eq!(
        stack.all(),
        vec![frames[0].clone(), frames[1].clone(), frames[3].clone()]
    );
    assert_eq!(arp.all(), vec![frames[1].clone()]);
    assert_eq!(capture.all(), frames.to_vec());
    assert_eq!(netf.all(), frames.to_vec());
    let s = rig.iface.stats().filters;
    assert_eq!((s.filters, s.delivered, s.dropped_full), (4, 12, 0));
}

#[test]
fn bpf_return_value_truncates_the_payload() {
    let rig = Rig::new();
    let mut c = rig.client();
    c.listen(0, &only(IPV4, 20, NETF_IN)).unwrap();
    let f = frame(MAC, IPV4, &(0..200).map(|i| i as u8).collect::<Vec<_>>());
    rig.wire.inject(&f);
    assert_eq!(c.next(1000).unwrap(), f[..14 + 20].to_vec());
}

#[test]
fn an_exclusive_filter_ends_the_search_and_priorities_order_it() {
    let rig = Rig::new();
    let mut low = rig.client();
    let mut high = rig.client();
    let mut mid = rig.client();
    low.listen(0, &netf_all(NETF_IN)).unwrap();
    // NET_HI_PRI: takes IPv4 alone; installed after `low` but runs first.
    high.listen(100, &only(IPV4, 1500, NETF_IN)).unwrap();
    mid.listen(50, &only(ARP, 1500, NETF_IN)).unwrap();
    let ip = frame(MAC, IPV4, &[9; 64]);
    let arp = frame(MAC, ARP, &[8; 28]);
    rig.wire.inject(&ip);
    rig.wire.inject(&arp);
    assert_eq!(high.all(), vec![ip.clone()]);
    assert_eq!(mid.all(), vec![arp.clone()]);
    // Below an exclusive taker nothing sees IPv4; ARP goes on past `mid`
    // (priority 50 is not exclusive).
    assert_eq!(low.all(), vec![arp]);
    let order: Vec<i32> = rig.iface.filters().filters().iter().map(|f| f.1).collect();
    assert_eq!(order, [100, 50, 0]);
}

#[test]
fn a_new_filter_on_the_same_port_replaces_the_old() {
    let rig = Rig::new();
    let mut c = rig.client();
    c.listen(0, &only(ARP, 1500, NETF_IN)).unwrap();
    c.listen(0, &only(IPV4, 1500, NETF_IN)).unwrap();
    assert_eq!(rig.iface.stats().filters.filters, 1);
    let ip = frame(MAC, IPV4, &[1; 50]);
    rig.wire.inject(&frame(MAC, ARP, &[0; 28]));
    rig.wire.inject(&ip);
    assert_eq!(c.all(), vec![ip]);
}

#[test]
fn bad_programs_are_refused_and_nothing_is_installed() {
    let rig = Rig::new();
    let mut c = rig.client();
    c.port = c.task.port_allocate(Right::Receive).unwrap();
    let before = rig.local.kernel().stats();
    let bad: Vec<Vec<u16>> = vec![
        vec![],                                                       // empty
        vec![0],                                                      // neither in nor out
        bpf(NETF_IN, &[insn(0x05, 0, 0, 10)]),                        // ja out of range
        bpf(NETF_IN, &[insn(0x34, 0, 0, 0), insn(RET_K, 0, 0, 1)]),   // div by 0
        bpf(NETF_IN, &[insn(LDH_ABS, 0, 0, 12)]),                     // no return
        bpf(NETF_IN, &[insn(0xffff, 0, 0, 0), insn(RET_K, 0, 0, 1)]), // bad opcode
    ];
    for p in &bad {
        assert_eq!(
            c.listen(0, p),
            Err(KernReturn::D_INVALID_OPERATION),
            "{p:?}"
        );
    }
    // Longer than NET_MAX_FILTER: MIG's client stub refuses it already
    // (the server's decoder would too: mig-bindings' tests).
    assert_eq!(
        c.listen(0, &[NETF_IN; 129]),
        Err(KernReturn::MIG_ARRAY_TOO_LARGE)
    );
    assert_eq!(rig.iface.stats().filters.filters, 0);
    rig.wire.inject(&frame(MAC, IPV4, &[0; 40]));
    assert_eq!(c.next(50), None);
    // The refused send rights were released: no name more than before.
    assert_eq!(rig.local.kernel().stats().names, before.names);
}

#[test]
fn a_client_that_stops_receiving_loses_only_its_own_frames() {
    let rig = Rig::new();
    let mut asleep = rig.client();
    let mut awake = rig.client();
    asleep.listen(0, &netf_all(NETF_IN)).unwrap();
    awake.listen(0, &netf_all(NETF_IN)).unwrap();
    let mut got = Vec::new();
    for i in 0..40u8 {
        rig.wire.inject(&frame(MAC, IPV4, &[i; 46]));
        got.extend(awake.all());
    }
    assert_eq!(got.len(), 40, "the receiving client got every frame");
    let s = rig.iface.stats().filters;
    // The sleeping client's queue holds what its limit allows; the rest
    // were dropped and counted, never blocking delivery.
    let queued = asleep.all().len() as u64;
    assert!(queued > 0 && queued < 40, "{queued}");
    assert_eq!(s.dropped_full, 40 - queued);
}

#[test]
fn a_dead_client_loses_its_filter_and_nothing_leaks() {
    let rig = Rig::new();
    let mut live = rig.client();
    live.listen(0, &netf_all(NETF_IN)).unwrap();
    let baseline = rig.local.kernel().stats();
    {
        let mut doomed = rig.client();
        doomed.listen(0, &ipv4_arp()).unwrap();
        rig.wire.inject(&frame(MAC, IPV4, &[1; 46]));
        assert!(doomed.next(1000).is_some());
        doomed.task.terminate();
    }
    // Whichever comes first, the dead-name notification or the next
    // frame, removes the filter; the other client is served as before.
    rig.wire.inject(&frame(MAC, IPV4, &[2; 46]));
    assert_eq!(live.all().len(), 2);
    let s = rig.iface.stats().filters;
    assert_eq!((s.filters, s.removed_dead), (1, 1));
    // The doomed task's device port goes at no-senders, on a server thread.
    eventually("the client's ports and names go", || {
        let after = rig.local.kernel().stats();
        (after.ports, after.names) == (baseline.ports, baseline.names)
    });
}

/// Waits up to 5 s for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_dead_clients_filters_go_at_once_by_dead_name_notification() {
    let rig = Rig::new();
    let baseline = rig.local.kernel().stats();
    {
        let mut doomed = rig.client();
        // Two filters in turn on one port (the second replaces the first
        // and its notification request), then the client dies with no
        // frame coming.
        doomed.listen(0, &ipv4_arp()).unwrap();
        doomed.listen(5, &only(ARP, 28, NETF_IN)).unwrap();
        assert_eq!(rig.iface.stats().filters.filters, 1);
        doomed.task.terminate();
    }
    eventually("the filter goes without a frame", || {
        rig.iface.stats().filters.filters == 0
    });
    assert_eq!(rig.iface.stats().filters.removed_dead, 1);
    eventually("every port and name of the client goes", || {
        let after = rig.local.kernel().stats();
        (after.ports, after.names) == (baseline.ports, baseline.names)
    });
    // A live client is unaffected, and a frame finds nothing stale.
    let mut live = rig.client();
    live.listen(0, &netf_all(NETF_IN)).unwrap();
    rig.wire.inject(&frame(MAC, IPV4, &[3; 46]));
    assert_eq!(live.all().len(), 1);
}

#[test]
fn a_filter_port_released_while_alive_leaves_nothing_behind() {
    let rig = Rig::new();
    let baseline = rig.local.kernel().stats();
    {
        let iface = Arc::clone(&rig.iface);
        let mut c = rig.client();
        c.listen(0, &netf_all(NETF_IN)).unwrap();
        // The interface drops its filters (as when it goes away): the
        // server's right goes, the port-deleted notification follows.
        iface.filters().clear();
        c.task.terminate();
    }
    eventually("every port and name goes", || {
        let after = rig.local.kernel().stats();
        (after.ports, after.names) == (baseline.ports, baseline.names)
    });
}

#[test]
fn writes_are_checked_sent_and_seen_by_outbound_filters() {
    let rig = Rig::new();
    let mut tap = rig.client();
    tap.listen(0, &netf_all(NETF_OUT)).unwrap();
    let c = Client::new(&tap.task);
    let f = frame(PEER, IPV4, &[7; 100]);
    assert_eq!(c.write(tap.device, 0, &f), Ok(f.len() as i32));
    let small = frame(PEER, ARP, &[5; 28]);
    assert_eq!(
        c.write_inband(tap.device, 0, &small),
        Ok(small.len() as i32)
    );
    assert_eq!(
        *rig.wire.sent.lock().unwrap(),
        vec![f.clone(), small.clone()]
    );
    assert_eq!(tap.all(), vec![f, small]);
    for bad in [vec![0u8; 13], frame(PEER, IPV4, &[0; 1501])] {
        assert_eq!(
            c.write(tap.device, 0, &bad),
            Err(KernReturn::D_INVALID_SIZE)
        );
    }
    assert_eq!(rig.wire.sent.lock().unwrap().len(), 2);
}

#[test]
fn status_flags_and_the_address_filter() {
    let rig = Rig::new();
    let mut c = rig.client();
    c.listen(0, &netf_all(NETF_IN)).unwrap();
    let client = Client::new(&c.task);
    let st = client
        .get_status(c.device, NET_STATUS, NET_STATUS_COUNT as u32)
        .unwrap();
    assert_eq!(st[..5], [14, 1514, 1, 14, 6]);
    assert_eq!(st[5] & (IFF_UP | IFF_RUNNING), IFF_UP | IFF_RUNNING);
    let addr = client.get_status(c.device, NET_ADDRESS, 2).unwrap();
    let bytes: Vec<u8> = addr.iter().flat_map(|w| w.to_be().to_ne_bytes()).collect();
    assert_eq!(bytes[..6], MAC);
    assert_eq!(
        client.get_status(c.device, NET_STATUS, 3),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(
        client.get_status(c.device, 0x1234, 10),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(
        client.read(c.device, 0, 100),
        Err(KernReturn::D_INVALID_OPERATION)
    );

    let other = frame(PEER, IPV4, &[1; 46]);
    rig.wire.inject(&other);
    assert_eq!(c.next(50), None, "not ours, not promiscuous");
    let flags = client.get_status(c.device, NET_FLAGS, 1).unwrap()[0];
    client
        .set_status(c.device, NET_FLAGS, &[flags | IFF_PROMISC])
        .unwrap();
    rig.wire.inject(&other);
    assert_eq!(c.next(1000), Some(other));

    // Down: writes refused, nothing received.
    client
        .set_status(c.device, NET_FLAGS, &[flags & !IFF_UP])
        .unwrap();
    assert_eq!(
        client.write(c.device, 0, &frame(PEER, IPV4, &[0; 46])),
        Err(KernReturn::D_DEVICE_DOWN)
    );
    rig.wire.inject(&frame(MAC, IPV4, &[0; 46]));
    assert_eq!(c.next(50), None);
    assert_eq!(
        client.set_status(c.device, NET_FLAGS, &[1, 2]),
        Err(KernReturn::D_INVALID_SIZE)
    );
}

#[test]
fn names_and_missing_devices() {
    let rig = Rig::new();
    let (task, master) = rig.local.client().unwrap();
    let c = Client::new(&task);
    assert!(c.open(master, 3, "eth0").is_ok());
    assert!(c.open(master, 3, "vioif0").is_ok());
    assert_eq!(c.open(master, 3, "eth1"), Err(KernReturn::D_NO_SUCH_DEVICE));
    assert_eq!(c.open(master, 3, "wm0"), Err(KernReturn::D_NO_SUCH_DEVICE));
    // Opened for reading only: no writes.
    let ro = c.open(master, 1, "eth0").unwrap();
    assert_eq!(
        c.write(ro, 0, &frame(PEER, IPV4, &[0; 46])),
        Err(KernReturn::D_INVALID_OPERATION)
    );
}
