//! The rumpnet translator end to end in the guest: it drives a virtio-net
//! function from user space and joins it to a TAP interface, so the guest
//! kernel's own stack (ping, nc) talks through it to a second function,
//! driven by the kernel's `virtio_net` in a network namespace of its own.
//! The two functions are joined only to each other by a QEMU hub (no user
//! networking, no host bridge). ARP and ICMP both ways, then 8 MiB over
//! TCP each way with checksums compared. The same runs between two
//! functions both driven by the guest kernel (on a hub of their own) give
//! the kernel's figures in the same VM run, for a ratio (printed, not
//! asserted: TCG's speed, not a card's, bounds both).

use testbed::guest::Guest;

/// `KEY=value` of a printed line.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

const SCRIPT: &str = r#"
IF=$(ls /sys/bus/pci/devices/0000:00:0b.0/virtio*/net/)
unshare -n sleep 900 &
NS=$!
sleep 1
ip link set "$IF" netns $NS || exit 1
peer() { nsenter -t $NS -n "$@"; }
peer ip link set lo up
peer ip addr add 10.77.0.2/24 dev "$IF" || exit 1
peer ip link set "$IF" up || exit 1
rumpnet --virtio 0000:00:0a.0 --tap eth0=rn0 2>/tmp/rumpnet.log &
for i in $(seq 100); do [ -e /sys/class/net/rn0 ] && break; sleep 0.2; done
ip addr add 10.77.0.1/24 dev rn0 || { cat /tmp/rumpnet.log; exit 1; }
ip link set rn0 up || exit 1
ping -c 5 -W 5 10.77.0.2 > /tmp/ping 2>&1
echo "PING rc=$?"
grep -E "transmitted|round-trip" /tmp/ping
peer ping -c 3 -W 5 10.77.0.1 > /tmp/ping2 2>&1
echo "PING-BACK rc=$?"
dd if=/dev/urandom of=/tmp/sent bs=64k count=128 2>/dev/null
# One transfer: $1 listens (in its namespace), $2 sends.
transfer() {
    rm -f /tmp/got
    (sleep 120 | $1 nc -l -p 5001 > /tmp/got) &
    sleep 1
    T0=$(cut -d' ' -f1 /proc/uptime)
    $2 nc $3 5001 < /tmp/sent
    for i in $(seq 300); do
        [ "$(wc -c < /tmp/got)" -ge 8388608 ] && break
        sleep 0.1
    done
    T1=$(cut -d' ' -f1 /proc/uptime)
    echo "TCP $4 bytes=$(wc -c < /tmp/got) start=$T0 end=$T1 same=$( [ "$(sha256sum < /tmp/sent)" = "$(sha256sum < /tmp/got)" ] && echo 1 || echo 0)"
}
transfer "nsenter -t $NS -n" "" 10.77.0.2 to-peer
transfer "" "nsenter -t $NS -n" 10.77.0.1 from-peer
# The kernel's baseline: 0000:00:0c.0 here, 0000:00:0d.0 in a namespace.
K1=$(ls /sys/bus/pci/devices/0000:00:0c.0/virtio*/net/)
K2=$(ls /sys/bus/pci/devices/0000:00:0d.0/virtio*/net/)
unshare -n sleep 900 &
NS2=$!
sleep 1
ip link set "$K2" netns $NS2 || exit 1
nsenter -t $NS2 -n ip addr add 10.78.0.2/24 dev "$K2"
nsenter -t $NS2 -n ip link set "$K2" up
ip addr add 10.78.0.1/24 dev "$K1" && ip link set "$K1" up
ping -c 5 -W 5 10.78.0.2 | grep round-trip | sed 's/^/KERNEL /'
transfer "nsenter -t $NS2 -n" "" 10.78.0.2 kernel-to-peer
transfer "" "nsenter -t $NS2 -n" 10.78.0.1 kernel-from-peer
echo "SENT $(sha256sum < /tmp/sent)"
grep -iE "error|panic" /tmp/rumpnet.log
kill %1 2>/dev/null
exit 0
"#;

#[test]
fn the_host_stack_pings_and_transfers_through_rumpnet_and_its_tap() {
    let o = Guest::new()
        .module("vfio-pci")
        .module("virtio_pci")
        .module("virtio_net")
        .module("tun")
        .program("rumpnet", "rumpnet")
        .qemu(&[
            "-nic",
            "none",
            "-netdev",
            "hubport,id=n0,hubid=0",
            "-device",
            "virtio-net-pci,netdev=n0,addr=0xa,mac=52:54:00:12:34:0a,\
             disable-legacy=on,iommu_platform=on",
            "-netdev",
            "hubport,id=n1,hubid=0",
            "-device",
            "virtio-net-pci,netdev=n1,addr=0xb,mac=52:54:00:12:34:0b",
            "-netdev",
            "hubport,id=k0,hubid=1",
            "-device",
            "virtio-net-pci,netdev=k0,addr=0xc,mac=52:54:00:12:34:0c",
            "-netdev",
            "hubport,id=k1,hubid=1",
            "-device",
            "virtio-net-pci,netdev=k1,addr=0xd,mac=52:54:00:12:34:0d",
        ])
        .run("rumpnet-tap", SCRIPT);
    // Every echo answered, both ways: ARP resolved through the TAP and
    // through rumpnet's address filter, ICMP through the driver.
    o.assert_printed(&[
        "PING rc=0",
        "PING-BACK rc=0",
        "5 packets transmitted, 5 packets received, 0% packet loss",
    ]);
    for (what, prefix) in [("rumpnet", "round-trip"), ("kernel ", "KERNEL round-trip")] {
        if let Some(rtt) = o.lines(prefix).first() {
            println!("ping, {what} (TCG): {rtt}");
        }
    }
    // Mbit/s of a transfer, its data checked.
    let rate = |dir: &str| {
        let lines = o.lines(&format!("TCP {dir} "));
        let line = lines
            .first()
            .unwrap_or_else(|| panic!("no {dir} transfer\n{}", o.log));
        assert!(
            field(line, "bytes") as u64 == 8_388_608,
            "{line}\n{}",
            o.log
        );
        assert!(
            field(line, "same") as u64 == 1,
            "checksums differ: {line}\n{}",
            o.log
        );
        let secs = field(line, "end") - field(line, "start");
        8.0 * 8.388_608 / secs.max(0.01)
    };
    for dir in ["to-peer", "from-peer"] {
        let (ours, kernel) = (rate(dir), rate(&format!("kernel-{dir}")));
        println!(
            "TCP {dir}, 8 MiB (TCG): rumpnet {ours:.1} Mbit/s, kernel virtio_net {kernel:.1} \
             Mbit/s, ratio {:.2}",
            ours / kernel
        );
    }
}
