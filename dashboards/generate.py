#!/usr/bin/env python3
"""Writes dashboards/smtp-canary.json, the Grafana dashboard of smtp-canary.

The JSON is committed (Grafana imports it as is); this script is how it is made, so the
selectors, units and layout stay consistent across ~30 panels. Python 3 standard library
only. After editing this file:

    python3 dashboards/generate.py            # rewrite dashboards/smtp-canary.json
    python3 dashboards/generate.py --check    # exit 1 if the JSON is not what this writes

Every query refers only to metrics smtp-canary exports (src/metrics.rs, the contract);
tests/deploy_files.rs checks that statically and tests/dashboards_live.rs runs every
query against a real Prometheus scraping a real smtp-canary.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("smtp-canary.json")

DS = {"type": "prometheus", "uid": "${datasource}"}

# Every selector narrows by the template variables. Multi-value variables expand to a
# regex, hence =~ everywhere.
SEL = 'job=~"$job", instance=~"$instance"'
MB = SEL + ', mailbox=~"$mailbox"'
DOM = SEL + ', domain=~"$domain"'

FAIL = "smtp_canary_probe_failures_total"


def delta_of_sum(metric, by, sel):
    """Counter increments per $__rate_interval, summed by `by`, that also count the first
    increment of a series: smtp-canary creates a failure series at its first failure with
    the value 1, which increase() never counts. The difference of the sums against
    `offset $__rate_interval` does; `or ... * 0` stands in for a sum that did not exist
    then; clamp_min hides the drop of a restart."""
    now = f"sum by ({by}) ({metric}{{{sel}}})"
    before = f"sum by ({by}) ({metric}{{{sel}}} offset $__rate_interval)"
    return f"clamp_min({now} - ({before} or {now} * 0), 0)"


# ------------------------------------------------------------------ panel builders


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self):
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1
        self.panels = []

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self.newline()
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)


def target(expr, legend="", ref="A", instant=False, fmt="time_series"):
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": fmt,
        "refId": ref,
    }


def thresholds(*steps):
    """steps: (color, value) pairs, the first value None (the base)."""
    return {
        "mode": "absolute",
        "steps": [{"color": c, "value": v} for c, v in steps],
    }


def panel(kind, title, description, targets, unit=None, th=None, mappings=None,
          options=None, custom=None, minv=None, maxv=None, overrides=None,
          transformations=None, extra=None):
    defaults = {}
    if unit:
        defaults["unit"] = unit
    if th:
        defaults["thresholds"] = th
        defaults["color"] = {"mode": "thresholds"}
    else:
        defaults["color"] = {"mode": "palette-classic"}
    if mappings:
        defaults["mappings"] = mappings
    if custom:
        defaults["custom"] = custom
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [
            dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    if extra:
        p.update(extra)
    return p


def timeseries(title, description, targets, unit, stack=False, bars=False, th=None,
               log=False, overrides=None, extra=None, minv=None):
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if stack or bars else 10,
        "showPoints": "never",
        "spanNulls": True,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "axisSoftMin": 0,
    }
    if log:
        custom["scaleDistribution"] = {"type": "log", "log": 10}
    if th:
        custom["thresholdsStyle"] = {"mode": "dashed"}
    p = panel(
        "timeseries", title, description, targets, unit=unit, th=th, custom=custom,
        options={
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        overrides=overrides, extra=extra, minv=minv,
    )
    if th:
        # Thresholds are drawn as lines; the series keep their palette colours.
        p["fieldConfig"]["defaults"]["color"] = {"mode": "palette-classic"}
    return p


def bargauge(title, description, targets, unit, th, minv=None, maxv=None, mappings=None):
    return panel(
        "bargauge", title, description, targets, unit=unit, th=th, minv=minv, maxv=maxv,
        mappings=mappings,
        options={
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "valueMode": "color",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    )


def stat(title, description, targets, unit=None, th=None, mappings=None):
    return panel(
        "stat", title, description, targets, unit=unit, th=th, mappings=mappings,
        options={
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": "value_and_name",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    )


def table(title, description, expr, columns, rename=None, overrides=None):
    """An instant query shown as a table of its labels; `columns` in display order."""
    order = {c: i for i, c in enumerate(columns)}
    return panel(
        "table", title, description,
        [target(expr, instant=True, fmt="table")],
        overrides=overrides,
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
        transformations=[
            {
                "id": "organize",
                "options": {
                    # Only the labels listed are shown: Time, __name__, job and the
                    # sample value carry nothing here (the rows are the series).
                    "excludeByName": {"Time": True, "Value": "Value" not in columns,
                                      "__name__": True, "job": True},
                    "indexByName": order,
                    "renameByName": rename or {},
                },
            }
        ],
    )


def value_map(pairs):
    """pairs: (value, text, color)."""
    return [
        {
            "type": "value",
            "options": {str(v): {"text": t, "color": c, "index": i}
                        for i, (v, t, c) in enumerate(pairs)},
        }
    ]


# ------------------------------------------------------------------ the dashboard


def build():
    L = Layout()

    # ---------------------------------------------------------------- Overview
    L.row("Overview")
    L.add(bargauge(
        "Success ratio",
        "Share of the time range during which the mailbox's last probe had delivered its "
        "canary (smtp_canary_probe_success averaged over the range). Red under 90%, "
        "orange under 99%.",
        [target(f"avg by (mailbox) (avg_over_time(smtp_canary_probe_success{{{MB}}}[$__range]))",
                "{{mailbox}}", instant=True)],
        "percentunit",
        thresholds(("red", None), ("orange", 0.9), ("green", 0.99)),
        minv=0, maxv=1,
    ), 6, 8)
    L.add(stat(
        "Last probe",
        "The result of each mailbox's last probe.",
        [target(f"max by (mailbox) (smtp_canary_probe_success{{{MB}}})", "{{mailbox}}", instant=True)],
        th=thresholds(("red", None), ("green", 1)),
        mappings=value_map([(1, "delivered", "green"), (0, "failing", "red")]),
    ), 6, 8)
    L.add(bargauge(
        "Time since last success",
        "How long ago a probe of the mailbox last delivered its canary "
        "(smtp_canary_last_success_timestamp_seconds). A mailbox that never succeeded "
        "since the exporter started has no bar. SMTPCanaryNoRecentSuccess fires after an hour.",
        [target(f"time() - max by (mailbox) (smtp_canary_last_success_timestamp_seconds{{{MB}}})",
                "{{mailbox}}", instant=True)],
        "s",
        thresholds(("green", None), ("orange", 900), ("red", 3600)),
        minv=0,
    ), 6, 8)
    L.add(bargauge(
        "Time since last probe",
        "How long ago the mailbox's last probe ended, whatever its result "
        "(smtp_canary_probe_timestamp_seconds). Much more than the mailbox's interval means "
        "probes are skipped (budget, back-off) or the scheduler is stuck.",
        [target(f"time() - max by (mailbox) (smtp_canary_probe_timestamp_seconds{{{MB}}})",
                "{{mailbox}}", instant=True)],
        "s",
        thresholds(("green", None), ("orange", 900), ("red", 3600)),
        minv=0,
    ), 6, 8)
    L.add(timeseries(
        "Probe result over time",
        "1 while the last probe had delivered, 0 while it had failed.",
        [target(f"max by (mailbox) (smtp_canary_probe_success{{{MB}}})", "{{mailbox}}")],
        "none",
        minv=0,
    ), 16, 7)
    L.add(stat(
        "Exporter",
        "Whether Prometheus can scrape each smtp-canary instance (up), and whether its last "
        "config (re)load succeeded (smtp_canary_config_last_reload_successful; a bad config "
        "keeps the previous one running).",
        [
            target(f"up{{{SEL}}}", "{{instance}} scrape", instant=True),
            target(f"smtp_canary_config_last_reload_successful{{{SEL}}}", "{{instance}} config",
                   instant=True),
        ],
        th=thresholds(("red", None), ("green", 1)),
        mappings=value_map([(1, "ok", "green"), (0, "failing", "red")]),
    ), 8, 7)

    # ---------------------------------------------------------------- Latency
    L.row("Latency")
    L.add(timeseries(
        "Phases of the last probe: $mailbox",
        "Where the seconds of the last probe went, phase by phase, stacked "
        "(smtp_canary_probe_phase_duration_seconds). One panel per selected mailbox.",
        [target(f'max by (phase) (smtp_canary_probe_phase_duration_seconds{{{SEL}, mailbox=~"$mailbox"}})',
                "{{phase}}")],
        "s", stack=True,
        # Grafana splits the full width among the repeated panels, up to 4 a row.
        extra={"repeat": "mailbox", "repeatDirection": "h", "maxPerRow": 4},
    ), 24, 8)
    L.add(timeseries(
        "Phase latency p50 / p95 / p99",
        "Quantiles per phase over every probe of the selected mailboxes, from the "
        "smtp_canary_phase_seconds histogram (buckets 5 ms to 60 s). Gaps mean no probe in "
        "the interval.",
        [
            target(f"histogram_quantile(0.5, sum by (le, phase) (rate(smtp_canary_phase_seconds_bucket{{{MB}}}[$__rate_interval])))",
                   "p50 {{phase}}"),
            target(f"histogram_quantile(0.95, sum by (le, phase) (rate(smtp_canary_phase_seconds_bucket{{{MB}}}[$__rate_interval])))",
                   "p95 {{phase}}"),
            target(f"histogram_quantile(0.99, sum by (le, phase) (rate(smtp_canary_phase_seconds_bucket{{{MB}}}[$__rate_interval])))",
                   "p99 {{phase}}"),
        ],
        "s", log=True,
    ), 12, 9)
    L.add(panel(
        "heatmap",
        "Total probe time",
        "Distribution of the total time of the probes (smtp_canary_probe_duration_seconds, "
        "the last probe's total at each scrape), bucketed by Grafana on a log scale.",
        [target(f"smtp_canary_probe_duration_seconds{{{MB}}}", "{{mailbox}}")],
        unit="s",
        options={
            "calculate": True,
            "calculation": {"yBuckets": {"mode": "count", "value": "20",
                                         "scale": {"type": "log", "log": 2}}},
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5,
                      "fill": "dark-orange", "scale": "exponential", "reverse": False},
            "yAxis": {"axisPlacement": "left", "unit": "s"},
            "tooltip": {"mode": "single", "yHistogram": False},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "cellValues": {"unit": "short"},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "showValue": "never",
        },
        custom={"hideFrom": {"legend": False, "tooltip": False, "viz": False},
                "scaleDistribution": {"type": "linear"}},
    ), 12, 9)
    L.add(timeseries(
        "Total time of the last probe",
        "smtp_canary_probe_duration_seconds per mailbox: from the start of the probe to the "
        "reply to QUIT, or to the failure.",
        [target(f"max by (mailbox) (smtp_canary_probe_duration_seconds{{{MB}}})", "{{mailbox}}")],
        "s",
    ), 24, 7)

    # ---------------------------------------------------------------- Failures
    L.row("Failures")
    L.add(timeseries(
        "Failures by class and code",
        "Failed probes per interval by class and reply code (the enhanced status code, "
        "else the basic code, else empty). Counts the first failure of each class and code "
        "too (see the query).",
        [target(delta_of_sum(FAIL, "class, code", MB + ', phase!=""'), "{{class}} {{code}}")],
        "short", bars=True, stack=True,
    ), 14, 9)
    L.add(table(
        "Failing now",
        "Mailboxes whose last probe failed, with the class, phase and code of their failures "
        "in the last 15 minutes (a failure series that counted up, or appeared, within 15 "
        "minutes). The status page of the instance has the hint and the transcript.",
        f"""sum by (instance, mailbox, class, phase, code) (
    (increase({FAIL}{{{MB}, phase!=""}}[15m]) > 0)
  or
    ({FAIL}{{{MB}, phase!=""}} unless {FAIL}{{{MB}, phase!=""}} offset 15m)
)
and on (instance, mailbox) (max by (instance, mailbox) (smtp_canary_probe_success{{{MB}}}) == 0)""",
        ["mailbox", "class", "phase", "code", "instance"],
    ), 10, 9)
    L.add(timeseries(
        "Probes run and skipped",
        "Probes run per interval, and probes not run by reason: budget (the canary's daily "
        "cap is spent), backoff (paused after errors), concurrency (the previous probe of "
        "the mailbox still ran), shutdown.",
        [
            target(f"sum by (mailbox) (increase(smtp_canary_probes_total{{{MB}}}[$__rate_interval]))",
                   "{{mailbox}} run"),
            target(f"sum by (mailbox, reason) (increase(smtp_canary_probes_skipped_total{{{MB}}}[$__rate_interval]))",
                   "{{mailbox}} skipped: {{reason}}"),
        ],
        "short", bars=True,
    ), 24, 7)

    # ---------------------------------------------------------------- Authentication
    L.row("Authentication")
    L.add(timeseries(
        "auth vs auth_policy vs oauth_token",
        "auth: credentials or token rejected (535 5.7.3, 5.7.8). auth_policy: the provider "
        "refuses this kind of login (535 5.7.139 SMTP AUTH or Basic auth disabled, 550 "
        "5.7.30): fixed by an admin, not by a password. oauth_token: no access token.",
        [target(delta_of_sum(FAIL, "class", MB + ', class=~"auth|auth_policy|oauth_token"'),
                "{{class}}")],
        "short", bars=True, stack=True,
    ), 12, 8)
    L.add(bargauge(
        "OAuth token expires in",
        "Time left on each OAuth mailbox's cached access token "
        "(smtp_canary_oauth_token_expiry_timestamp_seconds). The canary refreshes it 5 "
        "minutes before expiry; a negative value means no fresh token could be fetched.",
        [target(f"max by (mailbox) (smtp_canary_oauth_token_expiry_timestamp_seconds{{{MB}}}) - time()",
                "{{mailbox}}", instant=True)],
        "s",
        thresholds(("red", None), ("orange", 0), ("green", 300)),
    ), 12, 8)
    L.add(timeseries(
        "OAuth token failures by reason",
        "Failed token requests per interval: the OAuth error (invalid_client: wrong or "
        "expired client secret, invalid_grant, invalid_scope, ...) or http_<status>, "
        "network, timeout, malformed.",
        [target(delta_of_sum("smtp_canary_oauth_token_failures_total", "mailbox, reason", MB),
                "{{mailbox}} {{reason}}")],
        "short", bars=True,
    ), 12, 8)
    L.add(table(
        "Mechanism in use",
        "The SASL mechanism each mailbox's last login used (smtp_canary_auth_mechanism_info): "
        "PLAIN and LOGIN send a password (Basic auth), XOAUTH2 an OAuth token.",
        f"max by (mailbox, mechanism) (smtp_canary_auth_mechanism_info{{{MB}}}) == 1",
        ["mailbox", "mechanism"],
    ), 6, 8)
    L.add(table(
        "Basic-auth retirement readiness",
        "Domains with a microsoft365 mailbox that still logs in with a password (finding "
        "auth.basic_auth_retiring). Exchange Online disables Basic auth for SMTP AUTH by "
        "default from the end of December 2026: move these mailboxes to OAuth. Empty is ready.",
        f'max by (domain, check, severity) (smtp_canary_audit_finding{{{DOM}, check="auth.basic_auth_retiring"}}) == 1',
        ["domain", "check", "severity"],
    ), 6, 8)

    # ---------------------------------------------------------------- Quota and capacity
    L.row("Quota and capacity")
    L.add(timeseries(
        "Canary sends vs provider limit",
        "The canary's own sends in each rolling window (smtp_canary_quota_used) against the "
        "provider's limit for the mailbox (smtp_canary_quota_limit, dashed). The canary "
        "sees only its own sends; other senders share the same limit.",
        [
            target(f"max by (mailbox, window, unit) (smtp_canary_quota_used{{{MB}}})",
                   "{{mailbox}} {{unit}}/{{window}} used"),
            target(f"max by (mailbox, window, unit) (smtp_canary_quota_limit{{{MB}}})",
                   "{{mailbox}} {{unit}}/{{window}} limit"),
        ],
        "short", log=True,
        overrides=[{
            "matcher": {"id": "byRegexp", "options": ".* limit$"},
            "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                {"id": "custom.fillOpacity", "value": 0},
            ],
        }],
    ), 12, 8)
    L.add(bargauge(
        "Headroom",
        "1 - used / limit per mailbox, window and unit, for the canary's own sends.",
        [target(f"1 - max by (mailbox, window, unit) (smtp_canary_quota_used{{{MB}}}) "
                f"/ max by (mailbox, window, unit) (smtp_canary_quota_limit{{{MB}}})",
                "{{mailbox}} {{unit}}/{{window}}", instant=True)],
        "percentunit",
        thresholds(("red", None), ("orange", 0.2), ("green", 0.5)),
        minv=0, maxv=1,
    ), 12, 8)
    slope = lambda m, sel: (  # noqa: E731 - per-second slope of a gauge, by predict_linear
        f"(predict_linear({m}{{{sel}}}[1h], 3600) - predict_linear({m}{{{sel}}}[1h], 0)) / 3600"
    )
    day = MB + ', window="day"'
    L.add(bargauge(
        "Time to exhaustion (linear)",
        "When the daily quota (and the canary's own daily budget) runs out if use goes on "
        "as in the last hour: predict_linear over 1h. No bar: use is not growing.",
        [
            target(f"""(
  max by (mailbox, window, unit) (smtp_canary_quota_limit{{{day}}})
  - max by (mailbox, window, unit) (predict_linear(smtp_canary_quota_used{{{day}}}[1h], 0))
)
/ max by (mailbox, window, unit) ({slope("smtp_canary_quota_used", day)})
> 0""", "{{mailbox}} {{unit}}/{{window}}", instant=True),
            target(f"""max by (mailbox) (predict_linear(smtp_canary_budget_remaining{{{MB}}}[1h], 0))
