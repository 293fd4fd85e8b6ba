//! VM benchmark: rumpnet against the guest Linux kernel's own drivers on
//! the same kind of card, in one guest boot, [`ROUNDS`] rounds each, the
//! median kept. Each card is joined by a QEMU hub only to a card the guest
//! kernel drives in a namespace of its own (no user networking, no host
//! bridge):
//! - native virtio-net (`rumpnet --virtio ... --tap`) against two
//!   kernel-driven virtio-net cards (`virtio_net`);
//! - with `RUMP_PREFIX`, NetBSD's wm(4) (`rumpnet --netbsd wm0 --tap`) on
//!   QEMU's e1000 against two kernel-driven e1000 cards (`e1000`).
//!
//! For each: TCP throughput (8 MiB each way through the TAP, sha256
//! checked), the 64-byte frame rate each way (`frame-rate`: 60-byte
//! frames plus the FCS, raw sockets on the TAP and on the peer), ping
//! round trips, and for rumpnet its start-to-serving time and idle RSS.
//! Prints the ratios rumpnet / kernel.
//!
//! Run: `cargo bench -p vm-tests --bench rumpnet` (QEMU under TCG, so the
//! figures are the emulated machine's; only the ratios mean much).

use std::fmt::Write as _;

use testbed::guest::{Guest, Outcome};
use testbed::median;
use testbed::netcheck::{self, field, transfer_mbits};

/// Rounds of every measurement.
const ROUNDS: usize = 3;
/// Frames each way per frame-rate measurement.
const FRAMES: u32 = 20_000;

/// One pair: rumpnet's card and its peer; the kernel's two cards.
struct Pair {
    label: &'static str,
    model: &'static str,
    /// Slot of rumpnet's card; its peer is the next; the kernel's two
    /// cards the two after.
    slot: u8,
    /// rumpnet's options for its card.
    rumpnet: &'static str,
    subnet: u8,
}

fn mac(slot: u8) -> String {
    format!("52:54:00:12:36:{slot:02x}")
}

/// The guest script measuring `p` for [`ROUNDS`] rounds.
fn script(p: &Pair) -> String {
    let (s, l, n) = (p.slot, p.label, p.subnet);
    let bdf = |k: u8| format!("0000:00:{k:02x}.0");
    let mut out = format!(
        r#"
peer_ns {peer} 10.{n}.0.2/24
P_{l}="nsenter -t $NS -n"
P_IF_{l}=$PEER_IF
T0=$(cut -d' ' -f1 /proc/uptime)
rumpnet {opts} 2>/tmp/{l}.log &
PID_{l}=$!
for i in $(seq 600); do grep -q serving /tmp/{l}.log && break; sleep 0.05; done
T1=$(cut -d' ' -f1 /proc/uptime)
echo "START {l} start=$T0 end=$T1"
wait_if rn{s} /tmp/{l}.log
ip addr add 10.{n}.0.1/24 dev rn{s} && ip link set rn{s} up || exit 1
sleep 2
echo "RSS {l} kb=$(grep VmRSS /proc/$PID_{l}/status | tr -s ' ' | cut -d' ' -f2)"
peer_ns {k2} 10.{k}.0.2/24
K_{l}="nsenter -t $NS -n"
K_IF_{l}=$PEER_IF
K1_{l}=$(kernel_if {k1})
ip addr add 10.{k}.0.1/24 dev $K1_{l} && ip link set $K1_{l} up || exit 1
"#,
        peer = bdf(s + 1),
        opts = p.rumpnet.replace("{tap}", &format!("rn{s}")),
        k = n + 1,
        k1 = bdf(s + 2),
        k2 = bdf(s + 3),
    );
    for r in 0..ROUNDS {
        let _ = write!(
            out,
            r#"
rtt {l}-{r} 10.{n}.0.2
rtt {l}-kernel-{r} 10.{k}.0.2
transfer "$P_{l}" "" 10.{n}.0.2 {l}-to-{r}
transfer "" "$P_{l}" 10.{n}.0.1 {l}-from-{r}
transfer "$K_{l}" "" 10.{k}.0.2 {l}-kernel-to-{r}
transfer "" "$K_{l}" 10.{k}.0.1 {l}-kernel-from-{r}
frames() {{
    ($3 frame-rate recv $4 15 > /tmp/recv) &
    R=$!
    sleep 1
    $1 frame-rate send $2 $5 {FRAMES} 60 > /tmp/sent-frames
    wait $R
    echo "FRAMES $6 $(cat /tmp/recv)"
}}
frames "" rn{s} "$P_{l}" $P_IF_{l} {peer_mac} {l}-to-{r}
frames "$P_{l}" $P_IF_{l} "" rn{s} {our_mac} {l}-from-{r}
frames "" $K1_{l} "$K_{l}" $K_IF_{l} {k2_mac} {l}-kernel-to-{r}
frames "$K_{l}" $K_IF_{l} "" $K1_{l} {k1_mac} {l}-kernel-from-{r}
"#,
            k = n + 1,
            peer_mac = mac(s + 1),
            our_mac = mac(s),
            k1_mac = mac(s + 2),
            k2_mac = mac(s + 3),
        );
    }
    let _ = writeln!(out, "kill $PID_{l}");
    out
}

