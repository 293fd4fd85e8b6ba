//! NetBSD's own PCI disk driver in the guest: the rump kernel (with
//! `RUMP_PREFIX`) attaches `pci0`, `virtio0` and `ld0` on this project's
//! `rumpcomp_pci_*` hypercalls, and rumpdisk serves `ld0` through the device
//! interface. The 2016 tree's virtio is legacy, which QEMU cannot put
//! behind the IOMMU, so DMA is by physical address (`--pci-dma physical`,
//! huge pages). Without a kernel the test says it was skipped.

use testbed::guest::Guest;
use testbed::{assert_filled, disk_image};

#[test]
fn netbsd_virtio_ld_serves_the_emulated_disk() {
    if std::env::var_os("RUMP_PREFIX").is_none() {
        println!("skipped: RUMP_PREFIX not set");
        return;
    }
    let img = disk_image("netbsd-ld", 64, &[(0, 65536, 0x5a)]);
    let drive = format!("if=none,id=vd,format=raw,file={}", img.display());
    let o = Guest::new()
        .module("vfio-pci")
        .program_with_rump_kernel("rumpdisk", "rumpdisk")
        .qemu(&[
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=vd,addr=0x5,num-queues=1",
        ])
        .run(
            "netbsd-ld",
            "echo 16 > /proc/sys/vm/nr_hugepages\n\
             RUMP_VERBOSE=1 rumpdisk --pci-dma physical --netbsd-pci 0000:00:05.0 \
             --netbsd ld0 --exit --ctl \
             'size ld0; verify ld0 0 64k 0x5a; write ld0 1m 1m 0xa5; verify ld0 1m 1m 0xa5; \
              flush ld0' || exit 1\n\
             rumpdisk --pci-dma bogus --netbsd ld0; echo \"bad-dma $?\"\n",
        );
    o.assert_printed(&[
        "pci0 at mainbus0 bus 0",
        "virtio0 at pci0 dev 0 function 0",
        "ld0 at virtio0",
        "ld0: 67108864 bytes, 131072 records of 512 bytes",
        "ld0: verified 65536 bytes of 0x5a at 0",
        "ld0: verified 1048576 bytes of 0xa5 at 1048576",
        "ld0: cache flushed",
        "bad-dma 64",
    ]);
    assert_filled(&img, 1 << 20, 1 << 20, 0xa5);
}
