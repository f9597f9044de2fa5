//! TLS trust for probes: the system roots are loaded once, and one rustls client config
//! is built per distinct `tls.ca_file`, then shared by every probe that needs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a TLS client config could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("CA file {0} holds no usable certificate")]
    EmptyCaFile(String),
    #[error("TLS setup: {0}")]
    Rustls(String),
}

/// The crypto provider every TLS config of ours uses (no process-global state needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The operating system's trust anchors, read from disk once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for err in &loaded.errors {
            tracing::warn!(error = %err, "could not load some system trust anchors");
        }
        let (added, ignored) = store.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "system trust anchors loaded");
        store
    })
}

/// Builds and caches client configs: system roots plus an optional extra CA file.
#[derive(Default)]
pub struct TlsTrust {
    cache: Mutex<HashMap<Option<PathBuf>, Arc<rustls::ClientConfig>>>,
}

impl TlsTrust {
    pub fn new() -> TlsTrust {
        TlsTrust::default()
    }

    /// The client config for a mailbox with this `ca_file`. The first call per file reads
    /// it (call this at start-up for every mailbox, so probes only hit the cache).
    /// Blocking on a cache miss.
    pub fn client_config(
        &self,
        ca_file: Option<&Path>,
    ) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        if let Some(cfg) = self.cached(ca_file) {
            return Ok(cfg);
        }
        let pem = match ca_file {
            Some(p) => Some(read_ca(p)?),
            None => None,
        };
        self.build(ca_file, pem.as_deref())
    }

    /// Like [`TlsTrust::client_config`], for probes: a cache miss (a CA file changed by
    /// a reload while an old probe still runs) reads the file without blocking a worker.
    pub async fn client_config_async(
        &self,
        ca_file: Option<&Path>,
    ) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        if let Some(cfg) = self.cached(ca_file) {
            return Ok(cfg);
        }
        let pem = match ca_file {
            Some(p) => {
                let path = p.to_path_buf();
                Some(
                    tokio::task::spawn_blocking(move || read_ca(&path))
                        .await
                        .map_err(|e| ca_error(p, e.to_string()))??,
                )
            }
            None => None,
        };
        self.build(ca_file, pem.as_deref())
    }

    fn cached(&self, ca_file: Option<&Path>) -> Option<Arc<rustls::ClientConfig>> {
        self.lock().get(&ca_file.map(Path::to_path_buf)).cloned()
    }

    /// Builds (and caches) the config: the system roots plus the certificates in `pem`.
    fn build(
        &self,
        ca_file: Option<&Path>,
        pem: Option<&[u8]>,
    ) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        let mut roots = system_roots().clone();
        if let (Some(path), Some(pem)) = (ca_file, pem) {
            for cert in parse_ca_pem(path, pem)? {
                roots.add(cert).map_err(|e| ca_error(path, e.to_string()))?;
            }
        }
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let cfg = Arc::new(cfg);
        self.lock()
            .insert(ca_file.map(Path::to_path_buf), cfg.clone());
        Ok(cfg)
    }

    /// Re-reads every CA file in `ca_files` into a fresh cache and swaps it in at once
    /// (on reload, so a changed CA file takes effect). On error the old cache stays.
    /// Blocking: reads files.
    pub fn rebuild<'a>(
        &self,
        ca_files: impl IntoIterator<Item = Option<&'a Path>>,
    ) -> Result<(), TlsSetupError> {
        let fresh = TlsTrust::new();
        for ca in ca_files {
            fresh.client_config(ca)?;
        }
        let map = std::mem::take(&mut *fresh.lock());
        *self.lock() = map;
        Ok(())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Option<PathBuf>, Arc<rustls::ClientConfig>>> {
        // A poisoned cache only means another thread panicked mid-insert; the map is
        // still consistent, so keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A CA file is untrusted input: bounded, regular files only, never blocking on open.
fn read_ca(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    crate::fsutil::read(path, crate::fsutil::PEM).map_err(|e| ca_error(path, e.to_string()))
}

fn ca_error(path: &Path, reason: String) -> TlsSetupError {
    TlsSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    }
}

fn parse_ca_pem(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ca_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsSetupError::EmptyCaFile(path.display().to_string()));
    }
    Ok(certs)
}

/// What the probe learned about the server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2`, `TLSv1.3`.
    pub version: String,
    /// The earliest notAfter in the presented chain, as Unix seconds.
    pub cert_not_after: Option<i64>,
}

impl TlsInfo {
    pub fn from_connection(conn: &rustls::ClientConnection) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_owned(),
        };
        let cert_not_after = conn.peer_certificates().and_then(|chain| {
            chain
                .iter()
                .filter_map(|der| {
                    x509_parser::parse_x509_certificate(der)
                        .ok()
                        .map(|(_, c)| c.validity().not_after.timestamp())
                })
                .min()
        });
        TlsInfo {
            version,
            cert_not_after,
        }
    }
}
