//! VM benchmark (with a `RUMP_PREFIX` kernel whose USB stack does DMA, see
//! docs/rumpusbdisk.md): rumpusbdisk against the guest Linux kernel's
//! `usb-storage` on the same kind of stick, in one guest boot. Two QEMU
//! `usb-ehci` controllers each hold a 64 MiB `usb-storage` stick: NetBSD's
//! EHCI, umass and sd drive one through rumpusbdisk (timed through the
//! Mach device interface: `--ctl rate`/`random`), the guest kernel's
//! `ehci-pci` and `usb-storage` the other (`virtio-bench`: `O_DIRECT`
//! `pread`/`pwrite`). Sequential 1 MiB reads and writes (32 MiB) and 500
//! 4 KiB random reads, [`ROUNDS`] rounds, medians; rumpusbdisk's
//! start-to-serving time (until its first stick is served) and idle RSS.
//!
//! Run: `RUMP_PREFIX=... cargo bench -p vm-tests --bench rumpusbdisk`
//! (QEMU under TCG: only the ratios mean much).

use testbed::guest::{Guest, Outcome};
use testbed::netcheck::field;
use testbed::{disk_image, median};

/// Rounds of every measurement.
const ROUNDS: usize = 3;

const SCRIPT: &str = r#"
T0=$(cut -d' ' -f1 /proc/uptime)
rumpusbdisk --netbsd-pci 0000:00:08.0 --ctl 'wait sd0 60; print READY' > /tmp/u.log 2>&1 &
PID=$!
for i in $(seq 1200); do grep -q READY /tmp/u.log && break; sleep 0.05; done
T1=$(cut -d' ' -f1 /proc/uptime)
echo "START start=$T0 end=$T1"
sleep 2
echo "RSS kb=$(grep VmRSS /proc/$PID/status | tr -s ' ' | cut -d' ' -f2)"
kill $PID
sleep 1
for i in $(seq 300); do
    B=$(ls -d /sys/bus/pci/devices/0000:00:09.0/usb*/*/*/host*/target*/*/block/* 2>/dev/null | head -1)
    [ -n "$B" ] && break
    sleep 0.2
done
[ -n "$B" ] || { echo "the kernel has no disk on 0000:00:09.0"; exit 1; }
DEV=/dev/$(basename $B)
for r in ROUNDS; do
    rumpusbdisk --netbsd-pci 0000:00:08.0 --exit \
        --ctl 'wait sd0 60; rate sd0 read 32; rate sd0 write 32; random sd0 500' 2>/dev/null \
        | grep -E '^RATE|^RANDOM' | sed "s/^/R$r /"
    virtio-bench --random 500 $DEV 32 | sed "s/^/R$r /"
done
exit 0
"#;

/// The last number of a line (`... 25.9 MiB/s` / `... 812 IOPS`).
fn last_number(line: &str) -> f64 {
    line.split_whitespace()
        .rev()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// The median over the rounds of what follows `what` on `R<round> ` lines.
fn figure(o: &Outcome, what: &str) -> f64 {
    median(
        (0..ROUNDS)
            .map(|r| {
                let lines = o.lines(&format!("R{r} {what}"));
                let line = lines
                    .first()
                    .unwrap_or_else(|| panic!("no {what} in round {r}\n{}", o.log));
                last_number(line)
            })
            .collect(),
    )
}

fn main() {
    if std::env::var_os("RUMP_PREFIX").is_none() || !rump::USB_DMA {
        println!(
            "skipped: needs RUMP_PREFIX with a kernel whose USB stack does DMA \
             (docs/rumpusbdisk.md)"
        );
        return;
    }
    let ours = disk_image("bench-usb-a", 64, &[(0, 1 << 20, 0x11)]);
    let kernels = disk_image("bench-usb-b", 64, &[(0, 1 << 20, 0x11)]);
    let drive =
        |id: &str, p: &std::path::Path| format!("if=none,id={id},format=raw,file={}", p.display());
    let (da, db) = (drive("sa", &ours), drive("sb", &kernels));
    let rounds: Vec<String> = (0..ROUNDS).map(|r| r.to_string()).collect();
    let script = SCRIPT.replace("ROUNDS", &rounds.join(" "));
    let o = Guest::new()
        .module("vfio-pci")
        .module("ehci-pci")
        .module("usb-storage")
        .module("sd_mod")
        .program_with_rump_kernel("rumpusbdisk", "rumpusbdisk")
        .program("vm-tests", "virtio-bench")
        .qemu(&[
            "-device",
            "usb-ehci,id=e0,addr=0x8",
            "-drive",
            &da,
            "-device",
            "usb-storage,bus=e0.0,drive=sa",
            "-device",
            "usb-ehci,id=e1,addr=0x9",
            "-drive",
            &db,
            "-device",
            "usb-storage,bus=e1.0,drive=sb",
        ])
        .run("rumpusbdisk-bench", &script);
    o.assert_success();
    println!(
        "\nrumpusbdisk vs the guest kernel's usb-storage on EHCI, median of {ROUNDS} rounds (TCG)"
    );
    for (what, ours, kernel, unit) in [
        (
            "sequential 1 MiB read",
            "RATE sd0 read",
            "KERNEL read",
            "MiB/s",
        ),
        (
            "sequential 1 MiB write",
            "RATE sd0 write",
            "KERNEL write",
            "MiB/s",
        ),
        ("4 KiB random read", "RANDOM sd0", "KERNEL random4k", "IOPS"),
    ] {
        let (user, kern) = (figure(&o, ours), figure(&o, kernel));
        println!(
            "  {what}: {user:.1} vs {kern:.1} {unit}, ratio {:.2}",
            user / kern
        );
    }
    let start = o.lines("START ");
    let start = start.first().expect("a start time");
    println!(
        "  rumpusbdisk start to serving its stick: {:.2} s; idle RSS {:.0} KiB",
        field(start, "end") - field(start, "start"),
        field(o.lines("RSS ").first().expect("an RSS"), "kb")
    );
}
