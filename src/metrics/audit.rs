//! DNS audit series (`audit_success`, `audit_finding`, `spf_dns_lookups`,
//! `dkim_key_bits`, `dmarc_policy`), fed by the audit task through
//! [`crate::audit::AuditSink`], and the Basic-auth readiness findings.

use std::collections::{HashMap, HashSet};

use prometheus::{IntGaugeVec, Registry};

use super::register;

pub(super) struct AuditMetrics {
    audit_success: IntGaugeVec,
    audit_finding: IntGaugeVec,
    spf_dns_lookups: IntGaugeVec,
    dkim_key_bits: IntGaugeVec,
    dmarc_policy: IntGaugeVec,
}

impl AuditMetrics {
    pub(super) fn new(r: &Registry) -> AuditMetrics {
        AuditMetrics {
            audit_success: register(
                r,
                "audit_success",
                "1 if the last DNS audit of the domain got answers.",
                &["domain"],
            ),
            audit_finding: register(
                r,
                "audit_finding",
                "1 for each finding the last DNS audit holds.",
                &["domain", "check", "severity"],
            ),
            spf_dns_lookups: register(
                r,
                "spf_dns_lookups",
                "DNS-querying terms the SPF policy needs (RFC 7208 limit: 10).",
                &["domain"],
            ),
            dkim_key_bits: register(
                r,
                "dkim_key_bits",
                "DKIM public key size in bits.",
                &["domain", "selector"],
            ),
            dmarc_policy: register(
                r,
                "dmarc_policy",
                "DMARC policy: 0 none, 1 quarantine, 2 reject.",
                &["domain"],
            ),
        }
    }

    /// Sets `audit_finding{domain, check="auth.basic_auth_retiring", severity="warning"}`
    /// to 1 for exactly these domains (see `audit::basic_auth_findings`). Only series with
    /// this check are ever set or removed here, so the DNS audit's own per-domain
    /// updates and this never delete each other's findings.
    pub(super) fn set_basic_auth_findings<'a>(&self, domains: impl IntoIterator<Item = &'a str>) {
        use crate::audit::BASIC_AUTH;
        let (check, severity) = (BASIC_AUTH.id(), BASIC_AUTH.severity().as_str());
        let want: HashSet<&str> = domains.into_iter().collect();
        // Every basic-auth series whose domain no longer has the finding.
        for labels in label_sets(&self.audit_finding, &["domain", "check", "severity"]) {
            if labels[1] == check && !want.contains(labels[0].as_str()) {
                let _ = self
                    .audit_finding
                    .remove_label_values(&[&labels[0], check, &labels[2]]);
            }
        }
        for domain in want {
            self.audit_finding
                .with_label_values(&[domain, check, severity])
                .set(1);
        }
    }
}

/// The DNS audit task reports here.
impl crate::audit::AuditSink for AuditMetrics {
    /// Publishes one domain's DNS audit. An incomplete audit (SERVFAIL, timeout) only
    /// sets `audit_success` to 0: it says nothing about the records, so the last
    /// complete audit's series stay. A complete one replaces the domain's DNS series,
    /// removing findings and selectors that are gone; `auth.basic_auth_retiring` series
    /// are the OAuth work's ([`AuditMetrics::set_basic_auth_findings`]) and never touched.
    fn record_audit(&self, r: &crate::audit::DomainReport) {
        use crate::audit::Check;
        let d = r.domain.as_str();
        self.audit_success
            .with_label_values(&[d])
            .set(i64::from(r.complete()));
        if !r.complete() {
            return;
        }
        let owned_elsewhere = Check::AuthBasicAuthRetiring.id();
        let want: HashSet<(&str, &str)> = r
            .findings()
            .filter(|f| f.check != Check::AuthBasicAuthRetiring)
            .map(|f| (f.check.id(), f.severity.as_str()))
            .collect();
        for labels in series_of(&self.audit_finding, d, &["domain", "check", "severity"]) {
            let (check, severity) = (labels[1].as_str(), labels[2].as_str());
            if check != owned_elsewhere && !want.contains(&(check, severity)) {
                let _ = self
                    .audit_finding
                    .remove_label_values(&[d, check, severity]);
            }
        }
        for (check, severity) in &want {
            self.audit_finding
                .with_label_values(&[d, check, severity])
                .set(1);
        }
        match &r.spf {
            Some(spf) => self
                .spf_dns_lookups
                .with_label_values(&[d])
                .set(i64::from(spf.lookups)),
            None => {
                let _ = self.spf_dns_lookups.remove_label_values(&[d]);
            }
        }
        let keys: HashMap<&str, u32> = r
            .dkim
            .iter()
            .filter_map(|k| Some((k.selector.as_str(), k.bits?)))
            .collect();
        for labels in series_of(&self.dkim_key_bits, d, &["domain", "selector"]) {
            if !keys.contains_key(labels[1].as_str()) {
                let _ = self.dkim_key_bits.remove_label_values(&[d, &labels[1]]);
            }
        }
        for (selector, bits) in keys {
            self.dkim_key_bits
                .with_label_values(&[d, selector])
                .set(i64::from(bits));
        }
        match r
            .dmarc
            .as_ref()
            .and_then(|m| m.policy)
            .and_then(crate::audit::policy_value)
        {
            Some(v) => self.dmarc_policy.with_label_values(&[d]).set(v),
            None => {
                let _ = self.dmarc_policy.remove_label_values(&[d]);
            }
        }
    }

    /// Deletes the DNS audit's series of a domain that is no longer audited (not the
    /// `auth.basic_auth_retiring` ones, see [`crate::audit::AuditSink::record_audit`]).
    fn remove_audit_domain(&self, domain: &str) {
        let _ = self.audit_success.remove_label_values(&[domain]);
        let _ = self.spf_dns_lookups.remove_label_values(&[domain]);
        let _ = self.dmarc_policy.remove_label_values(&[domain]);
        for labels in series_of(
            &self.audit_finding,
            domain,
            &["domain", "check", "severity"],
        ) {
            if labels[1] != crate::audit::Check::AuthBasicAuthRetiring.id() {
                let _ = self
                    .audit_finding
                    .remove_label_values(&[domain, &labels[1], &labels[2]]);
            }
        }
        for labels in series_of(&self.dkim_key_bits, domain, &["domain", "selector"]) {
            let _ = self
                .dkim_key_bits
                .remove_label_values(&[domain, &labels[1]]);
        }
    }
}

/// The label values, in `names` order, of every series of `vec` for `domain` (the
/// exposition sorts labels by name, so they are looked up by name).
fn series_of(vec: &IntGaugeVec, domain: &str, names: &[&str]) -> Vec<Vec<String>> {
    let mut with_domain = vec!["domain"];
    with_domain.extend_from_slice(names);
    label_sets(vec, &with_domain)
        .into_iter()
        .filter(|l| l[0] == domain)
        .map(|mut l| l.split_off(1))
        .collect()
}

/// The values of `names` for every series of `vec` (a missing label reads as empty).
fn label_sets(vec: &IntGaugeVec, names: &[&str]) -> Vec<Vec<String>> {
    use prometheus::core::Collector;
    let mut out = Vec::new();
    for family in vec.collect() {
        for m in family.get_metric() {
            let value = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            out.push(names.iter().map(|n| value(n)).collect());
        }
    }
    out
}
