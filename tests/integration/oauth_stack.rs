//! Real XOAUTH2 through Postfix and Dovecot (`tests/stack/`): Dovecot's `passdb oauth2`
//! POSTs each bearer token to the introspection URL of the stack (127.0.0.1:18080), which
//! this test serves from the same [`TokenEndpoint`] that issues the tokens. So a token the
//! endpoint issued and has not revoked is accepted by Postfix for real, and a revoked one
//! gets Dovecot's `334` JSON challenge and then `535 5.7.8`.
//!
//! Every test is `#[ignore]`d (a plain `cargo test` stays hermetic) and run by
//! `scripts/test-all.sh` as `cargo test --test integration -- --ignored oauth_stack::`. Without a
//! running stack (`$STACK_ROOT/run/stack.env`) they panic; they never skip. Only this
//! test binary may listen on the introspection port.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::oauth_support::*;
use smtp_canary::auth::{CacheOptions, CredentialSource, TokenCache, TokenProvider};
use smtp_canary::classify::Class;
use smtp_canary::config::{AuthConfig, Mailbox};
use smtp_canary::probe::{Phase, ProbeResult};

struct Stack {
    vars: HashMap<String, String>,
}

impl Stack {
    fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(|| {
            let root =
                std::env::var("STACK_ROOT").unwrap_or_else(|_| "/var/tmp/smtp-canary-stack".into());
            let file = Path::new(&root).join("run/stack.env");
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!(
                    "\n\n*** THE MAIL STACK IS NOT RUNNING ***\ncannot read {} ({e}).\n\
                     These tests need the real Postfix/Dovecot stack with XOAUTH2.\n\
                     Start it as root: sudo tests/stack/up.sh (see tests/stack/README.md),\n\
                     or run everything: sudo scripts/test-all.sh\n",
                    file.display()
                )
            });
            let vars: HashMap<String, String> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            assert_eq!(
                vars.get("STACK_OAUTH2").map(String::as_str),
                Some("1"),
                "the stack runs without XOAUTH2 (STACK_OAUTH2=0); restart it with STACK_OAUTH2=1"
            );
            Stack { vars }
        })
    }

    fn var(&self, k: &str) -> &str {
        self.vars
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing from stack.env"))
    }

    fn user(&self) -> &str {
        self.var("STACK_USER")
    }
}

/// The token endpoint on the stack's introspection address, shared by every test here.
fn endpoint() -> &'static TokenEndpoint {
    static EP: OnceLock<TokenEndpoint> = OnceLock::new();
    EP.get_or_init(|| {
        let url = Stack::get().var("STACK_OAUTH2_INTROSPECT_URL");
        let hostport = url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("unexpected STACK_OAUTH2_INTROSPECT_URL {url}"));
        let addr: SocketAddr = hostport.parse().expect("introspection address");
        let ep = TokenEndpoint::start_detached(addr);
        ep.set_username(Stack::get().user());
        ep
    })
}

/// A fresh loopback source address per test: Postfix's anvil limits count per client IP.
fn source_address() -> IpAddr {
    IpAddr::from([127, 77, rand::random::<u8>(), rand::random::<u8>().max(1)])
}

/// An XOAUTH2 mailbox on the stack's submission port; its token URL path is `path`.
fn stack_mailbox(name: &str, path: &str) -> Mailbox {
    let s = Stack::get();
    let url = format!("http://{}{path}", endpoint().addr());
    let port: u16 = s.var("STACK_SMTP_PORT").parse().unwrap();
    let mut mb = mailbox(
        name,
        port,
        Path::new(s.var("STACK_CA_FILE")),
        client_credentials(&url),
    );
    if let AuthConfig::OAuth2 { username, .. } = &mut mb.auth {
        *username = s.user().to_owned();
    }
    mb.host = s.var("STACK_HOST").to_owned();
    mb.from = s.user().to_owned();
    mb.to = vec![s.user().to_owned()];
    // Above Dovecot's ~2 s failure delay, below the prober's 20 s AUTH cap.
    mb.timeout = Duration::from_secs(15);
    mb.source_address = Some(source_address());
    mb
}

async fn probe(mb: &Mailbox, cache: &Arc<TokenCache>) -> ProbeResult {
    let source = CredentialSource::OAuth(cache.clone());
    prober().probe_with_source(mb, &template(mb), &source).await
}

fn delivered_files(message_id: &str) -> Vec<PathBuf> {
    let dir = Path::new(Stack::get().var("STACK_MAILDIR")).join("new");
    let id = message_id.trim_matches(|c| c == '<' || c == '>');
    std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(id)))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the Maildir: delivery happens just after Postfix's 250.
