//! The OAuth 2.0 token endpoint client: one POST per token request (RFC 6749 §4.4
//! `client_credentials`, §6 `refresh_token`), and the mapping of every answer to either
//! an issued token or a [`TokenError`] with a bounded `reason` label.
//!
//! This file owns the HTTP side only; caching, sharing one request between concurrent
//! probes and back-off live in `cache.rs`, the rotated refresh token's file in `store.rs`.
//!
//! The HTTP client is reqwest on *our* rustls `ClientConfig` (aws-lc-rs provider, the
//! system roots the prober already loaded): one TLS stack for SMTP and HTTPS, no ring.
//! Secrets leave this file only inside the form body: the client secret and the refresh
//! token are cut out of anything the endpoint sends back before it reaches a log line or
//! a probe's `reply`, because a misbehaving endpoint could echo them.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};

use super::TokenError;
use crate::config::{Grant, Secret};
use crate::redact::Redactor;
use crate::tls::{TlsSetupError, TlsTrust};

/// Longest a whole token request may take (connect, TLS, request, body). Shorter than the
/// session's 20 s `oauth_token` phase cap, so the endpoint's slowness is reported by us
/// as reason `timeout` (and counted) rather than only as a probe timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest TCP connect to the token endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token response body read. Real ones are 1-4 KiB (a JWT plus a few fields).
const MAX_BODY: usize = 64 * 1024;

/// Longest `error_description` kept for logs and the probe's `reply`.
const MAX_DESCRIPTION: usize = 1000;

/// Lifetime assumed when the endpoint sends no `expires_in` (it is only RECOMMENDED by
/// RFC 6749; Entra and Google always send it).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Why the token client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("TLS setup for the token client: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("building the token HTTP client: {0}")]
    Http(String),
}

/// The HTTP client for token endpoints, shared by every mailbox (one connection pool).
#[derive(Clone)]
pub struct TokenClient {
    /// Honours `HTTPS_PROXY` / `NO_PROXY`, like any other client on the host.
    proxied: reqwest::Client,
    /// For loopback endpoints (tests, local token brokers): a proxy could not reach them.
    direct: reqwest::Client,
}

impl TokenClient {
    /// A client on the system roots, through the prober's TLS trust (same provider, same
    /// root store, loaded once).
    pub fn new(trust: &TlsTrust) -> Result<TokenClient, ClientSetupError> {
        let config = trust.client_config(None)?;
        TokenClient::with_tls((*config).clone())
    }

    /// A client on this rustls config (tests pass one that trusts a throwaway CA).
    pub fn with_tls(tls: rustls::ClientConfig) -> Result<TokenClient, ClientSetupError> {
        TokenClient::with_tls_and_timeout(tls, REQUEST_TIMEOUT)
    }

    /// Like [`TokenClient::with_tls`] with another request deadline (tests).
    pub fn with_tls_and_timeout(
        mut tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<TokenClient, ClientSetupError> {
        // HTTP/1.1 only (reqwest's http2 feature is off), so ask for nothing else.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let build = |direct: bool| {
            let b = reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .timeout(timeout)
                .connect_timeout(CONNECT_TIMEOUT.min(timeout))
                // A token endpoint has no business redirecting a POST that carries a
                // client secret somewhere else.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("smtp-canary/", env!("CARGO_PKG_VERSION")))
                .pool_idle_timeout(Duration::from_secs(60));
            let b = if direct { b.no_proxy() } else { b };
            b.build().map_err(|e| ClientSetupError::Http(e.to_string()))
        };
        Ok(TokenClient {
            proxied: build(false)?,
            direct: build(true)?,
        })
    }

    fn for_url(&self, url: &reqwest::Url) -> &reqwest::Client {
        let host = url.host_str().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            &self.direct
        } else {
            &self.proxied
        }
    }
}

