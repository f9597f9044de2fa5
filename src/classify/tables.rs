//! The provider knowledge behind classification and hints, as data.
//!
//! Every table is read top to bottom and the first matching row wins, so a more specific row
//! must stand above a broader one. Code patterns: one dot-separated segment per number, each
//! a number, an inclusive range or `*` (`5.7.139`, `5.2.251-255`, `5.6.*`, `400-499`).
//! Texts match as case-insensitive substrings of the reply's lines joined by spaces. An empty
//! provider or phase list means "any". `Provider::Demo` never appears: it is read as
//! Microsoft 365 before the tables are consulted.

use super::Class::{self, *};
use crate::config::Provider;
use crate::smtp::Phase;

/// A classification row.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rule {
    /// Enhanced (`ENHANCED`) or basic (`BASIC`) code pattern; unused in `TEXTS`.
    pub code: &'static str,
    /// A substring the reply must contain; "" for any.
    pub text: &'static str,
    pub providers: &'static [Provider],
    pub phases: &'static [Phase],
    pub class: Class,
}

const fn code(code: &'static str, class: Class) -> Rule {
    Rule {
        code,
        text: "",
        providers: &[],
        phases: &[],
        class,
    }
}

const fn text(text: &'static str, class: Class) -> Rule {
    Rule {
        code: "",
        text,
        providers: &[],
        phases: &[],
        class,
    }
}

impl Rule {
    const fn with_text(mut self, text: &'static str) -> Rule {
        self.text = text;
        self
    }

    const fn in_phases(mut self, phases: &'static [Phase]) -> Rule {
        self.phases = phases;
        self
    }

    const fn for_providers(mut self, providers: &'static [Provider]) -> Rule {
        self.providers = providers;
        self
    }
}

const M365: &[Provider] = &[Provider::Microsoft365];
const GOOGLE: &[Provider] = &[Provider::Google];
const SES: &[Provider] = &[Provider::Ses];
const SENDGRID: &[Provider] = &[Provider::Sendgrid];

const GREETING: &[Phase] = &[Phase::Greeting];
const STARTTLS: &[Phase] = &[Phase::Starttls];
const AUTH: &[Phase] = &[Phase::Auth];
const MAIL: &[Phase] = &[Phase::Mail];
const RCPT: &[Phase] = &[Phase::Rcpt];
const DATA: &[Phase] = &[Phase::Data];
const ENVELOPE: &[Phase] = &[Phase::Mail, Phase::Rcpt, Phase::Data];

/// Stage 1: the enhanced status code (RFC 3463, RFC 5248 and provider-specific details).
pub(super) static ENHANCED: &[Rule] = &[
    // Postfix answers AUTH or MAIL before STARTTLS with `530 5.7.0 Must issue a STARTTLS
    // command first`; these rows must precede the generic 4.7.0 rows (module doc).
    code("5.7.0", Tls).with_text("STARTTLS"),
    code("4.7.0", Tls).with_text("STARTTLS"),
    // Postfix `454 4.7.0 TLS not available due to local problem`.
    code("4.7.0", Tls).in_phases(STARTTLS),
    // Google's `454 4.7.0 Too many login attempts`, `421 4.7.0 Try again later` and
    // Postfix's `421 4.7.0 ... too many connections`. Elsewhere 4.7.0 is too vague to
    // decide on, so it falls through to texts and the basic code.
    code("4.7.0", Throttled).in_phases(&[Phase::Greeting, Phase::Auth]),
    // Postfix anvil's message rate limit; other 4.7.1 replies (greylisting, policy
    // services) say nothing about rates.
    code("4.7.1", Throttled).with_text("too much mail from"),
    code("4.7.66", Tls),
    // RFC 5248 "encryption needed", RFC 4954 "encryption required for mechanism".
    code("*.7.10-11", Tls),
    code("5.7.139", AuthPolicy),
    code("5.7.30", AuthPolicy),
    // RFC 4954 "mechanism too weak"; Google uses it for "application-specific password
    // required". Either way the account's policy, not the password, is the problem.
    code("5.7.9", AuthPolicy),
    // RFC 4954 "a password transition is needed".
    code("*.7.12", AuthPolicy),
    // Exchange's credential failure; RFC 3463 gives 5.7.3 another meaning (conversion not
    // supported), so it only means auth where AUTH happens.
    code("5.7.3", Auth).in_phases(AUTH),
    code("5.7.8", Auth),
    // `530 5.7.57 Client not authenticated to send mail`: the session reached MAIL FROM
    // unauthenticated, so what is missing is credentials (auth), not a provider policy.
    code("5.7.57", Auth),
    code("4.3.2", Throttled),
    code("4.4.2", Throttled),
    code("5.2.0", Quota).with_text("SubmissionQuotaExceeded"),
    // 5.2.252 is both "SendAsDenied" and one of the "sender throttled" codes below.
    code("5.2.252", SenderRejected).with_text("SendAsDenied"),
    // Exchange throttles a sender for hours after continuous errors.
    code("5.2.251-255", Throttled),
    code("5.2.2", Quota),
    code("5.1.90", Quota),
    code("5.4.5", Quota),
    // Exchange's tenant external recipient rate limit is a rolling 24 h budget that only
    // clears as the window moves: a spent quota, not a short-term throttle.
    code("5.7.233", Quota),
    code("5.7.60", SenderRejected),
    code("5.1.8", SenderRejected),
    code("5.1.7", SenderRejected),
    code("5.7.705", SenderRejected),
    code("5.7.708", SenderRejected),
    code("5.7.750", SenderRejected),
    code("5.1.10", RecipientRejected),
    code("5.1.1", RecipientRejected),
    code("5.1.3", RecipientRejected),
    code("5.6.*", MessageRejected),
    code("5.3.4", MessageRejected),
];

