#!/usr/bin/env bash
# tests/stack/up.sh - install (if missing), configure and start a loopback-only mail
# stack for smtp-canary integration tests. Debian 12, run as root, no systemd needed.
#
#   Postfix    submission 127.0.0.1:$STACK_SMTP_PORT  (10587) STARTTLS required, SASL
#                         PLAIN/LOGIN via Dovecot, anvil rate limits, virtual Maildir
#                         delivery, OpenDKIM milter (d=example.test s=canary)
#   Dovecot    IMAP       127.0.0.1:$STACK_IMAP_PORT  (10143, STARTTLS)
#              IMAPS      127.0.0.1:$STACK_IMAPS_PORT (10993)
#   OpenDKIM   milter     127.0.0.1:$STACK_DKIM_PORT  (18891)
#   Knot DNS   auth.      127.0.0.1:$STACK_DNS_PORT   (5353)  zone example.test
#   Prometheus            127.0.0.1:$STACK_PROM_PORT  (19090) self-scrape + file_sd
#                         job "smtp-canary" ($STACK_ROOT/etc/prometheus/targets/*.json)
#   receiving side ("sink.test", behaves like a real MX; submission routes sink.test to it):
#   Postfix    MX smtpd   127.0.0.1:$STACK_MX_PORT    (10025) second smtpd of the same
#                         instance, myhostname mx.sink.test, its own cleanup (header_checks:
#                         X-Smtp-Canary lost* DISCARD, late* HOLD), rejects bounce-later@ at
#                         RCPT (550 5.1.1), delivers to Dovecot LMTP (Sieve: *junk* -> Junk)
#   OpenDKIM   verifier   127.0.0.1:$STACK_DKIM_VERIFY_PORT (18892) Mode v, AuthservID
#                         mx.sink.test, key lookups through libunbound -> Knot :5353
#
# Everything (configs, spool, TLS, keys, mail, logs, pids) lives under $STACK_ROOT;
# the system's /etc/postfix, /etc/dovecot, ... are not used or modified.
# Idempotent: a re-run stops the running stack (down.sh), re-renders every config and
# starts again. The TLS cert and DKIM key are kept once generated; delete
# $STACK_ROOT/tls or $STACK_ROOT/etc/dkim to rotate them.
# Results for tests: $STACK_ROOT/run/stack.env (KEY=VALUE lines, unquoted).
set -Eeuo pipefail
trap 'echo "up.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

HERE=$(dirname "$(readlink -f "$0")")
STACK_ROOT=${STACK_ROOT:-/var/tmp/smtp-canary-stack}
STACK_SMTP_PORT=${STACK_SMTP_PORT:-10587}
STACK_IMAP_PORT=${STACK_IMAP_PORT:-10143}
STACK_IMAPS_PORT=${STACK_IMAPS_PORT:-10993}
STACK_DKIM_PORT=${STACK_DKIM_PORT:-18891}
STACK_DNS_PORT=${STACK_DNS_PORT:-5353}
STACK_PROM_PORT=${STACK_PROM_PORT:-19090}
STACK_USER=${STACK_USER:-canary@example.test}
STACK_PASS=${STACK_PASS:-canary-pass-123}
STACK_RATE_MSGS=${STACK_RATE_MSGS:-5}        # smtpd_client_message_rate_limit, per client IP per window
STACK_RATE_CONN=${STACK_RATE_CONN:-30}       # smtpd_client_connection_rate_limit
STACK_RATE_WINDOW=${STACK_RATE_WINDOW:-60s}  # anvil_rate_time_unit
STACK_OAUTH2=${STACK_OAUTH2:-1}              # 1: also offer XOAUTH2/OAUTHBEARER (Dovecot oauth2 passdb)
STACK_OAUTH2_PORT=${STACK_OAUTH2_PORT:-18080} # introspection endpoint the TEST serves (not started here)
STACK_PROM_SCRAPE=${STACK_PROM_SCRAPE:-1s}   # scrape_interval of the smtp-canary job
STACK_PROM_TARGET=${STACK_PROM_TARGET:-}     # optional host:port written to targets/default.json
STACK_SKIP_APT=${STACK_SKIP_APT:-0}          # 1: never run apt (hermetic runs)
STACK_MX_PORT=${STACK_MX_PORT:-10025}        # the sink.test "MX" smtpd
STACK_DKIM_VERIFY_PORT=${STACK_DKIM_VERIFY_PORT:-18892} # verifying OpenDKIM of the MX
STACK_SINK_USER=${STACK_SINK_USER:-sink@sink.test}
STACK_SINK_PASS=${STACK_SINK_PASS:-sink-pass-123}

