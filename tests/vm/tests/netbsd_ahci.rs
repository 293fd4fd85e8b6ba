//! NetBSD's AHCI driver in the guest: with a rump kernel that has the
//! `ata` and `ahcisata` components (`netbsd-src/build-kernel.sh` builds
//! them; the 2016 CI kernel has none, and the test says so), the rump
//! kernel attaches `ahcisata0`, its `atabus` and `wd0` on QEMU's ICH9 AHCI
//! controller behind the emulated IOMMU, and rumpdisk serves `wd0` through
//! the device interface: data the host wrote read back, writes found in the
//! host's image, the cache flushed, sixteen clients at once.

use testbed::guest::Guest;
use testbed::{assert_filled, disk_image};

#[test]
fn netbsd_ahcisata_serves_the_emulated_sata_disk() {
    if std::env::var_os("RUMP_PREFIX").is_none() {
        println!("skipped: RUMP_PREFIX not set");
        return;
    }
    if !rump::linked("rumpdev_ahcisata") {
        println!(
            "skipped: the kernel at RUMP_PREFIX has no librumpdev_ahcisata (the 2016 tree \
             builds no ATA components; netbsd-src/build-kernel.sh adds them)"
        );
        return;
    }
    let img = disk_image("netbsd-ahci", 64, &[(0, 65536, 0x5a)]);
    let drive = format!("if=none,id=sd,format=raw,file={}", img.display());
    let o = Guest::new()
        .module("vfio-pci")
        .program_with_rump_kernel("rumpdisk", "rumpdisk")
        .qemu(&[
            "-device",
            "ahci,id=ahci0,addr=0x7",
            "-drive",
            &drive,
            "-device",
            "ide-hd,drive=sd,bus=ahci0.0",
        ])
        .run(
            "netbsd-ahci",
            "RUMP_VERBOSE=1 rumpdisk --netbsd-pci 0000:00:07.0 --netbsd wd0 --exit --ctl \
             'size wd0; verify wd0 0 64k 0x5a; write wd0 8m 1m 0xa5; verify wd0 8m 1m 0xa5; \
              flush wd0; clients wd0 16 256k' || exit 1\n\
             rumpdisk --netbsd-pci 0000:00:07.0 --netbsd wd1 --exit --ctl 'size wd1' 2>&1 \
              | tail -1 | sed 's/^/MISSING /'\n",
        );
    o.assert_printed(&[
        "ahcisata0 at pci0 dev 0 function 0",
        "wd0 at atabus0 drive 0",
        "wd0: 67108864 bytes, 131072 records of 512 bytes",
        "wd0: verified 65536 bytes of 0x5a at 0",
        "wd0: verified 1048576 bytes of 0xa5 at 8388608",
        "wd0: cache flushed",
        "wd0: 16 clients verified 262144 bytes each at once",
        // A disk the kernel did not find.
        "MISSING rumpdisk: wd1: open /dev/rwd1d: No such file or directory",
    ]);
    assert_filled(&img, 8 << 20, 1 << 20, 0xa5);
}
