//! Classification and hint tests: every reply in the provider notes, in the phase where
//! it arrives, with its class and `code` label.

use super::tables::{BASIC, Creds, ENHANCED, HINTS, PHASE_DEFAULT, TEXTS};
use super::*;

/// One reply as a provider really sends it, the phase it arrives in, and what it must give.
struct Case {
    provider: Provider,
    phase: Phase,
    code: u16,
    /// Line texts joined by '\n' (multi-line replies).
    text: &'static str,
    class: Class,
    label: &'static str,
}

const fn case(
    provider: Provider,
    phase: Phase,
    code: u16,
    text: &'static str,
    class: Class,
    label: &'static str,
) -> Case {
    Case {
        provider,
        phase,
        code,
        text,
        class,
        label,
    }
}

use Class::*;
use Phase::{Auth as AuthPh, Data, Greeting, Mail, Rcpt, Starttls};
use Provider::{Generic, Google, Microsoft365 as M365, Sendgrid, Ses};

/// Every reply in notes/providers.md and notes/mail-stack.md.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // Microsoft 365
    case(M365, AuthPh, 535, "5.7.3 Authentication unsuccessful [SN4PR0601CA0012.namprd06.prod.outlook.com]", Auth, "5.7.3"),
    case(M365, AuthPh, 535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [X]", AuthPolicy, "5.7.139"),
    case(M365, AuthPh, 535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [X]", AuthPolicy, "5.7.139"),
    case(M365, AuthPh, 535, "5.7.139 Authentication unsuccessful, basic authentication is disabled.", AuthPolicy, "5.7.139"),
    case(M365, AuthPh, 535, "5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.", AuthPolicy, "5.7.139"),
    case(M365, AuthPh, 535, "5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully.", AuthPolicy, "5.7.139"),
    case(M365, AuthPh, 550, "5.7.30 Basic authentication is not supported for Client Submission.", AuthPolicy, "5.7.30"),
    case(M365, Mail, 530, "5.7.57 Client not authenticated to send mail.", Auth, "5.7.57"),
    case(M365, AuthPh, 432, "4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_connections for more information.", Throttled, "4.3.2"),
    case(M365, Data, 432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=X]", Throttled, "4.3.2"),
    case(M365, Mail, 421, "4.4.2 Message submission rate for this client has exceeded the configured limit", Throttled, "4.4.2"),
    case(M365, Data, 554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message [X]", Quota, "5.2.0"),
    case(M365, Data, 554, "5.2.2 mailbox full; STOREDRV.Submission.Exception:SubmissionQuotaExceededException", Quota, "5.2.2"),
    case(M365, Data, 550, "5.1.90 Your message can't be sent because you've reached your daily limit for message recipients.", Quota, "5.1.90"),
    case(M365, Data, 550, "5.7.233 Message can't be submitted because the sender's tenant has exceeded its external recipient rate limit.", Quota, "5.7.233"),
    case(M365, Data, 550, "5.7.60 SMTP; Client does not have permissions to send as this sender", SenderRejected, "5.7.60"),
    case(M365, Data, 554, "5.2.252 SendAsDenied; canary@contoso.com not allowed to send as ceo@contoso.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", SenderRejected, "5.2.252"),
    case(M365, Data, 554, "5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message", SenderRejected, "5.2.0"),
    case(M365, Mail, 550, "5.2.251 Sender throttled due to continuous errors", Throttled, "5.2.251"),
    case(M365, Mail, 550, "5.2.252 Sender throttled due to continuous send as denied errors", Throttled, "5.2.252"),
    case(M365, Mail, 550, "5.2.253 Sender throttled due to continuous errors", Throttled, "5.2.253"),
    case(M365, Mail, 550, "5.2.254 Sender throttled due to continuous errors", Throttled, "5.2.254"),
    case(M365, Mail, 550, "5.2.255 Sender throttled due to continuous errors", Throttled, "5.2.255"),
    case(M365, Mail, 550, "5.1.8 Access denied, bad outbound sender", SenderRejected, "5.1.8"),
    case(M365, Mail, 550, "5.7.705 Access denied, tenant has exceeded threshold", SenderRejected, "5.7.705"),
    case(M365, Mail, 550, "5.7.708 Access denied, traffic not accepted from this IP", SenderRejected, "5.7.708"),
    case(M365, Data, 550, "5.7.750 Service unavailable. Client blocked from sending from unregistered domains", SenderRejected, "5.7.750"),
    case(M365, Rcpt, 550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", RecipientRejected, "5.1.10"),
    case(M365, Starttls, 421, "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.", Tls, "4.7.66"),
    // Google
    case(Google, AuthPh, 535, "5.7.8 Username and Password not accepted. For more information, go to\n5.7.8  https://support.google.com/mail/?p=BadCredentials a1-20020a05 - gsmtp", Auth, "5.7.8"),
    case(Google, AuthPh, 534, "5.7.9 Application-specific password required. For more information, go to\n5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp", AuthPolicy, "5.7.9"),
    case(Google, AuthPh, 454, "4.7.0 Too many login attempts, please try again later. For more information, go to\n4.7.0  https://support.google.com/mail/answer/7126229 - gsmtp", Throttled, "4.7.0"),
    case(Google, Mail, 550, "5.4.5 Daily user sending limit exceeded. For more information on Gmail\n5.4.5 sending limits go to\n5.4.5  https://support.google.com/a/answer/166852 - gsmtp", Quota, "5.4.5"),
    case(Google, Greeting, 421, "4.7.0 Try again later, closing connection. - gsmtp", Throttled, "4.7.0"),
    case(Google, AuthPh, 421, "4.7.0 Try again later, closing connection. (AUTH) - gsmtp", Throttled, "4.7.0"),
    // Amazon SES: no enhanced codes
    case(Ses, Data, 454, "Throttling failure: Maximum sending rate exceeded.", Throttled, "454"),
    case(Ses, Data, 454, "Throttling failure: Daily message quota exceeded.", Quota, "454"),
    case(Ses, Data, 554, "Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: canary@example.com", SenderRejected, "554"),
    case(Ses, Mail, 554, "Message rejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: canary@example.com", SenderRejected, "554"),
    case(Ses, AuthPh, 535, "Authentication Credentials Invalid", Auth, "535"),
    // SendGrid
    case(Sendgrid, AuthPh, 451, "Authentication failed: Maximum credits exceeded", Quota, "451"),
    case(Sendgrid, Rcpt, 452, "Too many recipients received this hour", Throttled, "452"),
    case(Sendgrid, Mail, 403, "You are not authorized to send from that email address", SenderRejected, "403"),
    case(Sendgrid, Data, 550, "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.", SenderRejected, "550"),
    case(Sendgrid, AuthPh, 535, "Authentication failed: Bad username / password", Auth, "535"),
    // The real mail stack (Postfix + Dovecot)
    case(Generic, AuthPh, 535, "5.7.8 Error: authentication failed: (reason unavailable)", Auth, "5.7.8"),
    case(Generic, Mail, 450, "4.7.1 Error: too much mail from 127.0.3.7", Throttled, "4.7.1"),
    case(Generic, Greeting, 421, "4.7.0 mail.example.test Error: too many connections from 127.0.3.7", Throttled, "4.7.0"),
    case(Generic, AuthPh, 530, "5.7.0 Must issue a STARTTLS command first", Tls, "5.7.0"),
    case(Generic, Mail, 530, "5.7.0 Must issue a STARTTLS command first", Tls, "5.7.0"),
    case(Generic, Starttls, 454, "4.7.0 TLS not available due to local problem", Tls, "4.7.0"),
];

fn classify(provider: Provider, phase: Phase, code: u16, text: &str) -> Class {
    classify_reply(provider, phase, &Reply::new(code, text))
}

#[test]
fn every_documented_reply_gets_its_class_and_label() {
    let mut failures = Vec::new();
    for c in CASES {
        let reply = Reply::new(c.code, c.text);
        let got = classify_reply(c.provider, c.phase, &reply);
        if got != c.class || reply.code_label() != c.label {
            failures.push(format!(
                "{} {} {:?}: got {} {}, want {} {}",
                c.provider,
                c.phase,
                reply.raw(),
                got,
                reply.code_label(),
                c.class,
                c.label
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn demo_classifies_exactly_like_microsoft365() {
    for c in CASES {
        for phase in Phase::ALL.iter().copied() {
            let reply = Reply::new(c.code, c.text);
            assert_eq!(
                classify_reply(Provider::Demo, phase, &reply),
                classify_reply(Provider::Microsoft365, phase, &reply),
                "{phase} {}",
                reply.raw()
            );
        }
    }
}

#[test]
fn documented_replies_do_not_depend_on_the_preset() {
    // A generic mailbox pointed at a known provider's host still gets the provider's class:
    // none of these replies needs the preset to be recognised.
    for c in CASES {
        assert_eq!(
            classify(Generic, c.phase, c.code, c.text),
            c.class,
            "{}",
            c.text
        );
    }
}

#[test]
fn multi_line_reply_reads_enhanced_code_of_first_line_and_text_of_all() {
    let r = Reply::new(
        535,
        "5.7.8 Username and Password not accepted. Learn more at\n5.7.8 https://support.google.com/mail/?p=BadCredentials",
    );
    assert_eq!(r.lines.len(), 2);
    assert_eq!(classify_reply(Google, AuthPh, &r), Auth);
    // A text split over two lines still matches once the lines are joined.
    let split = Reply::new(454, "Throttling failure: Daily message\nquota exceeded.");
    assert_eq!(classify_reply(Ses, Data, &split), Quota);
}

#[test]
fn starttls_text_beats_generic_4_7_0_and_5_7_0() {
    assert_eq!(
        classify(
            Generic,
            AuthPh,
            530,
            "5.7.0 Must issue a STARTTLS command first"
        ),
        Tls
    );
    assert_eq!(
        classify(
            Generic,
            AuthPh,
            454,
            "4.7.0 Must issue a STARTTLS command first"
        ),
        Tls
    );
    // Without the text, 4.7.0 in AUTH is throttling and 530 5.7.0 after AUTH wants AUTH.
    assert_eq!(
        classify(
            Generic,
            AuthPh,
            454,
            "4.7.0 Temporary authentication failure"
        ),
        Throttled
    );
    assert_eq!(
        classify(Generic, Mail, 530, "5.7.0 Authentication required"),
        Auth
    );
    // Without an enhanced code the text alone decides.
    assert_eq!(
        classify(Generic, Mail, 530, "Must issue a STARTTLS command first"),
        Tls
    );
}

#[test]
fn exchange_5_7_3_means_auth_only_in_auth() {
    assert_eq!(
        classify(M365, AuthPh, 535, "5.7.3 Authentication unsuccessful"),
        Auth
    );
    assert_eq!(
        classify(
            Generic,
            Data,
            554,
            "5.7.3 Conversion required but not supported"
        ),
        MessageRejected
    );
}

#[test]
fn basic_code_and_phase_fallbacks() {
    let table: &[(Phase, u16, Class)] = &[
        (Greeting, 554, Connect),
        (Greeting, 521, Connect),
        (Greeting, 421, Throttled),
        (Phase::Ehlo, 421, Throttled),
        (Phase::Ehlo, 501, Protocol),
        (Phase::Ehlo, 550, Protocol),
        (Starttls, 454, Tls),
        (Starttls, 501, Tls),
        (Starttls, 421, Tls),
        (AuthPh, 535, Auth),
        (AuthPh, 534, AuthPolicy),
        (AuthPh, 538, Tls),
        (AuthPh, 530, Tls),
        (AuthPh, 454, Throttled),
        (AuthPh, 421, Throttled),
        (AuthPh, 504, Protocol),
        (AuthPh, 550, Auth),
        (Mail, 550, SenderRejected),
        (Mail, 553, SenderRejected),
        (Mail, 552, MessageRejected),
        (Mail, 451, Throttled),
        (Mail, 421, Throttled),
        (Mail, 530, Auth),
        (Mail, 503, Protocol),
        (Rcpt, 550, RecipientRejected),
        (Rcpt, 551, RecipientRejected),
        (Rcpt, 553, RecipientRejected),
        (Rcpt, 450, RecipientRejected),
        (Rcpt, 452, Throttled),
        (Data, 552, MessageRejected),
        (Data, 554, MessageRejected),
        (Data, 451, Throttled),
        (Phase::Quit, 421, Throttled),
        (Phase::Quit, 554, Protocol),
        (Mail, 403, Throttled),
        // A positive reply classified as a failure is the peer breaking the dialogue.
        (Mail, 250, Protocol),
        (AuthPh, 334, Protocol),
    ];
    for &(phase, code, want) in table {
        assert_eq!(
            classify(Generic, phase, code, "nothing known here"),
            want,
            "{code} in {phase}"
        );
    }
}

#[test]
fn provider_rows_apply_only_to_their_provider() {
    assert_eq!(
        classify(Sendgrid, Mail, 403, "Sender not allowed"),
        SenderRejected
    );
    assert_eq!(
        classify(Generic, Mail, 403, "Sender not allowed"),
        Throttled
    );
}

#[test]
fn recognised_enhanced_families() {
    let table: &[(Phase, u16, &str, Class)] = &[
        (Data, 554, "5.6.0 Message content rejected", MessageRejected),
        (Data, 550, "5.6.1 Media not supported", MessageRejected),
        (
            Data,
            552,
            "5.3.4 Message too big for system",
            MessageRejected,
        ),
        (
            Rcpt,
            550,
            "5.1.1 <x@example.test>: Recipient address rejected: User unknown",
            RecipientRejected,
        ),
        (
            Rcpt,
            501,
            "5.1.3 Bad recipient address syntax",
            RecipientRejected,
        ),
        (Mail, 501, "5.1.7 Bad sender address syntax", SenderRejected),
        (Rcpt, 552, "5.2.2 Mailbox full", Quota),
        (
            AuthPh,
            538,
            "5.7.11 Encryption required for requested authentication mechanism",
            Tls,
        ),
        (
            AuthPh,
            432,
            "4.7.12 A password transition is needed",
            AuthPolicy,
        ),
        // An enhanced code no row knows falls through to the basic code and phase.
        (
            Rcpt,
            554,
            "5.7.1 <x@example.test>: Relay access denied",
            RecipientRejected,
        ),
        (Mail, 451, "4.3.0 Temporary lookup failure", Throttled),
    ];
    for &(phase, code, text, want) in table {
        assert_eq!(
            classify(Generic, phase, code, text),
            want,
            "{code} {text} in {phase}"
        );
    }
}

#[test]
fn empty_and_odd_replies_do_not_panic() {
    assert_eq!(
        classify_reply(
            Generic,
            Data,
            &Reply {
                code: 554,
                lines: Vec::new()
            }
        ),
        MessageRejected
    );
    assert_eq!(classify(Generic, Greeting, 554, ""), Connect);
    assert_eq!(classify(Generic, Mail, 999, "5.999.999 x"), SenderRejected);
    assert_eq!(classify(Generic, Phase::OauthToken, 999, ""), OauthToken);
    assert_eq!(classify(Generic, Phase::Dns, 999, ""), Dns);
    let long = "\u{fffd}é ".repeat(2000);
    assert_eq!(classify(Generic, Rcpt, 550, &long), RecipientRejected);
}

// --- hints -------------------------------------------------------------------------------

fn hint_for(provider: Provider, class: Class, code: &str, reply: Option<&str>, pw: bool) -> String {
    hint(HintInput {
        provider,
        class,
        code,
        reply,
        uses_password: pw,
    })
}

#[test]
fn contract_hint_examples_verbatim() {
    assert_eq!(
        hint_for(
            M365,
            AuthPolicy,
            "5.7.139",
            Some(
                "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled"
            ),
            true
        ),
        "Enable SMTP AUTH for this mailbox: Set-CASMailbox -Identity <user> -SmtpClientAuthenticationDisabled $false (tenant-wide: Set-TransportConfig -SmtpClientAuthenticationDisabled $false)"
    );
    assert_eq!(
        hint_for(
            M365,
            AuthPolicy,
            "5.7.139",
            Some("535 5.7.139 Authentication unsuccessful, basic authentication is disabled."),
            true
        ),
        "Move this mailbox to OAuth (oauth2: in the config); Basic auth for SMTP AUTH is off by default from the end of December 2026"
    );
    assert_eq!(
        hint_for(
            M365,
            Auth,
            "5.7.3",
            Some("535 5.7.3 Authentication unsuccessful [X]"),
            true
        ),
        "Wrong password, or MFA is on and an app password or OAuth is needed"
    );
    assert_eq!(
        hint_for(
            M365,
            Quota,
            "5.2.0",
            Some(
                "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed"
            ),
            true
        ),
        "Daily recipient limit (10,000) reached; it resets within 24 h"
    );
    assert_eq!(
        hint_for(
            M365,
            Throttled,
            "4.3.2",
            Some("432 4.3.2 Concurrent connections limit exceeded."),
            true
        ),
        "More than 3 concurrent connections or too fast for this mailbox; lower the concurrency of every sender that uses it"
    );
}

/// (provider, class, code label, reply, uses a password, what the hint must mention)
type HintCheck = (
    Provider,
    Class,
    &'static str,
    Option<&'static str>,
    bool,
    &'static str,
);

#[rustfmt::skip]
const HINT_CHECKS: &[HintCheck] = &[
    (M365, AuthPolicy, "5.7.139", Some("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy."), true, "Security defaults"),
    (M365, AuthPolicy, "5.7.139", Some("535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully."), true, "Conditional Access"),
    (M365, AuthPolicy, "5.7.139", None, true, "aka.ms/smtp_auth_disabled"),
    (M365, AuthPolicy, "5.7.30", Some("550 5.7.30 Basic authentication is not supported for Client Submission."), true, "OAuth"),
    (Google, AuthPolicy, "5.7.9", Some("534-5.7.9 Application-specific password required."), true, "app password"),
    (Generic, AuthPolicy, "5.7.9", Some("534 5.7.9 Application-specific password required."), true, "app password"),
    (Google, Auth, "5.7.8", None, true, "app password"),
    (Google, Auth, "5.7.8", None, false, "https://mail.google.com/"),
    (Ses, Auth, "535", Some("535 Authentication Credentials Invalid"), true, "SMTP credentials"),
    (Sendgrid, Auth, "535", None, true, "apikey"),
    (M365, Auth, "5.7.57", None, true, "AUTH before MAIL FROM"),
    (M365, Throttled, "4.4.2", None, true, "30 messages a minute"),
    (M365, Throttled, "5.2.251", None, true, "for hours"),
    (M365, Throttled, "5.2.255", None, true, "for hours"),
    (Google, Throttled, "4.7.0", Some("454-4.7.0 Too many login attempts"), true, "limiting logins"),
    (Ses, Throttled, "454", Some("454 Throttling failure: Maximum sending rate exceeded."), true, "send rate"),
    (Generic, Throttled, "4.7.1", Some("450 4.7.1 Error: too much mail from 127.0.0.1"), true, "message rate limit"),
    (Generic, Throttled, "4.7.0", Some("421 4.7.0 mail.example.test Error: too many connections from 127.0.0.1"), true, "connection limit"),
    (M365, Quota, "5.1.90", None, true, "10,000"),
    (M365, Quota, "5.7.233", None, true, "tenant-wide"),
    (Google, Quota, "5.4.5", None, true, "2,000"),
    (Ses, Quota, "454", Some("454 Throttling failure: Daily message quota exceeded."), true, "SES 24-hour"),
    (Sendgrid, Quota, "451", Some("451 Authentication failed: Maximum credits exceeded"), true, "credits"),
    (M365, SenderRejected, "5.2.252", Some("554 5.2.252 SendAsDenied; a not allowed to send as b"), true, "Send As"),
    (M365, SenderRejected, "5.7.60", None, true, "Send As"),
    (M365, SenderRejected, "5.1.8", None, true, "bad outbound sender"),
    (M365, SenderRejected, "5.7.750", None, true, "accepted domain"),
    (Ses, SenderRejected, "554", Some("554 Message rejected: Email address is not verified."), true, "SES"),
    (Sendgrid, SenderRejected, "403", Some("403 You are not authorized to send from that email address"), true, "Sender Identity"),
    (M365, RecipientRejected, "5.1.10", None, true, "not found"),
    (Generic, MessageRejected, "5.6.0", None, true, "content or format"),
    (Generic, Tls, "4.7.66", None, true, "TLS 1.2"),
    (Generic, Tls, "5.7.0", Some("530 5.7.0 Must issue a STARTTLS command first"), true, "security: starttls"),
    (Generic, Tls, "538", None, true, "security: starttls"),
    (Generic, Tls, "", Some("peer certificate: UnknownIssuer"), true, "tls.ca_file"),
    (Generic, Connect, "554", Some("554 No SMTP service here"), true, "refused the SMTP session"),
    (Generic, OauthToken, "", Some("invalid_client: AADSTS7000222 client secret expired"), false, "client secret"),
    (Ses, Dns, "", None, true, "email-smtp.<region>.amazonaws.com"),
];

#[test]
fn hints_follow_code_provider_and_credentials() {
    let oauth_5_7_3 = hint_for(
        M365,
        Auth,
        "5.7.3",
        Some("535 5.7.3 Authentication unsuccessful"),
        false,
    );
    assert!(oauth_5_7_3.contains("SMTP.SendAsApp"), "{oauth_5_7_3}");
    for &(provider, class, code, reply, pw, want) in HINT_CHECKS {
        let h = hint_for(provider, class, code, reply, pw);
        assert!(
            h.contains(want),
            "{provider} {class} {code}: {h:?} lacks {want:?}"
        );
    }
}

#[test]
fn every_class_has_a_one_line_hint_for_every_provider() {
    let providers = [M365, Google, Ses, Sendgrid, Generic, Provider::Demo];
    for class in Class::ALL.iter().copied() {
        for provider in providers {
            for pw in [true, false] {
                for code in ["", "454", "5.7.139", "garbage"] {
                    let h = hint_for(provider, class, code, None, pw);
                    assert!(!h.trim().is_empty(), "{class} {provider} {code}");
                    assert!(!h.contains('\n'), "{class}: {h:?}");
                    assert_ne!(
                        h,
                        tables::LAST_RESORT_HINT,
                        "{class} lost its catch-all row"
                    );
                }
            }
        }
    }
}

#[test]
fn demo_hints_like_microsoft365() {
    for c in CASES {
        let reply = Reply::new(c.code, c.text);
        for pw in [true, false] {
            let input = |provider| HintInput {
                provider,
                class: c.class,
                code: c.label,
                reply: Some(c.text),
                uses_password: pw,
            };
            assert_eq!(
                hint(input(Provider::Demo)),
                hint(input(M365)),
                "{}",
                reply.raw()
            );
        }
    }
}

#[test]
fn hints_never_echo_the_reply() {
    let secret = "c2VjcmV0LXBhc3N3b3JkLTEyMw==";
    let reply = format!("535 5.7.8 {secret} SmtpClientAuthentication");
    for class in Class::ALL.iter().copied() {
        let h = hint_for(M365, class, "5.7.8", Some(&reply), true);
        assert!(!h.contains(secret), "{class}: {h}");
    }
}

// --- the tables themselves -------------------------------------------------------------------

fn pattern_segments(pattern: &str) -> Option<usize> {
    let mut n = 0;
    for segment in pattern.split('.') {
        parse_segment(segment)?;
        n += 1;
    }
    Some(n)
}

#[test]
fn table_patterns_are_well_formed() {
    for r in ENHANCED {
        assert_eq!(
            pattern_segments(r.code),
            Some(3),
            "enhanced pattern {:?}",
            r.code
        );
    }
    for r in BASIC {
        assert_eq!(
            pattern_segments(r.code),
            Some(1),
            "basic pattern {:?}",
            r.code
        );
    }
    for r in TEXTS {
        assert!(
            !r.text.trim().is_empty(),
            "a text row without text would match everything"
        );
        assert!(
            r.code.is_empty(),
            "text rows do not read codes: {:?}",
            r.text
        );
    }
    for h in HINTS {
        assert!(!h.hint.trim().is_empty(), "{} row without a hint", h.class);
        if !h.code.is_empty() {
            assert!(
                matches!(pattern_segments(h.code), Some(1 | 3)),
                "hint pattern {:?}",
                h.code
            );
        }
    }
}

#[test]
fn demo_is_never_named_in_a_table() {
    let all = ENHANCED.iter().chain(TEXTS).chain(BASIC);
    assert!(all.flat_map(|r| r.providers).all(|p| *p != Provider::Demo));
    assert!(
        HINTS
            .iter()
            .flat_map(|h| h.providers)
            .all(|p| *p != Provider::Demo)
    );
}

#[test]
fn every_phase_has_a_default_and_every_class_a_catch_all_hint() {
    for phase in Phase::ALL.iter().copied() {
        assert!(PHASE_DEFAULT.iter().any(|(p, _)| *p == phase), "{phase}");
    }
    for class in Class::ALL.iter().copied() {
        assert!(
            HINTS.iter().any(|h| h.class == class
                && h.code.is_empty()
                && h.text.is_empty()
                && h.providers.is_empty()
                && h.creds == Creds::Any),
            "{class}"
        );
    }
}

#[test]
fn code_patterns_match_as_documented() {
    assert!(code_matches("5.2.251-255", &[5, 2, 253]));
    assert!(!code_matches("5.2.251-255", &[5, 2, 250]));
    assert!(code_matches("5.6.*", &[5, 6, 0]));
    assert!(code_matches("400-499", &[454]));
    assert!(!code_matches("400-499", &[5, 4, 5]));
    assert!(!code_matches("5.7.3", &[535]));
    assert!(!code_matches("5.7", &[5, 7, 3]));
    assert!(!code_matches("5.x.3", &[5, 7, 3]));
    assert!(!code_matches("9-1", &[5]));
    assert_eq!(code_parts("5.7.139"), ([5, 7, 139], 3));
    assert_eq!(code_parts("454"), ([454, 0, 0], 1));
    assert_eq!(code_parts(""), ([0; 3], 0));
    assert_eq!(code_parts("5.7.x"), ([0; 3], 0));
    assert!(contains_ci("Throttling FAILURE: x", "throttling failure"));
    assert!(contains_ci("", ""));
    assert!(!contains_ci("ab", "abc"));
}
