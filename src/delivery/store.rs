//! A sink's mail behind one interface: a real server over IMAP, or the in-process demo
//! relay's mailboxes. The reader speaks only this.

use std::sync::Arc;
use std::time::Duration;

use super::imap::{ImapStore, Login};
use crate::classify::Class;
use crate::config::Sink;
use crate::demo::DemoRelay;
use crate::resolve::Resolver;

/// Messages per header fetch.
pub const BATCH: u32 = 200;

/// A failed read, classified like a probe failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub class: Class,
    pub message: String,
}

/// A folder once selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderInfo {
    pub uidvalidity: u32,
    pub uidnext: u32,
}

/// One fetched message: its header block, or its whole text.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub uid: u32,
    pub size: Option<u32>,
    pub internal_date: Option<i64>,
    pub header: Option<Vec<u8>>,
    pub body: Option<Vec<u8>>,
}

pub enum Store {
    Imap(Box<ImapStore>),
    Demo(DemoStore),
}

/// The items of a header fetch (`PEEK`: reading must not mark anything seen).
const HEADER_ITEMS: &str = "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])";
const BODY_ITEMS: &str = "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[])";

/// An IMAP date (`SEARCH SINCE` compares dates only).
fn imap_date(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[day padding:none]-[month repr:short]-[year]");
    t.format(&f).unwrap_or_else(|_| "1-Jan-1970".into())
}

impl Store {
    pub async fn connect_imap(
        sink: &Sink,
        resolver: &Resolver,
        tls: Arc<rustls::ClientConfig>,
        username: &str,
        secret: &str,
        oauth: bool,
        deadline: Duration,
    ) -> Result<Store, StoreError> {
        let login = if oauth {
            Login::XOAuth2 {
                username,
                token: secret,
            }
        } else {
            Login::Password {
                username,
                password: secret,
            }
        };
        Ok(Store::Imap(Box::new(
            ImapStore::connect(sink, resolver, tls, login, deadline).await?,
        )))
    }

    /// Folders and whether each is the junk folder.
    pub async fn folders(&mut self) -> Result<Vec<(String, bool)>, StoreError> {
        match self {
            Store::Imap(s) => s.folders().await,
            Store::Demo(_) => Ok(vec![("INBOX".into(), false), ("Junk".into(), true)]),
        }
    }

    pub async fn select(&mut self, folder: &str) -> Result<FolderInfo, StoreError> {
        match self {
            Store::Imap(s) => s.select(folder).await,
            Store::Demo(d) => {
                d.folder = folder.to_string();
                let next = d.messages().iter().map(|m| m.uid).max().unwrap_or(0) + 1;
                Ok(FolderInfo {
                    uidvalidity: 1,
                    uidnext: next,
                })
            }
        }
    }

    /// UIDs of our canaries (and of DSNs, which carry no header of ours at the top) that
    /// arrived since `since` (unix), for a first scan.
    pub async fn recent(&mut self, since: i64) -> Result<Vec<u32>, StoreError> {
        match self {
            Store::Imap(s) => s.search(&format!("SINCE {}", imap_date(since))).await,
            Store::Demo(d) => Ok(d.messages().iter().map(|m| m.uid).collect()),
        }
    }

    /// UIDs of our canaries older than `before` (unix), for the daily sweep.
    pub async fn old_canaries(&mut self, before: i64) -> Result<Vec<u32>, StoreError> {
        match self {
            Store::Imap(s) => {
                s.search(&format!(
                    "HEADER X-Smtp-Canary \"\" BEFORE {}",
                    imap_date(before)
                ))
                .await
            }
            Store::Demo(_) => Ok(Vec::new()),
        }
    }

    /// Header blocks of the messages in `from..` (at most [`BATCH`]).
    pub async fn headers_from(&mut self, from: u32) -> Result<Vec<Fetched>, StoreError> {
        let to = from.saturating_add(BATCH - 1);
        let mut v = match self {
            Store::Imap(s) => s.fetch(&format!("{from}:{to}"), HEADER_ITEMS).await?,
            Store::Demo(d) => d.fetch(|uid| uid >= from && uid <= to, false),
        };
        // `n:m` also returns the highest message when none is in range (RFC 3501 §6.4.8).
        v.retain(|f| f.uid >= from);
        Ok(v)
    }

    pub async fn headers_of(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, StoreError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Imap(s) => s.fetch(&super::imap::uid_set(uids), HEADER_ITEMS).await,
            Store::Demo(d) => Ok(d.fetch(|uid| uids.contains(&uid), false)),
        }
    }

    pub async fn body(&mut self, uid: u32) -> Result<Option<Fetched>, StoreError> {
        match self {
            Store::Imap(s) => Ok(s
                .fetch(&uid.to_string(), BODY_ITEMS)
                .await?
                .into_iter()
                .find(|f| f.uid == uid)),
            Store::Demo(d) => Ok(d.fetch(|u| u == uid, true).into_iter().next()),
        }
    }

    pub async fn delete(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        match self {
            Store::Imap(s) => s.delete(uids).await,
            Store::Demo(d) => {
                d.deleted.extend_from_slice(uids);
                Ok(())
            }
        }
    }

    /// Waits for new mail: IDLE on the selected folder where the server has it, else a
    /// plain sleep.
    pub async fn wait(&mut self, limit: Duration) -> Result<(), StoreError> {
        match self {
            Store::Imap(s) if s.idle => s.idle(limit).await,
            _ => {
                tokio::time::sleep(limit).await;
                Ok(())
            }
        }
    }

    pub fn has_idle(&self) -> bool {
        matches!(self, Store::Imap(s) if s.idle)
    }
}

/// The demo relay's mailbox of one address.
pub struct DemoStore {
    pub relay: Arc<DemoRelay>,
    pub address: String,
    folder: String,
    deleted: Vec<u32>,
}

impl DemoStore {
    pub fn new(relay: Arc<DemoRelay>, address: &str) -> DemoStore {
        DemoStore {
            relay,
            address: address.to_string(),
            folder: "INBOX".into(),
            deleted: Vec::new(),
        }
    }

    fn messages(&self) -> Vec<crate::demo::mailstore::StoredMessage> {
        let junk = self.folder == "Junk";
        self.relay
            .mailbox(&self.address)
            .into_iter()
            .filter(|m| m.junk == junk && !self.deleted.contains(&m.uid))
            .collect()
    }

    fn fetch(&self, pick: impl Fn(u32) -> bool, body: bool) -> Vec<Fetched> {
        self.messages()
            .into_iter()
            .filter(|m| pick(m.uid))
            .map(|m| {
                let header_end = m
                    .data
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(m.data.len(), |p| p + 4);
                Fetched {
                    uid: m.uid,
                    size: u32::try_from(m.data.len()).ok(),
                    internal_date: Some(m.internal_date),
                    header: Some(m.data[..header_end].to_vec()),
                    body: body.then(|| m.data.clone()),
                }
            })
            .collect()
    }
}
