//! The audit's vocabulary: every finding id of the contract with its severity, and the
//! per-check outcome (pass or a finding) that the text report, the JSON and the metrics
//! all read.
//!
//! This file owns the one table [`CHECKS`]: ids are public names (the `check` label and
//! JSON `findings[].check`) and must stay exactly as the contract spells them.

use std::fmt;

/// How bad a finding is (`severity` label).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One check of the contract's list (`check` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    SpfMissing,
    SpfMultiple,
    SpfSyntax,
    SpfTooManyLookups,
    SpfVoidLookups,
    SpfPermissiveAll,
    SpfNoAll,
    SpfProviderNotAuthorized,
    DkimMissing,
    DkimRevoked,
    DkimWeakKey,
    DkimSyntax,
    DmarcMissing,
    DmarcMultiple,
    DmarcSyntax,
    DmarcPolicyNone,
    MxMissing,
    AuthBasicAuthRetiring,
}

/// A row of [`CHECKS`].
pub struct CheckInfo {
    pub check: Check,
    /// The public id, e.g. `spf.too_many_lookups`.
    pub id: &'static str,
    /// The usual severity; a few checks grade by degree (`dkim.weak_key` is an error
    /// under 1024 bits, `spf.permissive_all` only a warning for `?all`).
    pub severity: Severity,
}

const fn row(check: Check, id: &'static str, severity: Severity) -> CheckInfo {
    CheckInfo {
        check,
        id,
        severity,
    }
}

/// Every check, in the contract's order (which is also the order of the text report).
/// Severities: what makes receivers reject or junk the mail (a permerror SPF, no
/// DMARC, a missing or unusable DKIM key) is an error; what weakens it is a warning;
/// MX presence only matters for bounces and replies, so it is info.
pub static CHECKS: [CheckInfo; 18] = [
    row(Check::SpfMissing, "spf.missing", Severity::Error),
    row(Check::SpfMultiple, "spf.multiple", Severity::Error),
    row(Check::SpfSyntax, "spf.syntax", Severity::Error),
    row(
        Check::SpfTooManyLookups,
        "spf.too_many_lookups",
        Severity::Error,
    ),
    row(Check::SpfVoidLookups, "spf.void_lookups", Severity::Error),
    row(
        Check::SpfPermissiveAll,
        "spf.permissive_all",
        Severity::Error,
    ),
    row(Check::SpfNoAll, "spf.no_all", Severity::Warning),
    row(
        Check::SpfProviderNotAuthorized,
        "spf.provider_not_authorized",
        Severity::Error,
    ),
    row(Check::DkimMissing, "dkim.missing", Severity::Error),
    row(Check::DkimRevoked, "dkim.revoked", Severity::Error),
    row(Check::DkimWeakKey, "dkim.weak_key", Severity::Warning),
    row(Check::DkimSyntax, "dkim.syntax", Severity::Error),
    row(Check::DmarcMissing, "dmarc.missing", Severity::Error),
    row(Check::DmarcMultiple, "dmarc.multiple", Severity::Error),
    row(Check::DmarcSyntax, "dmarc.syntax", Severity::Error),
    row(
        Check::DmarcPolicyNone,
        "dmarc.policy_none",
        Severity::Warning,
    ),
    row(Check::MxMissing, "mx.missing", Severity::Info),
    row(
        Check::AuthBasicAuthRetiring,
        "auth.basic_auth_retiring",
        Severity::Warning,
    ),
];

impl Check {
    /// Every check, in the contract's order.
    pub fn all() -> impl Iterator<Item = Check> {
        CHECKS.iter().map(|r| r.check)
    }

    fn info(self) -> &'static CheckInfo {
        // The table is in declaration order; a test keeps them in step.
        &CHECKS[self as usize]
    }

    pub fn id(self) -> &'static str {
        self.info().id
    }

    pub fn severity(self) -> Severity {
        self.info().severity
    }

    /// The check called `id`, e.g. `spf.missing`.
    pub fn from_id(id: &str) -> Option<Check> {
        CHECKS.iter().find(|r| r.id == id).map(|r| r.check)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A problem the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    /// A finding with the check's usual severity.
    pub fn new(check: Check, message: impl Into<String>) -> Finding {
        Finding {
            check,
            severity: check.severity(),
            message: message.into(),
        }
    }

    pub fn with_severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }
}

/// The outcome of one check for the text report: it passed (with what was seen), or it
/// is a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass { check: Check, detail: String },
    Found(Finding),
}

impl Outcome {
    pub fn pass(check: Check, detail: impl Into<String>) -> Outcome {
        Outcome::Pass {
            check,
            detail: detail.into(),
        }
    }

    pub fn found(check: Check, message: impl Into<String>) -> Outcome {
        Outcome::Found(Finding::new(check, message))
    }

    pub fn check(&self) -> Check {
        match self {
            Outcome::Pass { check, .. } => *check,
            Outcome::Found(f) => f.check,
        }
    }

    pub fn finding(&self) -> Option<&Finding> {
        match self {
            Outcome::Found(f) => Some(f),
            Outcome::Pass { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_follows_enum_order_and_contract_ids() {
        for (i, r) in CHECKS.iter().enumerate() {
            assert_eq!(r.check as usize, i, "{}", r.id);
            assert_eq!(Check::from_id(r.id), Some(r.check));
        }
        let ids: Vec<&str> = Check::all().map(Check::id).collect();
        assert_eq!(
            ids.join(" "),
            "spf.missing spf.multiple spf.syntax spf.too_many_lookups spf.void_lookups \
             spf.permissive_all spf.no_all spf.provider_not_authorized dkim.missing \
             dkim.revoked dkim.weak_key dkim.syntax dmarc.missing dmarc.multiple \
             dmarc.syntax dmarc.policy_none mx.missing auth.basic_auth_retiring"
        );
        assert_eq!(Check::MxMissing.severity(), Severity::Info);
        assert_eq!(Check::DmarcPolicyNone.severity(), Severity::Warning);
    }
}
