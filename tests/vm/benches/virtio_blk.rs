//! VM benchmark: in one guest boot, sequential 1 MiB reads and writes of
//! the same emulated virtio-blk disk by the guest Linux kernel's driver
//! (`O_DIRECT` 1 MiB `pread`/`pwrite` on `/dev/vda`, as `dd` with
//! `iflag=direct` does) and by rumpdisk's user-space driver (VFIO), the
//! same loop (`virtio-bench`), alternating twice and keeping the best of
//! each; the user-space driver both mapping each request's buffer (as
//! rumpdisk serves) and with the buffer registered once.
//! Prints the ratios user-space / kernel. With `RUMP_PREFIX`, NetBSD's own
//! virtio `ld` (the rump kernel on the rumpcomp hypercalls, physical DMA
//! addressing) reads and writes a second, legacy virtio disk in the same
//! rounds, compared with the native driver.
//!
//! Run: `cargo bench -p vm-tests --bench virtio_blk` (QEMU under TCG, so
//! the figures are the emulated machine's; only the ratios mean much).

use testbed::guest::Guest;

const MIB: u32 = 128;

fn main() {
    let img = testbed::disk_image("bench-virtio", MIB.into(), &[]);
    let drive = format!("if=none,id=vd,format=raw,cache=none,file={}", img.display());
    let bdf = "0000:00:05.0";
    let netbsd = std::env::var_os("RUMP_PREFIX").is_some();
    let img2 = testbed::disk_image("bench-netbsd", MIB.into(), &[]);
    let drive2 = format!(
        "if=none,id=ld,format=raw,cache=none,file={}",
        img2.display()
    );
    let netbsd_run = if netbsd {
        format!(
            "RUMP_PCI_DEVICES=0000:00:06.0 RUMP_PCI_DMA=physical virtio-bench --netbsd ld0 {MIB} \
             || exit 1\n"
        )
    } else {
        String::new()
    };
    // Round: the kernel's driver holds the disk, then rumpdisk's; between
    // rounds the function goes back to virtio-pci.
    let round = format!(
        "echo > /sys/bus/pci/devices/{bdf}/driver_override\n\
         [ -e /sys/bus/pci/devices/{bdf}/driver ] && echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind\n\
         echo {bdf} > /sys/bus/pci/drivers_probe; sleep 1\n\
         virtio-bench /dev/vda {MIB} || exit 1\n\
         virtio-bench {bdf} {MIB} || exit 1\n\
         virtio-bench --registered {bdf} {MIB} || exit 1\n\
         {netbsd_run}"
    );
    let mut guest = Guest::new()
        .module("virtio_pci")
        .module("virtio_blk")
        .module("vfio-pci")
        .qemu(&[
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=vd,addr=0x5,num-queues=1,disable-legacy=on,iommu_platform=on",
        ]);
    guest = if netbsd {
        // The legacy device NetBSD 7's virtio drives.
        guest
            .program_with_rump_kernel("vm-tests", "virtio-bench")
            .qemu(&[
                "-drive",
                &drive2,
                "-device",
                "virtio-blk-pci,drive=ld,addr=0x6,num-queues=1",
            ])
    } else {
        guest.program("vm-tests", "virtio-bench")
    };
    let o = guest.run(
        "bench-virtio",
        &format!("echo 16 > /proc/sys/vm/nr_hugepages\n{round}{round}"),
    );
    if o.status != Some(0) {
        eprintln!("{}", o.log);
        panic!("the guest's benchmark script failed");
    }
    let best = |v: Vec<f64>| v.into_iter().fold(0f64, f64::max);
    let rate = |prefix: &str| {
        best(
            o.lines(prefix)
                .iter()
                .filter_map(|l| l.parse().ok())
                .collect(),
        )
    };
    let (kr, kw) = (rate("KERNEL read "), rate("KERNEL write "));
    let (ur, uw) = (rate("USER read "), rate("USER write "));
    let (rr, rw) = (rate("REGISTERED read "), rate("REGISTERED write "));
    assert!(
        [kr, kw, ur, uw, rr, rw].iter().all(|&x| x > 0.0),
        "{}",
        o.output.join("\n")
    );
    println!("virtio-blk in a TCG guest, {MIB} MiB sequential, 1 MiB requests, best of 2 rounds:");
    for (what, u, k) in [
        ("read", ur, kr),
        ("write", uw, kw),
        ("read, registered buffer", rr, kr),
        ("write, registered buffer", rw, kw),
    ] {
        println!(
            "sequential {what:<25} user-space {u:>7.1} MiB/s  kernel {k:>7.1} MiB/s  ratio {:.2}",
            u / k
        );
    }
    if netbsd {
        let (nr, nw) = (rate("NETBSD read "), rate("NETBSD write "));
        assert!(nr > 0.0 && nw > 0.0, "{}", o.output.join("\n"));
        for (what, n, u) in [("read", nr, ur), ("write", nw, uw)] {
            println!(
                "sequential {what:<25} NetBSD ld {n:>7.1} MiB/s  native {u:>7.1} MiB/s  ratio {:.2}",
                n / u
            );
        }
    } else {
        println!("NetBSD's virtio ld: skipped (RUMP_PREFIX not set)");
    }
}
