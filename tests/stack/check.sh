#!/usr/bin/env bash
# tests/stack/check.sh - end-to-end sanity checks of the stack started by up.sh.
# Prints the server replies that matter and ends with "check: N passed, M failed"
# (exit 1 on any failure). Each rate-limited scenario uses a fresh random 127.x.y.z
# source address (Postfix anvil counts per client IP), so it can be re-run back to back.
set -uo pipefail
STACK_ROOT=${STACK_ROOT:-/var/tmp/smtp-canary-stack}
ENVF=${STACK_ROOT%/}/run/stack.env
[ -s "$ENVF" ] || { echo "check.sh: $ENVF missing: is the stack up (tests/stack/up.sh)?" >&2; exit 1; }
set -a; . "$ENVF"; set +a
PY=/usr/bin/python3                       # Debian python (python3-dkim / dnspython), not pyenv
PASS=0; FAIL=0
ok()   { PASS=$((PASS+1)); echo "  PASS: $*"; }
bad()  { FAIL=$((FAIL+1)); echo "  FAIL: $*"; }
hdr()  { echo; echo "== $*"; }
rip()  { echo "127.$((RANDOM%200+20)).$((RANDOM%250+1)).$((RANDOM%250+2))"; }
TOKEN="canary-$(date +%s)-$RANDOM"
SW=(swaks --server "$STACK_HOST" --port "$STACK_SMTP_PORT" --ehlo prober.example.test
    --from "$STACK_USER" --to "$STACK_USER" --tls --tls-verify --tls-ca-path "$STACK_CA_FILE")
PORTS="$STACK_SMTP_PORT|$STACK_IMAP_PORT|$STACK_IMAPS_PORT|$STACK_DKIM_PORT|$STACK_DNS_PORT|$STACK_PROM_PORT|$STACK_MX_PORT|$STACK_DKIM_VERIFY_PORT"

hdr "0. listeners (must all be on 127.0.0.1)"
L=$(ss -H -ltnu | awk '{print $1, $5}' | grep -E ":($PORTS)\$" | sort -u)
echo "$L" | sed 's/^/    /'
# 8 TCP listeners (incl. the sink.test MX and the DKIM verifier) + Knot's UDP socket
if [ "$(echo "$L" | awk '{print $2}' | grep -vc '^127\.0\.0\.1:')" = 0 ] && [ "$(echo "$L" | grep -c '^tcp')" = 8 ] \
   && echo "$L" | grep -q "^udp 127.0.0.1:$STACK_DNS_PORT\$"; then ok "8 TCP + 1 UDP loopback listeners"; else bad "listeners"; fi

hdr "1a. good credentials, AUTH PLAIN"
SRC=$(rip); out=$("${SW[@]}" -li "$SRC" --auth PLAIN --auth-user "$STACK_USER" --auth-password "$STACK_PASS" --header "Subject: $TOKEN plain" 2>&1); rc=$?
echo "$out" | grep -E '^<~\*? +(235|250 2\.0\.0|[45][0-9][0-9] )' | sed 's/^/    /'
[ $rc = 0 ] && echo "$out" | grep -q '^<~  250 2.0.0 Ok: queued as' && ok "PLAIN -> 235, 250 queued" || bad "PLAIN (swaks rc=$rc)"

hdr "1b. good credentials, AUTH LOGIN"
out=$("${SW[@]}" -li "$SRC" --auth LOGIN --auth-user "$STACK_USER" --auth-password "$STACK_PASS" --header "Subject: $TOKEN login" 2>&1); rc=$?
echo "$out" | grep -E '^<~\*? +(235|250 2\.0\.0|[45][0-9][0-9] )' | sed 's/^/    /'
[ $rc = 0 ] && echo "$out" | grep -q '^<~  250 2.0.0 Ok: queued as' && ok "LOGIN -> 235, 250 queued" || bad "LOGIN (swaks rc=$rc)"

