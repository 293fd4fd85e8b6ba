#!/usr/bin/env bash
# The main job, end to end: rumpdisk serves a small image it creates; a
# device-interface client writes, reads back and sizes it; then qemu-io
# reads the same bytes over NBD.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p rumpdisk
dir=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
img=$dir/disk.img
sock=$dir/nbd.sock
truncate -s 64M "$img"

echo "== rumpdisk serves $img as wd0; a device-interface client writes and reads"
target/release/rumpdisk --image "wd0=$img" --nbd-unix "$sock" \
    --ctl 'size wd0; write wd0 1m 256k 0xab; verify wd0 1m 256k 0xab; read wd0 1m 512; flush wd0' &
pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

echo "== the same disk over NBD: qemu-io reads back the bytes the client wrote"
status=0
out=$(qemu-io -f raw "nbd+unix:///wd0?socket=$sock" \
    -c 'read -P 0xab 1M 256K' -c 'read -P 0x00 0 1M' 2>&1) || status=$?
echo "$out"
if [ "$status" -ne 0 ] || grep -qiE 'verification failed|failed|error' <<<"$out"; then
    echo "== FAILED: NBD did not return the bytes written through the device interface"
    exit 1
fi
echo "== done: the same bytes through the Mach device interface and through NBD"
