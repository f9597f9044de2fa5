//! One task per sink, however many mailboxes send to it: connect and log in, find new
//! messages by UID in INBOX and the junk folder, resolve our canaries and DSNs through
//! the [`Tracker`], clean up, wait (IDLE, or `poll_interval`), and on any failure count
//! it, classified, and reconnect with back-off. The read position per folder
//! (UIDVALIDITY and the next UID) is kept in the state directory, so a restart reads
//! only what arrived meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::dsn;
use super::headers::{self, Summary};
use super::store::{DemoStore, Fetched, Store, StoreError};
use super::{BounceInfo, DeliveryEvents, DkimVerifier, Found, Tracker};
use crate::auth::{CredentialSource, Credentials};
use crate::classify::{Class, classify_reply};
use crate::config::{Cleanup, Provider, Sink};
use crate::demo::DemoRelay;
use crate::resolve::Resolver;
use crate::smtp::{Phase, Reply};
use crate::state::StateStore;
use crate::tls::TlsTrust;
use crate::util::{stopped, unix_now};

/// The usual names of the junk folder, for servers without SPECIAL-USE.
pub const JUNK_NAMES: &[&str] = &["Junk", "Spam", "Junk E-mail", "Junk Email", "[Gmail]/Spam"];
/// The longest a whole canary may be to be fetched for the DKIM check.
const MAX_BODY: u32 = 1024 * 1024;
/// A first scan (no read position yet) looks this far back.
const FIRST_SCAN: i64 = 24 * 3600;
/// Re-IDLE at least this often (RFC 2177 says 29 minutes; servers drop idle sessions
/// sooner, Gmail after about 10).
const MAX_IDLE: Duration = Duration::from_secs(9 * 60);
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The demo sink is looked at this often.
const DEMO_POLL: Duration = Duration::from_secs(3);

/// One-line remediation hints for failed sink reads, by provider (`None`: any) and
/// class; the first match wins.
pub static SINK_HINTS: &[(Option<Provider>, Class, &str)] = &[
    (
        Some(Provider::Microsoft365),
        Class::Auth,
        "Exchange Online IMAP takes OAuth only: grant the app IMAP.AccessAsApp, register its service principal (New-ServicePrincipal) and give it access to the mailbox (Add-MailboxPermission -AccessRights FullAccess); check Set-CASMailbox -ImapEnabled $true",
    ),
    (
        Some(Provider::Google),
        Class::Auth,
        "Gmail IMAP needs OAuth (scope https://mail.google.com/) or an app password, and IMAP access allowed for the account",
    ),
    (
        None,
        Class::Auth,
        "The sink's username or password is wrong, or the server refuses this login",
    ),
    (
        None,
        Class::OauthToken,
        "No access token for the sink: check its oauth2 client_id, secret and token_url (oauth_token_failures_total says why)",
    ),
    (
        None,
        Class::Tls,
        "The sink's certificate is not trusted: set tls.ca_file, or check tls.server_name; STARTTLS must be offered",
    ),
    (
        None,
        Class::Connect,
        "Nothing answers at the sink's host and port: check host, port and security (993 implicit TLS, 143 STARTTLS)",
    ),
    (None, Class::Dns, "The sink's host name does not resolve"),
    (
        None,
        Class::Timeout,
        "The sink's server stopped answering within the command deadline: a firewall dropping packets, or an overloaded server",
    ),
    (
        None,
        Class::Protocol,
        "The server did not speak IMAP as expected, or refused a command (a folder that does not exist?)",
    ),
    (
        None,
        Class::Network,
        "The connection broke, or the server sent more than smtp-canary accepts for one command",
    ),
];

/// The hint for a failed read of a `provider` sink.
pub fn sink_hint(provider: Provider, class: Class) -> &'static str {
    SINK_HINTS
        .iter()
        .find(|(p, c, _)| *c == class && p.is_none_or(|p| p == provider))
        .map_or("", |(_, _, h)| *h)
}