hdr "1c. bad password"
out=$("${SW[@]}" -li "$(rip)" --auth PLAIN --auth-user "$STACK_USER" --auth-password wrong-password 2>&1)
echo "$out" | grep -E '^<~\* ' | sed 's/^/    /'
echo "$out" | grep -q '^<~\* 535 5.7.8 ' && ok "bad password -> 535 5.7.8" || bad "bad password"

hdr "1d. message rate limit: $((STACK_RATE_MSGS+1)) messages from one fresh client IP"
SRC=$(rip); got4xx=""
for i in $(seq 1 $((STACK_RATE_MSGS+1))); do
  out=$("${SW[@]}" -li "$SRC" --auth PLAIN --auth-user "$STACK_USER" --auth-password "$STACK_PASS" --header "Subject: $TOKEN burst $i" 2>&1)
  line=$(echo "$out" | grep -E '^<~\*? +(250 2\.0\.0|4[0-9][0-9] )' | head -1); echo "    #$i $line"
  echo "$line" | grep -q '^<~\* 4' && got4xx="$line"
done
echo "$got4xx" | grep -q '450 4.7.1 Error: too much mail from' && ok "burst -> 450 4.7.1" || bad "no 450 4.7.1 throttle"

hdr "1e. connection rate limit: up to $((STACK_RATE_CONN+5)) connections from one fresh client IP"
c421=$(SRC=$(rip) $PY - <<'EOF'
import os, socket
E = os.environ
for i in range(1, int(E["STACK_RATE_CONN"]) + 6):
    s = socket.create_connection((E["STACK_HOST"], int(E["STACK_SMTP_PORT"])), 5, source_address=(E["SRC"], 0))
    b = s.makefile("rb").readline().decode().strip(); s.sendall(b"QUIT\r\n"); s.close()
    if not b.startswith("220"): print("connection #%d: %s" % (i, b)); break
else: print("no refusal")
EOF
)
echo "    $c421"
echo "$c421" | grep -q "421 4.7.0 $STACK_TLS_NAME Error: too many connections from" && ok "connection burst -> 421 4.7.0" || bad "no 421 4.7.0"

