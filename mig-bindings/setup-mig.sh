#!/usr/bin/env bash
# setup-mig.sh — build the current GNU MIG (x86_64-gnu target, 2023+ x86_64 message ABI)
# and unpack the matching GNU Mach headers into a project-local cache.
#
#   MIG_CACHE   cache dir (default: <repo>/target/mig-toolchain, git-ignored via /target)
#
# Sources: Debian trixie's `mig` source package (orig tarball + Debian quilt patches) and
# trixie's `gnumach-dev` .deb (extracted with dpkg-deb -x, never installed).
#
# APT safety: trixie is never added to the system's apt configuration.  All trixie/sid
# queries run through a *private* apt state inside the cache dir (own deb822 sources file
# with "Types: deb deb-src", own lists/ and cache/ dirs, system sources.list(.d) ignored).
# /etc/apt and /var/lib/apt/lists are untouched, so nothing from trixie can ever be
# installed by a later `apt-get install`; the private state is deleted by an EXIT trap.
# Only the build tools (flex, bison, gcc, make, ...) are installed, from bookworm, via the
# ordinary system apt.
#
# Idempotent: every step is skipped when its output exists; a finished cache costs ~0 s.
# Prints at the end:
#   MIG=<cache>/mig/bin/x86_64-gnu-mig
#   MACH_INCLUDE=<dir containing mach/ and device/>
#   GNUMACH_KERNEL=<the amd64 GNU Mach kernel (trixie's gnumach-image-1.8-amd64-up, unpacked)>
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE=${MIG_CACHE:-$REPO/target/mig-toolchain}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

MIG_SUITE=trixie                 # suite of the mig source package and gnumach-dev
PATCH_FALLBACK_SUITE=sid         # only for the Debian patch tarball if trixie's is unreachable
SIGNED_BY=/usr/share/keyrings/debian-archive-keyring.gpg
TARGET=x86_64-gnu

DL=$CACHE/downloads
SRC=$CACHE/src
BUILD=$CACHE/build
PREFIX=$CACHE/mig
GNUMACH=$CACHE/gnumach
WRAPDIR=$CACHE/bin
APTDIR=$CACHE/apt-private
MIG_BIN=$PREFIX/bin/$TARGET-mig

log() { printf '[setup-mig] %s\n' "$*" >&2; }
die() { printf '[setup-mig] ERROR: %s\n' "$*" >&2; exit 1; }

# One run at a time per cache (cargo build scripts may run this concurrently).
exec 9>"$CACHE/.lock"
flock 9

