//! Network checks in the guest: shell functions that put a kernel-driven
//! NIC in a namespace of its own, wait for rumpnet's TAP interface, and
//! time a TCP transfer with its data checked; and the host-side reading of
//! what they print.
//!
//! Every link is a QEMU hub joining two functions of the same guest: no
//! user networking, no host bridge, no address outside the guest.

use crate::guest::Outcome;

/// Bytes each [`SHELL`] `transfer` sends (8 MiB of random data).
pub const TRANSFER_BYTES: u64 = 8 << 20;

/// Shell functions for a guest script (busybox `sh`):
/// - `kernel_if PCI`: the name of the kernel's interface on function PCI;
/// - `peer_ns PCI ADDR/LEN`: moves that interface into a new network
///   namespace (its holder's pid in `$NS`), addressed and up;
/// - `wait_if NAME LOG`: waits for interface NAME to appear (printing LOG
///   and failing if it does not);
/// - `transfer LISTEN SEND ADDR LABEL`: `$LISTEN nc -l` receives what
///   `$SEND nc ADDR` sends (the prefixes run a command in a namespace, or
///   are empty), then prints `TCP LABEL bytes= start= end= same=`;
/// - `rtt LABEL ADDR [PREFIX]`: 5 pings, printing `PING LABEL rc=` and
///   `RTT LABEL <round-trip line>`.
pub const SHELL: &str = r#"
dd if=/dev/urandom of=/tmp/sent bs=64k count=128 2>/dev/null
kernel_if() { ls /sys/bus/pci/devices/$1/net/ 2>/dev/null || ls /sys/bus/pci/devices/$1/virtio*/net/; }
peer_ns() {
    PEER_IF=$(kernel_if $1)
    unshare -n sleep 900 &
    NS=$!
    sleep 1
    ip link set "$PEER_IF" netns $NS || exit 1
    nsenter -t $NS -n ip link set lo up
    nsenter -t $NS -n ip addr add $2 dev "$PEER_IF" || exit 1
    nsenter -t $NS -n ip link set "$PEER_IF" up || exit 1
}
wait_if() {
    for i in $(seq 300); do [ -e /sys/class/net/$1 ] && return 0; sleep 0.2; done
    echo "no interface $1"; cat $2; exit 1
}
transfer() {
    rm -f /tmp/got
    (sleep 120 | $1 nc -l -p 5001 > /tmp/got) &
    sleep 1
    T0=$(cut -d' ' -f1 /proc/uptime)
    # A stalled link fails this transfer, not the whole run.
    timeout 60 $2 nc $3 5001 < /tmp/sent
    # The last bytes get 10 s more (by the clock: a slow guest runs few
    # iterations of a counted loop).
    T=$(( $(cut -d. -f1 /proc/uptime) + 10 ))
    while [ "$(wc -c < /tmp/got)" -lt 8388608 ] && [ "$(cut -d. -f1 /proc/uptime)" -lt $T ]; do
        sleep 0.1
    done
    T1=$(cut -d' ' -f1 /proc/uptime)
    echo "TCP $4 bytes=$(wc -c < /tmp/got) start=$T0 end=$T1 same=$( [ "$(sha256sum < /tmp/sent)" = "$(sha256sum < /tmp/got)" ] && echo 1 || echo 0)"
}
rtt() {
    $3 ping -c 5 -W 5 $2 > /tmp/ping 2>&1
    echo "PING $1 rc=$?"
    grep -E "transmitted" /tmp/ping | sed "s/^/PING $1 /"
    grep -E "round-trip" /tmp/ping | sed "s/^/RTT $1 /"
}
"#;

/// The QEMU arguments of one card on hub `hub` (`-netdev hubport` and
/// `-device`): `device` is the card and its properties (`e1000,addr=0xa,
/// mac=...`), joined to the hub port `id`.
#[must_use]
pub fn hub_nic(id: &str, hub: usize, device: &str) -> [String; 4] {
    [
        "-netdev".to_owned(),
        format!("hubport,id={id},hubid={hub}"),
        "-device".to_owned(),
        format!("{device},netdev={id}"),
    ]
}

/// `KEY=value` of a printed line.
///
/// # Panics
/// If `line` has no such number.
#[must_use]
pub fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// The Mbit/s of transfer `label`, after asserting every byte arrived
/// unchanged.
///
/// # Panics
/// If the transfer is missing, short or corrupted.
#[must_use]
pub fn transfer_mbits(o: &Outcome, label: &str) -> f64 {
    let lines = o.lines(&format!("TCP {label} "));
    let line = lines
        .first()
        .unwrap_or_else(|| panic!("no {label} transfer\n{}", o.log));
    assert!(
        field(line, "bytes") as u64 == TRANSFER_BYTES,
        "{line}\n{}",
        o.log
    );
    assert!(
        field(line, "same") as u64 == 1,
        "checksums differ: {line}\n{}",
        o.log
    );
    let secs = field(line, "end") - field(line, "start");
    // 8 MiB: exact in an f64.
    8.0 * f64::from(u32::try_from(TRANSFER_BYTES).expect("8 MiB")) / 1e6 / secs.max(0.01)
}

/// Asserts ping `label` got every echo answered, and prints its round trip.
///
/// # Panics
/// Otherwise.
pub fn assert_rtt(o: &Outcome, label: &str) {
    let rc = format!("PING {label} rc=0");
    let all = format!("PING {label} 5 packets transmitted, 5 packets received");
    assert!(
        o.output.iter().any(|l| l == &rc) && o.output.iter().any(|l| l.starts_with(&all)),
        "ping {label} lost echoes\n{}",
        o.log
    );
    if let Some(rtt) = o.lines(&format!("RTT {label} ")).first() {
        println!("ping {label} (TCG): {rtt}");
    }
}
