#!/usr/bin/env bash
# Runs every test of smtp-canary: formatting, lints, the hermetic unit and integration
# tests, then the tests against the real mail stack (tests/stack/). This is the README's
# test command and what CI (.ci/run) runs. Needs root for apt and the daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

# The real-stack tests need root (apt-get install, and Postfix, Dovecot, Knot, OpenDKIM and
# Prometheus run as their own users): fail now, not after the lints.
if [ "$(id -u)" != 0 ]; then
  echo "test-all.sh: must run as root: the mail-stack tests install Debian packages and start" >&2
  echo "  Postfix/Dovecot/OpenDKIM/Knot/Prometheus on loopback (tests/stack/up.sh)." >&2
  echo "  Run: sudo ./scripts/test-all.sh    (or plain \`cargo test\` for the hermetic subset)" >&2
  exit 1
fi
export STACK_ROOT=${STACK_ROOT:-/var/tmp/smtp-canary-stack}

step "toolchain: $(cargo --version)"
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (hermetic: unit tests and the in-process SMTP server)"
cargo test --locked --all-targets

# Every integration test is in the one binary tests/integration/; its ignored tests run by
# module below, each group at the point where what it needs is there.
ignored() {
  step "cargo test --test integration -- --ignored $1:: ($2)"
  cargo test --locked --test integration -- --ignored "$1::"
}

ignored hardening "as root: kill -9 on a full and a read-only tmpfs, a foreign-owned state dir"

# The stack is stopped again at exit only if this script started it (a developer's running
# stack stays up; up.sh restarts it either way, it is idempotent). STACK_KEEP_UP=1 keeps it.
stack_was_up=0
[ -f "$STACK_ROOT/run/stack.env" ] && stack_was_up=1
stack_started=0
stop_stack() {
  local rc=$?
  if [ "$stack_started" = 1 ] && [ "$stack_was_up" = 0 ] && [ "${STACK_KEEP_UP:-0}" != 1 ]; then
    step "tests/stack/down.sh"
    tests/stack/down.sh > /dev/null || echo "test-all.sh: tests/stack/down.sh failed" >&2
  fi
  exit "$rc"
}
trap stop_stack EXIT

step "tests/stack/up.sh (mail stack on loopback; installs packages when missing)"
ts=$(date +%s)
stack_started=1
tests/stack/up.sh

ignored stack_integration "real Postfix, Dovecot, OpenDKIM, Knot, Prometheus"
ignored oauth_stack "XOAUTH2 through Postfix + Dovecot introspection on 127.0.0.1:18080"
ignored audit_knot "DNS audit against its own knotd and zones"
ignored delivery_stack "delivery verification: sinks over IMAPS and STARTTLS, Sieve Junk, DSNs, DKIM at the MX"
ignored dashboards_live "every dashboard query and alert rule on a real Prometheus; serves 127.0.0.1:18080 too"
# The deployment-file checks run promtool (installed with the stack), kubectl kustomize,
# systemd-analyze and python3; install the Debian packages that are missing.
need() { command -v "$1" > /dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"; }; }
need kubectl kubernetes-client; need systemd-analyze systemd; need python3 python3
ignored deploy_files "promtool test rules, kubectl kustomize, systemd-analyze verify"
step "mail-stack part took $(( $(date +%s) - ts ))s"

step "done in $(( $(date +%s) - t0 ))s"