/// One token request's parameters.
pub(crate) struct TokenRequest<'a> {
    pub url: &'a reqwest::Url,
    pub grant: Grant,
    pub client_id: &'a str,
    /// Empty for a public client: then `client_secret` is left out of the form.
    pub client_secret: &'a Secret,
    pub refresh_token: Option<&'a Secret>,
    pub scope: Option<&'a str>,
}

/// What a successful token response gave.
#[derive(Debug)]
pub(crate) struct Issued {
    pub access_token: Secret,
    pub lifetime: Duration,
    /// A new refresh token when the server rotated it.
    pub refresh_token: Option<Secret>,
}

impl TokenClient {
    /// Sends one token request. Every outcome that is not a usable token is a
    /// [`TokenError`] whose text holds neither the secret nor any token.
    pub(crate) async fn request(&self, req: &TokenRequest<'_>) -> Result<Issued, TokenError> {
        // The endpoint may quote what it was sent; its text is scrubbed of every form
        // of the secrets in this request before anything keeps it.
        let secrets = [Some(req.client_secret), req.refresh_token]
            .into_iter()
            .flatten()
            .fold(Redactor::new(), |r, s| r.secret(s.expose()));
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(5);
        match req.grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
            Grant::RefreshToken => {
                form.push(("grant_type", "refresh_token"));
                if let Some(rt) = req.refresh_token {
                    form.push(("refresh_token", rt.expose()));
                }
            }
        }
        form.push(("client_id", req.client_id));
        if !req.client_secret.expose().is_empty() {
            // client_secret_post: both Entra and Google accept it.
            form.push(("client_secret", req.client_secret.expose()));
        }
        if let Some(scope) = req.scope {
            form.push(("scope", scope));
        }
        let where_ = endpoint_label(req.url);
        let response = self
            .for_url(req.url)
            .post(req.url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error(&e, &where_))?;
        let status = response.status();
        let body = read_body(response).await.map_err(|e| match e {
            BodyError::TooLarge => TokenError {
                reason: "malformed".into(),
                description: format!("the token endpoint {where_} sent more than {MAX_BODY} bytes"),
            },
            BodyError::Transport(e) => transport_error(&e, &where_),
        })?;
        parse_response(status.as_u16(), &body, &where_, &secrets)
    }
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the body chunk by chunk, refusing more than [`MAX_BODY`] bytes. The client's
/// request deadline covers this read too.
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `scheme://host[:port]/path` of the endpoint: no user info, no query (either could hold
/// something that is not ours to log).
pub(crate) fn endpoint_label(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// A configured token URL as it may be shown (`check-config`, logs): [`endpoint_label`]
/// of it, or a placeholder when it does not parse (it could hold anything).
pub fn display_token_url(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| endpoint_label(&u))
        .unwrap_or_else(|_| "<not a URL>".to_owned())
}

fn transport_error(e: &reqwest::Error, where_: &str) -> TokenError {
    let reason = if e.is_timeout() { "timeout" } else { "network" };
    // The innermost cause says what happened ("Connection refused", a certificate
    // error); reqwest's own text adds only the URL, which we name ourselves.
    let mut cause: &dyn std::error::Error = e;
    let mut chain = Vec::new();
    while let Some(next) = cause.source() {
        chain.push(next.to_string());
        cause = next;
    }
    let what = if e.is_timeout() {
        format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
    } else {
        chain.last().cloned().unwrap_or_else(|| e.to_string())
    };
    TokenError {
        reason: reason.into(),
        description: clean(
            &format!("token request to {where_} failed: {what}"),
            &Redactor::new(),
        ),
    }
}

/// Maps a token endpoint's answer (status and body) to a token or a [`TokenError`].
pub(crate) fn parse_response(
    status: u16,
    body: &[u8],
    where_: &str,
    secrets: &Redactor,
) -> Result<Issued, TokenError> {
    let json: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|m| m.get(k))
            .and_then(|v| v.as_str())
    };

    // An OAuth error object wins whatever the status (some endpoints send 200 with one).
    if let Some(code) = field("error") {
        let reason = reason_label(code).unwrap_or_else(|| format!("http_{status}"));
        let code = clean(code, secrets);
        let description = match field("error_description").map(|d| clean(d, secrets)) {
            Some(d) if !d.is_empty() => format!("{code}: {d}"),
            _ => format!("{code} (HTTP {status} from {where_}, no error_description)"),
        };
        return Err(TokenError {
            reason,
            description,
        });
    }
    if !(200..300).contains(&status) {
        let kind = if json.is_some() {
            "JSON without an OAuth error"
        } else {
            "no OAuth error object"
        };
        return Err(TokenError {
            reason: format!("http_{status}"),
            description: format!("HTTP {status} from {where_} ({kind}, {} bytes)", body.len()),
        });
    }
    let malformed = |what: &str| TokenError {
        reason: "malformed".into(),
        description: format!("the token response from {where_} {what}"),
    };
    let Some(map) = &json else {
        return Err(malformed("is not a JSON object"));
    };
    let access_token = match field("access_token") {
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => t,
        Some(_) => return Err(malformed("has an empty or non-printable access_token")),
        None => return Err(malformed("has no access_token")),
    };
    if let Some(tt) = map.get("token_type")
        && !tt
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
    {
        // XOAUTH2 sends `auth=Bearer <token>`; any other type would be refused anyway.
        return Err(malformed("has a token_type other than Bearer"));
    }
    let lifetime = match map.get("expires_in") {
        None => DEFAULT_LIFETIME,
        Some(v) => {
            // A number per RFC 6749; Entra's v1 endpoint sends it as a string.
            let secs = v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
            match secs {
                Some(s) if s > 0 => Duration::from_secs(s.min(366 * 24 * 3600)),
                _ => return Err(malformed("has an invalid expires_in")),
            }
        }
    };
    let refresh_token = field("refresh_token")
        .filter(|t| !t.is_empty())
        .map(|t| Secret::new(t.to_owned()));
    Ok(Issued {
        access_token: Secret::new(access_token.to_owned()),
        lifetime,
        refresh_token,
    })
}

