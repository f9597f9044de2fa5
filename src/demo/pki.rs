//! Throwaway X.509: a private CA and leaf certificates it signs, generated at runtime with
//! rcgen, so the demo relay and the integration tests get real, verifiable TLS without any
//! key material in the repository.
//!
//! Tests simulate the interesting failures by construction: a second [`Ca`] is an
//! "untrusted CA", [`Ca::issue`] with other names gives a "wrong name", and
//! [`Ca::issue_valid`] with past dates gives an "expired certificate".
//!
//! Every rustls config here is built with an explicit aws-lc-rs provider, so nothing depends
//! on (or installs) a process-global crypto provider.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why a certificate or a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every config in this module uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Backdating by a day keeps fresh certificates valid on hosts whose clock lags a little.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// A private certificate authority whose key lives only in memory.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is deliberately not printed.
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA whose subject common name is `common_name`, valid for ten years from
    /// yesterday.
    pub fn new(common_name: &str) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "smtp-canary throwaway CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_LIFETIME).into();
        let key = KeyPair::generate()?;
        Ok(Ca {
            issuer: CertifiedIssuer::self_signed(params, key)?,
        })
    }

    /// The CA certificate, DER encoded (a trust anchor for clients).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA certificate, PEM encoded (what a `tls.ca_file` would contain).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A root store holding only this CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // Our own freshly generated CA always parses; if it somehow did not, the store is
        // simply empty and every handshake fails loudly, which is what a test wants.
        let _ = roots.add(self.cert_der());
        roots
    }

    /// A client config that trusts exactly this CA (for tests and raw clients).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// A leaf certificate for `names` (DNS names and IP literals), valid for 90 days from
    /// yesterday.
    pub fn issue(&self, names: &[&str]) -> Result<Leaf, PkiError> {
        let now = SystemTime::now();
        self.issue_valid(names, now - BACKDATE, now + LEAF_LIFETIME)
    }

    /// A leaf certificate for `names` with an explicit validity window, e.g. one that has
    /// already expired or is not yet valid.
    pub fn issue_valid(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Leaf, PkiError> {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// A leaf certificate and its private key, ready for a rustls server.
pub struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// The certificate chain the server presents: the leaf only, because a client must
    /// reach the CA through its own trust store, exactly as with a public CA.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    /// The leaf's private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// A server config presenting this leaf, offering rustls' safe default versions
    /// (TLS 1.2 and 1.3).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        self.server_config_with_versions(rustls::DEFAULT_VERSIONS)
    }

    /// A server config limited to `versions`, e.g. `&[&rustls::version::TLS12]` to check
    /// that a client reports the version it actually negotiated.
    pub fn server_config_with_versions(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<Arc<ServerConfig>, PkiError> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_single_cert(self.chain(), self.key())?;
        Ok(Arc::new(config))
    }
}

/// A CA and one leaf it signed: everything one TLS-speaking test server needs.
#[derive(Debug)]
pub struct Pki {
    ca: Ca,
    leaf: Leaf,
}

impl Pki {
    /// A fresh CA and a leaf for `names`, e.g. `["localhost", "127.0.0.1"]`.
    pub fn generate(names: &[&str]) -> Result<Pki, PkiError> {
        let ca = Ca::new("smtp-canary throwaway CA")?;
        let leaf = ca.issue(names)?;
        Ok(Pki { ca, leaf })
    }

    /// The CA, e.g. to issue further leaves (a wrong name, an expired one).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The leaf this PKI was generated with.
    pub fn leaf(&self) -> &Leaf {
        &self.leaf
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.cert_der()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// The leaf chain the server presents.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.leaf.chain()
    }

    /// The leaf's private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.leaf.key()
    }

    /// A server config presenting the leaf.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        self.leaf.server_config()
    }

    /// A client config trusting only this PKI's CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        self.ca.client_config()
    }
}
