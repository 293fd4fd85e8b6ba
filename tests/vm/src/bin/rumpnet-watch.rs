//! Guest program: rumpnet's interface served to the Linux host's stack
//! through TAP and, at the same time, to Mach clients on the loopback
//! transport through their packet filters. Usage:
//! `rumpnet-watch DDDD:BB:DD.F TAP SECONDS` — drives the virtio-net function
//! natively, joins it to TAP, and for SECONDS lets three clients listen:
//! one with a BPF filter for IPv4 ICMP, one with a NETF filter for ARP, one
//! for an ethertype nobody sends. Prints `WATCH ready`, then `WATCH icmp=
//! arp= other= bad=` (`bad`: frames a filter should not have passed).

#[cfg(target_os = "linux")]
mod watch {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mach::ipc::{Ipc, option};
    use mach::loopback::Task;
    use mach::msg::MsgBuf;
    use mach::port::{Right, type_name as tn};
    use mach::{KernReturn, PortName};
    use machdev::PoolConfig;
    use machdev::loopback::LocalServer;
    use mig_bindings::device::Client;
    use mig_bindings::net::decode_net_rcv_msg;
    use netfilter::{NETF_IN, netf};
    use rumpnet::device::{Interface, Interfaces};
    use rumpnet::nic::Nic;
    use rumpnet::tap::Tap;
    use rumpnet::virtio::VirtioNic;

    /// BPF: IPv4 with protocol ICMP, whole frames.
    fn icmp() -> Vec<u16> {
        use netfilter::bpf::{ABS, B, H, Insn, JEQ, JMP, K, LD, RET, program};
        program(
            NETF_IN,
            &[
                Insn::new(LD | H | ABS, 0, 0, 12),
                Insn::new(JMP | JEQ | K, 0, 3, 0x0800),
                Insn::new(LD | B | ABS, 0, 0, 23),
                Insn::new(JMP | JEQ | K, 0, 1, 1),
                Insn::new(RET | K, 0, 0, 1514),
                Insn::new(RET | K, 0, 0, 0),
            ],
        )
    }

    /// NETF: the Ethernet type (header word 6, read in host order as
    /// GNU Mach reads it) is `t`.
    fn netf(t: u16) -> Vec<u16> {
        vec![
            NETF_IN,
            netf::PUSHHDR + 6,
            netf::PUSHLIT | netf::EQ,
            u16::from_ne_bytes(t.to_be_bytes()),
        ]
    }

    struct Listener {
        task: Task,
        port: PortName,
    }

    impl Listener {
        fn new(local: &LocalServer, filter: &[u16]) -> Result<Self, String> {
            let (task, master) = local.client().map_err(|e| format!("client: {e:?}"))?;
            let port = {
                let c = Client::new(&task);
                let device = c
                    .open(master, 3, "eth0")
                    .map_err(|e| format!("open eth0: {e:?}"))?;
                let port = task
                    .port_allocate(Right::Receive)
                    .map_err(|e| format!("port: {e:?}"))?;
                c.set_filter(device, port, tn::MAKE_SEND, 0, filter)
                    .map_err(|e| format!("set_filter: {e:?}"))?;
                port
            };
            Ok(Self { task, port })
        }

        /// The ethertype and frame of the next delivery within `ms`.
        fn next(&self, buf: &mut MsgBuf, ms: u32) -> Option<(u16, Vec<u8>)> {
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
            if r != KernReturn::SUCCESS {
                return None;
            }
            let m = decode_net_rcv_msg(buf.as_bytes()).ok()?;
            let mut f = m.header[..14].to_vec();
            f.extend_from_slice(m.payload);
            Some((u16::from_be_bytes([f[12], f[13]]), f))
        }
    }

    pub fn main() -> Result<(), String> {
        let args: Vec<String> = std::env::args().collect();
        let [_, pci, tap, secs] = args.as_slice() else {
            return Err("usage: rumpnet-watch DDDD:BB:DD.F TAP SECONDS".to_owned());
        };
        let address = pci
            .parse()
            .map_err(|_| format!("{pci}: not a PCI address"))?;
        let secs: u64 = secs.parse().map_err(|_| format!("{secs}: not a number"))?;
        let nic: Arc<dyn Nic> =
            Arc::new(VirtioNic::open(address).map_err(|e| format!("{pci}: {e}"))?);
        let iface = Interface::start(nic).map_err(|e| e.to_string())?;
        Tap::open(tap, iface.nic().mac())
            .map_err(|e| e.to_string())?
            .join(&iface)?;
        let interfaces = Arc::new(Interfaces::new(vec![Arc::clone(&iface)])?);
        let local = LocalServer::start(vec![interfaces], PoolConfig::default())
            .map_err(|e| format!("server: {e:?}"))?;
        let listeners = [
            Listener::new(&local, &icmp())?,
            Listener::new(&local, &netf(0x0806))?,
            Listener::new(&local, &netf(0x88b5))?,
        ];
        println!("WATCH ready");
        let mut counts = [0u64; 3];
        let mut bad = 0u64;
        let mut buf = MsgBuf::zeroed(8192);
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            for (i, l) in listeners.iter().enumerate() {
                while let Some((ethertype, f)) = l.next(&mut buf, 20) {
                    let ok = match i {
                        0 => ethertype == 0x0800 && f.get(23) == Some(&1),
                        1 => ethertype == 0x0806,
                        _ => false,
                    };
                    if ok {
                        counts[i] += 1;
                    } else {
                        bad += 1;
                    }
                }
            }
        }
        let s = iface.stats().filters;
        println!(
            "WATCH icmp={} arp={} other={} bad={bad} delivered={} dropped_full={}",
            counts[0], counts[1], counts[2], s.delivered, s.dropped_full
        );
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    env_logger::init();
    match watch::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rumpnet-watch: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {}