/// What every reader shares.
#[derive(Clone)]
pub struct SinkReaderOptions {
    pub resolver: Resolver,
    pub tls: Arc<TlsTrust>,
    pub dkim: Arc<DkimVerifier>,
    pub tracker: Arc<Tracker>,
    pub events: Arc<dyn DeliveryEvents>,
    pub store: Option<StateStore>,
    pub demo: Option<Arc<DemoRelay>>,
    /// Deadline of each IMAP command.
    pub command_deadline: Duration,
}

pub struct SinkReader {
    pub sink: Arc<Sink>,
    pub creds: CredentialSource,
    /// The `from` domain of every mailbox whose canaries come here (DKIM alignment).
    pub from_domains: HashMap<String, String>,
    /// The mailboxes whose own inbox this is (their bounces arrive here), by provider
    /// (to classify the DSN's code with that provider's table).
    pub bounce_for: HashMap<String, Provider>,
    pub opts: SinkReaderOptions,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cursor {
    folders: HashMap<String, Position>,
    #[serde(default)]
    last_sweep: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Position {
    uidvalidity: u32,
    next: u32,
}

impl SinkReader {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut cursor = self.load_cursor().await;
        let mut failures = 0u32;
        loop {
            let session = tokio::select! {
                r = self.session(&mut cursor, &mut failures) => r,
                _ = stopped(&mut stop) => return,
            };
            if let Err(e) = session {
                failures = failures.saturating_add(1);
                let message = self.scrub(&e.message);
                self.opts.events.sink_read(&self.sink.name, Some(e.class));
                let hint = sink_hint(self.sink.provider, e.class);
                tracing::warn!(sink = %self.sink.name, class = %e.class, error = %message, hint, "sink read failed; reconnecting with back-off");
                let pause = backoff(failures);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.creds {
            CredentialSource::Static(c) => c.redactor().scrub(text).into_owned(),
            CredentialSource::OAuth(_) => text.to_string(),
        }
    }

    async fn open(&self) -> Result<Store, StoreError> {
        if self.sink.provider == Provider::Demo {
            let relay = self.opts.demo.clone().ok_or_else(|| StoreError {
                class: Class::Connect,
                message: "the demo relay is not running".into(),
            })?;
            return Ok(Store::Demo(DemoStore::new(relay, &self.sink.address)));
        }
        let tls = self
            .opts
            .tls
            .client_config_async(self.sink.tls.ca_file.as_deref())
            .await
            .map_err(|e| StoreError {
                class: Class::Tls,
                message: e.to_string(),
            })?;
        let (username, secret, oauth, token_source) = match &self.creds {
            CredentialSource::Static(Credentials::Password { username, password }) => {
                (username.clone(), password.expose().to_string(), false, None)
            }
            CredentialSource::Static(_) => {
                return Err(StoreError {
                    class: Class::Auth,
                    message: "the sink has no credentials".into(),
                });
            }
            CredentialSource::OAuth(p) => {
                let t = p.token().await.map_err(|e| StoreError {
                    class: Class::OauthToken,
                    message: format!("no access token: {e}"),
                })?;
                (
                    t.username,
                    t.token.expose().to_string(),
                    true,
                    Some((p.clone(), t.token)),
                )
            }
        };
        let connected = Store::connect_imap(
            &self.sink,
            &self.opts.resolver,
            tls,
            &username,
            &secret,
            oauth,
            self.opts.command_deadline,
        )
        .await;
        if let (Err(e), Some((p, token))) = (&connected, token_source)
            && e.class == Class::Auth
        {
            p.rejected(&token);
        }
        // The server's words may quote what it was sent.
        let secret = crate::config::Secret::new(secret);
        let sent = if oauth {
            Credentials::Bearer {
                username,
                token: secret,
            }
        } else {
            Credentials::Password {
                username,
                password: secret,
            }
        };
        let redactor = sent.redactor();
        connected.map_err(|e| StoreError {
            class: e.class,
            message: redactor.scrub(&e.message).into_owned(),
        })
    }

    /// One session: connect, then read and wait until something fails.
    async fn session(&self, cursor: &mut Cursor, failures: &mut u32) -> Result<(), StoreError> {
        let mut store = self.open().await?;
        let folders = self.folders(&mut store).await?;
        tracing::info!(sink = %self.sink.name, folders = ?folders.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), idle = store.has_idle(), "sink connected");
        loop {
            // First, so a day's sweep is never cut short by a reader stopped right
            // after a find.
            self.sweep(&mut store, cursor, &folders).await?;
            for (folder, junk) in &folders {
                self.read_folder(&mut store, cursor, folder, *junk).await?;
            }
            self.save_cursor(cursor).await;
            *failures = 0;
            self.opts.events.sink_read(&self.sink.name, None);
            self.opts.tracker.expire(unix_now() as f64).await;
            // IDLE on INBOX; the junk folder is looked at every wake-up.
            let limit = match &store {
                Store::Demo(_) => DEMO_POLL,
                s if s.has_idle() => self.sink.poll_interval.min(MAX_IDLE),
                _ => self.sink.poll_interval,
            };
            if store.has_idle() {
                store.select(&folders[0].0).await?;
            }
            store.wait(limit).await?;
        }
    }

    /// The folders to read, INBOX first: the configured ones, else INBOX and the junk
    /// folder (SPECIAL-USE `\Junk`, else a usual name).
    async fn folders(&self, store: &mut Store) -> Result<Vec<(String, bool)>, StoreError> {
        let listed = store.folders().await?;
        let is_junk_name = |n: &str| JUNK_NAMES.iter().any(|j| j.eq_ignore_ascii_case(n));
        if !self.sink.folders.is_empty() {
            return Ok(self
                .sink
                .folders
                .iter()
                .map(|f| {
                    let marked = listed.iter().any(|(n, j)| n == f && *j);
                    (f.clone(), marked || is_junk_name(f))
                })
                .collect());
        }
        let mut out = vec![("INBOX".to_string(), false)];
        let junk = listed
            .iter()
            .find(|(_, j)| *j)
            .or_else(|| {
                JUNK_NAMES
                    .iter()
                    .find_map(|name| listed.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            })
            .map(|(n, _)| n.clone());
        if let Some(j) = junk {
            out.push((j, true));
        }
        Ok(out)
    }

    async fn read_folder(
        &self,
        store: &mut Store,
        cursor: &mut Cursor,
        folder: &str,
        junk: bool,
    ) -> Result<(), StoreError> {
        let info = store.select(folder).await?;
        let pos = cursor.folders.get(folder).copied();
        match pos {
            Some(p) if p.uidvalidity == info.uidvalidity && p.next > 0 => {
                let mut next = p.next;
                loop {
                    let batch = store.headers_from(next).await?;
                    let Some(max) = batch.iter().map(|f| f.uid).max() else {
                        break;
                    };
                    for f in &batch {
                        self.look_at(store, folder, junk, f).await?;
                    }
                    next = max + 1;
                    cursor.folders.insert(
                        folder.to_string(),
                        Position {
                            uidvalidity: info.uidvalidity,
                            next,
                        },
                    );
                    if batch.len() < super::store::BATCH as usize {
                        break;
                    }
                }
            }
            // No position yet, or UIDVALIDITY changed (UIDs are no longer comparable):
            // look at what arrived in the last day.
            _ => {
                let since = unix_now() as i64 - FIRST_SCAN;
                let uids = store.recent(since).await?;
                for chunk in uids.chunks(super::store::BATCH as usize) {
                    for f in store.headers_of(chunk).await? {
                        self.look_at(store, folder, junk, &f).await?;
                    }
                }
                let next = info.uidnext.max(uids.iter().max().map_or(0, |m| m + 1));
                cursor.folders.insert(
                    folder.to_string(),
                    Position {
                        uidvalidity: info.uidvalidity,
                        next,
                    },
                );
            }
        }
        Ok(())
    }

    /// One new message: a canary we wait for, a DSN about one, or nothing of ours.
    async fn look_at(
        &self,
        store: &mut Store,
        folder: &str,
        junk: bool,
        f: &Fetched,
    ) -> Result<(), StoreError> {
        let Some(header) = &f.header else {
            return Ok(());
        };
        let summary = headers::summarize(header);
        if let Some((mailbox, probe_id)) = &summary.canary {
            let tracker = &self.opts.tracker;
            if tracker.wants(&self.sink.name, mailbox, probe_id) {
                let found = self
                    .examine(store, folder, junk, f, &summary, mailbox)
                    .await?;
                // Cleaned up before it is reported: whoever waits for the result (the
                // `probe --wait-delivery` command) may stop this reader right after.
                self.clean_up(store, f.uid).await?;
                tracker
                    .found(&self.sink.name, mailbox, probe_id, found)
                    .await;
            }
            return Ok(());
        }
        if summary.is_report && !self.bounce_for.is_empty() {
            self.bounce(store, f).await?;
        }
        Ok(())
    }

    async fn examine(
        &self,
        store: &mut Store,
        folder: &str,
        junk: bool,
        f: &Fetched,
        summary: &Summary,
        mailbox: &str,
    ) -> Result<Found, StoreError> {
        let mut dkim = None;
        if f.size.is_none_or(|s| s <= MAX_BODY)
            && let Some(full) = store.body(f.uid).await?
            && let Some(raw) = &full.body
        {
            let domain = self.from_domains.get(mailbox).map_or("", String::as_str);
            dkim = Some(self.opts.dkim.verify(raw, domain).await);
        }
        Ok(Found {
            folder: folder.to_string(),
            junk,
            arrived_at: f.internal_date.or(summary.received_at),
            auth_results: summary.auth_results.clone(),
            dkim,
        })
    }

    async fn bounce(&self, store: &mut Store, f: &Fetched) -> Result<(), StoreError> {
        if f.size.is_some_and(|s| s > MAX_BODY) {
            return Ok(());
        }
        let Some(full) = store.body(f.uid).await? else {
            return Ok(());
        };
        let Some(raw) = &full.body else {
            return Ok(());
        };
        let bounces: Vec<(dsn::Bounce, Provider)> = dsn::parse(raw)
            .into_iter()
            .filter_map(|b| {
                let mailbox = self.opts.tracker.knows_message(&b.message_id)?;
                let provider = self.bounce_for.get(&mailbox).copied()?;
                Some((b, provider))
            })
            .collect();
        if !bounces.is_empty() {
            self.clean_up(store, f.uid).await?;
        }
        for (b, provider) in bounces {
            let info = classify_bounce(provider, &b);
            self.opts
                .tracker
                .bounced(&b.message_id, &b.recipient, info)
                .await;
        }
        Ok(())
    }

    /// Removes one verified canary or DSN of ours (`cleanup: delete`).
    async fn clean_up(&self, store: &mut Store, uid: u32) -> Result<(), StoreError> {
        if self.sink.cleanup == Cleanup::Delete {
            store.delete(&[uid]).await?;
        }
        Ok(())
    }

    /// Once a day: our canaries older than a day go (cleanup: delete only).
    async fn sweep(
        &self,
        store: &mut Store,
        cursor: &mut Cursor,
        folders: &[(String, bool)],
    ) -> Result<(), StoreError> {
        let now = unix_now();
        if self.sink.cleanup != Cleanup::Delete || now < cursor.last_sweep + 24 * 3600 {
            return Ok(());
        }
        for (folder, _) in folders {
            store.select(folder).await?;
            let old = store.old_canaries(now as i64 - 24 * 3600).await?;
            // Double-check each one carries our header before it goes.
            let mut ours = Vec::new();
            for chunk in old.chunks(super::store::BATCH as usize) {
                for f in store.headers_of(chunk).await? {
                    if f.header
                        .as_deref()
                        .is_some_and(|h| headers::summarize(h).canary.is_some())
                    {
                        ours.push(f.uid);
                    }
                }
            }
            if !ours.is_empty() {
                tracing::info!(sink = %self.sink.name, folder = %folder, count = ours.len(), "sweeping canaries older than a day");
                store.delete(&ours).await?;
            }
        }
        cursor.last_sweep = now;
        Ok(())
    }

    async fn load_cursor(&self) -> Cursor {
        let Some(store) = &self.opts.store else {
            return Cursor::default();
        };
        let store = store.clone();
        let name = self.sink.name.clone();
        match tokio::task::spawn_blocking(move || store.load_doc("sink", &name)).await {
            Ok(Ok(Some(bytes))) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => Cursor::default(),
        }
    }

    async fn save_cursor(&self, cursor: &Cursor) {
        let Some(store) = &self.opts.store else {
            return;
        };
        let Ok(data) = serde_json::to_vec(cursor) else {
            return;
        };
        if let Err(e) = store.save_doc("sink", &self.sink.name, data).await {
            tracing::error!(sink = %self.sink.name, error = %e, "cannot write the sink's read position");
        }
    }
}

/// A DSN's status and diagnostic, classified with the probe tables: the diagnostic is
/// the remote server's reply, so it reads like one.
pub fn classify_bounce(provider: Provider, b: &dsn::Bounce) -> BounceInfo {
    let code: u16 = b
        .diagnostic
        .get(..3)
        .and_then(|c| c.parse().ok())
        .unwrap_or(if b.status.starts_with('4') { 450 } else { 550 });
    let text = match b.diagnostic.get(..3).and_then(|c| c.parse::<u16>().ok()) {
        Some(_) => b.diagnostic.get(3..).unwrap_or("").trim().to_string(),
        None => format!("{} {}", b.status, b.diagnostic),
    };
    let text = if text.starts_with(|c: char| c.is_ascii_digit()) {
        text
    } else {
        format!("{} {text}", b.status)
    };
    let reply = Reply::new(code, &text);
    let phase = if b.status.starts_with("5.1.") || b.status.starts_with("4.1.") {
        Phase::Rcpt
    } else {
        Phase::Data
    };
    BounceInfo {
        recipient: b.recipient.clone(),
        class: classify_reply(provider, phase, &reply),
        code: b.status.clone(),
        diagnostic: b.diagnostic.chars().take(512).collect(),
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.min(10).saturating_sub(1));
    exp.min(BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_classify_with_the_probe_tables() {
        let b = dsn::Bounce {
            message_id: "<x@y>".into(),
            recipient: "a@b".into(),
            status: "5.7.708".into(),
            diagnostic:
                "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP."
                    .into(),
        };
        let info = classify_bounce(Provider::Microsoft365, &b);
        assert_eq!(info.code, "5.7.708");
        assert_eq!(info.class, Class::SenderRejected);
        let b = dsn::Bounce {
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 <x@y>: Recipient address rejected: User unknown".into(),
            ..b
        };
        assert_eq!(
            classify_bounce(Provider::Generic, &b).class,
            Class::RecipientRejected
        );
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert!(sink_hint(Provider::Microsoft365, Class::Auth).contains("IMAP.AccessAsApp"));
        assert!(sink_hint(Provider::Generic, Class::Auth).contains("password"));
        for class in Class::ALL {
            let _ = sink_hint(Provider::Generic, *class);
        }
        assert_eq!(backoff(30), BACKOFF_CAP);
    }
}