/// The median over the rounds of `figure(round)`.
fn over_rounds(figure: impl FnMut(usize) -> f64) -> f64 {
    median((0..ROUNDS).map(figure).collect())
}

/// The average round trip (ms) of ping `label`.
fn rtt_avg(o: &Outcome, label: &str) -> f64 {
    netcheck::assert_rtt(o, label);
    let line = o.lines(&format!("RTT {label} "));
    let line = line.first().expect("a round trip");
    // round-trip min/avg/max = a/b/c ms
    line.rsplit(" = ")
        .next()
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no average in {line:?}"))
}

/// Frames/s of frame-rate run `label` (received over first to last).
fn frames_per_sec(o: &Outcome, label: &str) -> (f64, f64) {
    let line = o.lines(&format!("FRAMES {label} "));
    let line = line
        .first()
        .unwrap_or_else(|| panic!("no frame rate {label}\n{}", o.log));
    let n = field(line, "frames");
    (n / field(line, "secs").max(0.001), n / f64::from(FRAMES))
}

fn main() {
    let netbsd = std::env::var_os("RUMP_PREFIX").is_some();
    let mut pairs = vec![Pair {
        label: "virtio",
        model: "virtio-net-pci",
        slot: 0x0a,
        rumpnet: "--virtio 0000:00:0a.0 --tap eth0={tap}",
        subnet: 90,
    }];
    if netbsd {
        pairs.push(Pair {
            label: "wm",
            model: "e1000",
            slot: 0x10,
            rumpnet: "--netbsd-pci 0000:00:10.0 --netbsd wm0 --tap wm0={tap}",
            subnet: 92,
        });
    }
    let mut qemu: Vec<String> = vec!["-nic".into(), "none".into()];
    for (hub, p) in pairs.iter().enumerate() {
        for i in 0..4u8 {
            let slot = p.slot + i;
            // rumpnet's own virtio-net card sits behind the IOMMU.
            let extra = if i == 0 && p.model == "virtio-net-pci" {
                ",disable-legacy=on,iommu_platform=on"
            } else {
                ""
            };
            qemu.extend(netcheck::hub_nic(
                &format!("n{slot:x}"),
                2 * hub + usize::from(i >= 2),
                &format!("{},addr={slot:#x},mac={}{extra}", p.model, mac(slot)),
            ));
        }
    }
    let qemu: Vec<&str> = qemu.iter().map(String::as_str).collect();
    let mut guest = Guest::new()
        .module("vfio-pci")
        .module("virtio_pci")
        .module("virtio_net")
        .module("e1000")
        .module("tun")
        .program("vm-tests", "frame-rate")
        .qemu(&qemu);
    guest = if netbsd {
        guest.program_with_rump_kernel("rumpnet", "rumpnet")
    } else {
        guest.program("rumpnet", "rumpnet")
    };
    let body: String = pairs.iter().map(script).collect();
    let o = guest.run(
        "rumpnet-bench",
        &format!("{}{body}exit 0\n", netcheck::SHELL),
    );
    o.assert_success();
    report(&o, &pairs);
}

/// Prints the medians and ratios of every pair.
fn report(o: &Outcome, pairs: &[Pair]) {
    println!("\nrumpnet vs the guest kernel's driver, median of {ROUNDS} rounds (TCG)");
    for p in pairs {
        let kernel_driver = if p.label == "wm" {
            "e1000"
        } else {
            "virtio_net"
        };
        let l = p.label;
        println!("\n{l} (rumpnet) vs {kernel_driver} (kernel):");
        for dir in ["to", "from"] {
            let ours = over_rounds(|r| transfer_mbits(o, &format!("{l}-{dir}-{r}")));
            let kernel = over_rounds(|r| transfer_mbits(o, &format!("{l}-kernel-{dir}-{r}")));
            println!(
                "  TCP {dir} the peer: {ours:.1} vs {kernel:.1} Mbit/s, ratio {:.2}",
                ours / kernel
            );
        }
        for dir in ["to", "from"] {
            let run = |who: &str| {
                let label = |r| format!("{l}{who}-{dir}-{r}");
                (
                    over_rounds(|r| frames_per_sec(o, &label(r)).0),
                    over_rounds(|r| frames_per_sec(o, &label(r)).1),
                )
            };
            let ((ours, our_got), (kernel, kernel_got)) = (run(""), run("-kernel"));
            println!(
                "  64-byte frames {dir} the peer: {ours:.0} vs {kernel:.0} frames/s, ratio {:.2} \
                 (received {:.0}% vs {:.0}% of {FRAMES})",
                ours / kernel,
                our_got * 100.0,
                kernel_got * 100.0
            );
        }
        let ours = over_rounds(|r| rtt_avg(o, &format!("{l}-{r}")));
        let kernel = over_rounds(|r| rtt_avg(o, &format!("{l}-kernel-{r}")));
        println!(
            "  ping average: {ours:.2} vs {kernel:.2} ms, ratio {:.2}",
            ours / kernel
        );
        let start = o.lines(&format!("START {l} "));
        let start = start.first().expect("a start time");
        println!(
            "  rumpnet start to serving: {:.2} s; idle RSS {:.0} KiB",
            field(start, "end") - field(start, "start"),
            field(o.lines(&format!("RSS {l} ")).first().expect("an RSS"), "kb")
        );
    }
}
