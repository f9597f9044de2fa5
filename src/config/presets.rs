//! Provider presets: the table of what each `provider:` fills in and what it expects.

use std::fmt;

/// The `provider:` of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Microsoft365,
    Google,
    Ses,
    Sendgrid,
    Generic,
    /// The in-process loopback relay; classified like Microsoft 365.
    Demo,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Microsoft365 => "microsoft365",
            Provider::Google => "google",
            Provider::Ses => "ses",
            Provider::Sendgrid => "sendgrid",
            Provider::Generic => "generic",
            Provider::Demo => "demo",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a provider preset fills in.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub provider: Provider,
    pub host: Option<&'static str>,
    pub port: u16,
    pub spf_include: Option<&'static str>,
    pub dkim_selectors: &'static [&'static str],
}
