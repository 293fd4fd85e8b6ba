//! rumpusbdisk in the guest (with `RUMP_PREFIX`): NetBSD's EHCI driver on
//! QEMU's `usb-ehci` (behind the emulated IOMMU), its USB stack, umass and
//! sd serve two `usb-storage` sticks backed by host images, one of them
//! read-only. Data the host wrote is read back through the Mach device
//! interface, writes reach the image, the cache flushes. The writable
//! stick is pulled through the QEMU monitor while an open holds it (its
//! reads then fail with `D_NO_SUCH_DEVICE`), plugged in again, and read
//! again. The write-protected stick answers a write `D_READ_ONLY` (NetBSD's
//! sd learns the protection from the drive's answer), and `--read-only`
//! refuses write opens with `D_READ_ONLY`. Without a
//! kernel, or with one whose USB stack cannot do DMA, the test says it was
//! skipped and why.

use testbed::guest::Guest;
use testbed::{assert_filled, disk_image};

const SCRIPT: &str = "\
 RUMP_VERBOSE=1 rumpusbdisk --netbsd-pci 0000:00:08.0 --exit --ctl \
 'wait sd0 60; wait sd1 60; size sd0; size sd1; verify sd0 0 64k 0x5a; verify sd1 0 64k 0x3c; \
  write sd0 1m 1m 0xa5; verify sd0 1m 1m 0xa5; flush sd0; \
  hold sd0; held-read 0 64k; print HOTPLUG-DEL; gone sd0 20; held-read 0 64k; release; \
  print HOTPLUG-ADD; wait sd0 60; verify sd0 1m 1m 0xa5; verify sd1 0 64k 0x3c'
echo \"hotplug rc=$?\"
rumpusbdisk --netbsd-pci 0000:00:08.0 --exit --ctl 'wait sd1 60; write sd1 0 512 1' 2>&1 \
 | tail -1 | sed 's/^/WRITE-PROTECTED /'
rumpusbdisk --read-only --netbsd-pci 0000:00:08.0 --exit --ctl 'wait sd0 60; write sd0 0 512 1' 2>&1 \
 | tail -1 | sed 's/^/READ-ONLY /'
";

#[test]
fn usb_sticks_on_ehci_are_served_and_come_and_go() {
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
    let a = disk_image("usb-stick-a", 32, &[(0, 65536, 0x5a)]);
    let b = disk_image("usb-stick-b", 16, &[(0, 65536, 0x3c)]);
    let file_a = format!("driver=file,filename={},node-name=fa", a.display());
    let drive_b = format!("if=none,id=sb,format=raw,readonly=on,file={}", b.display());
    let o = Guest::new()
        .module("vfio-pci")
        .program_with_rump_kernel("rumpusbdisk", "rumpusbdisk")
        .qemu(&[
            "-device",
            "usb-ehci,id=ehci,addr=0x8",
            "-blockdev",
            &file_a,
            "-blockdev",
            "driver=raw,file=fa,node-name=sa",
            "-device",
            "usb-storage,bus=ehci.0,port=1,drive=sa,id=usa",
            "-drive",
            &drive_b,
            "-device",
            "usb-storage,bus=ehci.0,port=2,drive=sb,id=usb",
        ])
        .on_line("HOTPLUG-DEL", "device_del usa")
        .on_line(
            "HOTPLUG-ADD",
            "device_add usb-storage,bus=ehci.0,port=1,drive=sa,id=usa",
        )
        .run("rumpusbdisk", SCRIPT);
    o.assert_printed(&[
        "hotplug rc=0",
        "sd0: 33554432 bytes, 65536 records of 512 bytes",
        "sd1: 16777216 bytes, 32768 records of 512 bytes",
        "sd0: verified 65536 bytes of 0x5a at 0",
        "sd1: verified 65536 bytes of 0x3c at 0",
        "sd0: verified 1048576 bytes of 0xa5 at 1048576",
        "sd0: cache flushed",
        "sd0: held read of 65536 bytes at 0: ok",
        "sd0: held read at 0: D_NO_SUCH_DEVICE",
        "WRITE-PROTECTED rumpusbdisk: device_write: D_READ_ONLY",
        "READ-ONLY rumpusbdisk: open sd0: D_READ_ONLY",
    ]);
    // The stick came back and showed what was written before the pull.
    let gone = o.lines("sd0: gone after");
    let back = o.lines("sd0: there after");
    println!(
        "pulled: gone after{}; plugged in: there after{}",
        gone[0], back[1]
    );
    assert_filled(&a, 1 << 20, 1 << 20, 0xa5);
    assert_filled(&b, 0, 65536, 0x3c);
}
