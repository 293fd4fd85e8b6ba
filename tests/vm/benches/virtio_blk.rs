//! VM benchmark: in one guest boot, sequential 1 MiB reads and writes of
//! the same emulated virtio-blk disk by the guest Linux kernel's driver
//! (`O_DIRECT` 1 MiB `pread`/`pwrite` on `/dev/vda`, as `dd` with
//! `iflag=direct` does) and by rumpdisk's user-space driver (VFIO, each
//! request's buffer mapped as rumpdisk serves), the same loop
//! (`virtio-bench`), alternating [`ROUNDS`] times and keeping the best of
//! each: single runs on this shared host differ by up to a factor of two,
//! for either driver alike.
//!
//! The kernel's driver runs twice a round, with its IOMMU group in each
//! domain type: `identity` (the device's DMA untranslated) and Linux's
//! default `DMA-FQ` (translated by the same emulated IOMMU that translates
//! for VFIO, so the drivers meet on equal terms). The images are written
//! whole before the guest starts, so no round reads holes.
//!
//! A second disk without `iommu_platform` bypasses the IOMMU for either
//! driver: there rumpdisk's driver uses physical addresses and
//! scatter-gather lists, as on the Hurd, and each request pays `mlock`,
//! a `/proc/self/pagemap` read and `munlock` of its buffer.
//!
//! Prints the ratios user-space / kernel. With `RUMP_PREFIX`, NetBSD's own
//! virtio `ld` (the rump kernel on the rumpcomp hypercalls, physical DMA
//! addressing) reads and writes a second, legacy virtio disk in the same
//! rounds, compared with the native driver.
//!
//! Run: `cargo bench -p vm-tests --bench virtio_blk` (QEMU under TCG, so
//! the figures are the emulated machine's; only the ratios mean much).

use testbed::guest::Guest;

const MIB: u32 = 128;
/// Rounds alternating the drivers.
const ROUNDS: usize = 5;

fn main() {
    let drive_iommu = testbed::bench_drive("vd", "bench-virtio", MIB.into());
    let bdf = "0000:00:05.0";
    // A second modern disk without `iommu_platform`: its DMA bypasses the
    // IOMMU, for either driver.
    let phys = "0000:00:07.0";
    let drive_phys = testbed::bench_drive("vp", "bench-phys", MIB.into());
    let netbsd = std::env::var_os("RUMP_PREFIX").is_some();
    let netbsd_run = if netbsd {
        format!(
            "RUMP_PCI_DEVICES=0000:00:06.0 RUMP_PCI_DMA=physical virtio-bench --netbsd ld0 {MIB} \
             || exit 1\n"
        )
    } else {
        String::new()
    };
    // Round: the kernel's driver holds the disk in each IOMMU domain type
    // of its group (switched while no driver is bound), then rumpdisk's;
    // then the same on the disk that bypasses the IOMMU, rumpdisk's driver
    // with physical addresses. Between runs a function goes back to
    // virtio-pci.
    let kernel = |bdf: &str, domain: Option<&str>, who: &str| {
        let domain = domain.map_or(String::new(), |d| {
            format!("echo {d} > /sys/bus/pci/devices/{bdf}/iommu_group/type || exit 1\n")
        });
        format!(
            "echo > /sys/bus/pci/devices/{bdf}/driver_override\n\
             [ -e /sys/bus/pci/devices/{bdf}/driver ] && echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind\n\
             {domain}\
             echo {bdf} > /sys/bus/pci/drivers_probe; sleep 1\n\
             dev=/dev/$(ls /sys/bus/pci/devices/{bdf}/virtio*/block)\n\
             virtio-bench --label {who} $dev {MIB} || exit 1\n"
        )
    };
    let round = format!(
        "{}{}\
         virtio-bench {bdf} {MIB} || exit 1\n\
         {}\
         RUMP_PCI_DMA=physical virtio-bench --label USER-PHYS {phys} {MIB} || exit 1\n\
         {netbsd_run}",
        kernel(bdf, Some("identity"), "KERNEL"),
        kernel(bdf, Some("DMA-FQ"), "KERNEL-IOMMU"),
        kernel(phys, None, "KERNEL-PHYS"),
    );
    let mut guest = Guest::new()
        .module("virtio_pci")
        .module("virtio_blk")
        .module("vfio-pci")
        .qemu(&[
            "-drive",
            &drive_iommu,
            "-device",
            "virtio-blk-pci,drive=vd,addr=0x5,num-queues=1,disable-legacy=on,iommu_platform=on",
            "-drive",
            &drive_phys,
            "-device",
            "virtio-blk-pci,drive=vp,addr=0x7,num-queues=1,disable-legacy=on",
        ]);
    guest = if netbsd {
        // The legacy device NetBSD 7's virtio drives.
        let drive_netbsd = testbed::bench_drive("ld", "bench-netbsd", MIB.into());
        guest
            .program_with_rump_kernel("vm-tests", "virtio-bench")
            .qemu(&[
                "-drive",
                &drive_netbsd,
                "-device",
                "virtio-blk-pci,drive=ld,addr=0x6,num-queues=1",
            ])
    } else {
        guest.program("vm-tests", "virtio-bench")
    };
    let o = guest.run(
        "bench-virtio",
        &format!(
            "echo 16 > /proc/sys/vm/nr_hugepages\n{}",
            round.repeat(ROUNDS)
        ),
    );
    if o.status != Some(0) {
        eprintln!("{}", o.log);
        panic!("the guest's benchmark script failed");
    }
    report(&o, netbsd);
}