/// Stage 2: provider texts, for replies without an enhanced code or with one the first stage
/// does not know.
pub(super) static TEXTS: &[Rule] = &[
    // SES files its daily quota under "Throttling failure", so quota comes first.
    text("Daily message quota exceeded", Quota),
    text("Throttling failure", Throttled),
    text("Email address is not verified", SenderRejected),
    text("Authentication Credentials Invalid", Auth),
    // SendGrid prefixes this one with "Authentication failed", so no row may key on that.
    text("Maximum credits exceeded", Quota),
    text("Too many recipients received this hour", Throttled),
    text(
        "not authorized to send from that email address",
        SenderRejected,
    ),
    text("does not match a verified Sender Identity", SenderRejected),
    text("Bad username / password", Auth),
    text("Must issue a STARTTLS command first", Tls),
    text("Too many login attempts", Throttled),
    text("Daily user sending limit exceeded", Quota),
    text("Username and Password not accepted", Auth),
    text("Application-specific password required", AuthPolicy),
    text("SubmissionQuotaExceeded", Quota),
    // Exchange also sends `554 5.2.0 ... SendAsDeniedException`.
    text("SendAsDenied", SenderRejected),
    text("SmtpClientAuthentication is disabled", AuthPolicy),
    text("basic authentication is disabled", AuthPolicy),
    text("Basic authentication is not supported", AuthPolicy),
    text("security defaults", AuthPolicy),
    text("Concurrent connections limit exceeded", Throttled),
    text("sender thread limit exceeded", Throttled),
    text("Message submission rate", Throttled),
    text("send as this sender", SenderRejected),
    text("bad outbound sender", SenderRejected),
    text("Client not authenticated", Auth),
    text("TLS 1.0 and 1.1 are not supported", Tls),
    text("too much mail from", Throttled),
    text("too many connections", Throttled),
];

