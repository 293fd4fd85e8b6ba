#!/usr/bin/env bash
#
# build-kernel.sh - build the NetBSD rump kernel install tree that the project
# links through RUMP_PREFIX (include/rump/*.h, lib/librump*.a), for
# Linux/x86_64, from source trees that the user provides.
#
# It follows the build notes of the CI kernel (../shared/rump/BUILD.md beside
# the project: how the prebuilt tree was made) and adds
# the directory compaction fix (-mstringop-strategy=libcall, see step 1) and
# the librumpdev_usb fix (usbdi.c built with NUSB_DMA defined, so usbd_alloc_buffer
# uses usb_allocmem with a real host controller instead of hitting
# KASSERT(ub_usedma == false)).
#
# Rules: nothing is downloaded (buildrump.sh's checkout step is never run; the
# NetBSD tree is passed with -s) and NetBSD's sources are not modified: only
# compiler flags and make variables are used.  The one file this script writes
# for the build, rumpcomp_userfeatures_pci.h, goes into the object directory.
#
# Known-good inputs: rumpkernel/buildrump.sh @ 6cccd464a9675ce19eaca569b1c9c2837492038c
# and rumpkernel/src-netbsd, branch buildrump-src @ 82f3a6905f6a3a65ceb3a21046de62437f61e7dd
# (the revision pinned by buildrump.sh's .srcgitrev).

set -euo pipefail