hdr "2. canary in the Maildir, DKIM-signed"
f=""
for i in $(seq 1 50); do
  f=$(grep -l "^Subject: $TOKEN plain" "$STACK_MAILDIR"/new/* "$STACK_MAILDIR"/cur/* 2>/dev/null | head -1)
  [ -n "$f" ] && break; sleep 0.1
done
echo "    file: ${f:-<none>}"
[ -n "$f" ] && ok "canary delivered to $STACK_MAILDIR" || bad "canary not in Maildir"
# the header is folded: unfold it (continuation lines start with white space)
sig=$([ -n "$f" ] && awk '/^DKIM-Signature:/{h=1; s=$0; next} h && /^[ \t]/{s=s $0; next} h{print s; exit}' "$f" | tr -s ' \t' ' ')
echo "    ${sig:-<no DKIM-Signature>}" | cut -c1-110
echo "$sig" | grep -q " d=$STACK_DOMAIN;" && echo "$sig" | grep -q " s=$STACK_DKIM_SELECTOR;" \
  && ok "DKIM-Signature d=$STACK_DOMAIN s=$STACK_DKIM_SELECTOR" || bad "no DKIM-Signature"
v=$([ -n "$f" ] && $PY - "$f" <<'EOF'
import os, sys, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False); r.nameservers = ["127.0.0.1"]; r.port = int(os.environ["STACK_DNS_PORT"])
def txt(name, timeout=5):
    return b"".join(b"".join(x.strings) for x in r.resolve(name.decode() if isinstance(name, bytes) else name, "TXT", lifetime=timeout))
print("dkim.verify:", dkim.verify(open(sys.argv[1], "rb").read(), dnsfunc=txt))
EOF
)
echo "    $v"; [ "$v" = "dkim.verify: True" ] && ok "DKIM verifies against the key in Knot" || bad "DKIM verify"

hdr "3. IMAP (STARTTLS :$STACK_IMAP_PORT, IMAPS :$STACK_IMAPS_PORT)"
imap=$(TOKEN=$TOKEN SRC=$(rip) $PY - <<'EOF'
import os, ssl, socket, imaplib
E = os.environ; ctx = ssl.create_default_context(cafile=E["STACK_CA_FILE"])
class Src(imaplib.IMAP4):      # not from 127.0.0.1: Dovecot treats rip==lip as "secured"
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(E["SRC"], 0))
m = Src(E["STACK_HOST"], int(E["STACK_IMAP_PORT"]))
try: m.login(E["STACK_USER"], E["STACK_PASS"]); print("pre-TLS LOGIN: UNEXPECTEDLY OK")
except imaplib.IMAP4.error as e: print("pre-TLS LOGIN refused:", e.args[0].decode() if isinstance(e.args[0], bytes) else e.args[0])
m.starttls(ssl_context=ctx); print("STARTTLS LOGIN:", m.login(E["STACK_USER"], E["STACK_PASS"])[0])
m.select("INBOX", readonly=True)
typ, d = m.search(None, "SUBJECT", '"%s plain"' % E["TOKEN"]); print("SEARCH token:", typ, len(d[0].split()), "hit(s)")
m.logout()
m = imaplib.IMAP4_SSL(E["STACK_HOST"], int(E["STACK_IMAPS_PORT"]), ssl_context=ctx)
print("IMAPS LOGIN:", m.login(E["STACK_USER"], E["STACK_PASS"])[0]); m.logout()
EOF
)
echo "$imap" | sed 's/^/    /'
echo "$imap" | grep -q '^pre-TLS LOGIN refused: \[PRIVACYREQUIRED\]' && ok "IMAP LOGIN refused before STARTTLS" || bad "IMAP pre-TLS"
echo "$imap" | grep -q '^SEARCH token: OK 1 hit' && ok "canary found over IMAP STARTTLS" || bad "IMAP search"
echo "$imap" | grep -q '^IMAPS LOGIN: OK' && ok "IMAPS login" || bad "IMAPS"

hdr "4. DNS (Knot) @127.0.0.1 -p $STACK_DNS_PORT"
for q in "$STACK_DOMAIN MX" "$STACK_DOMAIN TXT" "_dmarc.$STACK_DOMAIN TXT" "$STACK_DKIM_SELECTOR._domainkey.$STACK_DOMAIN TXT" "$STACK_TLS_NAME A"; do
  a=$(dig +norec +short +time=2 +tries=1 @127.0.0.1 -p "$STACK_DNS_PORT" $q); echo "    $q -> $(echo $a | cut -c1-100)"
  [ -n "$a" ] && ok "dig $q" || bad "dig $q"
done
[ "$(dig +short @127.0.0.1 -p "$STACK_DNS_PORT" "$STACK_TLS_NAME" A)" = 127.0.0.1 ] && ok "$STACK_TLS_NAME A 127.0.0.1" || bad "A record"
dig +norec @127.0.0.1 -p "$STACK_DNS_PORT" "$STACK_DOMAIN" MX | grep -q 'flags: qr aa' && ok "authoritative (aa) answers" || bad "aa flag"

hdr "5. Prometheus $STACK_PROM_URL"
curl -fsS "$STACK_PROM_URL/-/ready" >/dev/null && ok "/-/ready" || bad "/-/ready"
promtool check config "$STACK_ROOT/etc/prometheus/prometheus.yml" >/dev/null 2>&1 && ok "promtool check config" || bad "promtool check config"
# file_sd: register Prometheus itself as a fake smtp-canary target, wait for it to be up, remove it.
CF="$STACK_PROM_TARGETS_DIR/check-sh-$$.json"
printf '[{"targets": ["127.0.0.1:%s"], "labels": {"test": "check-sh-%s"}}]\n' "$STACK_PROM_PORT" "$$" > "$CF.tmp" && mv "$CF.tmp" "$CF"
t=""
for i in $(seq 1 60); do
  t=$(curl -fsS "$STACK_PROM_URL/api/v1/targets?state=active" | $PY -c '
import json, sys
d = json.load(sys.stdin)["data"]["activeTargets"]
print(" ".join(sorted(x["labels"]["job"] + "=" + x["health"] for x in d if x["labels"].get("test") in (None, "check-sh-'$$'"))))')
  [ "$t" = "prometheus=up smtp-canary=up" ] && break; sleep 0.5
done
rm -f "$CF"
echo "    targets: $t"
[ "$t" = "prometheus=up smtp-canary=up" ] && ok "self-scrape up, file_sd target (job=$STACK_PROM_JOB) up" || bad "prometheus targets"
q=$(curl -fsS "$STACK_PROM_URL/api/v1/query" --data-urlencode 'query=up{job="prometheus"}' | $PY -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")')
echo "    up{job=\"prometheus\"} = $q"; [ "$q" = 1 ] && ok "query API: up == 1" || bad "query API"

if [ "${STACK_OAUTH2:-0}" = 1 ]; then
  hdr "6. XOAUTH2 via a throw-away introspection endpoint on 127.0.0.1:$STACK_OAUTH2_PORT"
  if ss -H -ltn | awk '{print $4}' | grep -qx "127.0.0.1:$STACK_OAUTH2_PORT"; then
    echo "    port $STACK_OAUTH2_PORT busy (a test's endpoint?): skipped"
  else
    x=$(SRC=$(rip) timeout 30 $PY - <<'EOF'
import os, json, ssl, socket, base64, smtplib, imaplib, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
E = os.environ
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        tok = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()).get("token", [""])[0]
        users = {"GOODTOKEN": E["STACK_USER"], "SINKTOKEN": E["STACK_SINK_USER"]}   # token -> its user
        body = json.dumps({"active": True, "username": users[tok]} if tok in users else {"active": False}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
srv = ThreadingHTTPServer(("127.0.0.1", int(E["STACK_OAUTH2_PORT"])), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
ctx = ssl.create_default_context(cafile=E["STACK_CA_FILE"])   # cert has SAN IP:127.0.0.1
for tok in ("GOODTOKEN", "BADTOKEN"):
    s = smtplib.SMTP(E["STACK_HOST"], int(E["STACK_SMTP_PORT"]), source_address=(E["SRC"], 0), timeout=15)
    s.ehlo(); s.starttls(context=ctx); s.ehlo()
    ir = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (E["STACK_USER"], tok)).encode()).decode()
    s.putcmd("AUTH XOAUTH2 " + ir); c, m = s.getreply(); r = "%d %s" % (c, m.decode())
    if c == 334: s.putcmd(""); c, m = s.getreply(); r += " / %d %s" % (c, m.decode())
    print(tok, "->", r); s.close()
# the sink user over IMAP: XOAUTH2 on IMAPS and after STARTTLS (not from 127.0.0.1, see 3.)
class Src(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(E["SRC"], 0))
xo = lambda u, t: ("user=%s\x01auth=Bearer %s\x01\x01" % (u, t)).encode()
for how in ("IMAPS", "STARTTLS"):
    for tok in ("SINKTOKEN", "BADTOKEN"):
        if how == "IMAPS": m = imaplib.IMAP4_SSL(E["STACK_HOST"], int(E["STACK_IMAPS_PORT"]), ssl_context=ctx, timeout=15)
        else: m = Src(E["STACK_HOST"], int(E["STACK_IMAP_PORT"]), timeout=15); m.starttls(ssl_context=ctx)
        try: r = m.authenticate("XOAUTH2", lambda c, t=tok: b"" if c else xo(E["STACK_SINK_USER"], t))[0]   # error challenge: empty reply
        except imaplib.IMAP4.error as e: r = "NO"
        print("IMAP", how, "XOAUTH2", tok, "->", r); m.logout()
srv.shutdown()
EOF
)
    echo "$x" | sed 's/^/    /'
    echo "$x" | grep -q '^GOODTOKEN -> 235 2.7.0' && ok "XOAUTH2 good token -> 235" || bad "XOAUTH2 good token"
    echo "$x" | grep -q '^BADTOKEN -> 334 .* / 535 5.7.8' && ok "XOAUTH2 bad token -> 334, 535 5.7.8" || bad "XOAUTH2 bad token"
    [ "$(echo "$x" | grep -c '^IMAP .* XOAUTH2 SINKTOKEN -> OK$')" = 2 ] && ok "IMAP XOAUTH2 as $STACK_SINK_USER (IMAPS, STARTTLS)" || bad "IMAP XOAUTH2 sink user"
    [ "$(echo "$x" | grep -c '^IMAP .* XOAUTH2 BADTOKEN -> NO$')" = 2 ] && ok "IMAP XOAUTH2 bad token refused" || bad "IMAP XOAUTH2 bad token"
  fi
fi

hdr "7. receiving side: $STACK_SINK_DOMAIN MX :$STACK_MX_PORT (DKIM verifier :$STACK_DKIM_VERIFY_PORT, LMTP, Sieve)"
T7="s$(date +%s)r$RANDOM"
LOGOFF=$(stat -c %s "$STACK_POSTFIX_LOG")
# send VALUE [swaks args...]: one message with X-Smtp-Canary: VALUE to the sink user, from a fresh IP
send() { local v=$1; shift
  "${SW[@]}" -li "$(rip)" --auth PLAIN --auth-user "$STACK_USER" --auth-password "$STACK_PASS" \
    --to "$STACK_SINK_USER" --header "X-Smtp-Canary: $v" --header "Subject: $v" \
    --header "Message-Id: <$v@$STACK_DOMAIN>" "$@" 2>&1 | grep -E '^<~\*? +(250 2\.0\.0|[45][0-9][0-9] )' | tail -1; }
for v in "inbox-$T7" "x-junk-$T7" "lost-$T7" "late-$T7"; do echo "    $v: $(send "$v")"; done
echo "    dkimfail-$T7 (From $STACK_DKIM_FAIL_FROM): $(send "dkimfail-$T7" --from "$STACK_DKIM_FAIL_FROM")"
echo "    bounce-$T7 (to $STACK_BOUNCE_RCPT): $(send "bounce-$T7" --to "$STACK_BOUNCE_RCPT")"
mxlog() { tail -c +$((LOGOFF+1)) "$STACK_POSTFIX_LOG"; }
qid=""
for i in $(seq 1 50); do
  qid=$(mxlog | sed -n "s/.* \([0-9A-F]\{6,\}\): hold: header X-Smtp-Canary: late-$T7 .*/\1/p" | head -1)
  [ -n "$qid" ] && mxlog | grep -q "discard: header X-Smtp-Canary: lost-$T7 " && break; sleep 0.2
done
mxlog | grep -E "(discard|hold): header X-Smtp-Canary: (lost|late)-$T7 |reject: RCPT .*<$STACK_BOUNCE_RCPT>" | sed 's/^.*\(postfix\/[^:]*\): /    \1: /' | cut -c1-170
mxlog | grep -q "discard: header X-Smtp-Canary: lost-$T7 " && ok "lost-* discarded by the MX cleanup (log)" || bad "no discard for lost-*"
mxlog | grep -q "reject: RCPT from .* 550 5.1.1 <$STACK_BOUNCE_RCPT>: Recipient address rejected: User unknown" \
  && ok "MX: RCPT $STACK_BOUNCE_RCPT -> 550 5.1.1 User unknown" || bad "MX did not reject $STACK_BOUNCE_RCPT"
q=$([ -n "$qid" ] && postqueue -c "$STACK_ROOT/etc/postfix" -p | grep "^$qid!")
echo "    postqueue -p: ${q:-<not held>}"
[ -n "$q" ] && ok "late-* held in the queue ($qid!)" || bad "late-* not held"

# IMAP: wait for the deliveries, then read what a delivery verifier would read
imapcheck() { PHASE=$1 T7=$T7 SRC=$(rip) timeout 60 $PY - <<'EOF'
import os, re, ssl, time, socket, imaplib
E = os.environ; T7 = E["T7"]; ctx = ssl.create_default_context(cafile=E["STACK_CA_FILE"])
def login(user, pw, starttls=False):
    if starttls:
        class Src(imaplib.IMAP4):
            def _create_socket(self, timeout):
                return socket.create_connection((self.host, self.port), timeout, source_address=(E["SRC"], 0))
        m = Src(E["STACK_HOST"], int(E["STACK_IMAP_PORT"]), timeout=15); m.starttls(ssl_context=ctx)
    else: m = imaplib.IMAP4_SSL(E["STACK_HOST"], int(E["STACK_IMAPS_PORT"]), ssl_context=ctx, timeout=15)
    m.login(user, pw); return m
def find(m, box, v):            # -> header block (str) of the message whose X-Smtp-Canary is v, or None
    m.select(box, readonly=True)
    typ, d = m.uid("SEARCH", None, "HEADER", "X-Smtp-Canary", '"%s"' % v)
    uids = d[0].split()
    if not uids: return None
    typ, d = m.uid("FETCH", uids[-1], "(BODY.PEEK[HEADER])")
    return d[0][1].decode(errors="replace")
def wait(m, box, v, secs=15):
    end = time.time() + secs
    while True:
        h = find(m, box, v)
        if h is not None or time.time() > end: return h
        time.sleep(0.3)
def ar(h):                       # the topmost Authentication-Results, unfolded
    m = re.search(r"^Authentication-Results:(.*(?:\r?\n[ \t].*)*)", h, re.M | re.I)
    return re.sub(r"\s+", " ", m.group(1)).strip() if m else None
sink = login(E["STACK_SINK_USER"], E["STACK_SINK_PASS"])
if E["PHASE"] == "deliveries":
    print("IMAPS login", E["STACK_SINK_USER"], "OK")
    m2 = login(E["STACK_SINK_USER"], E["STACK_SINK_PASS"], starttls=True); print("STARTTLS login", E["STACK_SINK_USER"], "OK"); m2.logout()
    typ, caps = sink.capability(); caps = caps[0].decode().split()
    print("CAPABILITY has:", " ".join(c for c in ("IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE") if c in caps))
    typ, l = sink._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)"); typ, l = sink._untagged_response(typ, l, "LIST")
    print("LIST RETURN (SPECIAL-USE):", " | ".join(x.decode() for x in l if x))
    h = wait(sink, "INBOX", "inbox-" + T7)
    print("inbox: in INBOX" if h else "inbox: MISSING")
    if h: print("inbox A-R:", ar(h))
    h = wait(sink, "Junk", "x-junk-" + T7)
    print("junk: in Junk" if h else "junk: MISSING from Junk", "/ in INBOX" if find(sink, "INBOX", "x-junk-" + T7) else "/ not in INBOX")
    h = wait(sink, "INBOX", "dkimfail-" + T7)
    print("dkimfail: in INBOX" if h else "dkimfail: MISSING")
    if h: print("dkimfail A-R:", ar(h))
    print("late before release:", "in INBOX" if find(sink, "INBOX", "late-" + T7) else "absent")
    print("lost:", "ARRIVED" if find(sink, "INBOX", "lost-" + T7) or find(sink, "Junk", "lost-" + T7) else "absent (INBOX, Junk)")
    can = login(E["STACK_USER"], E["STACK_PASS"]); can.select("INBOX", readonly=True)
    end = time.time() + 15; u = []
    while not u and time.time() < end:
        typ, d = can.uid("SEARCH", None, "HEADER", "Content-Type", "multipart/report", "TEXT", '"bounce-%s@"' % T7); u = d[0].split()
        if not u: time.sleep(0.3); can.noop()
    if u:
        typ, d = can.uid("FETCH", u[-1], "(BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (From Subject Content-Type)] BODY.PEEK[2] BODY.PEEK[3.HEADER])")
        parts = [x for x in d if isinstance(x, tuple)]
        bs = d[0][0].decode(errors="replace")
        print("dsn: found; bodystructure report-type:", "delivery-status" if re.search(r'"REPORT-TYPE" "delivery-status"', bs, re.I) else "?")
        status = parts[1][1].decode(errors="replace"); orig = parts[2][1].decode(errors="replace")
        for f in ("Final-Recipient", "Action", "Status"):
            mm = re.search(r"^%s: *(.*)$" % f, status, re.M); print("dsn %s: %s" % (f, mm.group(1).strip() if mm else "-"))
        mm = re.search(r"^Message-Id: *(.*)$", orig, re.M | re.I); print("dsn part 3 Message-Id:", mm.group(1).strip() if mm else "-")
    else: print("dsn: MISSING")
else:
    h = wait(sink, "INBOX", "late-" + T7); print("late after release:", "in INBOX" if h else "MISSING")
    if h: print("late A-R:", ar(h))
EOF
}
r=$(imapcheck deliveries); echo "$r" | sed 's/^/    /' | cut -c1-200
A=$STACK_AUTHSERV_ID
echo "$r" | grep -q "^IMAPS login $STACK_SINK_USER OK" && echo "$r" | grep -q "^STARTTLS login $STACK_SINK_USER OK" \
  && ok "sink user password login (IMAPS, STARTTLS)" || bad "sink user login"
