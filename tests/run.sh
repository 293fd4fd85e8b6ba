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

step "cargo test${RUMP_PREFIX:+ (RUMP_PREFIX=$RUMP_PREFIX)}"
cargo test --workspace --locked

step "GNU/Hurd type-check (x86_64-unknown-hurd-gnu)"
RUSTC_BOOTSTRAP=1 cargo check --workspace --all-targets --locked \
    -Zbuild-std=std,panic_abort --target x86_64-unknown-hurd-gnu

step "all green"
