#!/usr/bin/env bash
# Runs every test of smtp-canary: formatting, lints, the hermetic unit and integration
# tests, then the tests against the real mail stack (tests/stack/). This is the README's
# test command and what CI (.ci/run) runs. Needs root for apt and the daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

step "toolchain: $(cargo --version)"
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (hermetic: unit tests and the in-process SMTP server)"
cargo test --locked --all-targets

step "done in $(( $(date +%s) - t0 ))s"
