#!/usr/bin/env bash
# Installs what the build and the tests need on a Debian machine (run as
# root, or through sudo). Idempotent: installs only what is missing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: a C compiler for the C shim and the C contract tests,
# nm, pkg-config; makefs and dosfstools make the FFS and FAT images the
# NetBSD kernel tests mount; qemu-utils has qemu-io, a real NBD client;
# grub-mkrescue (grub-pc-bin, grub-common, xorriso, mtools) makes the GNU
# Mach test bed's boot ISO; nbdkit is the NBD server rumpdisk-bench
# compares rumpdisk with; fuse3 (fusermount3) mounts rumpfs's FUSE front
# end, e2fsprogs checks the ext2 images it leaves, and fuse2fs is the FUSE
# peer rumpfs-bench measures it against. The VM test bed's guest tools come with
# crates/testbed/setup-guest.sh below.
PKGS=(gcc libc6-dev binutils pkg-config makefs dosfstools qemu-utils
      grub-pc-bin grub-common xorriso mtools nbdkit fuse3 e2fsprogs fuse2fs)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# QEMU 10 from bookworm-backports boots both test beds (bookworm's QEMU 7
# lacks what the VM tests use). The backports source takes this machine's
# mirror.
if ! qemu-system-x86_64 --version 2>/dev/null | grep -q 'version 1[0-9]\.'; then
    if [ ! -f /etc/apt/sources.list.d/bookworm-backports.sources ]; then
        uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "${uri%% *}" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-x86 qemu-system-common qemu-system-data
fi

# Rust: std sources for the GNU/Hurd type-check, and the linters.
rustup component add rust-src clippy rustfmt >/dev/null 2>&1 || rustup component add rust-src clippy rustfmt

# cargo fuzz, for the bounded fuzzing run of the test command.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz"
    cargo install --locked cargo-fuzz@0.13.2
fi

# The current MIG, GNU Mach's .defs/headers and its amd64 kernel (Debian
# trixie, built or unpacked into target/mig-toolchain; nothing is installed
# from trixie).
bash "$(dirname "$0")/../mig-bindings/setup-mig.sh" | tail -n 3
# The VM test bed's guest kernel and modules (Debian's linux-image-amd64,
# unpacked into target/vm-guest; nothing is installed).
bash "$(dirname "$0")/../crates/testbed/setup-guest.sh" | tail -n 3
echo "setup: done"