/ -max by (mailbox) ({slope("smtp_canary_budget_remaining", MB)})
> 0""", "{{mailbox}} budget", instant=True),
        ],
        "s",
        thresholds(("red", None), ("orange", 3600), ("green", 6 * 3600)),
        minv=0,
    ), 8, 8)
    L.add(timeseries(
        "Throttling rate",
        "Throttled probes (432 4.3.2, 421 4.4.2, 454 4.7.0, ...) in the last 2 hours, per "
        "mailbox. After a throttled probe the canary backs the mailbox off (2, 4, 8 "
        "intervals, at most 1 h), so sustained throttling is a few probes, most of them "
        "throttled: SMTPCanaryThrottled fires at 2 (dashed line) when they are also a "
        "quarter of the probes run. Summed before counting (a subquery at the evaluation "
        "interval), so the mailbox's zero series makes the first one count.",
        [target(f'increase((sum by (mailbox) ({FAIL}{{{MB}, class="throttled"}}))[2h:])',
                "{{mailbox}}")],
        "short",
        th=thresholds(("green", None), ("red", 2)),
    ), 8, 8)
    L.add(bargauge(
        "Canary budget remaining",
        "Canary sends left in the rolling day under the mailbox's budget "
        "(smtp_canary_budget_remaining). At 0 probes are skipped with reason budget.",
        [target(f"max by (mailbox) (smtp_canary_budget_remaining{{{MB}}})", "{{mailbox}}",
                instant=True)],
        "short",
        thresholds(("red", None), ("orange", 1), ("green", 10)),
        minv=0,
    ), 8, 8)

    # ---------------------------------------------------------------- TLS
    L.row("TLS")
    L.add(bargauge(
        "Days until the certificate expires",
        "Earliest notAfter in the certificate chain the server presented to the last probe "
        "(smtp_canary_tls_cert_not_after_timestamp_seconds). SMTPCanaryCertExpiringSoon "
        "fires under 14 days.",
        [target(f"(max by (mailbox) (smtp_canary_tls_cert_not_after_timestamp_seconds{{{MB}}}) - time()) / 86400",
                "{{mailbox}}", instant=True)],
        "d",
        thresholds(("red", None), ("orange", 14), ("green", 30)),
        minv=0,
    ), 12, 8)
    L.add(table(
        "TLS version",
        "The TLS version each mailbox's last probe negotiated (smtp_canary_tls_version_info). "
        "Exchange Online accepts TLS 1.2 and newer only.",
        f"max by (mailbox, version) (smtp_canary_tls_version_info{{{MB}}}) == 1",
        ["mailbox", "version"],
    ), 12, 8)

    # ---------------------------------------------------------------- DNS audit
    L.row("DNS audit")
    L.add(table(
        "Findings",
        "Every finding of the last DNS audit of each domain (smtp_canary_audit_finding), "
        "and the config-based auth.basic_auth_retiring. Errors fire SMTPCanaryDNSAuditError; "
        "`smtp-canary audit DOMAIN` prints the details.",
        f"max by (domain, check, severity) (smtp_canary_audit_finding{{{DOM}}}) == 1",
        ["domain", "severity", "check"],
        overrides=[{
            "matcher": {"id": "byName", "options": "severity"},
            "properties": [
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                {"id": "mappings", "value": value_map([
                    ("error", "error", "red"), ("warning", "warning", "orange"),
                    ("info", "info", "blue")])},
            ],
        }],
    ), 12, 9)
    L.add(stat(
        "Audit complete",
        "1 if the last DNS audit of the domain got answers (smtp_canary_audit_success); an "
        "incomplete audit keeps the last complete audit's series.",
        [target(f"max by (domain) (smtp_canary_audit_success{{{DOM}}})", "{{domain}}", instant=True)],
        th=thresholds(("red", None), ("green", 1)),
        mappings=value_map([(1, "complete", "green"), (0, "incomplete", "red")]),
    ), 6, 9)
    L.add(stat(
        "DMARC policy",
        "The p= of the domain's DMARC record (smtp_canary_dmarc_policy).",
        [target(f"max by (domain) (smtp_canary_dmarc_policy{{{DOM}}})", "{{domain}}", instant=True)],
        th=thresholds(("orange", None), ("yellow", 1), ("green", 2)),
        mappings=value_map([(0, "none", "orange"), (1, "quarantine", "yellow"),
                            (2, "reject", "green")]),
    ), 6, 9)
    L.add(bargauge(
        "SPF DNS lookups (limit 10)",
        "DNS-querying terms the domain's SPF policy needs, includes expanded "
        "(smtp_canary_spf_dns_lookups). Over 10 is a permerror: receivers treat SPF as failed.",
        [target(f"max by (domain) (smtp_canary_spf_dns_lookups{{{DOM}}})", "{{domain}}", instant=True)],
        "short",
        thresholds(("green", None), ("orange", 8), ("red", 11)),
        minv=0, maxv=12,
    ), 12, 8)
    L.add(bargauge(
        "DKIM key bits",
        "Public key size per domain and selector (smtp_canary_dkim_key_bits). RSA under "
        "2048 bits is weak, under 1024 an error. An Ed25519 key is 256 bits and is not weak.",
        [target(f"max by (domain, selector) (smtp_canary_dkim_key_bits{{{DOM}}})",
                "{{domain}} {{selector}}", instant=True)],
        "short",
        thresholds(("red", None), ("orange", 1024), ("green", 2048)),
        minv=0, maxv=4096,
    ), 12, 8)

    # ---------------------------------------------------------------- Delivery
    # Canaries read back from the sinks (`sinks:` in the config). Last, so the ids of the
    # panels above stay what they were. The per-sink series (delivery_seconds, sink_up,
    # sink_failures_total) have no mailbox label: the mailbox variable does not narrow them.
    pair = "{{mailbox}} to {{sink}}"
    L.row("Delivery")
    L.add(bargauge(
        "Delivery success ratio",
        "Share of the time range during which the last resolved canary of the mailbox at the "
        "sink had reached the inbox in time (smtp_canary_delivery_success averaged over the "
        "range). Junk, late, lost and bounced canaries count as not delivered.",
        [target(f"avg by (mailbox, sink) (avg_over_time(smtp_canary_delivery_success{{{MB}}}[$__range]))",
                pair, instant=True)],
        "percentunit",
        thresholds(("red", None), ("orange", 0.9), ("green", 0.99)),
        minv=0, maxv=1,
    ), 8, 8)
    L.add(stat(
        "Last canary delivered",
        "Whether the last resolved canary of each mailbox reached the sink's inbox in time "
        "(smtp_canary_delivery_success). SMTPCanaryDeliveryLost fires after 10 minutes of "
        "not delivered with lost, late or bounced canaries, SMTPCanaryDeliveryJunk after 15 "
        "minutes in junk.",
        [target(f"max by (mailbox, sink) (smtp_canary_delivery_success{{{MB}}})", pair, instant=True)],
        th=thresholds(("red", None), ("green", 1)),
        mappings=value_map([(1, "delivered", "green"), (0, "not delivered", "red")]),
    ), 8, 8)
    L.add(bargauge(
        "Canaries in flight",
        "Canaries sent and not yet resolved (found, bounced, or given up as lost after "
        "delivery.timeout) per mailbox and sink (smtp_canary_delivery_pending). Normally 0 "
        "or 1: canaries arrive within seconds. Growing towards delivery.timeout / interval "
        "(3 with the defaults) means canaries are not arriving.",
        [target(f"max by (mailbox, sink) (smtp_canary_delivery_pending{{{MB}}})", pair, instant=True)],
        "short",
        thresholds(("green", None), ("orange", 2), ("red", 3)),
        minv=0,
    ), 8, 8)
    L.add(timeseries(
        "Delivery time of the last canary",
        "smtp_canary_delivery_last_seconds per mailbox and sink: the last canary that arrived "
        "in time (inbox or junk), from the 250 after DATA to its arrival by the sink's clock "
        "(a sink clock that runs behind shows as 0). Late canaries are not in it.",
        [target(f"max by (mailbox, sink) (smtp_canary_delivery_last_seconds{{{MB}}})", pair)],
        "s",
    ), 12, 8)
    L.add(timeseries(
        "Delivery latency p50 / p95 / p99",
        "Quantiles per sink over the canaries that arrived in time (inbox or junk) in the "
        "last hour, from the smtp_canary_delivery_seconds histogram (buckets 1 s to 1 h). "
        "An hour, because canaries are few (one per mailbox and interval). Per sink: the "
        "mailbox variable does not narrow it.",
        [
            target(f"histogram_quantile(0.5, sum by (le, sink) (rate(smtp_canary_delivery_seconds_bucket{{{SEL}}}[1h])))",
                   "p50 {{sink}}"),
            target(f"histogram_quantile(0.95, sum by (le, sink) (rate(smtp_canary_delivery_seconds_bucket{{{SEL}}}[1h])))",
                   "p95 {{sink}}"),
            target(f"histogram_quantile(0.99, sum by (le, sink) (rate(smtp_canary_delivery_seconds_bucket{{{SEL}}}[1h])))",
                   "p99 {{sink}}"),
        ],
        "s", log=True,
    ), 12, 8)
    L.add(timeseries(
        "Placement by result",
        "Resolved canaries per interval by sink and result (smtp_canary_deliveries_total): "
        "delivered (inbox, in time), junk, late (found after delivery.timeout), lost (never "
        "found), bounced (a DSN came back), quarantined and failed (message trace). Counts "
        "the first canary of each result too (see the query).",
        [target(delta_of_sum("smtp_canary_deliveries_total", "sink, result", MB),
                "{{sink}} {{result}}")],
        "short", bars=True, stack=True,
    ), 14, 9)
    L.add(table(
        "Authentication-Results at the sink",
        "The verdicts in the sink's Authentication-Results header for the last canary of "
        "each mailbox (smtp_canary_delivery_auth_result == 1): SPF, DKIM and DMARC as the "
        "receiver saw them. SMTPCanaryDKIMFailingAtReceiver fires on a DKIM verdict other "
        "than pass.",
        f"max by (mailbox, sink, method, result) (smtp_canary_delivery_auth_result{{{MB}}}) == 1",
        ["mailbox", "sink", "method", "result"],
        overrides=[{
            "matcher": {"id": "byName", "options": "result"},
            "properties": [
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                {"id": "mappings", "value": value_map([
                    ("pass", "pass", "green"), ("fail", "fail", "red"),
                    ("softfail", "softfail", "orange"), ("neutral", "neutral", "orange"),
                    ("none", "none", "orange"), ("temperror", "temperror", "orange"),
                    ("permerror", "permerror", "red"), ("policy", "policy", "orange"),
                    ("other", "other", "blue")])},
            ],
        }],
    ), 10, 9)
    L.add(stat(
        "DKIM verified by smtp-canary",
        "1 if smtp-canary itself verified the DKIM signature of the last received canary, "
        "aligned with the From domain (smtp_canary_delivery_dkim_valid). A sink that "
        "re-encodes messages can fail this while the receiver's verdict passed; the alert "
        "goes by the receiver's verdict where there is one.",
        [target(f"max by (mailbox, sink) (smtp_canary_delivery_dkim_valid{{{MB}}})", pair, instant=True)],
        th=thresholds(("red", None), ("green", 1)),
        mappings=value_map([(1, "valid", "green"), (0, "not valid", "red")]),
    ), 6, 8)
    L.add(timeseries(
        "Bounces by class and code",
        "Delivery status notifications about canaries per interval, by mailbox, class and "
        "code (smtp_canary_bounces_total), classified like probe failures: 5.7.708 outbound "
        "block, 5.7.509 DMARC reject, 5.1.10 recipient not found, 4.4.7 expired in a queue. "
        "Seen only where a sink watches the mailbox's from address. Counts the first bounce "
        "of each code too.",
        [target(delta_of_sum("smtp_canary_bounces_total", "mailbox, class, code", MB),
                "{{mailbox}} {{class}} {{code}}")],
        "short", bars=True, stack=True,
    ), 18, 8)
    L.add(stat(
        "Sink up",
        "1 if the last read of the sink worked (smtp_canary_sink_up). SMTPCanarySinkDown "
        "fires after 10 minutes down; meanwhile canaries to it are not verified.",
        [target(f"max by (sink) (smtp_canary_sink_up{{{SEL}}})", "{{sink}}", instant=True)],
        th=thresholds(("red", None), ("green", 1)),
        mappings=value_map([(1, "up", "green"), (0, "down", "red")]),
    ), 6, 8)
    L.add(timeseries(
        "Sink read failures by class",
        "Failed reads of each sink per interval by class (smtp_canary_sink_failures_total), "
        "classes as for probes: auth (a wrong password; Microsoft 365 without "
        "IMAP.AccessAsApp or the mailbox permission), connect, tls, timeout, ... Counts the "
        "first failure of each class too.",
        [target(delta_of_sum("smtp_canary_sink_failures_total", "sink, class", SEL),
                "{{sink}} {{class}}")],
        "short", bars=True, stack=True,
    ), 18, 8)

    return L.panels


def variable(name, label, query, regex="", qry_type=1):
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "definition": query,
        "query": {"qryType": qry_type, "query": query,
                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "regex": regex,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "options": [],
        "skipUrlSync": False,
    }


def dashboard():
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes smtp-canary",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__elements": {},
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "bargauge", "name": "Bar gauge", "version": ""},
            {"type": "panel", "id": "heatmap", "name": "Heatmap", "version": ""},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            {"type": "panel", "id": "table", "name": "Table", "version": ""},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ],
        "uid": "smtp-canary",
        "title": "smtp-canary",
        "description": "SMTP submission canaries: delivery, latency per phase, failure classes "
                       "and codes, authentication, quotas, TLS, the DNS audit of the "
                       "sender domains, and delivery to the sinks (placement, latency, "
                       "Authentication-Results, bounces).",
        "tags": ["smtp", "email", "smtp-canary"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "",
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "type": "datasource",
                    "name": "datasource",
                    "label": "Data source",
                    "query": "prometheus",
                    # ${DS_PROMETHEUS} is what the import dialog's choice replaces; a
                    # provisioned copy finds no such data source and falls back to the
                    # default Prometheus.
                    "current": {"selected": False, "text": "${DS_PROMETHEUS}",
                                "value": "${DS_PROMETHEUS}"},
                    "regex": "",
                    "refresh": 1,
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "options": [],
                    "skipUrlSync": False,
                },
                variable("job", "Job", "label_values(smtp_canary_build_info, job)"),
                variable("instance", "Instance",
                         'label_values(smtp_canary_build_info{job=~"$job"}, instance)'),
                variable("mailbox", "Mailbox",
                         f"label_values(smtp_canary_probes_total{{{SEL}}}, mailbox)"),
                # Audited domains and the domains of Basic-auth findings (which need no
                # DNS audit), hence the union.
                variable(
                    "domain", "Domain",
                    f"query_result(count by (domain) (smtp_canary_audit_success{{{SEL}}} "
                    f"or smtp_canary_audit_finding{{{SEL}}}))",
                    regex='/domain="([^"]+)"/',
                    qry_type=3,
                ),
            ]
        },
        "panels": build(),
    }


def render():
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    text = render()
    if argv[1:] == ["--check"]:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python3 {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(f"usage: {argv[0]} [--check]", file=sys.stderr)
        return 2
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
