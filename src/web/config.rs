//! `--web.config.file`: TLS and basic auth for the HTTP endpoints, in the Prometheus
//! exporter-toolkit format, so the same file works for node_exporter and for us:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/smtp-canary/tls.crt
//!   key_file: /etc/smtp-canary/tls.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional; default NoClientCert
//!   client_ca_file: /etc/smtp-canary/clients.pem  # required with client auth
//!   min_version: TLS12                             # optional: TLS12 (default) | TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # bcrypt hash (htpasswd -nBC 10)
//! ```
//!
//! Keys the toolkit has and we don't support are refused by name rather than ignored:
//! a security setting that silently does nothing is worse than an error.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
}

/// The loaded web config: a TLS acceptor (if any) and the basic-auth users (if any).
/// The default is plain HTTP without auth.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth", &self.auth.is_some())
            .finish()
    }
}

/// What [`BasicAuth::quick`] could decide without bcrypt.
pub enum Quick {
    Known(bool),
    NeedsBcrypt { user: String, password: String },
}

/// The outcome of [`BasicAuth::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Too many failed attempts for this user: retry after this long (429).
    Limited(Duration),
    /// No bcrypt slot came free within [`BCRYPT_QUEUE_WAIT`] (503).
    Busy,
}

/// bcrypt costs accepted in `basic_auth_users`. 4 is bcrypt's own minimum; each step
/// doubles the time, and 14 is already about a second of CPU per check: a cost of 31
/// would pin a core for days on every uncached request and block shutdown behind it.
pub const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=14;

/// A request waits at most this long for a bcrypt slot, then gets 503: a queue that
/// only grows would hold every connection (and its memory) behind it.
pub const BCRYPT_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Basic-auth users with their bcrypt hashes. bcrypt is slow on purpose (tens of ms), so
/// a verified user/password pair is remembered by its SHA-256, never in clear.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// At most two bcrypt checks at a time: wrong passwords must not be able to take
    /// the CPU and the blocking pool away from probes.
    bcrypt_slots: Arc<tokio::sync::Semaphore>,
    failures: super::limit::FailureLimiter,
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> BasicAuth {
        BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: Arc::new(tokio::sync::Semaphore::new(2)),
            failures: super::limit::FailureLimiter::default(),
        }
    }

    /// Decides a request's `Authorization` header: the cache first, then the failure
    /// limiter, then bcrypt on the blocking pool in one of the few bcrypt slots.
    pub async fn authorize(self: &Arc<Self>, header: Option<&str>) -> Verdict {
        let (user, password) = match self.quick(header) {
            Quick::Known(true) => return Verdict::Allowed,
            Quick::Known(false) => return Verdict::Denied,
            Quick::NeedsBcrypt { user, password } => (user, password),
        };
        let key = self.users.contains_key(&user).then(|| user.clone());
        let turn = match self.failures.take(key.as_deref()) {
            Ok(turn) => turn,
            Err(wait) => return Verdict::Limited(wait),
        };
        // This user's turn first, then a shared slot: a flood on one name queues behind
        // its own turn and holds at most one slot.
        let slots = self.bcrypt_slots.clone();
        let permits = tokio::time::timeout(BCRYPT_QUEUE_WAIT, async move {
            let turn = turn.acquire_owned().await?;
            let slot = slots.acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((turn, slot))
        })
        .await;
        let Ok(Ok(permits)) = permits else {
            // Not this password's fault: the attempt does not count as a failure.
            self.failures.refund(key.as_deref());
            return Verdict::Busy;
        };
        let auth = self.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let ok = auth.verify(&user, &password);
            drop(permits);
            ok
        })
        .await
        .unwrap_or(false);
        if ok {
            self.failures.refund(key.as_deref());
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }

    /// Checks an `Authorization` header value. Blocking (bcrypt): call it off the async
    /// workers.
    pub fn check(&self, header: Option<&str>) -> bool {
        match self.quick(header) {
            Quick::Known(ok) => ok,
            Quick::NeedsBcrypt { user, password } => self.verify(&user, &password),
        }
    }

    /// The cheap part of [`BasicAuth::check`], fine on the async workers: a malformed
    /// header, or a pair already verified.
    pub fn quick(&self, header: Option<&str>) -> Quick {
        let Some((scheme, b64)) = header.and_then(|h| h.trim().split_once(' ')) else {
            return Quick::Known(false);
        };
        // RFC 7617: the scheme name is case-insensitive.
        if !scheme.eq_ignore_ascii_case("basic") {
            return Quick::Known(false);
        }
        let Some(creds) = B64
            .decode(b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return Quick::Known(false);
        };
        let Some((user, password)) = creds.split_once(':') else {
            return Quick::Known(false);
        };
        if let Some(hash) = self.users.get(user)
            && self.lock().contains(&digest(user, password, hash))
        {
            return Quick::Known(true);
        }
        Quick::NeedsBcrypt {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The bcrypt check (slow on purpose: call it off the async workers). An unknown
    /// user is checked against a dummy hash too, so timing does not tell which users
    /// exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (
                DUMMY
                    .get_or_init(|| bcrypt::hash("smtp-canary-dummy", 10).unwrap_or_default())
                    .as_str(),
                false,
            ),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            self.lock().insert(digest(user, password, hash));
        }
        ok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Refuses what is not a bcrypt hash (a clear-text password pasted in its place, without
/// echoing it) and costs outside [`BCRYPT_COSTS`].
fn check_hash(user: &str, hash: &str) -> Result<(), String> {
    let not_a_hash = || {
        format!(
            "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
        )
    };
    // `$2y$10$` then 53 characters of salt and digest.
    let Some(rest) = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))
    else {
        return Err(not_a_hash());
    };
    let Some((cost, salt_and_hash)) = rest.split_once('$') else {
        return Err(not_a_hash());
    };
    let cost: u32 = match cost.as_bytes() {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            u32::from(a - b'0') * 10 + u32::from(b - b'0')
        }
        _ => return Err(not_a_hash()),
    };
    if salt_and_hash.len() != 53 {
        return Err(not_a_hash());
    }
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(format!(
            "basic_auth_users.{user}: bcrypt cost {cost} is outside the allowed range {} to {} (each step doubles the CPU time of a check; 14 is about a second; make a hash with `htpasswd -nBC 10 {user}`)",
            BCRYPT_COSTS.start(),
            BCRYPT_COSTS.end()
        ));
    }
    Ok(())
}