prog=${0##*/}

usage() {
	cat <<EOF
Usage: $prog --buildrump DIR --src DIR --out DIR [--obj DIR] [-j N]

Build a NetBSD rump kernel install tree (include/ and lib/*.a, static, with
the PCI components and the NUSB_DMA fix for librumpdev_usb.a) for Linux/x86_64.

  --buildrump DIR  a buildrump.sh checkout (e.g. rumpkernel/buildrump.sh @ 6cccd46)
  --src DIR        a NetBSD source tree for it (e.g. rumpkernel/src-netbsd,
                   branch buildrump-src @ 82f3a69, as pinned by .srcgitrev)
  --out DIR        where to put the result (include/, lib/); must not exist
                   or be empty
  --obj DIR        object directory (default: a temporary directory, removed
                   after a successful build; kept for inspection on failure).
                   Reusing one makes rebuilds incremental.
  -j N             parallel make jobs (default: number of CPUs)
  -h, --help       show this help

Nothing is downloaded and the source trees are not modified (buildrump.sh
writes only to the object directory).  Build logs: OBJ/logs/.
The whole build takes about 10 minutes on 2 cores.
EOF
}

die() {
	echo "$prog: error: $*" >&2
	exit 1
}

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------
BRDIR= SRCDIR= OUTDIR= OBJDIR= JOBS=
while [ $# -gt 0 ]; do
	case $1 in
	-h|--help) usage; exit 0 ;;
	--buildrump) [ $# -ge 2 ] || die "$1 needs an argument"; BRDIR=$2; shift 2 ;;
	--src)       [ $# -ge 2 ] || die "$1 needs an argument"; SRCDIR=$2; shift 2 ;;
	--out)       [ $# -ge 2 ] || die "$1 needs an argument"; OUTDIR=$2; shift 2 ;;
	--obj)       [ $# -ge 2 ] || die "$1 needs an argument"; OBJDIR=$2; shift 2 ;;
	-j)          [ $# -ge 2 ] || die "$1 needs an argument"; JOBS=$2; shift 2 ;;
	-j*)         JOBS=${1#-j}; shift ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

[ -n "$BRDIR" ]  || { usage >&2; die "--buildrump DIR is required"; }
[ -n "$SRCDIR" ] || { usage >&2; die "--src DIR is required"; }
[ -n "$OUTDIR" ] || { usage >&2; die "--out DIR is required"; }
[ -n "$JOBS" ] || JOBS=$(nproc 2>/dev/null || echo 2)
case $JOBS in ''|*[!0-9]*|0) die "-j needs a positive integer, got '$JOBS'" ;; esac

# ---------------------------------------------------------------------------
# Check the host and the inputs before spending 10 minutes
# ---------------------------------------------------------------------------
[ "$(uname -s)" = Linux ]  || die "this script builds for Linux hosts only (uname -s: $(uname -s))"
[ "$(uname -m)" = x86_64 ] || die "this script builds for x86_64 only (uname -m: $(uname -m))"
for tool in cc nm strip ar realpath; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool not found in PATH: $tool"
done

[ -d "$BRDIR" ] || die "--buildrump: not a directory: $BRDIR"
[ -d "$SRCDIR" ] || die "--src: not a directory: $SRCDIR"
BRDIR=$(realpath "$BRDIR")
SRCDIR=$(realpath "$SRCDIR")
[ -x "$BRDIR/buildrump.sh" ] || die "--buildrump: $BRDIR/buildrump.sh not found or not executable"
[ -f "$BRDIR/subr.sh" ]      || die "--buildrump: $BRDIR/subr.sh not found (incomplete buildrump.sh checkout?)"
[ -x "$SRCDIR/build.sh" ]    || die "--src: $SRCDIR/build.sh not found (not a NetBSD source tree?)"
DEVCOMP=$SRCDIR/sys/rump/dev/Makefile.rumpdevcomp
USBDIR=$SRCDIR/sys/rump/dev/lib/libusb
[ -f "$DEVCOMP" ] || die "--src: $DEVCOMP not found (not a buildrump-src tree?)"
[ -f "$USBDIR/Makefile" ] || die "--src: $USBDIR/Makefile not found"
[ -f "$SRCDIR/sys/dev/usb/usbdi.c" ] || die "--src: sys/dev/usb/usbdi.c not found"
[ -x "$SRCDIR/lib/librumpuser/configure" ] || die "--src: lib/librumpuser/configure not found"

# buildrump.sh refuses a git source tree whose HEAD differs from its .srcgitrev;
# say so here, in plain words, instead of after its probes.
if [ -f "$BRDIR/.srcgitrev" ] && [ -e "$SRCDIR/.buildrumpsh-repo" ] && [ -d "$SRCDIR/.git" ] \
    && command -v git >/dev/null 2>&1; then
	want=$(cat "$BRDIR/.srcgitrev")
	have=$(git -C "$SRCDIR" rev-parse HEAD 2>/dev/null || echo unknown)
	[ "$want" = "$have" ] || die "--src is at $have but buildrump.sh wants $want (its .srcgitrev); check out $want in $SRCDIR"
fi

# The output must be a fresh directory: never mix with (or delete) old files.
if [ -e "$OUTDIR" ]; then
	[ -d "$OUTDIR" ] || die "--out exists and is not a directory: $OUTDIR"
	[ -z "$(ls -A "$OUTDIR")" ] || die "--out exists and is not empty: $OUTDIR (remove it or pick another)"
fi
mkdir -p "$OUTDIR"
OUTDIR=$(realpath "$OUTDIR")

# Object directory: given, or temporary.
TMPOBJ=false
if [ -n "$OBJDIR" ]; then
	mkdir -p "$OBJDIR"
else
	OBJDIR=$(mktemp -d "${TMPDIR:-/tmp}/rump-kernel-obj.XXXXXX")
	TMPOBJ=true
fi
OBJDIR=$(realpath "$OBJDIR")
case $OUTDIR/ in "$OBJDIR"/*) die "--out must not be inside the object directory" ;; esac

STAGE=$OBJDIR/destdir           # buildrump.sh's install (-d) directory
PCIFEAT=$OBJDIR/pcifeatures     # our rumpcomp_userfeatures_pci.h + Makefile.inc
LOGDIR=$OBJDIR/logs
RUMPMAKE=$OBJDIR/tooldir/rumpmake
mkdir -p "$LOGDIR"
# Stale staging content from an earlier run must not leak into --out.
rm -rf "$STAGE"

# buildrump.sh refuses CFLAGS/AFLAGS/LDFLAGS in the environment (flags go via -F);
# the others would silently leak into NetBSD's make.
unset CFLAGS AFLAGS LDFLAGS CPPFLAGS CXXFLAGS MAKEFLAGS MFLAGS MAKEOBJDIR MAKEOBJDIRPREFIX MAKECONF

on_exit() {
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "$prog: FAILED (exit $rc); object dir and logs kept in $OBJDIR" >&2
	elif $TMPOBJ; then
		rm -rf "$OBJDIR"
	fi
}
trap on_exit EXIT

# run_step NAME FUNCTION: run FUNCTION with errexit in a subshell, output to a
# log, and record the elapsed time.  On failure show the end of the log and stop.
STEP_NAMES=() STEP_TIMES=()
T_START=$(date +%s)
run_step() {
	local name=$1 fn=$2 log=$LOGDIR/$2.log t0 rc
	echo "==> $name (log: $log)"
	t0=$(date +%s)
	set +e
	( set -euo pipefail; "$fn" ) >"$log" 2>&1
	rc=$?
	set -e
	if [ $rc -ne 0 ]; then
		echo "---- last 40 lines of $log ----" >&2
		tail -n 40 "$log" >&2
		echo "----" >&2
		die "step failed: $name (exit $rc); see $log"
	fi
	STEP_NAMES+=("$name")
	STEP_TIMES+=($(( $(date +%s) - t0 )))
	echo "    done in ${STEP_TIMES[-1]} s"
}

# ---------------------------------------------------------------------------
# Step 1: buildrump.sh fullbuild (= tools build install; NOT checkout, and no
# tests).  -fcommon: gcc >= 10 defaults to -fno-common, which the 2016 tree and
# its host tools do not build with; -Wno-error/NOGCCERROR: gcc 12 warnings that
# the NetBSD tree would otherwise turn into errors; -mstringop-strategy=libcall:
# ufs_direnter and ext2fs_direnter compact a directory block with an
# overlapping memcpy(ep, nep, dsize), which gcc 12 expands inline (first and
# last quadwords stored before the rep movsq), corrupting the entries it moves
# ("bad dir" / ext2fs_dirbadentry panics after removals and renames); with
# the flag every memcpy is a call to the kernel's own, which copies forward.
# ---------------------------------------------------------------------------
#
# Two more for trees newer than 2016 (both harmless on the 2016 tree):
# - NetBSD's share/mk/bsd.own.mk (2017 on) adds --sysroot=${DESTDIR} to
#   CPPFLAGS and LDFLAGS even with the external toolchain buildrump.sh uses,
#   which hides the host's headers and libc from the host-side libraries
#   (librumpuser: sys/cdefs.h not found).  The host compiler is called
#   through a wrapper that drops --sysroot=*.
# - share/mk/bsd.gcc.mk (2018-05 on) no longer asks an external compiler
#   where its crt*.o and libgcc are; the values the 2016 one computed are
#   given as make variables.
# ---------------------------------------------------------------------------
CCWRAP=$OBJDIR/ccwrap
make_ccwrap() {
	local t real
	mkdir -p "$CCWRAP"
	for t in cc c++; do
		real=$(command -v "$t")
		cat >"$CCWRAP/$t" <<WRAP
#!/bin/sh
# Written by build-kernel.sh: the host $t, without any --sysroot=.
for a do
	shift
	case \$a in --sysroot=*) ;; *) set -- "\$@" "\$a" ;; esac
done
exec $real "\$@"
WRAP
		chmod 755 "$CCWRAP/$t"
	done
}
gcc_vars() {
	local v crtdir
	for v in CRTBEGIN:crtbegin.o CRTBEGINS:crtbeginS.o CRTEND:crtend.o \
	    CRTENDS:crtendS.o CRTI:crti.o CRTN:crtn.o; do
		printf -- '-V _GCC_%s=%s ' "${v%%:*}" "$(realpath "$(cc --print-file-name="${v#*:}")")"
	done
	crtdir=$(dirname "$(realpath "$(cc --print-file-name=crtbegin.o)")")
	printf -- '-V _GCC_CRTDIR=%s ' "$crtdir"
	printf -- '-V _GCC_LIBGCCDIR=%s ' "$(dirname "$(realpath "$(cc --print-libgcc-file-name)")")"
}
step_fullbuild() {
	make_ccwrap
	cd "$BRDIR"
	# shellcheck disable=SC2046 # gcc_vars prints separate words
	env HOST_CFLAGS=-fcommon CC="$CCWRAP/cc" CXX="$CCWRAP/c++" ./buildrump.sh -j"$JOBS" \
	    -s "$SRCDIR" -o "$OBJDIR" -d "$STAGE" \
	    -F CFLAGS=-fcommon -F CFLAGS=-Wno-error -F CFLAGS=-mstringop-strategy=libcall \
	    -V NOGCCERROR=1 $(gcc_vars) fullbuild
	[ -x "$RUMPMAKE" ] || { echo "rumpmake wrapper not created: $RUMPMAKE"; exit 1; }
}

# ---------------------------------------------------------------------------
# Step 2: the PCI components (RUMPPCIDEVS), which the default build leaves out;
# built the way rumprun does it.  librumpdev_pci needs rumpcomp_userfeatures_pci.h
# from the host side: we write it (same content as rumprun's platform/hw) and
# hand it in through the RUMPCOMP_MAKEFILEINC_rumpdev_pci make variable.  No
# hypercall sources: the rumpcomp_pci_* symbols stay undefined for the host.
# ---------------------------------------------------------------------------
step_pci() {
	mkdir -p "$PCIFEAT"
	cat >"$PCIFEAT/rumpcomp_userfeatures_pci.h" <<'EOF'
/* Written by build-kernel.sh (not part of NetBSD): host-side PCI features. */
#define RUMPCOMP_USERFEATURE_PCI_IOSPACE
#define RUMPCOMP_USERFEATURE_PCI_DMAFREE
EOF
	echo "CPPFLAGS+= -I$PCIFEAT" >"$PCIFEAT/Makefile.inc"

	# Newer trees (NetBSD 8.99), each harmless on the 2016 one:
	# - virtio.c, virtio_pci.c, if_vioif.c, vioscsi.c, ld_virtio.c and ld.c
	#   include "ioconf.c" under _MODULE, which rump's opt_rumpkernel.h
	#   defines, so their objects define the cfdriver and cfdata the
	#   component file already does (multiple definitions of virtio_cd);
	#   for those files a header of ours undefines _MODULE again;
	# - rumpdev_bus_dma.c calls min(), which libkern.h no longer declares
	#   (where it still does, min stays as it is);
	# - the virtio PCI attachment moved to virtio_pci.c, which the
	#   component's Makefile does not list.
	echo '#undef _MODULE' >"$PCIFEAT/rump_no_module.h"
	local f vars=() devs lib
	for f in virtio.c virtio_pci.c if_vioif.c vioscsi.c ld_virtio.c ld.c; do
		vars+=("CPPFLAGS.$f=-include $PCIFEAT/rump_no_module.h")
	done
	if ! grep -q 'u_int min(u_int, u_int)' "$SRCDIR/sys/lib/libkern/libkern.h"; then
		# Quoted for the shell make runs the compiler in.
		vars+=("CPPFLAGS.rumpdev_bus_dma.c='-Dmin(a,b)=MIN(a,b)'")
	fi
	devs=$(cd "$OBJDIR/tooldir" && "$RUMPMAKE" -f "$DEVCOMP" -V '${RUMPPCIDEVS}')
	[ -n "$devs" ] || { echo "RUMPPCIDEVS is empty in $DEVCOMP"; exit 1; }
	echo "RUMPPCIDEVS = $devs"
	for lib in $devs; do
		[ -d "$SRCDIR/sys/rump/dev/lib/lib$lib" ] || { echo "missing $SRCDIR/sys/rump/dev/lib/lib$lib"; exit 1; }
		cd "$SRCDIR/sys/rump/dev/lib/lib$lib"
		echo "=== lib$lib"
		local libvars=("${vars[@]}")
		if [ "$lib" = pci_virtio ] && [ -e "$SRCDIR/sys/dev/pci/virtio_pci.c" ]; then
			libvars+=("SRCS=virtio.c virtio_pci.c component_simple.c")
		fi
		"$RUMPMAKE" obj
		# make does not rebuild objects just because a variable changed.
		"$RUMPMAKE" clean
		"$RUMPMAKE" -j"$JOBS" RUMPCOMP_MAKEFILEINC_rumpdev_pci="$PCIFEAT/Makefile.inc" \
		    "${libvars[@]}" dependall
		"$RUMPMAKE" RUMPCOMP_MAKEFILEINC_rumpdev_pci="$PCIFEAT/Makefile.inc" \
		    "${libvars[@]}" install
	done
}

# ---------------------------------------------------------------------------
# Step 3: the components this project adds (netbsd-src/components/: their
# Makefiles and ioconf files, our own, naming NetBSD's driver sources in the
# user's tree): librumpdev_ata (atabus, wd) and librumpdev_ahcisata (AHCI),
# the disk drivers the Hurd's rumpdisk uses, which no src-netbsd branch
# builds as rump components.  They are copied into the object directory and
# built there, so the source trees stay untouched.
# ---------------------------------------------------------------------------
COMPONENTS_SRC=$(cd "$(dirname "$0")" && pwd)/components
COMPONENTS="ata ahcisata"
# librumpnet_rss: net/rss_config.c, which newer trees' wm calls and their
# rump network faction does not build.
if [ -e "$SRCDIR/sys/net/rss_config.c" ]; then
	COMPONENTS="$COMPONENTS rss"
fi
step_components() {
	local c
	rm -rf "$OBJDIR/components"
	cp -R "$COMPONENTS_SRC" "$OBJDIR/components"
	for c in $COMPONENTS; do
		cd "$OBJDIR/components/$c"
		echo "=== $c"
		"$RUMPMAKE" obj
		"$RUMPMAKE" -j"$JOBS" RUMPCOMP_MAKEFILEINC_rumpdev_pci="$PCIFEAT/Makefile.inc" dependall
		"$RUMPMAKE" RUMPCOMP_MAKEFILEINC_rumpdev_pci="$PCIFEAT/Makefile.inc" install
	done
}

# ---------------------------------------------------------------------------
# Step 4: rebuild librumpdev_usb with NUSB_DMA defined for usbdi.c.  usbdi.c
# includes usb_dma.h only under _KERNEL_OPT, which rump never defines, so
# NUSB_DMA is otherwise 0 and usbd_alloc_buffer never uses usb_allocmem (the
# KASSERT(ub_usedma == false) with a real host controller).  "clean" first:
# make does not rebuild objects just because a variable changed.
# ---------------------------------------------------------------------------
USBFIX='CPPFLAGS.usbdi.c=-DNUSB_DMA=1'
step_usb() {
	cd "$USBDIR"
	"$RUMPMAKE" obj
	"$RUMPMAKE" clean
	"$RUMPMAKE" -j"$JOBS" "$USBFIX" dependall
	"$RUMPMAKE" "$USBFIX" install
	check_usb_dma "$STAGE/lib/librumpdev_usb.a"
}

# The fixed usbdi.o calls usb_allocmem_flags (undefined there, defined in usb_mem.o).
check_usb_dma() {
	nm -A "$1" | grep 'usbdi.o:.*U rumpns_usb_allocmem_flags'
}

# ---------------------------------------------------------------------------
# Step 5: copy include/ and the static archives (no *_pic.a, no .so, no bin/
# or share/) into --out and strip their debug info (90 MB -> ~14 MB).
# ---------------------------------------------------------------------------
step_copy() {
	local a n=0
	[ -d "$STAGE/include/rump" ] || { echo "no $STAGE/include/rump"; exit 1; }
	cp -R "$STAGE/include" "$OUTDIR/include"
	mkdir -p "$OUTDIR/lib"
	for a in "$STAGE"/lib/*.a; do
		case $a in *_pic.a) continue ;; esac
		cp -p "$a" "$OUTDIR/lib/"
		n=$((n + 1))
	done
	echo "copied $n archives"
	strip --strip-debug "$OUTDIR"/lib/*.a
}

# ---------------------------------------------------------------------------
# Step 6: verify: every archive of BUILD.md's list and of step 3 is there, and the
# installed librumpdev_usb.a carries the NUSB_DMA fix.
# ---------------------------------------------------------------------------
EXPECTED="rump rumpclient rumpdev rumpdev_audio rumpdev_audio_ac97 rumpdev_bpf
rumpdev_cgd rumpdev_disk rumpdev_dm rumpdev_drvctl rumpdev_fss rumpdev_hdaudio_hdafg
rumpdev_md rumpdev_miiphy rumpdev_netsmb rumpdev_opencrypto rumpdev_pad rumpdev_pci
rumpdev_pci_auich rumpdev_pci_eap rumpdev_pci_hdaudio rumpdev_pci_if_iwn
rumpdev_pci_if_pcn rumpdev_pci_if_wm rumpdev_pci_usbhc rumpdev_pci_virtio rumpdev_pud
rumpdev_putter rumpdev_raidframe rumpdev_rnd rumpdev_scsipi rumpdev_sysmon rumpdev_ubt
rumpdev_ucom rumpdev_ugenhc rumpdev_ulpt rumpdev_umass rumpdev_usb
rumpdev_virtio_if_vioif rumpdev_virtio_ld rumpdev_virtio_viornd rumpdev_virtio_vioscsi
rumpdev_vnd rumpdev_wscons rumpfs_cd9660 rumpfs_efs rumpfs_ext2fs rumpfs_fdesc
rumpfs_ffs rumpfs_hfs rumpfs_kernfs rumpfs_lfs rumpfs_mfs rumpfs_msdos rumpfs_nfs
rumpfs_nfsserver rumpfs_nilfs rumpfs_ntfs rumpfs_null rumpfs_ptyfs rumpfs_smbfs
rumpfs_syspuffs rumpfs_sysvbfs rumpfs_tmpfs rumpfs_udf rumpfs_umap rumpfs_union
rumpfs_v7fs rumpkern_crypto rumpkern_sljit rumpkern_sys_linux rumpkern_sysproxy
rumpkern_tty rumpkern_z rumpnet rumpnet_agr rumpnet_bpfjit rumpnet_bridge rumpnet_config
rumpnet_gif rumpnet_local rumpnet_net rumpnet_net80211 rumpnet_netbt rumpnet_netinet
rumpnet_netinet6 rumpnet_netmpls rumpnet_npf rumpnet_pppoe rumpnet_shmif rumpnet_sockin
rumpnet_tap rumpnet_virtif rumpuser rumpvfs rumpvfs_aio rumpvfs_fifofs rumpvfs_layerfs
rumpdev_ata rumpdev_ahcisata"
step_verify() {
	local l missing=
	for l in $EXPECTED; do
		[ -s "$OUTDIR/lib/lib$l.a" ] || missing="$missing lib$l.a"
	done
	[ -z "$missing" ] || { echo "missing archives in $OUTDIR/lib:$missing"; exit 1; }
	[ -f "$OUTDIR/include/rump/rump.h" ] || { echo "missing $OUTDIR/include/rump/rump.h"; exit 1; }
	check_usb_dma "$OUTDIR/lib/librumpdev_usb.a" \
	    || { echo "librumpdev_usb.a lacks the NUSB_DMA fix"; exit 1; }
	echo "all $(echo $EXPECTED | wc -w) expected archives present; NUSB_DMA fix present"
}

echo "$prog: buildrump.sh=$BRDIR src=$SRCDIR obj=$OBJDIR out=$OUTDIR -j$JOBS"
run_step "1. buildrump.sh fullbuild"          step_fullbuild
run_step "2. PCI components (RUMPPCIDEVS)"    step_pci
run_step "3. components of netbsd-src/components" step_components
run_step "4. librumpdev_usb with NUSB_DMA=1"  step_usb
run_step "5. copy include/ + lib/*.a, strip"  step_copy
run_step "6. verify"                          step_verify

# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------
echo
echo "Summary:"
for i in "${!STEP_NAMES[@]}"; do
	printf '  %-38s %5d s\n' "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}"
done
printf '  %-38s %5d s\n' "total" "$(( $(date +%s) - T_START ))"
echo "  archives: $(ls "$OUTDIR"/lib/*.a | wc -l) in $OUTDIR/lib ($(du -sh "$OUTDIR/lib" | cut -f1))"
echo "  NUSB_DMA check: $(check_usb_dma "$OUTDIR/lib/librumpdev_usb.a")"
echo "Use it with RUMP_PREFIX=$OUTDIR"
