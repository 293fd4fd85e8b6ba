//! rumpusbdisk in the guest (with `RUMP_PREFIX`): NetBSD's EHCI driver on
//! QEMU's `usb-ehci` (behind the emulated IOMMU), its USB stack, umass and
//! sd serve a `usb-storage` stick backed by a host image. Data the host
//! wrote is read back through the Mach device interface, writes reach the
//! image, the cache flushes. Without a kernel the test says it was skipped.

use testbed::guest::Guest;
use testbed::{assert_filled, disk_image};

#[test]
fn a_usb_stick_on_ehci_is_served_as_sd0() {
    if std::env::var_os("RUMP_PREFIX").is_none() {
        println!("skipped: RUMP_PREFIX not set");
        return;
    }
    if !rump::USB_DMA {
        println!(
            "skipped: this kernel's librumpdev_usb was built without usb_dma (NUSB_DMA 0: \
             usbdi.c asserts with a real host controller), as the 2016 tree's is"
        );
        return;
    }
    let img = disk_image("usb-stick", 32, &[(0, 65536, 0x5a)]);
    let drive = format!("if=none,id=stick,format=raw,file={}", img.display());
    let o = Guest::new()
        .module("vfio-pci")
        .program_with_rump_kernel("rumpusbdisk", "rumpusbdisk")
        .qemu(&[
            "-device",
            "usb-ehci,id=ehci,addr=0x8",
            "-drive",
            &drive,
            "-device",
            "usb-storage,bus=ehci.0,drive=stick",
        ])
        .run(
            "rumpusbdisk",
            "RUMP_VERBOSE=1 rumpusbdisk --netbsd-pci 0000:00:08.0 --exit --ctl \
             'wait sd0 30; size sd0; verify sd0 0 64k 0x5a; write sd0 1m 1m 0xa5; \
              verify sd0 1m 1m 0xa5; flush sd0' || exit 1\n",
        );
    o.assert_printed(&[
        "sd0: 33554432 bytes, 65536 records of 512 bytes",
        "sd0: verified 65536 bytes of 0x5a at 0",
        "sd0: verified 1048576 bytes of 0xa5 at 1048576",
        "sd0: cache flushed",
    ]);
    assert_filled(&img, 1 << 20, 1 << 20, 0xa5);
}
