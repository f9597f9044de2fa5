//! The DKIM check: the key record of each selector, following CNAMEs (hickory chases
//! the chain; we report where it ended), parsed by mail-auth: missing, revoked (empty
//! `p=`), key type, and size (RSA bits from the modulus).
//!
//! Provider knowledge is in [`ONE_ACTIVE_SELECTOR`]: Exchange Online publishes two
//! selectors and signs with one at a time, so one usable key of the pair is enough.

use futures_util::future::join_all;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;

use super::dns::{Budget, DnsFailure, RType, Run};
use super::findings::{Check, Finding, Outcome, Severity};
use crate::config::Provider;

/// Providers whose preset selectors are a rotation pair: only one is active at a time,
/// so a missing or revoked inactive one is expected.
pub const ONE_ACTIVE_SELECTOR: &[Provider] = &[Provider::Microsoft365];

/// RSA keys below this are a warning (RFC 8301 recommends 2048)...
pub const WEAK_RSA_BITS: u32 = 2048;
/// ...and below this an error: RFC 8301 §3.2 says verifiers must not accept them.
pub const MIN_RSA_BITS: u32 = 1024;

/// One selector as reported (`dkim[]` in the JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimReport {
    pub selector: String,
    pub present: bool,
    /// `rsa` or `ed25519`; `None` when absent, revoked or unparseable.
    pub key_type: Option<&'static str>,
    pub bits: Option<u32>,
    pub revoked: bool,
    /// Where a CNAME chain ended (Microsoft 365 publishes its keys that way).
    pub cname: Option<String>,
}

/// What a selector's record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Missing,
    Revoked,
    Usable { key_type: &'static str, bits: u32 },
    Broken(String),
}

/// Parses one key record with mail-auth.
fn parse_key(record: &[u8]) -> Key {
    match DomainKey::parse(record) {
        Ok(key) => {
            // mail-auth's RSA keys report their modulus size; `usize::MAX` is the
            // trait's default, which only its Ed25519 keys keep (a unit test pins it).
            match key.p.public_key_bits() {
                usize::MAX => Key::Usable {
                    key_type: "ed25519",
                    bits: 256,
                },
                0 => Key::Broken("the RSA key in p= has no modulus".into()),
                bits => Key::Usable {
                    key_type: "rsa",
                    bits: u32::try_from(bits).unwrap_or(u32::MAX),
                },
            }
        }
        Err(mail_auth::Error::Dkim(mail_auth::dkim::DkimError::RevokedPublicKey)) => Key::Revoked,
        Err(mail_auth::Error::Dkim(mail_auth::dkim::DkimError::UnsupportedKeyType)) => {
            Key::Broken("unsupported key type (k=); use rsa or ed25519".into())
        }
        Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => {
            Key::Broken("not a DKIM key record (v=DKIM1 with p=)".into())
        }
        Err(e) => Key::Broken(format!("the key in p= does not parse: {e}")),
    }
}

fn key_of(txt: &[Vec<u8>]) -> Key {
    match txt {
        [] => Key::Missing,
        [one] => parse_key(one),
        many => Key::Broken(format!(
            "{} TXT records at the selector; exactly one key record is expected",
            many.len()
        )),
    }
}

/// The DKIM section of one domain's audit.
#[derive(Debug, Default)]
pub struct DkimResult {
    pub reports: Vec<DkimReport>,
    pub outcomes: Vec<Outcome>,
}

/// Checks every selector of `domain` (all queried at once).
pub async fn check(
    run: &Run,
    budget: &Budget,
    domain: &str,
    provider: Provider,
    selectors: &[String],
) -> Result<DkimResult, DnsFailure> {
    let names: Vec<String> = selectors
        .iter()
        .map(|s| format!("{s}._domainkey.{domain}"))
        .collect();
    let answers = join_all(names.iter().map(|n| run.query(budget, n, RType::Txt))).await;
    let mut keys = Vec::with_capacity(selectors.len());
    for (s, a) in selectors.iter().zip(answers) {
        let a = a?;
        keys.push((s.clone(), key_of(&a.txt), a.cname_target.clone()));
    }
    Ok(judge(domain, provider, keys))
}

