//! VM benchmark (with a rump kernel that has `librumpdev_ahcisata`, as
//! `netbsd-src/build-kernel.sh` builds it): in one guest boot, NetBSD's
//! ahcisata under rumpdisk's NetBSD back end (VFIO, behind the emulated
//! IOMMU) against the guest Linux kernel's ahci driver, each on an AHCI
//! controller of its own with the same kind of disk image, the same loop
//! (`virtio-bench`: sequential 1 MiB reads and writes, `O_DIRECT` for the
//! kernel, then 4 KiB reads at pseudo-random offsets, one at a time),
//! alternating [`ROUNDS`] times and keeping the best of each.
//!
//! Run: `RUMP_PREFIX=... cargo bench -p vm-tests --bench ahci` (QEMU
//! under TCG: only the ratios mean much).

use testbed::guest::Guest;

const MIB: u32 = 64;
/// 4 KiB random reads per round.
const RANDOM: u32 = 2000;
/// Rounds alternating the drivers.
const ROUNDS: usize = 3;

fn main() {
    if std::env::var_os("RUMP_PREFIX").is_none() || !rump::linked("rumpdev_ahcisata") {
        println!(
            "skipped: needs RUMP_PREFIX naming a kernel with librumpdev_ahcisata \
             (netbsd-src/build-kernel.sh)"
        );
        return;
    }
    let ours = testbed::bench_drive("sn", "bench-ahci-netbsd", MIB.into());
    let theirs = testbed::bench_drive("sk", "bench-ahci-kernel", MIB.into());
    // The kernel's disk: the one on its controller (the kernel's ahci
    // takes both at boot; rumpdisk's side moves 00:07.0 to vfio-pci).
    let round = format!(
        "dev=/dev/$(ls /sys/bus/pci/devices/0000:00:09.0/ata*/host*/target*/*/block)\n\
         virtio-bench --label KERNEL --random {RANDOM} $dev {MIB} || exit 1\n\
         RUMP_PCI_DEVICES=0000:00:07.0 virtio-bench --netbsd --random {RANDOM} wd0 {MIB} \
         || exit 1\n"
    );
    let o = Guest::new()
        .module("vfio-pci")
        .module("ahci")
        .module("sd_mod")
        .program_with_rump_kernel("vm-tests", "virtio-bench")
        .qemu(&[
            "-device",
            "ahci,id=an,addr=0x7",
            "-drive",
            &ours,
            "-device",
            "ide-hd,drive=sn,bus=an.0",
            "-device",
            "ahci,id=ak,addr=0x9",
            "-drive",
            &theirs,
            "-device",
            "ide-hd,drive=sk,bus=ak.0",
        ])
        .run(
            "bench-ahci",
            &format!(
                "for i in $(seq 50); do [ -e /dev/sdb ] && break; sleep 0.2; done\n{}",
                round.repeat(ROUNDS)
            ),
        );
    o.assert_success();
    println!(
        "AHCI in a TCG guest: {MIB} MiB sequential in 1 MiB requests, {RANDOM} random 4 KiB \
         reads at depth 1, best of {ROUNDS} rounds."
    );
    for (what, unit) in [("read", "MiB/s"), ("write", "MiB/s"), ("random4k", "IOPS")] {
        let n = o.best(&format!("NETBSD {what} "));
        let k = o.best(&format!("KERNEL {what} "));
        assert!(n > 0.0 && k > 0.0, "{}", o.output.join("\n"));
        println!(
            "  {what:<9} NetBSD ahcisata (rumpdisk) {n:>8.1} {unit} | Linux ahci {k:>8.1} {unit} \
             | ratio {:.2}",
            n / k
        );
    }
}