/// Stage 3: the basic code in its phase.
pub(super) static BASIC: &[Rule] = &[
    // A positive reply where a failure is being classified: the peer broke the dialogue.
    code("200-399", Protocol),
    // Anything but success to STARTTLS (or the EHLO after it) is "STARTTLS refused".
    code("400-599", Tls).in_phases(STARTTLS),
    code("400-499", Throttled).in_phases(GREETING),
    // A server that refuses the session outright (`554 No SMTP service here`, a blocklisted
    // client address) has given no usable connection: the remedy is the same as for a
    // refused TCP connect (allowlists, source_address), so it is `connect`, not `protocol`.
    code("500-599", Connect).in_phases(GREETING),
    code("421", Throttled),
    // SendGrid's non-standard 403 only ever refuses the sender, whatever the wording.
    code("403", SenderRejected).for_providers(SENDGRID),
    // Command syntax and sequence errors, in any phase.
    code("500-504", Protocol),
    // RFC 3207: 530 answers a command that needs TLS first; in AUTH that is the only reading.
    code("530", Tls).in_phases(AUTH),
    code("538", Tls).in_phases(AUTH),
    code("534", AuthPolicy).in_phases(AUTH),
    code("535", Auth).in_phases(AUTH),
    // 454 is RFC 4954's temporary authentication failure; Google uses it for login throttling.
    code("400-499", Throttled).in_phases(AUTH),
    code("500-599", Auth).in_phases(AUTH),
    // RFC 4954: 530 after AUTH means "authentication required".
    code("530", Auth).in_phases(ENVELOPE),
    // 552 to MAIL FROM answers its SIZE parameter.
    code("552", MessageRejected).in_phases(MAIL),
    code("400-499", Throttled).in_phases(MAIL),
    code("500-599", SenderRejected).in_phases(MAIL),
    // 450 is "mailbox unavailable" (unverified or unknown recipient); 451/452 are the
    // server's local limits ("too many recipients").
    code("450", RecipientRejected).in_phases(RCPT),
    code("400-499", Throttled).in_phases(RCPT),
    code("500-599", RecipientRejected).in_phases(RCPT),
    code("400-499", Throttled).in_phases(DATA),
    code("500-599", MessageRejected).in_phases(DATA),
];

/// When no row matched: what a failure in each phase most likely is.
pub(super) static PHASE_DEFAULT: &[(Phase, Class)] = &[
    (Phase::Dns, Dns),
    (Phase::Connect, Connect),
    (Phase::Tls, Tls),
    (Phase::Greeting, Connect),
    (Phase::Ehlo, Protocol),
    (Phase::Starttls, Tls),
    (Phase::OauthToken, OauthToken),
    (Phase::Auth, Auth),
    (Phase::Mail, SenderRejected),
    (Phase::Rcpt, RecipientRejected),
    (Phase::Data, MessageRejected),
    (Phase::Quit, Protocol),
];

/// Which credentials a hint row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Creds {
    Any,
    Password,
    /// OAuth, or no AUTH at all.
    NoPassword,
}

/// A hint row: the first row whose conditions all hold gives the hint.
#[derive(Debug, Clone, Copy)]
pub(super) struct HintRule {
    pub class: Class,
    /// Pattern against the `code` label (enhanced or basic); "" for any.
    pub code: &'static str,
    /// A substring the reply must contain; "" for any.
    pub text: &'static str,
    pub providers: &'static [Provider],
    pub creds: Creds,
    pub hint: &'static str,
}

const fn on(class: Class) -> HintRule {
    HintRule {
        class,
        code: "",
        text: "",
        providers: &[],
        creds: Creds::Any,
        hint: "",
    }
}

impl HintRule {
    const fn code(mut self, code: &'static str) -> HintRule {
        self.code = code;
        self
    }

    const fn text(mut self, text: &'static str) -> HintRule {
        self.text = text;
        self
    }

    const fn providers(mut self, providers: &'static [Provider]) -> HintRule {
        self.providers = providers;
        self
    }

    const fn creds(mut self, creds: Creds) -> HintRule {
        self.creds = creds;
        self
    }

    const fn says(mut self, hint: &'static str) -> HintRule {
        self.hint = hint;
        self
    }
}

/// Only reached if a class lost its catch-all row; the tests make sure none has.
pub(super) const LAST_RESORT_HINT: &str =
    "See the reply and the phase of this failure in the probe result and the status page";

// Hints that several rows share (one per way of recognising the same failure).
const GREETING_REFUSED: &str = "The server refused the SMTP session at the greeting: the client \
    address may be blocklisted or not allowed; check the server's access rules or source_address";
const M365_DAILY_RECIPIENTS: &str = "Daily recipient limit (10,000) reached; it resets within 24 h";
const GOOGLE_DAILY_LIMIT: &str = "Google's daily sending limit for this user is spent (2,000 \
    messages, trial 500; 10,000 recipients); it resets on a rolling 24 h window";
const SES_CREDENTIALS: &str = "SES rejected the SMTP credentials: they are not the IAM access key; \
    create SMTP credentials in the SES console for this region (they are region-specific)";
const SENDGRID_SENDER_IDENTITY: &str = "SendGrid needs a verified Sender Identity: verify `from` \
    as a single sender or authenticate its domain";
const TLS_REQUIRED: &str = "The server requires TLS before AUTH or MAIL: set `security: starttls` \
    (or `tls` on port 465) instead of `none`";
