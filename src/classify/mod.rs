//! Maps what went wrong in a probe to one of the contract's fixed failure classes and a
//! one-line remediation hint.
//!
//! This module owns the provider knowledge about SMTP replies. That knowledge is data, in
//! [`tables`]; the code here is a generic matcher that knows no provider. A failed reply is
//! classified by the first rule that matches, in three stages, as the contract orders them:
//!
//! 1. the enhanced status code (`ENHANCED`), because it is the most precise thing a server
//!    says; a row may also require a phase, a provider or a text, and rows that need a text
//!    stand before the bare row of the same code (see below);
//! 2. known provider texts (`TEXTS`), for providers such as SES that send no enhanced code;
//! 3. the basic code and the phase (`BASIC`), then a per-phase default (`PHASE_DEFAULT`).
//!
//! Ordering choice: a reply can carry a generic enhanced code and a very specific text.
//! Postfix's `530 5.7.0 Must issue a STARTTLS command first` is the case in point: 5.7.0 and
//! 4.7.0 usually mean a policy or a throttle, but this reply means "do TLS first". Rather than
//! let texts outrank codes in general (which would make the precise codes of Exchange lose
//! to loose wording), the enhanced-code table carries the exception itself: a 5.7.0/4.7.0 row
//! that also requires "STARTTLS" stands before the rows for those codes.
//!
//! Hints come from `HINTS`, matched by class, code label, provider, reply text and whether
//! the mailbox uses a password; they are static text only, so they can never carry a secret.
//!
//! `Provider::Demo` is read as `Provider::Microsoft365` everywhere here: the demo relay
//! imitates Exchange Online, so its replies must classify and hint exactly the same.
//! The `code` label itself is `Reply::code_label`; this module only reads it.

mod tables;
#[cfg(test)]
mod tests;

use crate::config::Provider;
use crate::smtp::{Phase, Reply};

use tables::{Creds, HintRule, Rule};

/// The contract's failure classes (`class` label). The string forms are public.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Class {
    Dns,
    Connect,
    Timeout,
    Tls,
    Network,
    Protocol,
    Auth,
    AuthPolicy,
    OauthToken,
    Throttled,
    Quota,
    SenderRejected,
    RecipientRejected,
    MessageRejected,
}

impl Class {
    /// Every variant, in declaration order.
    pub const ALL: &'static [Class] = <Class as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Classifies a negative (4xx/5xx) reply received in `phase`.
///
/// A positive reply where a negative one was expected is the peer not following SMTP, so it
/// comes out as `protocol` (from the basic-code table, not a special case).
pub fn classify_reply(provider: Provider, phase: Phase, reply: &Reply) -> Class {
    let provider = canonical(provider);
    let text = reply.text();
    let applies = |rule: &&Rule| rule.applies(provider, phase, &text);

    let by_enhanced = reply.enhanced().and_then(|e| {
        let parts = [u16::from(e.class), e.subject, e.detail];
        tables::ENHANCED
            .iter()
            .filter(applies)
            .find(|rule| code_matches(rule.code, &parts))
    });
    let by_text = || tables::TEXTS.iter().find(applies);
    let by_basic = || {
        tables::BASIC
            .iter()
            .filter(applies)
            .find(|rule| code_matches(rule.code, &[reply.code]))
    };

    by_enhanced
        .or_else(by_text)
        .or_else(by_basic)
        .map(|rule| rule.class)
        .or_else(|| phase_default(phase))
        .unwrap_or(Class::Protocol)
}

/// What the hint for a failure is chosen from.
#[derive(Debug, Clone, Copy)]
pub struct HintInput<'a> {
    pub provider: Provider,
    pub class: Class,
    /// The `code` label ("5.7.139", "454" or "").
    pub code: &'a str,
    /// The full reply text, when the failure was a reply.
    pub reply: Option<&'a str>,
    /// True when the mailbox authenticates with a password (not OAuth).
    pub uses_password: bool,
}

