//! A throwaway PKI for the tests' TLS servers: a CA with a leaf for `localhost` and
//! `127.0.0.1`, the CA's PEM in a temp file for `tls.ca_file`, and the servers that
//! present the leaf.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_canary::{
    demo::{
        Pki,
        server::{Script, ServerHandle, SmtpServer},
    },
    probe::provider,
};

use super::fixtures::{PASSWORD, USER};

/// See the module docs.
pub struct TestPki {
    pub pki: Pki,
    ca_file: tempfile::NamedTempFile,
}

impl TestPki {
    pub fn new() -> TestPki {
        let pki = Pki::generate(&["localhost", "127.0.0.1"]).expect("generate PKI");
        let mut ca_file = tempfile::Builder::new()
            .prefix("smtp-canary-test-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("temp CA file");
        ca_file
            .write_all(pki.ca_pem().as_bytes())
            .expect("write CA file");
        ca_file.flush().expect("flush CA file");
        TestPki { pki, ca_file }
    }

    /// The CA's PEM file.
    pub fn ca_path(&self) -> &Path {
        self.ca_file.path()
    }

    /// A STARTTLS server presenting the leaf, accepting [`USER`] / [`PASSWORD`].
    pub fn starttls_server(&self) -> SmtpServer {
        SmtpServer::new()
            .starttls(self.pki.server_config().expect("server config"))
            .users([(USER, PASSWORD)])
    }

    /// A port-465-style server presenting the leaf, accepting [`USER`] / [`PASSWORD`].
    pub fn implicit_server(&self) -> SmtpServer {
        SmtpServer::new()
            .implicit_tls(self.pki.server_config().expect("server config"))
            .users([(USER, PASSWORD)])
    }

    /// [`TestPki::starttls_server`] with `script`, started.
    pub async fn start(&self, script: Script) -> ServerHandle {
        start(self.starttls_server().script(script)).await
    }
}

/// Starts `server` on the current runtime.
pub async fn start(server: SmtpServer) -> ServerHandle {
    server.start().await.expect("start server")
}

/// Starts `server` on `rt`, for a synchronous test: it serves while `rt` lives.
pub fn start_on(rt: &tokio::runtime::Runtime, server: SmtpServer) -> ServerHandle {
    rt.block_on(start(server))
}

/// A PEM block.
pub fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        B64.encode(der)
    )
}

/// A TLS server config whose chain is `extra` certificates longer than needed.
pub fn huge_chain_config(pki: &Pki, extra: usize) -> Arc<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate().expect("key");
    let filler = rcgen::CertificateParams::new(vec!["filler.invalid".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let mut chain = pki.chain();
    for _ in 0..extra {
        chain.push(filler.der().clone());
    }
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, pki.key())
        .expect("huge chain config");
    Arc::new(cfg)
}