fn judge(domain: &str, provider: Provider, keys: Vec<(String, Key, Option<String>)>) -> DkimResult {
    let mut out = DkimResult::default();
    // The rotation pair: one usable key among them is enough.
    let pair: &[&str] = if ONE_ACTIVE_SELECTOR.contains(&provider) {
        provider.preset().dkim_selectors
    } else {
        &[]
    };
    let in_pair = |s: &str| pair.contains(&s);
    let pair_active: Option<String> = keys
        .iter()
        .find(|(s, k, _)| in_pair(s) && matches!(k, Key::Usable { .. }))
        .map(|(s, _, _)| s.clone());
    let pair_checked = keys.iter().any(|(s, _, _)| in_pair(s));

    for (selector, key, cname) in keys {
        let at = format!("{selector}._domainkey.{domain}");
        let mut report = DkimReport {
            selector: selector.clone(),
            present: !matches!(key, Key::Missing),
            key_type: None,
            bits: None,
            revoked: matches!(key, Key::Revoked),
            cname,
        };
        let standby = in_pair(&selector) && pair_active.as_deref().is_some_and(|a| a != selector);
        match key {
            Key::Usable { key_type, bits } => {
                report.key_type = Some(key_type);
                report.bits = Some(bits);
                let what = format!("{selector}: {key_type} {bits} bits");
                out.outcomes.push(Outcome::pass(Check::DkimMissing, what.clone()));
                if key_type == "rsa" && bits < MIN_RSA_BITS {
                    out.outcomes.push(Outcome::Found(
                        Finding::new(
                            Check::DkimWeakKey,
                            format!("{at}: RSA key of {bits} bits; verifiers must refuse keys under {MIN_RSA_BITS} bits (RFC 8301): rotate to 2048"),
                        )
                        .with_severity(Severity::Error),
                    ));
                } else if key_type == "rsa" && bits < WEAK_RSA_BITS {
                    out.outcomes.push(Outcome::found(
                        Check::DkimWeakKey,
                        format!("{at}: RSA key of {bits} bits; {WEAK_RSA_BITS} is the recommended minimum: rotate to a 2048-bit key"),
                    ));
                } else {
                    out.outcomes.push(Outcome::pass(Check::DkimWeakKey, what));
                }
            }
            Key::Missing | Key::Revoked if standby => {
                let state = if report.revoked { "revoked" } else { "not published" };
                let active = pair_active.as_deref().unwrap_or_default();
                out.outcomes.push(Outcome::pass(
                    Check::DkimMissing,
                    format!("{selector}: {state}; {provider} signs with one selector at a time and {active} is active"),
                ));
            }
            Key::Missing if in_pair(&selector) => {
                // Reported once for the whole pair, below.
            }
            Key::Missing => out.outcomes.push(Outcome::found(
                Check::DkimMissing,
                format!("no DKIM key at {at}: mail signed with selector {selector} fails DKIM"),
            )),
            Key::Revoked => out.outcomes.push(Outcome::found(
                Check::DkimRevoked,
                format!("the key at {at} is revoked (empty p=): mail signed with selector {selector} fails DKIM"),
            )),
            Key::Broken(why) => out.outcomes.push(Outcome::found(
                Check::DkimSyntax,
                format!("{at}: {why}"),
            )),
        }
        out.reports.push(report);
    }
    if pair_checked
        && pair_active.is_none()
        && out
            .reports
            .iter()
            .filter(|r| in_pair(&r.selector))
            .all(|r| !r.present)
    {
        out.outcomes.push(Outcome::found(
            Check::DkimMissing,
            format!(
                "none of the {provider} selectors ({}) is published at {domain}: enable DKIM signing for the domain in {provider}",
                pair.join(", ")
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Public halves of throwaway keys made with `openssl genpkey` (SPKI, base64).
    const RSA_1024: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkz3yvoH8K9fhLfrSTgKy8yzuwHS6VQH1m14vot++Bfhz1gr04UGEzzzZRZcLwbkU1J1lz2VqhjWTnShbAOtr4wzNZVLToC4Rg/2JCQxDyUV9qy4YFaaGQ//CiXjYkFB+nGmXiUUT7OnUJBvjvnfW77WyxuHSisF9VpdAmJzoLzQIDAQAB";
    const ED25519: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    fn record(p: &str) -> Vec<u8> {
        format!("v=DKIM1; k=rsa; p={p}").into_bytes()
    }

    #[test]
    fn key_size_comes_from_the_modulus() {
        assert_eq!(
            parse_key(&record(RSA_1024)),
            Key::Usable {
                key_type: "rsa",
                bits: 1024
            }
        );
        assert_eq!(
            parse_key(format!("v=DKIM1; k=ed25519; p={ED25519}").as_bytes()),
            Key::Usable {
                key_type: "ed25519",
                bits: 256
            }
        );
        assert_eq!(parse_key(b"v=DKIM1; k=rsa; p="), Key::Revoked);
        assert!(matches!(parse_key(&record("AAAA")), Key::Broken(_)));
        assert!(matches!(
            parse_key(b"v=DKIM1; k=dsa; p=AAAA"),
            Key::Broken(_)
        ));
        assert!(matches!(parse_key(b"hello world"), Key::Broken(_)));
        assert_eq!(key_of(&[]), Key::Missing);
        assert!(matches!(
            key_of(&[record(RSA_1024), record(RSA_1024)]),
            Key::Broken(_)
        ));
    }

    fn checks(r: &DkimResult) -> Vec<(&'static str, Severity)> {
        r.outcomes
            .iter()
            .filter_map(|o| o.finding())
            .map(|f| (f.check.id(), f.severity))
            .collect()
    }

    fn usable(bits: u32) -> Key {
        Key::Usable {
            key_type: "rsa",
            bits,
        }
    }

    #[test]
    fn weak_keys_are_graded() {
        let r = judge(
            "d.test",
            Provider::Generic,
            vec![
                ("a".into(), usable(1024), None),
                ("b".into(), usable(512), None),
                ("c".into(), usable(2048), None),
                (
                    "e".into(),
                    Key::Usable {
                        key_type: "ed25519",
                        bits: 256,
                    },
                    None,
                ),
            ],
        );
        assert_eq!(
            checks(&r),
            [
                ("dkim.weak_key", Severity::Warning),
                ("dkim.weak_key", Severity::Error)
            ]
        );
    }

    #[test]
    fn microsoft365_needs_one_of_its_pair() {
        let m = Provider::Microsoft365;
        let r = judge(
            "d.test",
            m,
            vec![
                (
                    "selector1".into(),
                    usable(2048),
                    Some("x.onmicrosoft.com".into()),
                ),
                ("selector2".into(), Key::Missing, None),
            ],
        );
        assert!(checks(&r).is_empty(), "{:?}", r.outcomes);
        let r = judge(
            "d.test",
            m,
            vec![
                ("selector1".into(), Key::Revoked, None),
                ("selector2".into(), usable(2048), None),
            ],
        );
        assert!(checks(&r).is_empty(), "{:?}", r.outcomes);
        let r = judge(
            "d.test",
            m,
            vec![
                ("selector1".into(), Key::Missing, None),
                ("selector2".into(), Key::Missing, None),
                ("extra".into(), Key::Missing, None),
            ],
        );
        assert_eq!(
            checks(&r),
            [
                ("dkim.missing", Severity::Error),
                ("dkim.missing", Severity::Error)
            ]
        );
        // Google has no pair: its one selector must be there.
        let r = judge(
            "d.test",
            Provider::Google,
            vec![("google".into(), Key::Revoked, None)],
        );
        assert_eq!(checks(&r), [("dkim.revoked", Severity::Error)]);
    }
}
