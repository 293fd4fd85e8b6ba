//! VM benchmark: rumpsound's native virtio-sound driver against the guest
//! Linux kernel's snd-intel8x0 on QEMU's AC'97 (Debian's kernel has no
//! `virtio_snd`, and its snd-hda-intel finds no codec on QEMU's Intel HD
//! Audio behind the test bed's IOMMU), in one guest boot: [`ROUNDS`] rounds of
//! [`SECONDS`] of a tone each, alternating, medians kept (`sound-bench`).
//! Both cards sit on QEMU's `none` audio back end. Figures: the output
//! latency (how long a frame written waits before the card takes it), the
//! guest's CPU seconds per second of audio, interrupts and the writer's
//! wake-ups per second of audio.
//!
//! Run: `cargo bench -p vm-tests --bench rumpsound` (QEMU under TCG, so
//! the figures are the emulated machine's; the ratios mean more).

use std::fmt::Write as _;

use testbed::guest::Guest;
use testbed::median;
use testbed::netcheck::field;

const ROUNDS: usize = 3;
const SECONDS: u32 = 3;

fn main() {
    let mut script = String::new();
    for round in 0..ROUNDS {
        let _ = writeln!(
            script,
            "echo R{round} rumpsound $(sound-bench rumpsound 0000:00:0a.0 {SECONDS} 2>/dev/null)\n\
             echo R{round} kernel $(sound-bench alsa /dev/snd/pcmC0D0p {SECONDS})"
        );
    }
    script.push_str("exit 0\n");
    let o = Guest::new()
        .module("vfio-pci")
        .module("snd-intel8x0")
        .program("vm-tests", "sound-bench")
        .qemu(&[
            "-audiodev",
            "none,id=a",
            "-audiodev",
            "none,id=b",
            "-device",
            "virtio-sound-pci,audiodev=a,addr=0xa,disable-legacy=on,iommu_platform=on",
            "-device",
            "AC97,addr=0xb,audiodev=b",
        ])
        .run("rumpsound-bench", &script);
    o.assert_success();
    let lines = |who: &str| -> Vec<String> {
        o.output
            .iter()
            .filter(|l| l.split_whitespace().nth(1) == Some(who))
            .cloned()
            .collect()
    };
    let (ours, kernel) = (lines("rumpsound"), lines("kernel"));
    assert!(
        ours.len() == ROUNDS
            && kernel.len() == ROUNDS
            && o.output.iter().all(|l| !l.contains("FAIL")),
        "{}",
        o.log
    );
    println!("rumpsound-bench: {SECONDS} s of 48 kHz stereo s16le, {ROUNDS} rounds, medians (TCG)");
    println!(
        "{:<36} {:>12} {:>16} {:>8}",
        "", "rumpsound", "snd-intel8x0", "ratio"
    );
    for (key, what) in [
        ("latency_ms", "output latency (ms)"),
        ("cpu_per_s", "guest CPU s per s of audio"),
        ("own_cpu_per_s", "writer process CPU s per s of audio"),
        ("irqs_per_s", "interrupts per s of audio"),
        ("wakeups_per_s", "writer wake-ups per s of audio"),
        ("seconds", "wall time (s)"),
    ] {
        let m = |ls: &[String]| median(ls.iter().map(|l| field(l, key)).collect());
        let (a, b) = (m(&ours), m(&kernel));
        println!("{what:<36} {a:>12.3} {b:>16.3} {:>8.2}", a / b);
    }
}