cleanup() {
    # The private apt state (incl. the trixie/sid deb822 source) never outlives the script.
    rm -rf "$APTDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- host tools (bookworm)
ensure_host_tools() {
    local -A want=([flex]=flex [bison]=bison [gcc]=gcc [make]=make [perl]=perl-base
                   [xz]=xz-utils [patch]=patch [awk]=mawk [dpkg-deb]=dpkg)
    local missing=() cmd
    for cmd in "${!want[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
    done
    # migcom links with flex's -lfl when configure finds it
    [ -e /usr/lib/x86_64-linux-gnu/libfl.a ] || [ -e /usr/lib/x86_64-linux-gnu/libfl.so ] \
        || missing+=(libfl-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing from bookworm: ${missing[*]}"
        # system apt: bookworm sources only (trixie is never part of the system config)
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
            || { apt-get update && DEBIAN_FRONTEND=noninteractive \
                   apt-get install -y --no-install-recommends "${missing[@]}"; }
    fi
}

# ---------------------------------------------------------------- private apt (trixie/sid)
APT_OPTS=()
APT_READY=0
private_apt_update() {
    [ "$APT_READY" = 1 ] && return 0
    # Take URIs and Signed-By from the system's debian.sources when present.
    # The mirror is the one this machine's apt already uses; none is named here.
    local sys=/etc/apt/sources.list.d/debian.sources uri="" sb=$SIGNED_BY v
    if [ -r "$sys" ]; then
        v=$(sed -n 's/^URIs:[[:space:]]*//p' "$sys" | head -n1); [ -n "$v" ] && uri=${v%% *}
        v=$(sed -n 's/^Signed-By:[[:space:]]*//p' "$sys" | head -n1); [ -n "$v" ] && sb=${v%% *}
    elif [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
    fi
    if [ -z "$uri" ]; then
        echo "setup-mig: cannot find this machine's Debian mirror in /etc/apt" >&2
        return 1
    fi
    rm -rf "$APTDIR"
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/sources.list.d"
    cat >"$APTDIR/sources.list.d/mig-temp.sources" <<SRC
Types: deb deb-src
URIs: $uri
Suites: $MIG_SUITE $PATCH_FALLBACK_SUITE
Components: main
Architectures: amd64
Signed-By: $sb
SRC
    APT_OPTS=(
        -o "Dir::Etc::SourceList=/dev/null"
        -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
        -o "Dir::State::Lists=$APTDIR/lists"
        -o "Dir::Cache=$APTDIR/cache"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
        -o "APT::Sandbox::User=root"
        -o "Acquire::Languages=none"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
        -o "Acquire::Retries=3"
    )
    log "apt-get update (private state: $MIG_SUITE + $PATCH_FALLBACK_SUITE, main, amd64)"
    apt-get "${APT_OPTS[@]}" -q update >&2
    APT_READY=1
}

# ---------------------------------------------------------------- 1. downloads
find_one() { compgen -G "$1" | head -n1 || true; }

download_mig_source() {
    local orig deb
    orig=$(find_one "$DL/mig_*.orig.tar.*")
    deb=$(find_one "$DL/mig_*.debian.tar.*")
    if [ -z "$orig" ] || [ -z "$deb" ]; then
        private_apt_update
        mkdir -p "$DL"
        # The mirror may 404 the .dsc (and sometimes the debian tarball); apt still
        # fetches and hash-checks (against the signed Sources index) whatever exists,
        # so ignore apt's exit status and look at the files.
        log "apt-get source --download-only mig/$MIG_SUITE"
        (cd "$DL" && apt-get "${APT_OPTS[@]}" -q source --download-only "mig/$MIG_SUITE" >&2) \
            || log "(apt-get source reported errors; checking what arrived)"
        orig=$(find_one "$DL/mig_*.orig.tar.*")
        [ -n "$orig" ] || die "mig orig tarball not downloaded"
        deb=$(find_one "$DL/mig_*.debian.tar.*")
        if [ -z "$deb" ]; then
            # trixie's Debian tarball unreachable (mirror 404): take the Debian patch set of
            # the fallback suite, provided it packages the same upstream orig tarball.
            local up f
            up=$(basename "$orig"); up=${up#mig_}; up=${up%.orig.tar.*}
            log "mig/$MIG_SUITE debian tarball unavailable; trying mig/$PATCH_FALLBACK_SUITE's patch set"
            (cd "$DL" && apt-get "${APT_OPTS[@]}" -q source --download-only \
                "mig/$PATCH_FALLBACK_SUITE" >&2) || true
            for f in "$DL"/mig_*; do          # drop anything for another upstream version
                case $(basename "$f") in
                    "mig_$up.orig.tar."*|"mig_$up-"*.debian.tar.*) ;;
                    *) rm -f "$f" ;;
                esac
            done
            deb=$(find_one "$DL/mig_*.debian.tar.*")
            [ -n "$deb" ] || log "WARNING: no Debian patch tarball; building pristine upstream"
        fi
    fi
}

# unpack_deb PACKAGE DEST: downloads PACKAGE from $MIG_SUITE through the
# private apt state (kept in $DL) and unpacks it into DEST (never installed).
unpack_deb() {
    local pkg=$1 dest=$2 debfile
    debfile=$(find_one "$DL/${pkg}_*_amd64.deb")
    if [ -z "$debfile" ]; then
        private_apt_update
        mkdir -p "$DL"
        log "apt-get download $pkg/$MIG_SUITE"
        (cd "$DL" && apt-get "${APT_OPTS[@]}" -q download "$pkg/$MIG_SUITE" >&2)
        debfile=$(find_one "$DL/${pkg}_*_amd64.deb")
        [ -n "$debfile" ] || die "$pkg not downloaded"
    fi
    log "dpkg-deb -x $(basename "$debfile") -> $dest"
    rm -rf "$dest.tmp"
    dpkg-deb -x "$debfile" "$dest.tmp"
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
}

download_gnumach() {
    [ -d "$GNUMACH/usr/include/x86_64-linux-gnu/mach" ] || unpack_deb gnumach-dev "$GNUMACH"
}

# GNU Mach's amd64 kernel for the test bed (tests/gnumach).
KERNEL_DIR=$CACHE/gnumach-kernel
download_kernel() {
    compgen -G "$KERNEL_DIR/boot/gnumach-*-amd64-up.gz" >/dev/null \
        || unpack_deb gnumach-image-1.8-amd64-up "$KERNEL_DIR"
}

# ---------------------------------------------------------------- 2. unpack + patch
unpack_mig() {
    local orig deb dir
    orig=$(find_one "$DL/mig_*.orig.tar.*")
    deb=$(find_one "$DL/mig_*.debian.tar.*")
    if [ -f "$SRC/.unpacked" ] && [ "$(cat "$SRC/.unpacked")" = "$(basename "$orig") $(basename "${deb:-none}")" ]; then
        return 0
    fi
    log "unpacking $(basename "$orig")"
    rm -rf "$SRC" "$BUILD"; mkdir -p "$SRC"
    tar -C "$SRC" -xf "$orig"
    dir=$(find_one "$SRC/mig-*")
    [ -n "$dir" ] || die "unexpected orig tarball layout"
    mv "$dir" "$SRC/mig"
    if [ -n "$deb" ]; then
        tar -C "$SRC/mig" -xf "$deb"
        local series=$SRC/mig/debian/patches/series p
        if [ -f "$series" ]; then
            while read -r p _; do
                case $p in ''|'#'*) continue;; esac
                log "applying debian/patches/$p"
                patch -d "$SRC/mig" -p1 -s -N --no-backup-if-mismatch <"$SRC/mig/debian/patches/$p" \
                    || die "patch $p failed"
            done <"$series"
        fi
    fi
    # Patches touch tests/*/Makefile.am (implicit-declaration).  No autoreconf here
    # (automake not needed): mirror that one-line change into the generated Makefile.in
    # and make every generated autotools file newer than its inputs again.
    (
        cd "$SRC/mig"
        sed -i 's|^DEFS_LOG_COMPILER = sh \./\$(srcdir)/|DEFS_LOG_COMPILER = sh $(srcdir)/|' tests/*/Makefile.in
        touch aclocal.m4; sleep 1
        touch configure Makefile.in tests/Makefile.in tests/*/Makefile.in
    )
    echo "$(basename "$orig") $(basename "${deb:-none}")" >"$SRC/.unpacked"
}

# ---------------------------------------------------------------- 3. build
MACH_INCLUDE=
build_mig() {
    MACH_INCLUDE=$(dirname "$(find_one "$GNUMACH/usr/include/*/mach/message.h")")
    MACH_INCLUDE=$(dirname "$MACH_INCLUDE")
    [ -d "$MACH_INCLUDE/mach" ] && [ -d "$MACH_INCLUDE/device" ] \
        || die "no mach/ + device/ headers under $GNUMACH"

    # The "target compiler" MIG's configure insists on: host gcc + the trixie Mach headers.
    # (Used to compute cpu.h — sizes of mach_msg_header_t etc. — and as mig's default cpp.)
    mkdir -p "$WRAPDIR"
    local wrap=$WRAPDIR/$TARGET-gcc
    local want="#!/bin/sh
exec gcc -I'$MACH_INCLUDE' \"\$@\""
    if [ ! -x "$wrap" ] || [ "$(cat "$wrap")" != "$want" ]; then
        printf '%s\n' "$want" >"$wrap"; chmod +x "$wrap"
        rm -f "$MIG_BIN"   # compiler changed → rebuild
    fi

    if [ -x "$MIG_BIN" ] && [ -x "$PREFIX/libexec/$TARGET-migcom" ]; then return 0; fi

    log "building MIG in $BUILD"
    rm -rf "$BUILD" "$PREFIX"; mkdir -p "$BUILD"
    (
        cd "$BUILD"
        export PATH="$WRAPDIR:$PATH"
        "$SRC/mig/configure" -q --target="$TARGET" --program-prefix="$TARGET-" \
            --prefix="$PREFIX" CC=gcc CFLAGS="-O2 -pipe" >&2
        make -s -j"$(nproc)" >&2
        make -s install >&2
    )
    # keep the wrapper next to mig so its default cpp ("x86_64-gnu-gcc -E -x c") resolves
    # when $PREFIX/bin is on PATH
    install -m755 "$wrap" "$PREFIX/bin/$TARGET-gcc"
    [ -x "$MIG_BIN" ] || die "make install did not produce $MIG_BIN"

    # smoke test: generate device stubs (ABI sanity asserts are compiled in later by users)
    local t; t=$(mktemp -d)
    "$MIG_BIN" -cc "gcc -E -x c -nostdinc" -I"$MACH_INCLUDE" \
        -user "$t/u.c" -server "$t/s.c" -header "$t/u.h" -sheader "$t/s.h" \
        "$MACH_INCLUDE/device/device.defs" >&2 || { rm -rf "$t"; rm -f "$MIG_BIN"; die "mig smoke test failed"; }
    rm -rf "$t"
}

# ---------------------------------------------------------------- main
if [ -x "$MIG_BIN" ] && [ -d "$GNUMACH/usr/include/x86_64-linux-gnu/mach" ] && [ -f "$SRC/.unpacked" ] \
   && [ -x "$WRAPDIR/$TARGET-gcc" ] && compgen -G "$KERNEL_DIR/boot/gnumach-*-amd64-up.gz" >/dev/null; then
    : # fast path: everything present (build_mig below only re-checks the wrapper)
else
    ensure_host_tools
    download_mig_source
    download_gnumach
    download_kernel
    unpack_mig
fi
build_mig

echo "MIG=$MIG_BIN"
echo "MACH_INCLUDE=$MACH_INCLUDE"
echo "GNUMACH_KERNEL=$(find_one "$KERNEL_DIR/boot/gnumach-*-amd64-up.gz")"
