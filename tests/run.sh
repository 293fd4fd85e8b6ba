#!/usr/bin/env bash
# The project's test command: formatting, lints, every test, and the
# GNU/Hurd type-check of all code paths. Run tests/setup.sh once first.
#
# NetBSD kernel tests run when RUMP_PREFIX names a rump kernel install
# tree; otherwise each says "skipped: RUMP_PREFIX not set".
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p mach --no-default-features --features gnumach --locked -- -D warnings

step "GNU Mach test-bed tasks (their own workspace): fmt, clippy"
(cd tests/gnumach/tasks && cargo fmt -- --check \
    && cargo clippy --release --locked --target-dir ../../../target/gnumach-tasks -- -D warnings)

step "cargo test${RUMP_PREFIX:+ (RUMP_PREFIX=$RUMP_PREFIX)}"
cargo test --workspace --locked

step "GNU/Hurd type-check (x86_64-unknown-hurd-gnu)"
RUSTC_BOOTSTRAP=1 cargo check --workspace --all-targets --locked \
    -Zbuild-std=std,panic_abort --target x86_64-unknown-hurd-gnu

fuzz() {
    local target=$1 what=$2
    step "fuzz $what (${FUZZ_SECONDS:-60} s, ASan)"
    local log
    log=$(mktemp)
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" -- \
            -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1) >"$log" 2>&1; then
        tail -n 80 "$log"
        echo "fuzzing $target failed (the crashing input is under fuzz/artifacts/)"
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log"
    rm -f "$log"
}
fuzz device_dispatch "the device server's request decoder and dispatcher"
fuzz netfs_dispatch "the file server's io/fs/fsys decoders and dispatcher"
fuzz net_filter "the packet-filter compiler and interpreter"

step "main job (README): rumpdisk/demo.sh"
bash rumpdisk/demo.sh

step "all green"
