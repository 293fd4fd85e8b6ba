#!/usr/bin/env bash
# The Linux guest of the VM test bed: Debian bookworm's amd64 kernel,
# downloaded with apt and unpacked into target/vm-guest (never installed),
# with module dependencies computed by depmod. busybox-static and kmod are
# installed when missing (as root, or through sudo). Idempotent; prints
# GUEST_KERNEL=, GUEST_MODULES= and GUEST_KVER= last.
set -euo pipefail
missing=()
for p in busybox-static kmod; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "[setup-guest] installing ${missing[*]}" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/target/vm-guest"
mkdir -p "$dir"
if ! ls "$dir"/root/boot/vmlinuz-* >/dev/null 2>&1; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
    if [ -z "$pkg" ]; then
        echo "setup-guest: no linux-image-*-amd64 package known to apt" >&2
        exit 1
    fi
    echo "[setup-guest] apt-get download $pkg" >&2
    rm -rf "$dir/deb" "$dir/root.new"
    mkdir -p "$dir/deb"
    (cd "$dir/deb" && apt-get download -q "$pkg" >&2)
    dpkg-deb -x "$dir"/deb/*.deb "$dir/root.new"
    kver=$(ls "$dir/root.new/lib/modules")
    depmod -b "$dir/root.new" "$kver"
    rm -rf "$dir/root" "$dir/deb"
    mv "$dir/root.new" "$dir/root"
fi
kver=$(ls "$dir/root/lib/modules")
echo "GUEST_KVER=$kver"
echo "GUEST_MODULES=$dir/root"
echo "GUEST_KERNEL=$dir/root/boot/vmlinuz-$kver"
