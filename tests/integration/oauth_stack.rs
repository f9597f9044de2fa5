//! Real XOAUTH2 through Postfix and Dovecot (`tests/stack/`): Dovecot's `passdb oauth2`
//! POSTs each bearer token to the introspection URL of the stack (127.0.0.1:18080), which
//! this test serves from the same [`TokenEndpoint`] that issues the tokens. So a token the
//! endpoint issued and has not revoked is accepted by Postfix for real, and a revoked one
//! gets Dovecot's `334` JSON challenge and then `535 5.7.8`.
//!
//! Every test is `#[ignore]`d (a plain `cargo test` stays hermetic) and run by
//! `scripts/test-all.sh` as `cargo test --test integration -- --ignored oauth_stack::`.
//! Without a running stack (`$STACK_ROOT/run/stack.env`) they panic; they never skip. The
//! endpoint on the introspection port is one per process (`Stack::token_endpoint`),
//! shared with `dashboards_live`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use smtp_canary::{
    auth::{CacheOptions, TokenProvider},
    classify::Class,
    config::{AuthConfig, Mailbox},
    probe::Phase,
};

use crate::support::daemon::run_within;
use crate::support::fixtures::{
    CLIENT_ID, CLIENT_SECRET, SCOPE, client_credentials, mailbox, probe_oauth as probe,
    token_cache as cache,
};
use crate::support::ports::fresh_source;
use crate::support::serial;
use crate::support::stack::Stack;
use crate::support::token_endpoint::TokenEndpoint;

/// Source addresses of these tests: 127.77.y.z.
const SRC: std::ops::Range<u8> = 77..78;

/// The token endpoint on the stack's introspection address.
fn endpoint() -> &'static TokenEndpoint {
    Stack::get().token_endpoint()
}

/// A fresh loopback source address per test: Postfix's anvil limits count per client IP.
fn source_address() -> IpAddr {
    IpAddr::V4(fresh_source(SRC))
}

/// An XOAUTH2 mailbox on the stack's submission port; its token URL path is `path`.
fn stack_mailbox(name: &str, path: &str) -> Mailbox {
    let s = Stack::get();
    let url = format!("http://{}{path}", endpoint().addr());
    let mut mb = mailbox(name, s.smtp_port())
        .ca(Path::new(s.ca_file()))
        .oauth(client_credentials(&url))
        .build();
    if let AuthConfig::OAuth2 { username, .. } = &mut mb.auth {
        *username = s.user().to_owned();
    }
    mb.host = s.host().to_owned();
    mb.from = s.user().to_owned();
    mb.to = vec![s.user().to_owned()];
    // Above Dovecot's ~2 s failure delay, below the prober's 20 s AUTH cap.
    mb.timeout = Duration::from_secs(15);
    mb.source_address = Some(source_address());
    mb
}

/// Polls the Maildir: delivery happens just after Postfix's 250.
fn wait_delivered(message_id: &str) -> String {
    Stack::get()
        .wait_for_message_id(message_id, Duration::from_secs(10))
        .1
}

#[tokio::test]
#[ignore = "needs the mail stack"]
async fn xoauth2_through_postfix_and_dovecot_delivers_with_one_token_request() {
    let _serial = serial::shared().await;
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
        let text = wait_delivered(r.message_id.as_deref().unwrap());
        assert!(
            text.contains("DKIM-Signature:"),
            "signed by OpenDKIM: {text}"
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
    let _serial = serial::shared().await;
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
    let _serial = serial::shared().await;
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
            host = s.host(),
            port = s.smtp_port(),
            ca = s.ca_file(),
            src = source_address(),
            user = s.user(),
            ep = ep.addr(),
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let o = run_within(
        &[
            "probe",
            "stack-oauth-binary",
            "--format",
            "json",
            "--log.level",
            "debug",
            "--config.file",
            cfg.to_str().unwrap(),
            "--state.dir",
            state.to_str().unwrap(),
        ],
        &[("OAUTH_STACK_SECRET", CLIENT_SECRET)],
        Duration::from_secs(60),
    );
    assert!(!o.killed, "the probe finished in time");
    let out = o.text();
    assert_eq!(o.code(), Some(0), "{out}");
    let json: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    assert_eq!(json["success"], true);
    assert_eq!(json["auth_mechanism"], "XOAUTH2");
    assert!(json["phases"]["oauth_token"].is_number());
    wait_delivered(json["message_id"].as_str().unwrap());
    assert_eq!(ep.requests_to(path), 1);
    assert!(!out.contains(CLIENT_SECRET));
    for t in ep.issued() {
        assert!(!out.contains(&t), "a token leaked into the output");
    }
}