const GOOGLE_APP_PASSWORD: &str = "Google requires an app password for this account (2-Step \
    Verification is on): create one for the canary, or move to OAuth (XOAUTH2)";

/// Remediation hints. Each class ends with a catch-all row (no code, text or provider).
pub(super) static HINTS: &[HintRule] = &[
    // dns
    on(Dns).providers(SES).says(
        "The SES SMTP host does not resolve: use email-smtp.<region>.amazonaws.com with your \
         sending region, and check the resolver (or --dns-server)",
    ),
    on(Dns).says(
        "The SMTP host name does not resolve: check `host:` for typos and that the resolver \
         (or --dns-server) answers for it",
    ),
    // connect
    on(Connect).code("5.*.*").says(GREETING_REFUSED),
    on(Connect).code("500-599").says(GREETING_REFUSED),
    on(Connect).says(
        "No TCP connection: check host and port, and that outbound firewalls or the hosting \
         provider do not block the port (587, 465 and 25 often are)",
    ),
    // timeout
    on(Timeout).says(
        "A deadline passed (the phase says where): at connect a firewall silently drops the \
         port; later, a tarpit or an overloaded server; raise timeout only for a slow server",
    ),
    // tls
    on(Tls).code("4.7.66").says(
        "The server refuses this TLS version: TLS 1.2 or newer is required; check for a \
         TLS-intercepting proxy that downgrades the connection",
    ),
    on(Tls)
        .text("Must issue a STARTTLS command first")
        .says(TLS_REQUIRED),
    on(Tls).code("5.7.0").says(TLS_REQUIRED),
    on(Tls).code("530").says(TLS_REQUIRED),
    on(Tls).code("538").says(TLS_REQUIRED),
    on(Tls).code("*.7.10-11").says(TLS_REQUIRED),
    on(Tls).says(
        "TLS failed: check the server's certificate chain and name (tls.server_name, \
         tls.ca_file for a private CA), the system clock, and that STARTTLS is offered",
    ),
    // network
    on(Network).says(
        "The connection broke mid-session: look for a proxy, NAT or firewall cutting \
         connections, or a server restart; act if it repeats",
    ),
    // protocol
    on(Protocol).says(
        "The server did not speak SMTP as expected: check that host and port reach an SMTP \
         submission service and that `security` matches the port (tls for 465)",
    ),
    // auth
    on(Auth)
        .code("5.7.3")
        .creds(Creds::Password)
        .says("Wrong password, or MFA is on and an app password or OAuth is needed"),
    on(Auth)
        .code("5.7.3")
        .providers(M365)
        .creds(Creds::NoPassword)
        .says(
            "Exchange rejected the access token: check the app's SMTP.SendAsApp permission and \
         admin consent, the Exchange service principal and its FullAccess on the mailbox",
        ),
    on(Auth).code("5.7.57").says(
        "The server wants AUTH before MAIL FROM: give this mailbox credentials \
         (password_env, password_file or oauth2)",
    ),
    on(Auth).providers(GOOGLE).creds(Creds::Password).says(
        "Google rejected the username or password: with 2-Step Verification use an app \
         password, or move to OAuth (XOAUTH2, scope https://mail.google.com/)",
    ),
    on(Auth).providers(GOOGLE).says(
        "Google rejected the access token: check it was issued for scope \
         https://mail.google.com/ and for this mailbox's user",
    ),
    on(Auth).providers(SES).says(SES_CREDENTIALS),
    on(Auth).providers(SENDGRID).says(
        "SendGrid rejected the login: the username must be the literal `apikey` and the \
         password an API key with Mail Send permission",
    ),
    on(Auth)
        .text("Authentication Credentials Invalid")
        .says(SES_CREDENTIALS),
    on(Auth).creds(Creds::Password).says(
        "Credentials rejected: check the username and the password behind password_env or \
         password_file (rotated password, locked account)",
    ),
    on(Auth).says(
        "The access token was rejected: check its scope or audience and that it was issued \
         for this mailbox's user",
    ),
    // auth_policy
    on(AuthPolicy)
        .code("5.7.139")
        .text("SmtpClientAuthentication")
        .says(
            "Enable SMTP AUTH for this mailbox: Set-CASMailbox -Identity <user> \
         -SmtpClientAuthenticationDisabled $false (tenant-wide: Set-TransportConfig \
         -SmtpClientAuthenticationDisabled $false)",
        ),
    on(AuthPolicy)
        .code("5.7.139")
        .text("basic authentication is disabled")
        .says(
            "Move this mailbox to OAuth (oauth2: in the config); Basic auth for SMTP AUTH is off \
         by default from the end of December 2026",
        ),
    on(AuthPolicy)
        .code("5.7.139")
        .text("security defaults")
        .says(
            "Security defaults block password logins for SMTP AUTH: move this mailbox to OAuth \
         (oauth2: in the config), or replace security defaults with Conditional Access",
        ),
    on(AuthPolicy)
        .code("5.7.139")
        .text("did not meet the criteria")
        .says(
            "Conditional Access or MFA blocked this sign-in: check the Entra sign-in logs for \
         the mailbox; exclude it from the policy or move it to OAuth client credentials",
        ),
    on(AuthPolicy).code("5.7.139").says(
        "Exchange refused this authentication by policy: check SMTP AUTH for the mailbox and \
         the Entra sign-in logs (https://aka.ms/smtp_auth_disabled)",
    ),
    on(AuthPolicy).code("5.7.30").says(
        "Exchange no longer accepts Basic auth (passwords, app passwords) for client \
         submission: move this mailbox to OAuth (oauth2: in the config)",
    ),
    on(AuthPolicy)
        .code("5.7.9")
        .text("Application-specific password")
        .says(GOOGLE_APP_PASSWORD),
    on(AuthPolicy)
        .code("5.7.9")
        .providers(GOOGLE)
        .says(GOOGLE_APP_PASSWORD),
    on(AuthPolicy).code("5.7.9").says(
        "The server refuses this AUTH mechanism as too weak for the account: use OAuth \
         (XOAUTH2) or the mechanism the provider requires",
    ),
    on(AuthPolicy).code("*.7.12").says(
        "The server wants a password change before it accepts SMTP AUTH: change it \
         interactively, then update password_env or password_file",
    ),
    on(AuthPolicy).says(
        "The provider's policy refuses this authentication: check its admin settings for \
         SMTP AUTH, Basic auth, MFA and sign-in policies for this mailbox",
    ),
    // oauth_token
    on(OauthToken).text("invalid_client").says(
        "The token endpoint rejected the client: check client_id and the client secret (an \
         expired secret is the usual cause; rotate it in the app registration)",
    ),
    on(OauthToken).text("invalid_grant").says(
        "The grant was rejected (refresh token expired or revoked, consent withdrawn): \
         obtain a new refresh token, or use client_credentials",
    ),
    on(OauthToken).text("invalid_scope").says(
        "The token endpoint rejected the scope: Microsoft 365 app-only needs \
         https://outlook.office365.com/.default, Google https://mail.google.com/",
    ),
    on(OauthToken).text("unauthorized_client").says(
        "The app registration may not use this grant: allow it in the app registration and \
         check admin consent",
    ),
    on(OauthToken).providers(M365).says(
        "No access token from login.microsoftonline.com: check tenant, client_id, the client \
         secret's expiry and admin consent for SMTP.SendAsApp",
    ),
    on(OauthToken).says(
        "No access token could be obtained: check token_url, client_id, the client secret \
         (expiry) and that the token endpoint is reachable",
    ),
    // throttled
    on(Throttled).code("4.3.2").says(
        "More than 3 concurrent connections or too fast for this mailbox; lower the \
         concurrency of every sender that uses it",
    ),
    on(Throttled).code("4.4.2").providers(M365).says(
        "More than 30 messages a minute from this mailbox; spread out the sends of every \
         sender that uses it",
    ),
    on(Throttled).code("5.2.251-255").says(
        "Exchange throttles this sender after continuous errors: stop sending from it for \
         hours and fix the errors first; the block cannot be lifted on request",
    ),
    on(Throttled).text("Too many login attempts").says(
        "Google is limiting logins for this account: another client may be failing to log \
         in; wait, then lower the probe rate",
    ),
    on(Throttled).text("Maximum sending rate").says(
        "The SES maximum send rate was exceeded: spread out sends or request a higher rate \
         in the SES console (sandbox: 1 message/s)",
    ),
    on(Throttled)
        .text("Too many recipients received this hour")
        .says(
            "SendGrid's hourly recipient limit for this account was reached: wait for the hour \
         to pass or raise the plan's limit",
        ),
    on(Throttled).text("too much mail from").says(
        "The server's per-client message rate limit was hit: lower the probe rate, or exempt \
         the canary's address from the limit",
    ),
    on(Throttled).text("too many connections").says(
        "The server's per-client connection limit was hit: lower the probe rate or \
         concurrency, or exempt the canary's address from the limit",
    ),
    on(Throttled).says(
        "A temporary rate or concurrency limit: lower the probe rate and the concurrency of \
         every sender that uses this mailbox; it clears by itself",
    ),
    // quota
    on(Quota)
        .text("SubmissionQuotaExceeded")
        .says(M365_DAILY_RECIPIENTS),
    on(Quota).code("5.1.90").says(M365_DAILY_RECIPIENTS),
    on(Quota)
        .code("5.2.2")
        .providers(M365)
        .says(M365_DAILY_RECIPIENTS),
    on(Quota).code("5.7.233").says(
        "The tenant's external recipient rate limit is spent: it is tenant-wide over a \
         rolling 24 h; reduce external sends from the whole tenant",
    ),
    on(Quota).code("5.4.5").says(GOOGLE_DAILY_LIMIT),
    on(Quota)
        .text("Daily user sending limit")
        .says(GOOGLE_DAILY_LIMIT),
    on(Quota).text("Daily message quota exceeded").says(
        "The SES 24-hour sending quota is spent (sandbox: 200): wait, or request a quota \
         increase in the SES console",
    ),
    on(Quota).text("Maximum credits exceeded").says(
        "SendGrid credits for this account are used up: wait for the plan's reset or \
         upgrade the plan",
    ),
    on(Quota).code("5.2.2").says(
        "A mailbox is over its storage quota: if it is the canary's sink, empty it or have \
         it expire old canaries",
    ),
    on(Quota).says(
        "A daily sending quota is spent: it resets with the provider's window (usually 24 h); \
         check the provider's limits and the canary's budget",
    ),
    // sender_rejected
    on(SenderRejected).text("SendAsDenied").says(
        "The login may not send as `from`: grant Send As on that address \
         (Add-RecipientPermission -AccessRights SendAs) or set `from` to the mailbox itself",
    ),
    on(SenderRejected).code("5.7.60").says(
        "The login has no permission to send as `from`: grant Send As or Send on Behalf, or \
         set `from` to the mailbox's own address",
    ),
    on(SenderRejected).code("5.1.8").says(
        "Exchange blocked this mailbox as a bad outbound sender (usually after a compromise): \
         secure it, then release it under Restricted entities in the Defender portal",
    ),
    on(SenderRejected).code("5.7.705").says(
        "Exchange blocked outbound mail for the whole tenant after too much spam: the tenant \
         admin must contact Microsoft support",
    ),
    on(SenderRejected).code("5.7.708").says(
        "Exchange does not accept mail from this IP address (poor reputation): send from \
         another address or contact Microsoft support",
    ),
    on(SenderRejected).code("5.7.750").says(
        "Exchange blocks mail from a domain not registered in the tenant: add and verify \
         the `from` domain as an accepted domain",
    ),
    on(SenderRejected).text("not verified").says(
        "SES has not verified this `from` identity in this region (in the sandbox the \
         recipients too): verify the address or domain in the SES console",
    ),
    on(SenderRejected)
        .text("not authorized to send from")
        .says(SENDGRID_SENDER_IDENTITY),
    on(SenderRejected)
        .text("verified Sender Identity")
        .says(SENDGRID_SENDER_IDENTITY),
    on(SenderRejected).says(
        "The server will not accept `from` for this login: use an address the authenticated \
         user owns or may send as",
    ),
    // recipient_rejected
    on(RecipientRejected).code("5.1.10").says(
        "The recipient address was not found: check every address in `to` for typos and \
         that the mailbox still exists",
    ),
    on(RecipientRejected).says(
        "A RCPT TO was refused: check that every address in `to` exists and accepts mail \
         from this sender",
    ),
    // message_rejected
    on(MessageRejected).code("5.6.*").says(
        "The message's content or format was refused: the canary is small and plain, so \
         look for a new content or header rule on the server",
    ),
    on(MessageRejected).says(
        "DATA was refused: check the server's logs for content filters, size limits or \
         sender authentication (SPF, DKIM, DMARC) checks",
    ),
];