/// OAuth `error` codes that become `reason` label values: RFC 6749 §5.2 plus the two
/// codes of §4.1.2.1 that token endpoints also send. A fixed table, so an endpoint
/// cannot create label values (each one a series kept forever) at will.
static OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "access_denied",
    "interaction_required",
    "consent_required",
];

/// The `reason` label for an OAuth `error` code; anything outside the table falls back
/// to `http_<status>`.
pub(crate) fn reason_label(code: &str) -> Option<String> {
    OAUTH_ERRORS
        .iter()
        .find(|c| **c == code)
        .map(|c| (*c).to_owned())
}

/// Endpoint text made fit for a log line and a probe reply: any secret we sent is cut
/// out (before anything else, so no later cut leaves a piece of one), control characters
/// (Entra puts `\r\n` before "Trace ID") become spaces, runs of spaces shrink to one,
/// and the length is bounded.
pub(crate) fn clean(text: &str, secrets: &Redactor) -> String {
    let t = secrets.scrub(text);
    let mut out = String::with_capacity(t.len().min(MAX_DESCRIPTION));
    let mut space = false;
    for c in t.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if out.len() + c.len_utf8() > MAX_DESCRIPTION {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AADSTS7000222: &str = "AADSTS7000222: The provided client secret keys for app \
        '00000000-0000-0000-0000-000000000001' are expired. Visit the Azure portal to create new keys \
        for your app: https://aka.ms/NewClientSecret.\r\nTrace ID: 1f0c\r\nCorrelation ID: 9a2b\r\nTimestamp: 2026-11-29 16:00:00Z";

    fn parse(status: u16, body: &str) -> Result<Issued, TokenError> {
        parse_response(
            status,
            body.as_bytes(),
            "https://login.example/token",
            &Redactor::new().secret("sekrit-value"),
        )
    }

    #[test]
    fn good_response() {
        let t = parse(
            200,
            r#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ.a.b"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "eyJ.a.b");
        assert_eq!(t.lifetime, Duration::from_secs(3599));
        assert!(t.refresh_token.is_none());
        let t = parse(
            200,
            r#"{"token_type":"bearer","expires_in":"120","access_token":"x","refresh_token":"r2"}"#,
        )
        .unwrap();
        assert_eq!(t.lifetime, Duration::from_secs(120));
        assert_eq!(t.refresh_token.unwrap().expose(), "r2");
        let t = parse(200, r#"{"access_token":"x"}"#).unwrap();
        assert_eq!(t.lifetime, DEFAULT_LIFETIME);
    }

    #[test]
    fn oauth_errors_keep_code_and_description() {
        let body =
            serde_json::json!({"error": "invalid_client", "error_description": AADSTS7000222})
                .to_string();
        let e = parse(401, &body).unwrap_err();
        assert_eq!(e.reason, "invalid_client");
        assert!(
            e.description
                .starts_with("invalid_client: AADSTS7000222: The provided client secret keys"),
            "{}",
            e.description
        );
        assert!(!e.description.contains('\r') && !e.description.contains('\n'));
        assert!(
            e.description.contains("Trace ID: 1f0c Correlation ID"),
            "{}",
            e.description
        );
        let e = parse(400, r#"{"error":"invalid_grant"}"#).unwrap_err();
        assert_eq!(e.reason, "invalid_grant");
        assert!(
            e.description.starts_with("invalid_grant (HTTP 400"),
            "{}",
            e.description
        );
        // An error object in a 200 is still an error.
        assert_eq!(
            parse(200, r#"{"error":"invalid_scope"}"#)
                .unwrap_err()
                .reason,
            "invalid_scope"
        );
    }

    #[test]
    fn odd_error_codes_do_not_become_labels() {
        for code in ["Invalid Client", "x\u{e9}", "", &"a".repeat(41), "1abc"] {
            let body = serde_json::json!({"error": code}).to_string();
            assert_eq!(
                parse(400, &body).unwrap_err().reason,
                "http_400",
                "{code:?}"
            );
        }
    }

    #[test]
    fn http_and_malformed() {
        let e = parse(503, "<html>busy</html>").unwrap_err();
        assert_eq!(e.reason, "http_503");
        assert!(!e.description.contains("busy"));
        assert_eq!(parse(200, "not json").unwrap_err().reason, "malformed");
        assert_eq!(
            parse(200, r#"{"token_type":"Bearer"}"#).unwrap_err().reason,
            "malformed"
        );
        assert_eq!(
            parse(200, r#"{"access_token":"x","token_type":"mac"}"#)
                .unwrap_err()
                .reason,
            "malformed"
        );
        assert_eq!(
            parse(200, r#"{"access_token":"x","expires_in":0}"#)
                .unwrap_err()
                .reason,
            "malformed"
        );
        assert_eq!(
            parse(200, r#"{"access_token":"a b"}"#).unwrap_err().reason,
            "malformed"
        );
    }

    #[test]
    fn echoed_secrets_are_cut_out() {
        let e = parse(
            401,
            r#"{"error":"invalid_client","error_description":"bad secret sekrit-value given"}"#,
        )
        .unwrap_err();
        assert_eq!(e.description, "invalid_client: bad secret <redacted> given");
    }

    #[test]
    fn clean_bounds_length() {
        let long = "é".repeat(5000);
        let c = clean(&long, &Redactor::new());
        assert!(c.len() <= MAX_DESCRIPTION + '…'.len_utf8());
        assert!(c.ends_with('…'));
    }

    #[test]
    fn endpoint_label_drops_userinfo_and_query() {
        let u = reqwest::Url::parse("https://id:pw@login.example:8443/t/oauth2/v2.0/token?x=y")
            .unwrap();
        assert_eq!(
            endpoint_label(&u),
            "https://login.example:8443/t/oauth2/v2.0/token"
        );
        assert_eq!(
            display_token_url("https://u:p@h.example/t"),
            "https://h.example/t"
        );
        assert_eq!(display_token_url("not a url"), "<not a URL>");
    }
}
