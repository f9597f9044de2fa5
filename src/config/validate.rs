//! From the raw structs to the resolved [`Config`]: defaults, presets, every rule of the
//! contract, and secret loading.
//!
//! Each check records its error and carries on, so one run lists every problem; a
//! mailbox with any error is left out of the result, and the caller returns the errors
//! instead of a config. Errors point at the offending value when there is one, else at
//! the entry that lacks a required key.
//!
//! This file owns the context every check records into, the accepted ranges and
//! defaults of durations, the walk over the document and `global:`. The sections are checked by parts in `mailbox.rs`, `oauth2.rs` and
//! `dns_audit.rs`, sharing the checks of single values in `values.rs`; provider rules
//! are the table in `config/rules.rs`.

mod dns_audit;
mod mailbox;
mod oauth2;
mod sink;
mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::diag::Diag;
use super::duration::format_duration;
use super::keypath::KeyPath;
use super::rules::Finding;
use super::schema::{RawConfig, RawGlobal, RawMailbox};
use super::secrets::EnvLookup;
use super::{Config, Global, Mailbox, Provider};
use values::{duration, helo_problem};

pub(super) use values::host_problem;
/// Named here by the tests of the contract's messages and limits.
#[cfg(test)]
pub(super) use {super::rules::M365_NO_465, values::MAX_NAME_LEN};

/// Accepted ranges. An interval under 10s hammers a provider that counts every login; a
/// timeout over 10m hides a hung probe for longer than any alert would wait.
pub(super) const INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(24 * 3600));
pub(super) const TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// DNS records change rarely and resolvers cache them; auditing more often than every
/// minute only loads the resolver, less often than weekly misses real breakage.
pub(super) const AUDIT_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600));

pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_AUDIT_INTERVAL: Duration = Duration::from_secs(3600);

/// The `provider:` spellings, for "did you mean" and "expected one of".
fn provider_names() -> Vec<&'static str> {
    Provider::ALL.iter().map(|p| p.as_str()).collect()
}

/// What validation needs besides the raw document.
pub(super) struct Ctx<'a> {
    pub diag: Diag,
    /// The config file's directory: relative `*_file` and `ca_file` paths resolve here, so
    /// the config means the same whatever the daemon's working directory.
    pub dir: PathBuf,
    pub env: EnvLookup<'a>,
    /// Used when `global.helo_name` is absent (a function so tests stay deterministic).
    pub default_helo: &'a dyn Fn() -> String,
    /// False for commands that never authenticate: secrets are left empty, unread.
    pub read_secrets: bool,
}

impl Ctx<'_> {
    fn err(&mut self, loc: &Location, key: &KeyPath, message: impl Into<String>) {
        self.diag.at(loc, key, message);
    }

    /// Records what the provider rules found.
    fn record(&mut self, findings: Vec<Finding>) {
        for f in findings {
            self.err(&f.at, &f.key, f.message);
        }
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// Resolves the whole config. `root` is where the document starts (for errors about
/// keys that are missing altogether). `None` means errors were recorded in `ctx.diag`.
pub(super) fn resolve(
    raw: RawConfig,
    root: (u64, u64),
    path: &Path,
    ctx: &mut Ctx<'_>,
) -> Option<Config> {
    let global = global(ctx, raw.global.as_ref());
    let mailboxes = mailboxes(ctx, raw.mailboxes.as_ref(), root, &global);
    let dns_audit = dns_audit::dns_audit(ctx, raw.dns_audit.as_ref(), &mailboxes);
    let sinks = sink::sinks(ctx, raw.sinks.as_ref(), &mailboxes);
    let delivery = sink::delivery(ctx, raw.delivery.as_ref());
    if !ctx.diag.is_empty() {
        return None;
    }
    Some(Config {
        path: path.to_path_buf(),
        global,
        mailboxes,
        dns_audit: dns_audit?,
        sinks,
        delivery,
    })
}

/// The mailboxes without errors. A name used twice is reported at its second use, and
/// both entries are still checked.
fn mailboxes(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<Vec<Spanned<RawMailbox>>>>,
    root: (u64, u64),
    global: &Global,
) -> Vec<Arc<Mailbox>> {
    let p = KeyPath::root("mailboxes");
    let list = match raw {
        Some(list) if !list.value.is_empty() => list,
        Some(list) => {
            ctx.err(&list.referenced, &p, "no mailboxes configured");
            return Vec::new();
        }
        None => {
            ctx.diag
                .at_pos(root.0, root.1, &p, "no mailboxes configured");
            return Vec::new();
        }
    };
    let mut mailboxes = Vec::new();
    let mut names = Names::new("mailbox");
    for (i, entry) in list.value.iter().enumerate() {
        let key = p.index(i);
        if let Some(n) = &entry.value.name {
            names.check(ctx, &key, n);
        }
        if let Some(mb) = mailbox::mailbox(ctx, &key, entry, global) {
            mailboxes.push(Arc::new(mb));
        }
    }
    mailboxes
}

/// The names of one list so far (with their lines), for "duplicate name" errors.
pub(super) struct Names {
    what: &'static str,
    seen: Vec<(String, u64)>,
}

impl Names {
    pub(super) fn new(what: &'static str) -> Names {
        Names {
            what,
            seen: Vec::new(),
        }
    }

    /// Records `n` (at `key.name`); false, with the error recorded, if it was used before.
    pub(super) fn check(&mut self, ctx: &mut Ctx<'_>, key: &KeyPath, n: &Spanned<String>) -> bool {
        if let Some((_, line)) = self.seen.iter().find(|(name, _)| *name == n.value) {
            ctx.err(
                &n.referenced,
                &key.key("name"),
                format!(
                    "duplicate {} name `{}` (first used at line {line})",
                    self.what, n.value
                ),
            );
            return false;
        }
        self.seen.push((n.value.clone(), n.referenced.line()));
        true
    }
}

fn global(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawGlobal>>) -> Global {
    let empty = RawGlobal::default();
    let g = raw.map_or(&empty, |g| &g.value);
    let p = KeyPath::root("global");
    let interval =
        duration(ctx, &g.interval, &p.key("interval"), INTERVAL_RANGE).unwrap_or(DEFAULT_INTERVAL);
    let timeout =
        duration(ctx, &g.timeout, &p.key("timeout"), TIMEOUT_RANGE).unwrap_or(DEFAULT_TIMEOUT);
    if timeout > interval {
        // Blame whichever of the two was written; with neither, the defaults cannot clash.
        if let Some(at) = g.timeout.as_ref().or(g.interval.as_ref()) {
            let key = if g.timeout.is_some() {
                "timeout"
            } else {
                "interval"
            };
            ctx.err(
                &at.referenced,
                &p.key(key),
                timeout_exceeds(timeout, interval),
            );
        }
    }
    let helo_name = match &g.helo_name {
        Some(h) => {
            if let Some(problem) = helo_problem(&h.value) {
                ctx.err(&h.referenced, &p.key("helo_name"), problem);
            }
            h.value.clone()
        }
        None => (ctx.default_helo)(),
    };
    Global {
        interval,
        timeout,
        helo_name,
    }
}

fn timeout_exceeds(timeout: Duration, interval: Duration) -> String {
    format!(
        "timeout {} must not exceed the interval {} (a probe must end before the next one is due)",
        format_duration(timeout),
        format_duration(interval)
    )
}
