//! rumpdisk's native virtio-blk driver in the guest: it drives the emulated
//! disk from user space (VFIO, interrupts, DMA) and serves it through the
//! device interface to a client that verifies what the host wrote into the
//! image; what the client writes is checked on the host afterwards.

use testbed::guest::Guest;
use testbed::{assert_filled, disk_image};

#[test]
fn serves_the_emulated_disk_and_its_writes_reach_the_image() {
    let img = disk_image(
        "virtio-blk",
        64,
        &[(0, 65536, 0x5a), ((40 << 20) + 512, 4096, 0x3c)],
    );
    let drive = format!("if=none,id=vd,format=raw,file={}", img.display());
    // A second disk without MSI-X: the driver falls back to INTx.
    let img2 = disk_image("virtio-blk-intx", 8, &[(4096, 8192, 0x77)]);
    let drive2 = format!("if=none,id=vx,format=raw,file={}", img2.display());
    let o = Guest::new()
        .module("vfio-pci")
        .program("rumpdisk", "rumpdisk")
        .program("vm-tests", "dma-remap-check")
        .qemu(&[
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=vd,addr=0x5,num-queues=1,disable-legacy=on,iommu_platform=on",
            "-device",
            "ahci,id=ahci0,addr=0x7",
            "-drive",
            &drive2,
            "-device",
            "virtio-blk-pci,drive=vx,addr=0x6,num-queues=1,disable-legacy=on,iommu_platform=on,vectors=0",
        ])
        .run(
            "virtio-blk",
            "rumpdisk --virtio vd0=0000:00:05.0 --exit --ctl \
             'size vd0; verify vd0 0 64k 0x5a; verify vd0 41943552 4k 0x3c; \
              write vd0 1m 1m 0xa5; verify vd0 1m 1m 0xa5; write vd0 3m 4k 0x11; flush vd0' \
             || exit 1\n\
             dma-remap-check 0000:00:05.0 || exit 1\n\
             rumpdisk --virtio vd9=0000:00:06.0 --exit --ctl \
             'verify vd9 4k 8k 0x77; write vd9 64k 64k 0x21; verify vd9 64k 64k 0x21' || exit 1\n\
             rumpdisk --virtio vd1=0000:00:07.0 --exit --ctl 'size vd1'; echo \"not-virtio $?\"\n\
             rumpdisk --virtio vd2=0000:00:09.0 --exit --ctl 'size vd2'; echo \"missing $?\"\n\
             rumpdisk --virtio vd3=bogus --exit; echo \"bogus $?\"\n",
        );
    o.assert_printed(&[
        "vd0: 67108864 bytes, 131072 records of 512 bytes",
        "verified 65536 bytes of 0x5a at 0",
        "verified 4096 bytes of 0x3c at 41943552",
        "verified 1048576 bytes of 0xa5 at 1048576",
        // MSI-X where the device has it, INTx where it does not.
        "0000:00:05.0: virtio-blk, 67108864 bytes, MSI-X",
        "0000:00:06.0: virtio-blk, 8388608 bytes, INTx",
        "verified 65536 bytes of 0x21 at 65536",
        // A buffer mapped anew at the same address gets the device's data,
        // not the frames an idle IOMMU mapping still points at.
        "REMAP ok",
        // Bad input: a function that is not virtio-blk, a missing one, a
        // malformed address: errors with non-zero status, nothing served.
        "is not a virtio-blk function",
        "not-virtio 1",
        "missing 1",
        "bogus 64",
    ]);
    assert_filled(&img2, 65536, 65536, 0x21);
    // The writes are in the image on the host.
    assert_filled(&img, 1 << 20, 1 << 20, 0xa5);
    assert_filled(&img, 3 << 20, 4096, 0x11);
}

/// A disk that bypasses the IOMMU (no `iommu_platform`), driven with
/// physical addresses as on the Hurd: data goes to the device as
/// scatter-gather lists of page frames, in several requests where there
/// are more pieces than one request carries, never through a bounce
/// buffer.
#[test]
fn physical_addressing_gives_the_device_scatter_gather_lists() {
    let img = disk_image("virtio-blk-phys", 16, &[(0, 8192, 0x66)]);
    let drive = format!("if=none,id=vp,format=raw,file={}", img.display());
    let o = Guest::new()
        .module("vfio-pci")
        .program("rumpdisk", "rumpdisk")
        .program("vm-tests", "virtio-sg-check")
        .qemu(&[
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=vp,addr=0x8,num-queues=1,disable-legacy=on",
        ])
        .run(
            "virtio-blk-phys",
            "echo 16 > /proc/sys/vm/nr_hugepages\n\
             export RUST_LOG=rumpdisk::virtio=debug\n\
             rumpdisk --pci-dma physical --virtio vp0=0000:00:08.0 --exit --ctl \
             'verify vp0 0 8k 0x66; write vp0 1m 1m 0x4b; verify vp0 1m 1m 0x4b; \
              write vp0 15m 12k 0x2d; flush vp0' 2>&1 || exit 1\n\
             virtio-sg-check 0000:00:08.0 2>&1 || exit 1\n",
        );
    o.assert_printed(&[
        "verified 8192 bytes of 0x66 at 0",
        "verified 1048576 bytes of 0x4b at 1048576",
        // Every other page of a region: each page its own piece, more than
        // a request carries, so several requests; the data came back whole.
        "SG ok",
        // 20 threads splitting transfers at once, more than the 16 request
        // slots: none waits on a slot another holds.
        "SG concurrent ok",
    ]);
    let transfer = |at: &str| {
        let what = format!("0000:00:08.0: 1048576 bytes at {at}:");
        o.output
            .iter()
            .filter(|l| l.contains(&what))
            .map(String::as_str)
            .collect::<Vec<_>>()
    };
    assert!(
        transfer("1048576").iter().all(|l| l.contains("pieces")),
        "{}",
        o.log
    );
    let sg = transfer("2097152");
    assert!(
        !sg.is_empty() && sg.iter().all(|l| !l.contains(" in 1 requests")),
        "{}",
        o.log
    );
    assert!(o.output.iter().all(|l| !l.contains("bounced")), "{}", o.log);
    assert_filled(&img, 1 << 20, 1 << 20, 0x4b);
    assert_filled(&img, 15 << 20, 12288, 0x2d);
}