ROOT=$STACK_ROOT
DOMAIN=example.test
MAILHOST=mail.example.test
SELECTOR=canary
STALE_SELECTOR=stale                         # signs dkimfail@; Knot publishes a DIFFERENT key
DKIM_FAIL_FROM=dkimfail@$DOMAIN
SINK_DOMAIN=sink.test
MXHOST=mx.sink.test                          # MX smtpd's myhostname = OpenDKIM verifier's AuthservID
BOUNCE_RCPT=bounce-later@$SINK_DOMAIN        # accepted by submission, 550 5.1.1 at the MX -> DSN
PY=/usr/bin/python3                          # Debian's python (the pyenv one lacks python3-dkim)

die() { echo "up.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
case $ROOT in /*) ;; *) die "STACK_ROOT must be an absolute path (got '$ROOT')";; esac
[ "$ROOT" != / ] || die "STACK_ROOT must not be /"
ROOT=${ROOT%/}
for v in STACK_SMTP_PORT STACK_IMAP_PORT STACK_IMAPS_PORT STACK_DKIM_PORT STACK_DNS_PORT STACK_PROM_PORT STACK_OAUTH2_PORT STACK_RATE_MSGS STACK_RATE_CONN STACK_MX_PORT STACK_DKIM_VERIFY_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number (got '${!v}')"
done
[[ $STACK_USER =~ ^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+$ ]] || die "STACK_USER must look like local@domain"
[ "${STACK_USER#*@}" = "$DOMAIN" ] || die "STACK_USER must be in @$DOMAIN"
[[ $STACK_PASS =~ ^[^[:space:]\'\"\\\$\`:]+$ ]] || die "STACK_PASS must not contain whitespace, quotes, backslash, \$, backtick or ':'"
[[ $STACK_SINK_USER =~ ^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+$ ]] || die "STACK_SINK_USER must look like local@domain"
[ "${STACK_SINK_USER#*@}" = "$SINK_DOMAIN" ] || die "STACK_SINK_USER must be in @$SINK_DOMAIN"
[ "$STACK_SINK_USER" != "$BOUNCE_RCPT" ] || die "STACK_SINK_USER must not be $BOUNCE_RCPT"
[[ $STACK_SINK_PASS =~ ^[^[:space:]\'\"\\\$\`:]+$ ]] || die "STACK_SINK_PASS must not contain whitespace, quotes, backslash, \$, backtick or ':'"
# Unix socket paths (Dovecot login/auth, Postfix private/) must stay < 108 bytes.
[ ${#ROOT} -le 60 ] || die "STACK_ROOT is too long for unix socket paths (max 60 chars)"

mkdir -p "$ROOT" && chmod 755 "$ROOT"
# Every daemon user (postfix, dovecot, knot, opendkim, prometheus, vmail) must reach $ROOT.
d=$ROOT; while [ "$d" != / ]; do d=$(dirname "$d"); [ "$(( 0$(stat -c %a "$d") & 1 ))" = 1 ] || die "$d is not world-searchable (o+x); daemons cannot reach $ROOT"; done
mkdir -p "$ROOT/logs" && cd "$ROOT"
T0=$(date +%s%N)
phase() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[up.sh %4d.%01ds] %s\n' $((ms/1000)) $((ms%1000/100)) "$*"; }

# ---------------------------------------------------------------- 1. packages
PKGS=(postfix dovecot-core dovecot-imapd dovecot-lmtpd dovecot-sieve opendkim opendkim-tools knot bind9-dnsutils
      swaks libnet-ssleay-perl libio-socket-ssl-perl prometheus
      python3 python3-dkim python3-dnspython openssl curl iproute2 util-linux)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$STACK_SKIP_APT" != 1 ] || die "STACK_SKIP_APT=1 but packages are missing: ${missing[*]}"
  phase "installing: ${missing[*]}"
  # Never let package postinst scripts start daemons on their default (0.0.0.0) ports.
  made_policy=0
  if [ ! -x /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string $MAILHOST" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq > "$ROOT/logs/apt-update.log" 2>&1 \
    || { tail -30 "$ROOT/logs/apt-update.log" >&2; die "apt-get update failed"; }
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" \
    > "$ROOT/logs/apt-install.log" 2>&1 || { tail -30 "$ROOT/logs/apt-install.log" >&2; die "apt-get install failed"; }
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  phase "packages installed"
else
  phase "packages already installed"
fi

# ---------------------------------------------------------------- 2. stop old instance
STACK_ROOT=$ROOT "$HERE/down.sh" > "$ROOT/logs/down.log" 2>&1 || { cat "$ROOT/logs/down.log" >&2; die "down.sh failed (see above: is a stack port held by another process?)"; }
phase "previous instance stopped"
PORTS=("$STACK_SMTP_PORT" "$STACK_IMAP_PORT" "$STACK_IMAPS_PORT" "$STACK_DKIM_PORT" "$STACK_DNS_PORT" "$STACK_PROM_PORT"
       "$STACK_MX_PORT" "$STACK_DKIM_VERIFY_PORT")
[ "$(printf '%s\n' "${PORTS[@]}" | sort -u | wc -l)" = "${#PORTS[@]}" ] || die "two STACK_*_PORT values are equal"
busy=$(ss -H -ltnu 2>/dev/null | awk '{print $5}' | grep -E ":($(IFS='|'; echo "${PORTS[*]}"))\$" || true)
[ -z "$busy" ] || die "ports already in use by something else: $(echo $busy) (see: ss -ltnup)"

mkdir -p "$ROOT"/{bin,etc/sieve,etc/postfix,etc/zones,etc/prometheus/targets,etc/prometheus/rules,etc/dkim,tls,run,logs,spool,data/postfix,data/knot,data/dovecot,data/prometheus,mail}
chmod 755 "$ROOT"/{bin,etc,etc/sieve,etc/postfix,etc/zones,etc/prometheus,run,logs,data}
chmod 1777 etc/prometheus/targets etc/prometheus/rules   # tests may write here without root
rm -f etc/prometheus/targets/*.json                       # a restart forgets old test targets

# ---------------------------------------------------------------- 3. users, TLS, keys
if ! getent passwd vmail >/dev/null; then
  getent group vmail >/dev/null || { getent group 5000 >/dev/null && groupadd -r vmail || groupadd -g 5000 vmail; }
  if getent passwd 5000 >/dev/null; then useradd -r -g vmail -d /nonexistent -M -s /usr/sbin/nologin vmail
  else useradd -u 5000 -g vmail -d /nonexistent -M -s /usr/sbin/nologin vmail; fi
fi
VMAIL_UID=$(id -u vmail); VMAIL_GID=$(id -g vmail)
chown vmail:vmail mail; chmod 770 mail

# A private CA (tls/ca.crt, what clients trust: STACK_CA_FILE) and a server leaf signed
# by it. Not one self-signed cert: `openssl req -x509` marks it CA:TRUE, and webpki
# (rustls) refuses a CA certificate as the server's end-entity (CaUsedAsEndEntity).
if [ ! -s tls/ca.crt ] || [ ! -s tls/$MAILHOST.crt ] \
   || ! openssl x509 -checkend 86400 -noout -in tls/ca.crt >/dev/null \
   || ! openssl x509 -checkend 86400 -noout -in tls/$MAILHOST.crt >/dev/null \
   || ! openssl verify -CAfile tls/ca.crt tls/$MAILHOST.crt >/dev/null 2>&1; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=smtp-canary-stack test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout tls/ca.key -out tls/ca.crt 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$MAILHOST" \
    -keyout tls/$MAILHOST.key -out tls/$MAILHOST.csr 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$MAILHOST,DNS:localhost,IP:127.0.0.1" > tls/leaf.ext
  openssl x509 -req -in tls/$MAILHOST.csr -CA tls/ca.crt -CAkey tls/ca.key -CAcreateserial \
    -days 3650 -extfile tls/leaf.ext -out tls/$MAILHOST.crt 2>/dev/null
  rm -f tls/$MAILHOST.csr tls/leaf.ext tls/ca.srl
fi
chmod 755 tls; chmod 600 tls/ca.key tls/$MAILHOST.key; chmod 644 tls/ca.crt tls/$MAILHOST.crt
if [ ! -s etc/dkim/$SELECTOR.private ]; then
  opendkim-genkey -b 2048 -d $DOMAIN -s $SELECTOR -D etc/dkim/
fi
# DKIM failure on purpose: $DKIM_FAIL_FROM is signed with stale.private, but Knot
# publishes stale._domainkey from ANOTHER key pair (etc/dkim/decoy/), so the signature
# fails at the MX (dkim=fail). The decoy's private key is never used.
if [ ! -s etc/dkim/$STALE_SELECTOR.private ] || [ ! -s etc/dkim/decoy/$STALE_SELECTOR.txt ]; then
  rm -rf etc/dkim/decoy; mkdir -p etc/dkim/decoy
  opendkim-genkey -b 2048 -d $DOMAIN -s $STALE_SELECTOR -D etc/dkim/
  opendkim-genkey -b 2048 -d $DOMAIN -s $STALE_SELECTOR -D etc/dkim/decoy/
fi
# Signer: From dkimfail@example.test -> stale; any other From @example.test -> canary;
# anything else is not signed (plain-file lookup order: user@host first, then host).
printf '%s\n' "$DKIM_FAIL_FROM $STALE_SELECTOR._domainkey.$DOMAIN" "$DOMAIN $SELECTOR._domainkey.$DOMAIN" > etc/dkim/SigningTable
printf '%s\n' "$SELECTOR._domainkey.$DOMAIN $DOMAIN:$SELECTOR:$ROOT/etc/dkim/$SELECTOR.private" \
  "$STALE_SELECTOR._domainkey.$DOMAIN $DOMAIN:$STALE_SELECTOR:$ROOT/etc/dkim/$STALE_SELECTOR.private" > etc/dkim/KeyTable
chown -R opendkim:opendkim etc/dkim; chmod 700 etc/dkim etc/dkim/decoy
chmod 600 etc/dkim/$SELECTOR.private etc/dkim/$STALE_SELECTOR.private etc/dkim/decoy/$STALE_SELECTOR.private

# Dovecot passwd-file (SHA512-CRYPT via openssl, no doveadm needed)
{ printf '%s:{SHA512-CRYPT}%s::::::\n' "$STACK_USER" "$(openssl passwd -6 "$STACK_PASS")"
  printf '%s:{SHA512-CRYPT}%s::::::\n' "$STACK_SINK_USER" "$(openssl passwd -6 "$STACK_SINK_PASS")"
} > etc/dovecot-users
chown root:dovecot etc/dovecot-users; chmod 640 etc/dovecot-users
printf '%s %s/%s/\n' "$STACK_USER" "${STACK_USER#*@}" "${STACK_USER%@*}" > etc/postfix/vmailbox

# ---------------------------------------------------------------- 4. Postfix (own instance)
# A separate instance: config_directory, queue_directory and data_directory under $ROOT,
# started with `postfix -c $ROOT/etc/postfix`. The system /etc/postfix stays untouched.
PFC="$ROOT/etc/postfix"
NEW="$ROOT/etc/postfix.new"       # rendered here first; see "install only if changed" below
rm -rf "$NEW"; mkdir -p "$NEW"
cat > "$NEW/main.cf" <<EOF
# Generated by tests/stack/up.sh -- loopback-only TEST rig, do not edit (re-rendered on every run)
compatibility_level = 3.6
queue_directory = $ROOT/spool
data_directory = $ROOT/data/postfix
myhostname = $MAILHOST
mydomain = $DOMAIN
myorigin = \$mydomain
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
readme_directory = no
alias_maps =
alias_database =
smtpd_banner = \$myhostname ESMTP smtp-canary-stack
# no syslog daemon here: log to a file through postlogd
maillog_file = $ROOT/logs/postfix.log
maillog_file_prefixes = $ROOT/logs
# Hermetic: no DNS lookups, never deliver off-box
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
default_transport = error:5.7.1 outbound delivery disabled in smtp-canary test stack
relay_transport = \$default_transport
# The one off-box-looking route: sink.test goes to the stack's own MX smtpd (no DNS:
# literal [127.0.0.1]). Everything else stays error:/virtual as above.
transport_maps = texthash:$PFC/transport
smtp_tls_security_level = may
smtp_tls_loglevel = 1
# Virtual Maildir delivery (trailing slash in vmailbox = Maildir)
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $ROOT/mail
virtual_mailbox_maps = texthash:$PFC/vmailbox
virtual_minimum_uid = $VMAIL_UID
virtual_uid_maps = static:$VMAIL_UID
virtual_gid_maps = static:$VMAIL_GID
# TLS server side
smtpd_tls_cert_file = $ROOT/tls/$MAILHOST.crt
smtpd_tls_key_file = $ROOT/tls/$MAILHOST.key
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_session_cache_database =
# SASL via Dovecot's auth socket (path relative to queue_directory)
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
smtpd_sasl_authenticated_header = yes
# DKIM signing milter
smtpd_milters = inet:127.0.0.1:$STACK_DKIM_PORT
non_smtpd_milters = \$smtpd_milters
milter_default_action = accept
# anvil(8) window for smtpd_client_*_rate_limit
anvil_rate_time_unit = $STACK_RATE_WINDOW
EOF
cp /usr/share/postfix/master.cf.dist "$NEW/master.cf"
postconf -c "$NEW" -MX smtp/inet                 # no listener on *:25
postconf -c "$NEW" -F '*/*/chroot = n'           # Debian chroots; only its init script fills the jail
cat >> "$NEW/master.cf" <<EOF
# --- smtp-canary-stack submission listener (loopback only) ---
127.0.0.1:$STACK_SMTP_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_security_options=noanonymous
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
  -o smtpd_client_message_rate_limit=$STACK_RATE_MSGS
  -o smtpd_client_connection_rate_limit=$STACK_RATE_CONN
  -o smtpd_client_event_limit_exceptions=
  -o milter_macro_daemon_name=ORIGINATING
# --- smtp-canary-stack receiving side: the sink.test "MX" (loopback only) ---
# Greets as $MXHOST (also stops the smtp client's "loops back to myself" check),
# verifies DKIM (second OpenDKIM, Mode v), accepts only the table's recipients, runs
# its own cleanup (header_checks) and hands every accepted message to Dovecot LMTP.
127.0.0.1:$STACK_MX_PORT inet n - n - - smtpd
  -o syslog_name=postfix/mx
  -o myhostname=$MXHOST
  -o smtpd_tls_security_level=may
  -o smtpd_sasl_auth_enable=no
  -o smtpd_client_restrictions=
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=check_recipient_access,texthash:$PFC/mx_recipients,reject
  -o smtpd_recipient_restrictions=
  -o smtpd_milters=inet:127.0.0.1:$STACK_DKIM_VERIFY_PORT
  -o cleanup_service_name=mxcleanup
  -o content_filter=mxlmtp:unix:private/dovecot-lmtp
mxlmtp    unix -       -       n       -       -       lmtp
  -o syslog_name=postfix/mx-lmtp
  -o lmtp_lhlo_name=$MXHOST
mxcleanup unix n - n - 0 cleanup
  -o syslog_name=postfix/mx-cleanup
  -o header_checks=regexp:$PFC/mx_header_checks
EOF
printf '%s\n' "$SINK_DOMAIN smtp:[127.0.0.1]:$STACK_MX_PORT" > "$NEW/transport"
printf '%s\n' "# MX recipients: full address first, then the domain" \
  "$STACK_SINK_USER OK" \
  "$BOUNCE_RCPT 550 5.1.1 User unknown" \
  "$SINK_DOMAIN 550 5.1.1 User unknown" > "$NEW/mx_recipients"
cat > "$NEW/mx_header_checks" <<EOF
# MX cleanup only (mxcleanup in master.cf); the submission side has no header_checks.
/^X-Smtp-Canary: lost/ DISCARD lost on purpose by the smtp-canary stack MX
/^X-Smtp-Canary: late/ HOLD late on purpose: release with $ROOT/bin/release-held
EOF
chown postfix:postfix data/postfix; chmod 700 data/postfix
# Postfix commands sleep ~2.5 s when main.cf/master.cf were modified moments ago:
# keep the old files (and their mtime) when the rendering did not change.
for f in main.cf master.cf transport mx_recipients mx_header_checks; do cmp -s "$NEW/$f" "$PFC/$f" || mv -f "$NEW/$f" "$PFC/$f"; done
rm -rf "$NEW"
# `postfix check` also creates the queue tree (create-missing). Postfix prints errors
# only to a TTY or syslog: script(1) gives it a TTY so a failure is visible.
script -qec "postfix -c '$PFC' check" /dev/null > logs/postfix-check.log 2>&1 \
  || { cat logs/postfix-check.log >&2; die "postfix check failed"; }
# STACK_RELEASE_HELD: release held ("late") messages and deliver them at once.
# `postsuper -H` moves them to the deferred queue, which qmgr would scan only every
# queue_run_delay (300 s): `postqueue -f` makes it scan now.
cat > bin/release-held <<EOF
#!/bin/sh
# Generated by tests/stack/up.sh. Release messages held by the sink.test MX
# (X-Smtp-Canary: late...) and deliver them now. Needs root.
#   release-held              every held message
#   release-held QUEUE_ID...  only these
set -e
[ \$# -gt 0 ] || set -- ALL
for id in "\$@"; do postsuper -c '$PFC' -H "\$id" hold; done
exec postqueue -c '$PFC' -f
EOF
chmod 755 bin/release-held

# ---------------------------------------------------------------- 5. Dovecot (standalone config)
mkdir -p run/dovecot data/dovecot
if [ "$STACK_OAUTH2" = 1 ]; then
  MECHS="plain login xoauth2 oauthbearer"
  OAUTH2_PASSDB="passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer      # tokens only for token mechanisms
  args = $ROOT/etc/dovecot-oauth2.conf.ext
}"
  cat > etc/dovecot-oauth2.conf.ext <<EOF
# Token introspection endpoint served by the test itself (not started by up.sh).
introspection_mode = post
introspection_url = http://127.0.0.1:$STACK_OAUTH2_PORT/introspect
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
EOF
  chown root:dovecot etc/dovecot-oauth2.conf.ext; chmod 640 etc/dovecot-oauth2.conf.ext
else
  MECHS="plain login"; OAUTH2_PASSDB=""; rm -f etc/dovecot-oauth2.conf.ext
fi
cat > etc/dovecot.conf <<EOF
# Generated by tests/stack/up.sh (the packaged /etc/dovecot is not used)
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $ROOT/run/dovecot
state_dir = $ROOT/data/dovecot
instance_name = smtp-canary-stack
log_path = $ROOT/logs/dovecot.log
auth_verbose = yes
ssl = required
ssl_cert = <$ROOT/tls/$MAILHOST.crt
ssl_key = <$ROOT/tls/$MAILHOST.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = $MECHS
mail_location = maildir:$ROOT/mail/%d/%n
first_valid_uid = $VMAIL_UID
# same hierarchy as Dovecot's implicit namespace, plus special-use folders (RFC 6154)
namespace inbox {
  inbox = yes
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
}
passdb {
  driver = passwd-file
  mechanisms = plain login              # passwords only for password mechanisms
  args = scheme=SHA512-CRYPT username_format=%u $ROOT/etc/dovecot-users
}
$OAUTH2_PASSDB
userdb {
  driver = static
  # allow_all_users: LMTP needs no passdb lookup; the MX's recipient table decides
  args = uid=vmail gid=vmail home=$ROOT/mail/%d/%n allow_all_users=yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $STACK_IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $STACK_IMAPS_PORT
    ssl = yes
  }
}
service auth {
  unix_listener $ROOT/spool/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# sink.test delivery: the MX smtpd's content_filter mxlmtp:unix:private/dovecot-lmtp
service lmtp {
  unix_listener $ROOT/spool/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
  postmaster_address = postmaster@$SINK_DOMAIN
  hostname = $MXHOST
}
plugin {
  # no personal scripts; the domain's script runs before them (only sink.test uses LMTP)
  sieve = file:$ROOT/data/sieve/%d/%n/scripts;active=$ROOT/data/sieve/%d/%n/active.sieve
  sieve_before = $ROOT/etc/sieve/%d.sieve
}
EOF
cat > etc/sieve/$SINK_DOMAIN.sieve.new <<'EOF'
# sink.test, at LMTP delivery: canaries whose X-Smtp-Canary contains "junk" go to Junk
require ["fileinto"];
if header :contains "X-Smtp-Canary" "junk" { fileinto "Junk"; stop; }
EOF
if ! cmp -s etc/sieve/$SINK_DOMAIN.sieve.new etc/sieve/$SINK_DOMAIN.sieve || [ ! -s etc/sieve/$SINK_DOMAIN.svbin ]; then
  mv -f etc/sieve/$SINK_DOMAIN.sieve.new etc/sieve/$SINK_DOMAIN.sieve
  sievec -c etc/dovecot.conf etc/sieve/$SINK_DOMAIN.sieve > logs/sievec.log 2>&1 || { cat logs/sievec.log >&2; die "sievec failed"; }
else rm -f etc/sieve/$SINK_DOMAIN.sieve.new; fi
chmod 644 etc/sieve/*
doveconf -c etc/dovecot.conf -n > logs/doveconf.log 2>&1 || { cat logs/doveconf.log >&2; die "doveconf failed"; }

# ---------------------------------------------------------------- 6. OpenDKIM
cat > etc/opendkim.conf <<EOF
# Sign-only (Mode s: no verification, so no DNS queries). OpenDKIM logs only to syslog: off.
Syslog                  no
UMask                   007
Mode                    s
Canonicalization        relaxed/simple
# From dkimfail@$DOMAIN -> key "$STALE_SELECTOR", other From @$DOMAIN -> "$SELECTOR", else unsigned
KeyTable                file:$ROOT/etc/dkim/KeyTable
SigningTable            file:$ROOT/etc/dkim/SigningTable
# the default key-safety check rejects keys below a world-writable directory
RequireSafeKeys         false
Socket                  inet:$STACK_DKIM_PORT@127.0.0.1
PidFile                 $ROOT/run/opendkim.pid
UserID                  opendkim:opendkim
InternalHosts           127.0.0.0/8
OversignHeaders         From
SignatureAlgorithm      rsa-sha256
EOF
opendkim -n -x etc/opendkim.conf
# The MX's verifier: Mode v only (never signs), AuthservID $MXHOST. OpenDKIM here is
# built with libunbound (opendkim -V: USE_UNBOUND), so ResolverConfiguration names an
# unbound config file: it forwards every query to the stack's Knot, port included
# (Nameservers takes bare IPs, i.e. port 53). No system resolver, no root hints.
# unbound answers "test." itself (RFC 6761 default local-zone, NXDOMAIN, no query sent):
# "nodefault" lets example.test through to Knot.
cat > etc/opendkim-verify-unbound.conf <<EOF
server:
    do-not-query-localhost: no
    module-config: "iterator"
    chroot: ""
    username: ""
    directory: ""
    use-syslog: no
    local-zone: "test." nodefault
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$STACK_DNS_PORT
EOF
cat > etc/opendkim-verify.conf <<EOF
# Verify-only milter of the sink.test MX smtpd: adds "Authentication-Results: $MXHOST; dkim=..."
Syslog                  no
UMask                   007
Mode                    v
AuthservID              $MXHOST
AlwaysAddARHeader       yes
Socket                  inet:$STACK_DKIM_VERIFY_PORT@127.0.0.1
PidFile                 $ROOT/run/opendkim-verify.pid
UserID                  opendkim:opendkim
ResolverConfiguration   $ROOT/etc/opendkim-verify-unbound.conf
DNSTimeout              5
EOF
chmod 644 etc/opendkim-verify-unbound.conf etc/opendkim-verify.conf
opendkim -n -x etc/opendkim-verify.conf

# ---------------------------------------------------------------- 7. Knot DNS zone
{ cat <<EOF
\$ORIGIN $DOMAIN.
\$TTL 300
@                 IN SOA  ns1.$DOMAIN. hostmaster.$DOMAIN. ( 1 3600 600 86400 300 )
@                 IN NS   ns1.$DOMAIN.
ns1               IN A    127.0.0.1
mail              IN A    127.0.0.1
@                 IN MX   10 $MAILHOST.
@                 IN TXT  "v=spf1 ip4:127.0.0.0/8 mx -all"
_dmarc            IN TXT  "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc-reports@$DOMAIN"
EOF
  cat etc/dkim/$SELECTOR.txt      # canary._domainkey TXT exactly as opendkim-genkey wrote it
  cat etc/dkim/decoy/$STALE_SELECTOR.txt   # stale._domainkey: NOT the key that signs (dkim=fail)
} > etc/zones/$DOMAIN.zone
cat > etc/zones/$SINK_DOMAIN.zone <<EOF
\$ORIGIN $SINK_DOMAIN.
\$TTL 300
@                 IN SOA  ns1.$SINK_DOMAIN. hostmaster.$SINK_DOMAIN. ( 1 3600 600 86400 300 )
@                 IN NS   ns1.$SINK_DOMAIN.
ns1               IN A    127.0.0.1
mx                IN A    127.0.0.1
@                 IN MX   10 $MXHOST.
@                 IN TXT  "v=spf1 -all"
EOF
chmod 644 etc/zones/$DOMAIN.zone etc/zones/$SINK_DOMAIN.zone
mkdir -p run/knot
cat > etc/knot.conf <<EOF
server:
    rundir: "$ROOT/run/knot"
    user: knot:knot
    listen: 127.0.0.1@$STACK_DNS_PORT
    identity: ""
    version: ""
log:
  - target: stderr
    any: info
database:
    storage: "$ROOT/data/knot"
template:
  - id: default
    storage: "$ROOT/etc/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: $DOMAIN
  - domain: $SINK_DOMAIN
EOF
chown knot:knot run/knot data/knot
knotc -c etc/knot.conf conf-check > logs/knot-check.log 2>&1 || { cat logs/knot-check.log >&2; die "knot conf-check failed"; }

# ---------------------------------------------------------------- 8. Prometheus
cat > etc/prometheus/prometheus.yml <<EOF
# Generated by tests/stack/up.sh. Tests register scrape targets by writing
# $ROOT/etc/prometheus/targets/<name>.json, e.g.
#   [{"targets": ["127.0.0.1:9898"], "labels": {"test": "my_test"}}]
# (picked up within seconds, no reload). Rule files: $ROOT/etc/prometheus/rules/*.yml,
# applied with: curl -X POST http://127.0.0.1:$STACK_PROM_PORT/-/reload
global:
  scrape_interval: 5s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/etc/prometheus/rules/*.yml
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$STACK_PROM_PORT']
  - job_name: smtp-canary
    scrape_interval: $STACK_PROM_SCRAPE
    scrape_timeout: $STACK_PROM_SCRAPE
    file_sd_configs:
      - files: ['$ROOT/etc/prometheus/targets/*.json']
        refresh_interval: 2s
EOF
if [ -n "$STACK_PROM_TARGET" ]; then
  printf '[{"targets": ["%s"], "labels": {"source": "STACK_PROM_TARGET"}}]\n' "$STACK_PROM_TARGET" > etc/prometheus/targets/default.json
  chmod 644 etc/prometheus/targets/default.json
fi
promtool check config etc/prometheus/prometheus.yml > logs/promtool-check.log 2>&1 \
  || { cat logs/promtool-check.log >&2; die "promtool check config failed"; }
# fresh TSDB on every start: tests see only the series of this run
rm -rf data/prometheus; mkdir -p data/prometheus; chown prometheus:prometheus data/prometheus
phase "configuration rendered"

# ---------------------------------------------------------------- 9. start (no systemd)
# bg NAME CMD... : start a foreground daemon detached, remember its PID
bg() { local name=$1; shift
  setsid "$@" </dev/null >>"$ROOT/logs/$name.log" 2>&1 &
  echo $! > "$ROOT/run/$name.pid"; }
wait_tcp() { local port=$1 i
  for i in $(seq 1 150); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0; sleep 0.1; done
  die "port 127.0.0.1:$port did not open (logs in $ROOT/logs)"; }
# Self-daemonizing programs must not inherit our stdout/stderr: dovecot keeps fd 2
# open forever, which hangs any caller that pipes up.sh (e.g. "./up.sh | tee").
daemon() { local name=$1; shift
  "$@" </dev/null >>"$ROOT/logs/$name.stderr" 2>&1 || {
    echo "starting $name failed:" >&2; tail -5 "$ROOT/logs/$name.stderr" "$ROOT/logs/$name.log" >&2 2>/dev/null || true
    exit 1; }; }

bg knotd knotd -c "$ROOT/etc/knot.conf"                    # foreground; PID from $!
daemon opendkim opendkim -x "$ROOT/etc/opendkim.conf"       # forks; PidFile run/opendkim.pid
daemon opendkim-verify opendkim -x "$ROOT/etc/opendkim-verify.conf" # forks; run/opendkim-verify.pid
daemon dovecot dovecot -c "$ROOT/etc/dovecot.conf"          # forks; run/dovecot/master.pid
daemon postfix postfix -c "$PFC" start                      # forks; spool/pid/master.pid
bg prometheus setpriv --reuid=prometheus --regid=prometheus --init-groups \
   prometheus --config.file="$ROOT/etc/prometheus/prometheus.yml" --storage.tsdb.path="$ROOT/data/prometheus" \
   --web.listen-address=127.0.0.1:$STACK_PROM_PORT --web.enable-lifecycle

for p in "${PORTS[@]}"; do wait_tcp "$p"; done
for i in $(seq 1 150); do curl -fs -o /dev/null "http://127.0.0.1:$STACK_PROM_PORT/-/ready" && break; sleep 0.1; done
curl -fs -o /dev/null "http://127.0.0.1:$STACK_PROM_PORT/-/ready" || die "prometheus not ready (see $ROOT/logs/prometheus.log)"
tr -dc '0-9' < run/dovecot/master.pid > run/dovecot.pid
tr -dc '0-9' < spool/pid/master.pid > run/postfix.pid

STACK_MAILDIR=$ROOT/mail/${STACK_USER#*@}/${STACK_USER%@*}
cat > run/stack.env.tmp <<EOF
STACK_ROOT=$ROOT
STACK_HOST=127.0.0.1
STACK_DOMAIN=$DOMAIN
STACK_TLS_NAME=$MAILHOST
STACK_CA_FILE=$ROOT/tls/ca.crt
STACK_SMTP_PORT=$STACK_SMTP_PORT
STACK_IMAP_PORT=$STACK_IMAP_PORT
STACK_IMAPS_PORT=$STACK_IMAPS_PORT
STACK_DKIM_PORT=$STACK_DKIM_PORT
STACK_DKIM_SELECTOR=$SELECTOR
STACK_DNS_PORT=$STACK_DNS_PORT
STACK_DNS=127.0.0.1:$STACK_DNS_PORT
STACK_USER=$STACK_USER
STACK_PASS=$STACK_PASS
STACK_MAILDIR=$STACK_MAILDIR
STACK_RATE_MSGS=$STACK_RATE_MSGS
STACK_RATE_CONN=$STACK_RATE_CONN
STACK_RATE_WINDOW=$STACK_RATE_WINDOW
STACK_PROM_PORT=$STACK_PROM_PORT
STACK_PROM_URL=http://127.0.0.1:$STACK_PROM_PORT
STACK_PROM_JOB=smtp-canary
STACK_PROM_TARGETS_DIR=$ROOT/etc/prometheus/targets
STACK_PROM_RULES_DIR=$ROOT/etc/prometheus/rules
STACK_POSTFIX_LOG=$ROOT/logs/postfix.log
STACK_DOVECOT_LOG=$ROOT/logs/dovecot.log
STACK_OAUTH2=$STACK_OAUTH2
STACK_OAUTH2_PORT=$STACK_OAUTH2_PORT
STACK_OAUTH2_INTROSPECT_URL=$([ "$STACK_OAUTH2" = 1 ] && echo "http://127.0.0.1:$STACK_OAUTH2_PORT/introspect")
STACK_SINK_DOMAIN=$SINK_DOMAIN
STACK_SINK_USER=$STACK_SINK_USER
STACK_SINK_PASS=$STACK_SINK_PASS
STACK_SINK_MAILDIR=$ROOT/mail/$SINK_DOMAIN/${STACK_SINK_USER%@*}
STACK_MX_PORT=$STACK_MX_PORT
STACK_DKIM_VERIFY_PORT=$STACK_DKIM_VERIFY_PORT
STACK_AUTHSERV_ID=$MXHOST
STACK_BOUNCE_RCPT=$BOUNCE_RCPT
STACK_DKIM_FAIL_FROM=$DKIM_FAIL_FROM
STACK_DKIM_FAIL_SELECTOR=$STALE_SELECTOR
STACK_RELEASE_HELD=$ROOT/bin/release-held
EOF
chmod 644 run/stack.env.tmp; mv run/stack.env.tmp run/stack.env
phase "stack up ($ROOT/run/stack.env):"
ss -H -ltnu | awk '{print "   ", $1, $5}' | grep -E ":($(IFS='|'; echo "${PORTS[*]}"))\$" | sort -u || true
for f in run/*.pid; do printf '    %-12s pid %s\n' "$(basename "$f" .pid)" "$(cat "$f")"; done
