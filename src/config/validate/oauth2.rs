//! A mailbox's `oauth2:` section: the grant, the client, the token endpoint (the
//! preset's, per tenant where it has one), the scope, and the secrets the grant needs.
//!
//! Provider refusals (Google has no client_credentials grant for SMTP, a tenant only
//! where the endpoint has one) are rows of `rules.rs`, checked here once the grant is
//! known and in the order their errors have always been recorded.

use serde_saphyr::Spanned;

use super::Ctx;
use super::values::{secret, url_problem};
use crate::config::diag::unknown_choice;
use crate::config::keypath::KeyPath;
use crate::config::presets::Preset;
use crate::config::rules::{self, Subject, takes_tenant};
use crate::config::schema::RawOAuth2;
use crate::config::{Grant, OAuth2, Provider, Secret};

/// The settings at `p`, or `None` if they have any error (all of them recorded).
pub(super) fn oauth2(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    o: &Spanned<RawOAuth2>,
    provider: Provider,
) -> Option<OAuth2> {
    let errors_before = ctx.diag.errors.len();
    let preset = provider.preset();
    let grant = grant(ctx, p, &o.value);
    let client_id = client_id(ctx, p, o);
    tenant(ctx, p, &o.value, provider);
    let token_url = token_url(ctx, p, o, provider);
    let subject = Subject::OAuth2 { entry: o, grant };
    ctx.record(rules::check(provider, p, &subject));
    let scope = scope(ctx, p, &o.value, grant, preset);
    let client_secret = client_secret(ctx, p, o, grant);
    let refresh_token = refresh_token(ctx, p, o, grant);
    if ctx.diag.errors.len() > errors_before {
        return None;
    }
    Some(OAuth2 {
        grant,
        token_url,
        scope,
        client_id,
        client_secret: client_secret?,
        refresh_token,
    })
}

/// `grant:`, else what the keys present imply: a refresh token means the delegated flow.
fn grant(ctx: &mut Ctx<'_>, p: &KeyPath, r: &RawOAuth2) -> Grant {
    let implied = if r.refresh_token_env.is_some() || r.refresh_token_file.is_some() {
        Grant::RefreshToken
    } else {
        Grant::ClientCredentials
    };
    let Some(g) = &r.grant else {
        return implied;
    };
    match g.value.as_str() {
        "client_credentials" => Grant::ClientCredentials,
        "refresh_token" => Grant::RefreshToken,
        other => {
            ctx.err(
                &g.referenced,
                &p.key("grant"),
                unknown_choice("grant", other, &["client_credentials", "refresh_token"]),
            );
            implied
        }
    }
}

fn client_id(ctx: &mut Ctx<'_>, p: &KeyPath, o: &Spanned<RawOAuth2>) -> String {
    match &o.value.client_id {
        Some(c) if !c.value.trim().is_empty() => c.value.clone(),
        Some(c) => {
            ctx.err(
                &c.referenced,
                &p.key("client_id"),
                "client_id must not be empty",
            );
            String::new()
        }
        None => {
            ctx.err(
                &o.referenced,
                &p.key("client_id"),
                "client_id is required (the application's client ID)",
            );
            String::new()
        }
    }
}

/// The syntax of `tenant:` where the token endpoint takes one (elsewhere a provider
/// rule refuses the key): it goes into a URL path, and anything else would change the
/// URL.
fn tenant(ctx: &mut Ctx<'_>, p: &KeyPath, r: &RawOAuth2, provider: Provider) {
    let Some(t) = &r.tenant else { return };
    let valid = !t.value.is_empty()
        && t.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if takes_tenant(provider) && !valid {
        ctx.err(
            &t.referenced,
            &p.key("tenant"),
            "tenant must be a domain (contoso.onmicrosoft.com) or a tenant ID (a GUID)",
        );
    }
}

/// `token_url:`, else the preset's endpoint (with the tenant put in where it takes one).
fn token_url(ctx: &mut Ctx<'_>, p: &KeyPath, o: &Spanned<RawOAuth2>, provider: Provider) -> String {
    let r = &o.value;
    match (&r.token_url, provider.preset().oauth_token_url) {
        (Some(u), _) => {
            if let Some(problem) = url_problem(&u.value) {
                ctx.err(&u.referenced, &p.key("token_url"), problem);
            }
            u.value.clone()
        }
        (None, Some(template)) if template.contains("{tenant}") => match &r.tenant {
            Some(t) => template.replace("{tenant}", &t.value),
            None => {
                ctx.err(
                    &o.referenced,
                    &p.key("tenant"),
                    format!("provider {provider} needs tenant: (e.g. contoso.onmicrosoft.com) or token_url: to find the token endpoint"),
                );
                String::new()
            }
        },
        (None, Some(url)) => url.to_string(),
        (None, None) => {
            ctx.err(
                &o.referenced,
                &p.key("token_url"),
                format!("token_url is required: provider {provider} has no default token endpoint"),
            );
            String::new()
        }
    }
}

/// `scope:`, else the preset's for the grant (app-only or delegated).
fn scope(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    r: &RawOAuth2,
    grant: Grant,
    preset: &Preset,
) -> Option<String> {
    match &r.scope {
        Some(s) if s.value.trim().is_empty() => {
            ctx.err(
                &s.referenced,
                &p.key("scope"),
                "scope must not be empty (leave the key out for the default)",
            );
            None
        }
        Some(s) => Some(s.value.clone()),
        None => match grant {
            Grant::ClientCredentials => preset.oauth_scope_app,
            Grant::RefreshToken => preset.oauth_scope_delegated,
        }
        .map(str::to_string),
    }
}

/// The client secret; `None` after an error.
fn client_secret(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    o: &Spanned<RawOAuth2>,
    grant: Grant,
) -> Option<Secret> {
    let r = &o.value;
    let loaded = secret(
        ctx,
        p,
        ("client_secret_env", &r.client_secret_env),
        ("client_secret_file", &r.client_secret_file),
    );
    match (loaded, grant) {
        (Some(Some(s)), _) => Some(s),
        (Some(None), Grant::ClientCredentials) => {
            ctx.err(
                &o.referenced,
                &p.key("client_secret_env"),
                "grant client_credentials needs client_secret_env or client_secret_file",
            );
            None
        }
        // A public client (device code, authorization code with PKCE) has no secret; the
        // empty value tells the token client to leave `client_secret` out.
        (Some(None), Grant::RefreshToken) => Some(Secret::new("")),
        (None, _) => None,
    }
}

/// The refresh token, which only the delegated grant has (and needs).
fn refresh_token(
    ctx: &mut Ctx<'_>,
    p: &KeyPath,
    o: &Spanned<RawOAuth2>,
    grant: Grant,
) -> Option<Secret> {
    let r = &o.value;
    if grant == Grant::ClientCredentials {
        let written = [
            (&r.refresh_token_env, "refresh_token_env"),
            (&r.refresh_token_file, "refresh_token_file"),
        ];
        if let Some((Some(v), k)) = written.into_iter().find(|(v, _)| v.is_some()) {
            ctx.err(
                &v.referenced,
                &p.key(k),
                format!("{k} applies only to grant: refresh_token"),
            );
        }
        return None;
    }
    let loaded = secret(
        ctx,
        p,
        ("refresh_token_env", &r.refresh_token_env),
        ("refresh_token_file", &r.refresh_token_file),
    );
    match loaded {
        Some(Some(s)) => Some(s),
        Some(None) => {
            ctx.err(
                &o.referenced,
                &p.key("refresh_token_env"),
                "grant refresh_token needs refresh_token_env or refresh_token_file",
            );
            None
        }
        None => None,
    }
}