async fn wait_delivered(message_id: &str) -> PathBuf {
    for _ in 0..100 {
        if let Some(p) = delivered_files(message_id).pop() {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "message {message_id} not delivered to {}",
        Stack::get().var("STACK_MAILDIR")
    );
}

#[tokio::test]
#[ignore = "needs the mail stack"]
async fn xoauth2_through_postfix_and_dovecot_delivers_with_one_token_request() {
    let _serial = crate::common::shared().await;
    let ep = endpoint();
    let path = "/t/deliver/oauth2/v2.0/token";
    let mb = stack_mailbox("stack-oauth-deliver", path);
    let cache = cache(&mb, &CacheOptions::default());
    let introspections = ep.introspections();
    for i in 0..3 {
        let r = probe(&mb, &cache).await;
        assert!(r.success(), "probe {i}: {:#?}\n{}", r.failure, r.transcript);
        assert_eq!(r.mechanism.map(|m| m.as_str()), Some("XOAUTH2"));
        assert_eq!(
            r.phases.iter().any(|(p, _)| *p == Phase::OauthToken),
            i == 0
        );
        let file = wait_delivered(r.message_id.as_deref().unwrap()).await;
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("DKIM-Signature:"),
            "signed by OpenDKIM: {}",
            file.display()
        );
    }
    assert_eq!(
        ep.requests_to(path),
        1,
        "3 probes within the token's life, one token request"
    );
    // Dovecot checked the token with the endpoint on every login (no auth cache).
    assert!(ep.introspections() >= introspections + 3);
}

#[tokio::test]
#[ignore = "needs the mail stack"]
async fn revoked_token_through_dovecot_is_class_auth_then_replaced() {
    let _serial = crate::common::shared().await;
    let ep = endpoint();
    let path = "/t/revoked/oauth2/v2.0/token";
    let mb = stack_mailbox("stack-oauth-revoked", path);
    let cache = cache(&mb, &CacheOptions::default());
    let r = probe(&mb, &cache).await;
    assert!(r.success(), "{:#?}\n{}", r.failure, r.transcript);

    // The token endpoint still answers; the token itself is revoked, so introspection
    // says inactive and Dovecot refuses it the Google way: 334 <JSON>, then 535.
    let current = cache.token().await.expect("cached token");
    assert!(!current.fetched);
    ep.revoke(current.token.expose());
    let r = probe(&mb, &cache).await;
    let f = r
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure\n{}", r.transcript));
    assert_eq!(
        (f.class, f.phase, f.code.as_str()),
        (Class::Auth, Phase::Auth, "5.7.8"),
        "{}",
        r.transcript
    );
    assert!(
        f.reply.as_deref().unwrap().starts_with("535 5.7.8"),
        "{:?}",
        f.reply
    );
    let t = r.transcript.to_string();
    assert!(t.contains("334 eyJ"), "Dovecot's XOAUTH2 challenge:\n{t}");
    assert!(!t.contains(current.token.expose()));
    assert_eq!(ep.requests_to(path), 1);

    // The rejected token was dropped: a fresh one is fetched and accepted.
    let r = probe(&mb, &cache).await;
    assert!(r.success(), "{:#?}\n{}", r.failure, r.transcript);
    assert_eq!(ep.requests_to(path), 2);
}

#[tokio::test]
#[ignore = "needs the mail stack"]
async fn the_binary_probes_the_stack_with_xoauth2() {
    let _serial = crate::common::shared().await;
    let ep = endpoint();
    let s = Stack::get();
    let path = "/t/binary/oauth2/v2.0/token";
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "mailboxes:
  - name: stack-oauth-binary
    host: {host}
    port: {port}
    tls: {{ca_file: {ca}}}
    source_address: {src}
    username: {user}
    from: {user}
    to: [{user}]
    timeout: 15s
    oauth2:
      grant: client_credentials
      token_url: http://{ep}{path}
      scope: {SCOPE}
      client_id: {CLIENT_ID}
      client_secret_env: OAUTH_STACK_SECRET
",
            host = s.var("STACK_HOST"),
            port = s.var("STACK_SMTP_PORT"),
            ca = s.var("STACK_CA_FILE"),
            src = source_address(),
            user = s.user(),
            ep = ep.addr(),
        ),
    )
    .unwrap();
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtp-canary"));
    c.args([
        "probe",
        "stack-oauth-binary",
        "--format",
        "json",
        "--log.level",
        "debug",
        "--config.file",
    ])
    .arg(&cfg)
    .arg("--state.dir")
    .arg(dir.path().join("state"))
    .env("OAUTH_STACK_SECRET", CLIENT_SECRET)
    .kill_on_drop(true);
    let o = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("in time")
        .expect("run");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(json["success"], true);
    assert_eq!(json["auth_mechanism"], "XOAUTH2");
    assert!(json["phases"]["oauth_token"].is_number());
    wait_delivered(json["message_id"].as_str().unwrap()).await;
    assert_eq!(ep.requests_to(path), 1);
    assert!(!out.contains(CLIENT_SECRET));
    for t in ep.issued() {
        assert!(!out.contains(&t), "a token leaked into the output");
    }
}
