//! rumpnet over NetBSD's own NIC drivers in the guest (with `RUMP_PREFIX`):
//! wm(4) on QEMU's e1000 (behind the emulated IOMMU) and vioif(4) on a
//! transitional virtio-net function (the 2016 tree's virtio is legacy,
//! which bypasses the IOMMU: DMA by physical address, huge pages), each in
//! its own rumpnet process joined to a TAP interface. Each is joined by a
//! QEMU hub to a function the guest kernel drives (`e1000`, `virtio_net`) in a
//! namespace of its own: ping both ways and 8 MiB over TCP each way with
//! checksums compared. Two e1000 functions both driven by the guest
//! kernel give the kernel's figures in the same run (printed, with the
//! ratio; TCG's speed bounds both). Without a kernel the test says it was
//! skipped.

use testbed::guest::Guest;
use testbed::netcheck::{self, assert_rtt, transfer_mbits};

const SCRIPT: &str = r#"
echo 32 > /proc/sys/vm/nr_hugepages
peer_ns 0000:00:0b.0 10.80.0.2/24
PW="nsenter -t $NS -n"
RUMP_VERBOSE=1 rumpnet --netbsd-pci 0000:00:0a.0 --netbsd wm0 --tap wm0=rn0 \
    2>/tmp/wm.log &
wait_if rn0 /tmp/wm.log
ip addr add 10.80.0.1/24 dev rn0 && ip link set rn0 up || exit 1
rtt wm 10.80.0.2
rtt wm-back 10.80.0.1 "$PW"
transfer "$PW" "" 10.80.0.2 wm-to-peer
transfer "" "$PW" 10.80.0.1 wm-from-peer
peer_ns 0000:00:11.0 10.81.0.2/24
PV="nsenter -t $NS -n"
RUMP_VERBOSE=1 rumpnet --pci-dma physical --netbsd-pci 0000:00:10.0 --netbsd vioif0 \
    --tap vioif0=rn1 2>/tmp/vioif.log &
wait_if rn1 /tmp/vioif.log
ip addr add 10.81.0.1/24 dev rn1 && ip link set rn1 up || exit 1
rtt vioif 10.81.0.2
rtt vioif-back 10.81.0.1 "$PV"
transfer "$PV" "" 10.81.0.2 vioif-to-peer
transfer "" "$PV" 10.81.0.1 vioif-from-peer
# The kernel's e1000 baseline: 0000:00:0c.0 here, 0000:00:0d.0 in a namespace.
peer_ns 0000:00:0d.0 10.82.0.2/24
PK="nsenter -t $NS -n"
K1=$(kernel_if 0000:00:0c.0)
ip addr add 10.82.0.1/24 dev "$K1" && ip link set "$K1" up
rtt kernel 10.82.0.2
transfer "$PK" "" 10.82.0.2 kernel-to-peer
transfer "" "$PK" 10.82.0.1 kernel-from-peer
# Bad input: an interface the kernel did not attach.
rumpnet --netbsd wm7 2>&1 | tail -1 | sed 's/^/MISSING /'
sed 's/^/WM-LOG /' /tmp/wm.log
sed 's/^/VIOIF-LOG /' /tmp/vioif.log
exit 0
"#;

#[test]
fn netbsd_wm_and_vioif_carry_ping_and_tcp_through_rumpnet() {
    if std::env::var_os("RUMP_PREFIX").is_none() {
        println!("skipped: RUMP_PREFIX not set");
        return;
    }
    let mut args = vec!["-nic".to_owned(), "none".to_owned()];
    for (id, hub, model, addr) in [
        ("w0", 0, "e1000", 0xa),
        ("w1", 0, "e1000", 0xb),
        ("k0", 1, "e1000", 0xc),
        ("k1", 1, "e1000", 0xd),
        // vioif's function on an INTx line of its own (slot modulo 4 on
        // q35): sharing IRQ 22 with wm's e1000, each held through VFIO by
        // its own process, stalled it under load (docs/vm-testbed.md).
        ("v0", 2, "virtio-net-pci", 0x10),
        ("v1", 2, "virtio-net-pci", 0x11),
    ] {
        args.extend(netcheck::hub_nic(
            id,
            hub,
            &format!("{model},addr={addr:#x},mac=52:54:00:12:35:{addr:02x}"),
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = Guest::new()
        .module("vfio-pci")
        .module("e1000")
        .module("virtio_pci")
        .module("virtio_net")
        .module("tun")
        .program_with_rump_kernel("rumpnet", "rumpnet")
        .qemu(&args)
        .run("rumpnet-netbsd", &format!("{}{SCRIPT}", netcheck::SHELL));
    o.assert_printed(&[
        "WM-LOG wm0 at pci0 dev 0 function 0",
        "VIOIF-LOG vioif0 at virtio0",
        "MISSING rumpnet: wm7: no interface wm7 in the NetBSD kernel (it attached: ",
    ]);
    for log in ["WM-LOG", "VIOIF-LOG"] {
        assert!(
            o.lines(log).iter().all(|l| !l.contains("panic")),
            "{}",
            o.log
        );
    }
    for label in ["wm", "wm-back", "vioif", "vioif-back", "kernel"] {
        assert_rtt(&o, label);
    }
    let kernel = |dir: &str| transfer_mbits(&o, &format!("kernel-{dir}"));
    for nic in ["wm", "vioif"] {
        for dir in ["to-peer", "from-peer"] {
            let ours = transfer_mbits(&o, &format!("{nic}-{dir}"));
            println!(
                "TCP {dir}, 8 MiB (TCG): rumpnet over NetBSD {nic} {ours:.1} Mbit/s, kernel \
                 e1000 {:.1} Mbit/s, ratio {:.2}",
                kernel(dir),
                ours / kernel(dir)
            );
        }
    }
}
