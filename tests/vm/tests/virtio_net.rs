//! rumpnet's native virtio-net driver in the guest: one guest, two
//! virtio-net functions joined only to each other by a QEMU hub (no user
//! networking, no host bridge). `VirtioNic` drives the one behind the IOMMU
//! from user space (VFIO, MSI-X, DMA); the guest kernel's `virtio_net`
//! drives the other, reached through a raw `AF_PACKET` socket. 2000 frames
//! of 60..=1514 bytes go each way with up to 128 unreceived at a time
//! (more than the driver's 64 transmit slots), every byte checked on
//! arrival; an oversized frame is refused. The same again with a third
//! function that has no MSI-X, driven over `INTx`.

use testbed::guest::Guest;

/// The figures of one `TO-KERNEL`/`FROM-KERNEL` line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}")) as u64
}

#[test]
fn frames_cross_a_hub_both_ways_intact() {
    let o = Guest::new()
        .module("vfio-pci")
        .module("virtio_pci")
        .module("virtio_net")
        .program("vm-tests", "virtio-net-check")
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
            // A third function without MSI-X: the driver falls back to INTx.
            "-netdev",
            "hubport,id=n2,hubid=0",
            "-device",
            "virtio-net-pci,netdev=n2,addr=0xc,mac=52:54:00:12:34:0c,\
             disable-legacy=on,iommu_platform=on,vectors=0",
        ])
        .run(
            "virtio-net",
            "IF=$(ls /sys/bus/pci/devices/0000:00:0b.0/virtio*/net/)\n\
             echo \"kernel interface $IF\"\n\
             ip link set \"$IF\" up || exit 1\n\
             virtio-net-check 0000:00:0a.0 0000:00:0b.0 2>&1 || exit 1\n\
             virtio-net-check 0000:00:0c.0 0000:00:0b.0 2>&1 || exit 1\n",
        );
    o.assert_printed(&[
        "virtio-net, 52:54:00:12:34:0a, link up, MSI-X",
        "NIC vioif0 mac=52:54:00:12:34:0a mtu=1500 link=up",
        "virtio-net, 52:54:00:12:34:0c, link up, INTx",
        "NIC vioif0 mac=52:54:00:12:34:0c mtu=1500 link=up",
    ]);
    // Both runs (MSI-X, then INTx) passed every check.
    assert_eq!(o.lines("OVERSIZE InvalidInput").len(), 2, "{}", o.log);
    assert_eq!(o.lines("NET ok").len(), 2, "{}", o.log);
    for what in ["TO-KERNEL ", "FROM-KERNEL "] {
        let lines = o.lines(what);
        assert_eq!(lines.len(), 2, "{what}\n{}", o.log);
        for line in lines {
            // On a hub with the window bounded nothing is lost or damaged.
            assert_eq!(field(line, "received"), 2000, "{line}");
            assert_eq!(field(line, "lost"), 0, "{line}");
            assert_eq!(field(line, "corrupt"), 0, "{line}");
            assert_eq!(field(line, "duplicate"), 0, "{line}");
        }
    }
    let stats = o.lines("STATS ");
    assert_eq!(stats.len(), 2, "{}", o.log);
    for line in stats {
        assert_eq!(field(line, "tx_frames"), 2000, "{line}");
        // Other traffic on the hub counts too (it is not checked).
        assert!(field(line, "rx_frames") >= 2000, "{line}");
        assert_eq!(field(line, "rx_errors"), 0, "{line}");
    }
}