/// Prints the figures of the guest's output `o`.
fn report(o: &testbed::guest::Outcome, netbsd: bool) {
    println!(
        "virtio-blk in a TCG guest, {MIB} MiB sequential, 1 MiB requests, best of {ROUNDS} rounds."
    );
    println!("read MiB/s per round:");
    for who in [
        "KERNEL",
        "KERNEL-IOMMU",
        "USER",
        "KERNEL-PHYS",
        "USER-PHYS",
        "NETBSD",
    ] {
        let runs = o.lines(&format!("{who} read "));
        if !runs.is_empty() {
            println!("  {who:<12} {}", runs.join(" "));
        }
    }
    let (kr, kw) = (o.best("KERNEL read "), o.best("KERNEL write "));
    let (tr, tw) = (o.best("KERNEL-IOMMU read "), o.best("KERNEL-IOMMU write "));
    let (ur, uw) = (o.best("USER read "), o.best("USER write "));
    let (pkr, pkw) = (o.best("KERNEL-PHYS read "), o.best("KERNEL-PHYS write "));
    let (pur, puw) = (o.best("USER-PHYS read "), o.best("USER-PHYS write "));
    assert!(
        [kr, kw, tr, tw, ur, uw, pkr, pkw, pur, puw]
            .iter()
            .all(|&x| x > 0.0),
        "{}",
        o.output.join("\n")
    );
    println!("through the IOMMU (VFIO):");
    for (what, u, k, t) in [("read", ur, kr, tr), ("write", uw, kw, tw)] {
        println!(
            "  sequential {what:<6} user-space {u:>7.1} MiB/s | kernel, identity domain {k:>7.1} MiB/s, \
             ratio {:.2} | kernel, translated {t:>7.1} MiB/s, ratio {:.2}",
            u / k,
            u / t
        );
    }
    println!("bypassing it (physical addresses, scatter-gather):");
    for (what, u, k) in [("read", pur, pkr), ("write", puw, pkw)] {
        println!(
            "  sequential {what:<6} user-space {u:>7.1} MiB/s | kernel {k:>7.1} MiB/s, ratio {:.2}",
            u / k
        );
    }
    if netbsd {
        let (nr, nw) = (o.best("NETBSD read "), o.best("NETBSD write "));
        assert!(nr > 0.0 && nw > 0.0, "{}", o.output.join("\n"));
        for (what, n, u) in [("read", nr, ur), ("write", nw, uw)] {
            println!(
                "sequential {what:<6} NetBSD ld {n:>7.1} MiB/s  native {u:>7.1} MiB/s  ratio {:.2}",
                n / u
            );
        }
    } else {
        println!("NetBSD's virtio ld: skipped (RUMP_PREFIX not set)");
    }
}