echo "$r" | grep -q '^CAPABILITY has: IDLE UIDPLUS MOVE SPECIAL-USE$' && ok "IDLE UIDPLUS MOVE SPECIAL-USE advertised" || bad "capabilities"
echo "$r" | grep '^LIST RETURN' | grep -q '(\\Junk) "." Junk' && echo "$r" | grep '^LIST RETURN' | grep -q '(\\Trash) "." Trash' \
  && ok "LIST RETURN (SPECIAL-USE): Junk \\Junk, Trash \\Trash" || bad "special-use folders"
echo "$r" | grep -q '^inbox: in INBOX' && ok "canary delivered to the sink INBOX" || bad "canary not in sink INBOX"
echo "$r" | grep -qE "^inbox A-R: $A; dkim=pass .*header\.d=$STACK_DOMAIN .*header\.s=$STACK_DKIM_SELECTOR " \
  && ok "A-R: $A; dkim=pass header.d=$STACK_DOMAIN header.s=$STACK_DKIM_SELECTOR" || bad "A-R dkim=pass"
echo "$r" | grep -q '^junk: in Junk / not in INBOX' && ok "X-Smtp-Canary x-junk-* filed into Junk (Sieve)" || bad "junk not in Junk"
echo "$r" | grep -qE "^dkimfail A-R: $A; dkim=fail .*header\.s=$STACK_DKIM_FAIL_SELECTOR " \
  && ok "From $STACK_DKIM_FAIL_FROM: A-R dkim=fail (s=$STACK_DKIM_FAIL_SELECTOR)" || bad "A-R dkim=fail"