/// A one-line remediation hint. Never contains secrets: it is built only from tables.
pub fn hint(input: HintInput<'_>) -> String {
    let provider = canonical(input.provider);
    let (parts, len) = code_parts(input.code);
    let code = &parts[..len];
    let reply = input.reply.unwrap_or("");
    tables::HINTS
        .iter()
        .find(|h| h.applies(input.class, code, provider, reply, input.uses_password))
        .map_or(tables::LAST_RESORT_HINT, |h| h.hint)
        .to_owned()
}

impl Rule {
    fn applies(&self, provider: Provider, phase: Phase, text: &str) -> bool {
        in_scope(self.providers, provider)
            && (self.phases.is_empty() || self.phases.contains(&phase))
            && contains_ci(text, self.text)
    }
}

impl HintRule {
    fn applies(
        &self,
        class: Class,
        code: &[u16],
        provider: Provider,
        reply: &str,
        uses_password: bool,
    ) -> bool {
        let creds_ok = match self.creds {
            Creds::Any => true,
            Creds::Password => uses_password,
            Creds::NoPassword => !uses_password,
        };
        self.class == class
            && creds_ok
            && in_scope(self.providers, provider)
            && (self.code.is_empty() || code_matches(self.code, code))
            && contains_ci(reply, self.text)
    }
}

fn phase_default(phase: Phase) -> Option<Class> {
    tables::PHASE_DEFAULT
        .iter()
        .find(|(p, _)| *p == phase)
        .map(|&(_, class)| class)
}

/// The demo relay imitates Exchange Online, so it shares every Microsoft 365 row.
fn canonical(provider: Provider) -> Provider {
    match provider {
        Provider::Demo => Provider::Microsoft365,
        other => other,
    }
}

/// An empty provider list means the row holds for every provider.
fn in_scope(providers: &[Provider], provider: Provider) -> bool {
    providers.is_empty() || providers.contains(&provider)
}

/// Case-insensitive substring test without allocating; an empty needle always matches,
/// which is how rows say "any text".
fn contains_ci(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    // `windows(0)` would panic; an empty needle is the table's "any text".
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Splits a `code` label into its numbers: three for an enhanced code, one for a basic code,
/// none for an empty or unreadable label (which then matches only rows without a code).
fn code_parts(label: &str) -> ([u16; 3], usize) {
    let label = label.trim();
    if label.contains('.') {
        if let Some(e) = crate::smtp::Enhanced::parse_prefix(label) {
            return ([u16::from(e.class), e.subject, e.detail], 3);
        }
        return ([0; 3], 0);
    }
    match label.parse::<u16>() {
        Ok(n) => ([n, 0, 0], 1),
        Err(_) => ([0; 3], 0),
    }
}

/// Matches a table code pattern against a code's numbers. Patterns have one dot-separated
/// segment per number (`535`, `5.7.139`); a segment is a number, an inclusive range
/// (`5.2.251-255`, `400-499`) or `*`. A pattern with the wrong number of segments, or one
/// that does not parse, matches nothing (and the table tests reject it).
fn code_matches(pattern: &str, code: &[u16]) -> bool {
    let mut segments = pattern.split('.');
    let mut numbers = code.iter();
    loop {
        match (segments.next(), numbers.next()) {
            (None, None) => return true,
            (Some(segment), Some(&n)) if segment_matches(segment, n) => {}
            _ => return false,
        }
    }
}

fn segment_matches(segment: &str, n: u16) -> bool {
    match parse_segment(segment) {
        Some((lo, hi)) => (lo..=hi).contains(&n),
        None => false,
    }
}

/// A pattern segment as an inclusive range; `None` when it is malformed.
fn parse_segment(segment: &str) -> Option<(u16, u16)> {
    if segment == "*" {
        return Some((0, u16::MAX));
    }
    let (lo, hi) = match segment.split_once('-') {
        Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
        None => {
            let n = segment.parse().ok()?;
            (n, n)
        }
    };
    (lo <= hi).then_some((lo, hi))
}
