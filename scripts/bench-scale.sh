#!/usr/bin/env bash
# Scale benchmark: one smtp-canary instance schedules N mailboxes (default 10,000) against
# a loopback SMTP sink running in its own process (examples/smtp_sink.rs: STARTTLS, AUTH,
# messages discarded), for DURATION seconds. Reports the daemon's CPU per probe (from
# /proc utime+stime, start-up excluded), its memory (RSS and peak) and how late probes
# start against their schedule (smtp_canary_scheduler_lateness_seconds).
#
#   scripts/bench-scale.sh                  # N=10000 INTERVAL=5m DURATION=120
#   N=1000 DURATION=60 scripts/bench-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
INTERVAL=${INTERVAL:-5m}
DURATION=${DURATION:-120}
WARMUP=${WARMUP:-15}

cargo build --release --quiet --bin smtp-canary --example smtp_sink
tmp=$(mktemp -d /tmp/smtp-canary-bench.XXXXXX)
cleanup() { kill "${DAEMON:-}" "${SINK:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(free_port); WEB_PORT=$(free_port)
target/release/examples/smtp_sink "127.0.0.1:$SINK_PORT" "$tmp/ca.pem" > "$tmp/sink.out" 2>&1 &
SINK=$!
for _ in $(seq 100); do grep -q ready "$tmp/sink.out" 2>/dev/null && break; sleep 0.1; done

printf 'bench-password\n' > "$tmp/password"
python3 - "$N" "$SINK_PORT" "$tmp" "$INTERVAL" > "$tmp/config.yaml" <<'PY'
import sys
n, port, tmp, interval = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print("global:\n  interval: %s\n  timeout: 30s\nmailboxes:" % interval)
for i in range(n):
    print(f"""  - name: bench-{i:05d}
    host: 127.0.0.1
    port: {port}
    username: bench-{i}@bench.example
    password_file: {tmp}/password
    from: bench-{i}@bench.example
    to: [sink@bench.example]
    tls: {{ca_file: {tmp}/ca.pem}}""")
PY

t0=$(date +%s.%N)
target/release/smtp-canary --config.file "$tmp/config.yaml" --state.dir "$tmp/state" \
  --web.listen-address "127.0.0.1:$WEB_PORT" --log.level warn 2> "$tmp/daemon.log" &
DAEMON=$!
for _ in $(seq 300); do curl -fsS "127.0.0.1:$WEB_PORT/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
t_ready=$(date +%s.%N)

TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{print ($14+$15)/t}' "/proc/$DAEMON/stat"; }
probes() { curl -fsS "127.0.0.1:$WEB_PORT/metrics" | awk '/^smtp_canary_probes_total\{/ {s+=$2} END {print s+0}'; }

sleep "$WARMUP"
# Scrapes are kept out of the probing window and measured on their own.
rss_noscrape=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status")
p0=$(probes); cpu0=$(cpu)
sleep "$DURATION"
cpu1=$(cpu); p1=$(probes)
cpu2=$(cpu); s0=$(date +%s.%N)
curl -fsS "127.0.0.1:$WEB_PORT/metrics" > "$tmp/metrics.txt"
s1=$(date +%s.%N); cpu3=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$DAEMON/status")

python3 - "$tmp/metrics.txt" "$cpu0" "$cpu1" "$p0" "$p1" "$rss" "$hwm" "$N" "$INTERVAL" "$DURATION" "$t0" "$t_ready" "$cpu2" "$cpu3" "$s0" "$s1" "$rss_noscrape" <<'PY'
import sys, re, os
m, cpu0, cpu1, p0, p1, rss, hwm, n, interval, dur, t0, tr, c2, c3, s0, s1, rss0 = sys.argv[1:]
cpu0, cpu1, p0, p1 = float(cpu0), float(cpu1), float(p0), float(p1)
text = open(m).read()
ok = sum(1 for l in text.splitlines() if l.startswith("smtp_canary_probe_success{") and l.endswith(" 1"))
fail = sum(1 for l in text.splitlines() if l.startswith("smtp_canary_probe_success{") and l.endswith(" 0"))
buckets = [(float(b), float(v)) for b, v in re.findall(r'smtp_canary_scheduler_lateness_seconds_bucket\{le="([^"+]+)"\} (\S+)', text)]
count = float(re.search(r"smtp_canary_scheduler_lateness_seconds_count (\S+)", text).group(1))
total = float(re.search(r"smtp_canary_scheduler_lateness_seconds_sum (\S+)", text).group(1))
def q(p):
    for le, c in buckets:
        if c >= p * count: return f"<= {le*1000:g} ms"
    return "> 30 s"
probes = p1 - p0
print(f"mailboxes:              {n} (interval {interval})")
print(f"start-up to ready:      {float(tr) - float(t0):.2f} s")
print(f"measured window:        {dur} s, {probes:.0f} probes ({probes/float(dur):.1f}/s)")
print(f"CPU per probe:          {(cpu1-cpu0)/probes*1000:.3f} ms  (daemon utime+stime {cpu1-cpu0:.2f} s)")
print(f"memory:                 RSS {int(rss0)/1024:.1f} MiB before the first scrape; {int(rss)/1024:.1f} MiB after scrapes, peak {int(hwm)/1024:.1f} MiB")
print(f"schedule lateness:      mean {total/count*1000:.2f} ms, p50 {q(0.5)}, p99 {q(0.99)} ({count:.0f} probes)")
print(f"last results:           {ok} success, {fail} failed")
print(f"one /metrics scrape:    {os.path.getsize(m)/1048576:.1f} MiB, {float(s1)-float(s0):.2f} s, {float(c3)-float(c2):.2f} s CPU")
PY
