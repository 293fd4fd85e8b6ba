//! The rumpnet translator end to end in the guest: it drives a virtio-net
//! function from user space and joins it to a TAP interface, so the guest
//! kernel's own stack (ping, nc) talks through it to a second function,
//! driven by the kernel's `virtio_net` in a network namespace of its own.
//! The two functions are joined only to each other by a QEMU hub (no user
//! networking, no host bridge). ARP and ICMP both ways, then 8 MiB over
//! TCP each way with checksums compared. The same runs between two
//! functions both driven by the guest kernel (on a hub of their own) give
//! the kernel's figures in the same VM run, for a ratio (printed, not
//! asserted: TCG's speed, not a card's, bounds both). On a third function,
//! `rumpnet-watch` serves the host's stack through TAP and, at once, Mach
//! clients on the loopback transport through their filters (ICMP by BPF,
//! ARP by NETF, one that matches nothing).

use testbed::guest::Guest;
use testbed::netcheck::{self, assert_rtt, transfer_mbits};

const SCRIPT: &str = r#"
peer_ns 0000:00:0b.0 10.77.0.2/24
P="nsenter -t $NS -n"
rumpnet --virtio 0000:00:0a.0 --tap eth0=rn0 2>/tmp/rumpnet.log &
wait_if rn0 /tmp/rumpnet.log
ip addr add 10.77.0.1/24 dev rn0 || exit 1
ip link set rn0 up || exit 1
rtt rumpnet 10.77.0.2
rtt rumpnet-back 10.77.0.1 "$P"
transfer "$P" "" 10.77.0.2 to-peer
transfer "" "$P" 10.77.0.1 from-peer
# The kernel's baseline: 0000:00:0c.0 here, 0000:00:0d.0 in a namespace.
peer_ns 0000:00:0d.0 10.78.0.2/24
P="nsenter -t $NS -n"
K1=$(kernel_if 0000:00:0c.0)
ip addr add 10.78.0.1/24 dev "$K1" && ip link set "$K1" up
rtt kernel 10.78.0.2
transfer "$P" "" 10.78.0.2 kernel-to-peer
transfer "" "$P" 10.78.0.1 kernel-from-peer
# A third function: the host's stack through TAP and Mach clients through
# their filters, served at once (rumpnet-watch).
peer_ns 0000:00:0f.0 10.79.0.2/24
rumpnet-watch 0000:00:0e.0 rn2 25 > /tmp/watch.log 2>&1 &
WATCH=$!
wait_if rn2 /tmp/watch.log
ip addr add 10.79.0.1/24 dev rn2 && ip link set rn2 up || exit 1
for i in $(seq 50); do grep -q "WATCH ready" /tmp/watch.log && break; sleep 0.2; done
rtt watched 10.79.0.2
wait $WATCH
cat /tmp/watch.log
grep -iE "error|panic" /tmp/rumpnet.log
kill %1 2>/dev/null
exit 0
"#;

#[test]
fn the_host_stack_pings_and_transfers_through_rumpnet_and_its_tap() {
    // Cards 0xa (rumpnet's, behind the IOMMU) and 0xb on hub 0; the
    // kernel's pair 0xc and 0xd on hub 1; 0xe (rumpnet-watch's) and 0xf on
    // hub 2.
    let mut args = vec!["-nic".to_owned(), "none".to_owned()];
    for (addr, hub) in [(0xa, 0), (0xb, 0), (0xc, 1), (0xd, 1), (0xe, 2), (0xf, 2)] {
        let iommu = if addr == 0xa || addr == 0xe {
            ",disable-legacy=on,iommu_platform=on"
        } else {
            ""
        };
        args.extend(netcheck::hub_nic(
            &format!("n{addr:x}"),
            hub,
            &format!("virtio-net-pci,addr={addr:#x},mac=52:54:00:12:34:{addr:02x}{iommu}"),
        ));
    }
    let qemu: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = Guest::new()
        .module("vfio-pci")
        .module("virtio_pci")
        .module("virtio_net")
        .module("tun")
        .program("rumpnet", "rumpnet")
        .program("vm-tests", "rumpnet-watch")
        .qemu(&qemu)
        .run("rumpnet-tap", &format!("{}{SCRIPT}", netcheck::SHELL));
    o.assert_success();
    // Every echo answered, both ways: ARP resolved through the TAP and
    // through rumpnet's address filter, ICMP through the driver.
    for label in ["rumpnet", "rumpnet-back", "kernel", "watched"] {
        assert_rtt(&o, label);
    }
    // The Mach clients on the same NIC: the ICMP one got the 5 echo replies
    // (inbound; the requests went out), the ARP one the peer's ARP, the
    // third nothing; no frame its filter should have refused.
    let watch = o
        .lines("WATCH ")
        .into_iter()
        .find(|l| l.starts_with("icmp="))
        .unwrap_or_else(|| panic!("no WATCH line\n{}", o.log));
    println!("Mach clients beside the TAP: {watch}");
    assert!(netcheck::field(watch, "icmp") >= 5.0, "{watch}");
    assert!(netcheck::field(watch, "arp") >= 1.0, "{watch}");
    for zero in ["other", "bad", "dropped_full"] {
        assert!(netcheck::field(watch, zero) == 0.0, "{watch}");
    }
    for dir in ["to-peer", "from-peer"] {
        let (ours, kernel) = (
            transfer_mbits(&o, dir),
            transfer_mbits(&o, &format!("kernel-{dir}")),
        );
        println!(
            "TCP {dir}, 8 MiB (TCG): rumpnet {ours:.1} Mbit/s, kernel virtio_net {kernel:.1} \
             Mbit/s, ratio {:.2}",
            ours / kernel
        );
    }
}