fn digest(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [user, "\0", password, "\0", hash] {
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Reads and checks the file and the PEM files it names (blocking: call it off the
/// async workers). Every file goes through [`fsutil`], so a FIFO, a device or a huge
/// file is an error at once.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let err = |message: String| WebConfigError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let bytes = fsutil::read(path, fsutil::WEB_CONFIG).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| err("is not UTF-8 text".into()))?;
    parse(&text, path)
}

/// Like [`load`], from text already read. `path` names the file in errors, and relative
/// certificate and key paths resolve against its directory (those files are still read).
pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
    let err = |message: String| WebConfigError::Invalid {
        path: path.display().to_string(),
        message,
    };
    // An empty file (or only comments, `{}`, `null`) must not quietly mean "no auth": a
    // truncated file on reload would turn basic auth off.
    let empty = || {
        err("is empty (no tls_server_config, no basic_auth_users); to serve without TLS and basic auth, start without --web.config.file".into())
    };
    let raw: Option<RawWebConfig> = serde_saphyr::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {} column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        // Never the serde-saphyr snippet: it would quote the file, hashes and all.
        err(format!(
            "{at}{} (supported keys: tls_server_config.{{cert_file, key_file, client_auth_type, client_ca_file, min_version}}, basic_auth_users)",
            crate::config::error_text(&e)
        ))
    })?;
    let raw = match raw {
        Some(RawWebConfig {
            tls_server_config: None,
            basic_auth_users,
        }) if basic_auth_users.as_ref().is_none_or(BTreeMap::is_empty) => return Err(empty()),
        None => return Err(empty()),
        Some(raw) => raw,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };

    let tls = match raw.tls_server_config {
        None => None,
        Some(t) => {
            let cert_path = resolve(&t.cert_file);
            let key_path = resolve(&t.key_file);
            let pem = |key: &str, p: &Path| {
                fsutil::read(p, fsutil::PEM)
                    .map_err(|e| err(format!("tls_server_config.{key} {}: {e}", p.display())))
            };
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(&pem("cert_file", &cert_path)?)
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        err(format!(
                            "tls_server_config.cert_file {}: {e}",
                            cert_path.display()
                        ))
                    })?;
            if certs.is_empty() {
                return Err(err(format!(
                    "tls_server_config.cert_file {}: no certificate in it",
                    cert_path.display()
                )));
            }
            let key = PrivateKeyDer::from_pem_slice(&pem("key_file", &key_path)?).map_err(|e| {
                err(format!(
                    "tls_server_config.key_file {}: {e}",
                    key_path.display()
                ))
            })?;
            let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
                None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
                Some("TLS13") => &[&rustls::version::TLS13],
                Some(v) => {
                    return Err(err(format!(
                        "tls_server_config.min_version {v:?}: supported are TLS12 and TLS13"
                    )));
                }
            };
            let builder = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
                .with_protocol_versions(versions)
                .map_err(|e| err(format!("TLS: {e}")))?;
            let builder = match t.client_auth_type.as_deref() {
                None | Some("NoClientCert") => builder.with_no_client_auth(),
                Some("RequireAndVerifyClientCert") => {
                    let ca = t.client_ca_file.as_deref().ok_or_else(|| {
                        err("tls_server_config.client_ca_file is required with RequireAndVerifyClientCert".into())
                    })?;
                    let ca_path = resolve(ca);
                    let mut roots = rustls::RootCertStore::empty();
                    for c in CertificateDer::pem_slice_iter(&pem("client_ca_file", &ca_path)?) {
                        let c = c.map_err(|e| {
                            err(format!(
                                "tls_server_config.client_ca_file {}: {e}",
                                ca_path.display()
                            ))
                        })?;
                        roots
                            .add(c)
                            .map_err(|e| err(format!("tls_server_config.client_ca_file: {e}")))?;
                    }
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        crate::tls::provider(),
                    )
                    .build()
                    .map_err(|e| err(format!("tls_server_config.client_ca_file: {e}")))?;
                    builder.with_client_cert_verifier(verifier)
                }
                Some(other) => {
                    return Err(err(format!(
                        "tls_server_config.client_auth_type {other:?}: supported are NoClientCert and RequireAndVerifyClientCert"
                    )));
                }
            };
            let cfg = builder.with_single_cert(certs, key).map_err(|e| {
                err(format!(
                    "tls_server_config: certificate and key do not match: {e}"
                ))
            })?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
        }
    };

    let auth = match raw.basic_auth_users {
        None => None,
        // With TLS configured, an empty user list is an explicit "no basic auth".
        Some(users) if users.is_empty() => None,
        Some(users) => {
            for (user, hash) in &users {
                // An htpasswd line (`user:hash`) pasted as a key: what follows the ':' is
                // the hash or a password, so only the part before it is shown.
                if let Some((name, _)) = user.split_once(':') {
                    return Err(err(format!(
                        "basic_auth_users: user {name:?} is followed by ':' and more (not shown); a user name cannot contain ':', write `{}: <bcrypt hash>`",
                        name.escape_debug()
                    )));
                }
                check_hash(user, hash).map_err(err)?;
            }
            Some(Arc::new(BasicAuth::new(users)))
        }
    };
    Ok(WebConfig { tls, auth })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        );
        let cfg = load(&p).unwrap();
        let auth = cfg.auth.unwrap();
        let header = |u: &str, p: &str| format!("Basic {}", B64.encode(format!("{u}:{p}")));
        assert!(auth.check(Some(&header("prom", "s3cret"))));
        assert!(auth.check(Some(&header("prom", "s3cret"))), "cached path");
        assert!(!auth.check(Some(&header("prom", "wrong"))));
        assert!(!auth.check(Some(&header("other", "s3cret"))));
        assert!(!auth.check(Some("Bearer x")));
        assert!(!auth.check(None));
        assert!(cfg.tls.is_none());
    }

    #[test]
    fn refuses_unknown_keys_and_clear_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            "http_server_config:\n  http2: true\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("http_server_config"), "{e}");
        let p = write(
            dir.path(),
            "web1.yml",
            "basic_auth_users:\n  prom: [hunter2secret]\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(!e.contains("hunter2secret"), "the file is quoted: {e}");
        let p = write(
            dir.path(),
            "web2.yml",
            "basic_auth_users:\n  prom: hunter2\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("not a bcrypt hash") && !e.contains("hunter2"),
            "{e}"
        );
        // An htpasswd line pasted as a key (found by tests/fuzz.rs).
        let p = write(
            dir.path(),
            "web3.yml",
            "basic_auth_users:\n  prom:$2y$10$abcdefghijklmnopqrstuv: x\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("\"prom\"") && !e.contains("abcdefghij"), "{e}");
    }

    #[test]
    fn an_empty_file_is_an_error_not_auth_off() {
        let dir = tempfile::tempdir().unwrap();
        for (i, text) in [
            "",
            "\n",
            "# only a comment\n",
            "{}\n",
            "null\n",
            "---\n",
            "basic_auth_users:\n",
            "basic_auth_users: {}\n",
        ]
        .iter()
        .enumerate()
        {
            let p = write(dir.path(), &format!("web{i}.yml"), text);
            let e = load(&p).unwrap_err().to_string();
            assert!(
                e.contains("is empty") && e.contains("start without --web.config.file"),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn bcrypt_costs_outside_4_to_14_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        for cost in ["31", "15", "03", "00"] {
            let bad = format!("{}{cost}{}", &hash[..4], &hash[6..]);
            let p = write(
                dir.path(),
                "web.yml",
                &format!("basic_auth_users:\n  prom: '{bad}'\n"),
            );
            let e = load(&p).unwrap_err().to_string();
            let n: u32 = cost.parse().unwrap();
            assert!(e.contains(&format!("bcrypt cost {n} ")), "{e}");
            assert!(e.contains("allowed range 4 to 14"), "{e}");
        }
        for ok in ["04", "14"] {
            let good = format!("{}{ok}{}", &hash[..4], &hash[6..]);
            let p = write(
                dir.path(),
                "web.yml",
                &format!("basic_auth_users:\n  prom: '{good}'\n"),
            );
            assert!(load(&p).is_ok(), "cost {ok}");
        }
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{}'\n", &hash[..40]),
        );
        assert!(
            load(&p)
                .unwrap_err()
                .to_string()
                .contains("not a bcrypt hash")
        );
    }

    #[test]
    fn fifos_and_devices_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("web.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = load(&fifo).unwrap_err().to_string();
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        let e = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        let p = write(
            dir.path(),
            "web.yml",
            "tls_server_config:\n  cert_file: /dev/zero\n  key_file: web.fifo\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("cert_file /dev/zero: is a character device"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn failed_logins_are_limited_per_user_and_successes_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("right", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  a: '{hash}'\n  b: '{hash}'\n"),
        );
        let auth = load(&p).unwrap().auth.unwrap();
        let header = |u: &str, p: &str| format!("Basic {}", B64.encode(format!("{u}:{p}")));
        for _ in 0..5 {
            assert_eq!(
                auth.authorize(Some(&header("a", "wrong"))).await,
                Verdict::Denied
            );
        }
        assert!(matches!(
            auth.authorize(Some(&header("a", "wrong"))).await,
            Verdict::Limited(_)
        ));
        // Another user is not limited; right passwords never spend tokens.
        for _ in 0..10 {
            assert_eq!(
                auth.authorize(Some(&header("b", "right"))).await,
                Verdict::Allowed
            );
        }
        // Unknown users share one bucket (each check takes the dummy hash's time, so
        // the bucket refills a little meanwhile).
        let started = std::time::Instant::now();
        let mut denied = 0;
        for i in 0.. {
            match auth
                .authorize(Some(&header(&format!("nobody{i}"), "x")))
                .await
            {
                Verdict::Denied => denied += 1,
                Verdict::Limited(_) => break,
                v => panic!("{v:?}"),
            }
            assert!(i < 100, "never limited");
        }
        let refilled = started.elapsed().as_secs() + 1;
        assert!(
            denied >= 5 && denied <= 5 + refilled,
            "{denied} in {refilled} s"
        );
    }

    #[test]
    fn tls_from_cert_and_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::demo::Pki::generate(&["localhost"]).unwrap();
        let leaf = pki.leaf();
        let cert_pem: String = leaf
            .chain()
            .iter()
            .map(|c| {
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    B64.encode(c.as_ref())
                )
            })
            .collect();
        write(dir.path(), "tls.crt", &cert_pem);
        let key = match leaf.key() {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => panic!("rcgen makes PKCS#8 keys"),
        };
        write(
            dir.path(),
            "tls.key",
            &format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                B64.encode(key)
            ),
        );
        let p = write(
            dir.path(),
            "web.yml",
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS13\n",
        );
        let cfg = load(&p).unwrap();
        assert!(cfg.tls.is_some());
        let p = write(
            dir.path(),
            "bad.yml",
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: tls.key\n",
        );
        assert!(load(&p).unwrap_err().to_string().contains("nope.crt"));
    }
}