echo "$r" | grep -q '^lost: absent' && ok "lost-* never arrives" || bad "lost-* arrived"
echo "$r" | grep -q '^late before release: absent' && ok "late-* not delivered while held" || bad "late-* delivered while held"
echo "$r" | grep -q '^dsn: found; bodystructure report-type: delivery-status' \
  && echo "$r" | grep -q "^dsn Final-Recipient: rfc822; $STACK_BOUNCE_RCPT" && echo "$r" | grep -q '^dsn Action: failed' \
  && echo "$r" | grep -q '^dsn Status: 5.1.1' && ok "DSN (multipart/report, 5.1.1 failed) in $STACK_USER's INBOX" || bad "DSN"
echo "$r" | grep -q "^dsn part 3 Message-Id: <bounce-$T7@$STACK_DOMAIN>" && ok "DSN carries the original Message-ID" || bad "DSN original Message-ID"
if [ -n "$qid" ]; then echo "    $STACK_RELEASE_HELD $qid: $("$STACK_RELEASE_HELD" "$qid" 2>&1 | tr '\n' ' ')"; fi
r=$(imapcheck released); echo "$r" | sed 's/^/    /' | cut -c1-200
echo "$r" | grep -q '^late after release: in INBOX' && ok "late-* arrives after $STACK_RELEASE_HELD" || bad "late-* after release"

echo
echo "check: $PASS passed, $FAIL failed"
[ $FAIL = 0 ]
