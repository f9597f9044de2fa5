//! The in-process loopback relay behind `provider: demo`, and the scriptable SMTP server
//! it is built on, which the integration tests use directly.
//!
//! - [`pki`]: a throwaway CA and leaf certificates generated at runtime;
//! - [`server`]: [`SmtpServer`], a recording ESMTP submission server whose replies can be
//!   scripted per stage;
//! - [`relay`]: [`DemoRelay`], that server dressed up as Exchange Online, with demo
//!   accounts that fail the way real Microsoft 365 mailboxes do.

pub mod mailstore;
pub mod pki;
pub mod relay;
pub mod server;

#[cfg(test)]
mod tests;

pub use pki::{Ca, Leaf, Pki, PkiError};
pub use relay::{DEMO_ACCOUNTS, DemoAccount, DemoError, DemoRelay};
pub use server::{
    Action, AuthVerdict, Credentials, Mechanism, Only, ReceivedLine, ReceivedMessage, Rule, Script,
    ServerHandle, SessionRecord, SmtpServer, Stage, Texts,
};
