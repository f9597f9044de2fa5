//! Host name resolution for probes: one hickory resolver, built once, from the system
//! config or from `--dns-server`.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Why the resolver could not be built or a name not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
    #[error("{0}")]
    Lookup(String),
    #[error("{0} has no A or AAAA record")]
    NoAddresses(String),
}

/// Parses `--dns-server`: `IP` or `IP:PORT` (port 53 by default).
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    let trimmed = s.trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("invalid DNS server {s:?}: expected IP or IP:PORT"))
}

/// A shared resolver. Cloning is cheap (the cache is shared).
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// The system resolver (`/etc/resolv.conf`), or the given server over UDP and TCP.
    pub fn new(server: Option<SocketAddr>) -> Result<Resolver, ResolveError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let conn = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let ns = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
                );
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    provider,
                )
            }
            None => {
                TokioResolver::builder(provider).map_err(|e| ResolveError::Setup(e.to_string()))?
            }
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        // The probe has its own deadline per phase; keep the resolver's retries inside it.
        opts.timeout = std::time::Duration::from_secs(3);
        opts.attempts = 2;
        let inner = builder
            .build()
            .map_err(|e| ResolveError::Setup(e.to_string()))?;
        Ok(Resolver { inner })
    }

    /// The addresses of `host`, in the resolver's preferred order.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let lookup = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|e| ResolveError::Lookup(e.to_string()))?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            return Err(ResolveError::NoAddresses(host.to_owned()));
        }
        Ok(addrs)
    }

    /// The underlying hickory resolver, for the DNS audit.
    pub fn hickory(&self) -> &TokioResolver {
        &self.inner
    }
}
