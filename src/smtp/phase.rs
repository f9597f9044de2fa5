//! The phases of one probe, in the order a session runs them (the `phase` label).

/// One timed step of a probe. The string forms are part of the public contract.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    Starttls,
    OauthToken,
    Auth,
    Mail,
    Rcpt,
    Data,
    Quit,
}

impl Phase {
    /// Every variant, in declaration order.
    pub const ALL: &'static [Phase] = <Phase as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
