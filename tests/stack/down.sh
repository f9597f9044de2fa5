#!/usr/bin/env bash
# tests/stack/down.sh - stop the stack started by up.sh, by recorded PID (after the
# daemon's own stop command where it has one). Only touches the PIDs up.sh recorded
# or the daemons' own pidfiles under $STACK_ROOT; never kills by name.
# A zombie counts as stopped (PID 1 here reaps orphans only every ~2 s).
set -uo pipefail
STACK_ROOT=${STACK_ROOT:-/var/tmp/smtp-canary-stack}
ROOT=${STACK_ROOT%/}
[ "$(id -u)" = 0 ] || { echo "down.sh: must run as root" >&2; exit 1; }
[ -d "$ROOT" ] || { echo "down.sh: $ROOT does not exist, nothing to stop"; exit 0; }

# The ports the running instance was started with (else the env / defaults).
if [ -s "$ROOT/run/stack.env" ]; then
  # shellcheck disable=SC1091
  eval "$(grep -E '^STACK_(SMTP|IMAP|IMAPS|DKIM|DNS|PROM|MX|DKIM_VERIFY)_PORT=[0-9]+$' "$ROOT/run/stack.env")"
fi
PORTS=("${STACK_SMTP_PORT:-10587}" "${STACK_IMAP_PORT:-10143}" "${STACK_IMAPS_PORT:-10993}"
       "${STACK_DKIM_PORT:-18891}" "${STACK_DNS_PORT:-5353}" "${STACK_PROM_PORT:-19090}"
       "${STACK_MX_PORT:-10025}" "${STACK_DKIM_VERIFY_PORT:-18892}")

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }
comm_of() { cat "/proc/$1/comm" 2>/dev/null; }
pidfile() { [ -s "$1" ] && tr -dc '0-9' < "$1"; }

# stop_pid NAME PID EXPECTED_COMM_REGEX [official stop command...]
stop_pid() {
  local name=$1 pid=$2 re=$3 i; shift 3
  if ! alive "$pid"; then echo "$name: not running"; return 0; fi
  if ! comm_of "$pid" | grep -Eq "$re"; then
    echo "$name: pid $pid is '$(comm_of "$pid")', not ours - left alone"; return 0; fi
  if [ $# -gt 0 ]; then "$@" >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null; else kill -TERM "$pid" 2>/dev/null; fi
  for i in $(seq 1 100); do alive "$pid" || { echo "$name: stopped (pid $pid${1:+, via $*})"; return 0; }; sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 30); do alive "$pid" || { echo "$name: stopped (pid $pid, SIGTERM)"; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; echo "$name: SIGKILLed (pid $pid)"
}

# In parallel: opendkim (libmilter) needs ~5 s and dovecot ~3 s to exit.
PF_PID=$(pidfile "$ROOT/spool/pid/master.pid"); [ -n "$PF_PID" ] || PF_PID=$(pidfile "$ROOT/run/postfix.pid")
DC_PID=$(pidfile "$ROOT/run/dovecot/master.pid"); [ -n "$DC_PID" ] || DC_PID=$(pidfile "$ROOT/run/dovecot.pid")
stop_pid prometheus "$(pidfile "$ROOT/run/prometheus.pid")" '^prometheus$' &
stop_pid postfix    "$PF_PID" '^master$' postfix -c "$ROOT/etc/postfix" stop &
stop_pid dovecot    "$DC_PID" '^dovecot$' doveadm -c "$ROOT/etc/dovecot.conf" stop &
stop_pid opendkim   "$(pidfile "$ROOT/run/opendkim.pid")" '^opendkim$' &
stop_pid opendkim-verify "$(pidfile "$ROOT/run/opendkim-verify.pid")" '^opendkim$' &
stop_pid knotd      "$(pidfile "$ROOT/run/knotd.pid")"    '^knotd$' &
wait

rm -f "$ROOT"/run/{prometheus,postfix,dovecot,opendkim,opendkim-verify,knotd}.pid "$ROOT/run/stack.env"
left=""
for i in $(seq 1 30); do   # a just-killed listener can linger a moment
  left=$(ss -H -ltnup 2>/dev/null | grep -E "127\.0\.0\.1:($(IFS='|'; echo "${PORTS[*]}")) " || true)
  [ -z "$left" ] && break; sleep 0.1
done
if [ -z "$left" ]; then echo "all stack ports closed (${PORTS[*]})"; else echo "still listening:"; echo "$left"; exit 1; fi
