//! Wiring for the three commands: the daemon (config, demo relay, prober, scheduler, web,
//! signals), `check-config` and `probe NAME`. This is the edge where library errors get
//! their context (`anyhow`) and become exit codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::auth::{self, CacheOptions, CredentialSource, CredentialSources, TokenClient};
use crate::config::{self, AuthConfig, Config, ConfigError, Provider, Secret};
use crate::delivery::{DkimVerifier, SinkReaderOptions, Tracker};
use crate::demo::DemoRelay;
use crate::gate::SendGate;
use crate::metrics::Metrics;
use crate::probe::{Prober, ProberOptions, Template};
use crate::scheduler::{Board, Scheduler, SendHooks, Shared, Start, log_result};
use crate::sinkpool::{Fanout, SinkPool};
use crate::state::{Role, StateStore};
use crate::tls::TlsTrust;
use crate::web::{self, WebState};

/// Default `--web.listen-address`: loopback, port 9587 (587 for submission).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9587";

/// Exit code for usage and config errors.
const EXIT_CONFIG: u8 = 2;

/// The command-line flags every command shares.
#[derive(Debug, Clone)]
pub struct Flags {
    pub config_file: PathBuf,
    pub listen: String,
    pub web_config_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub dns_server: Option<SocketAddr>,
    pub shard: Option<(u32, u32)>,
    pub immediate: bool,
}

/// Parses `--shard I/N`.
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid shard {s:?}: expected I/N, e.g. 0/3"))?;
    let i: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("invalid shard index in {s:?}"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("invalid shard count in {s:?}"))?;
    if n == 0 || i >= n {
        return Err(format!("invalid shard {s:?}: need 0 <= I < N"));
    }
    Ok((i, n))
}

fn print_config_errors(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!("config invalid: {} error(s)", errors.len());
}

/// How a mailbox or sink authenticates, in words (never the secret).
fn describe_auth(a: &AuthConfig) -> String {
    match a {
        AuthConfig::None => "no AUTH".to_owned(),
        AuthConfig::Password { username, .. } => format!("password as {username}"),
        AuthConfig::OAuth2 { username, oauth } => format!(
            "XOAUTH2 as {username} ({}, token endpoint {})",
            match oauth.grant {
                config::Grant::ClientCredentials => "client_credentials",
                config::Grant::RefreshToken => "refresh_token",
            },
            auth::display_token_url(&oauth.token_url)
        ),
    }
}

/// `check-config`: validate and summarise; exit 0 ok, 2 invalid.
pub fn check_config(flags: &Flags) -> ExitCode {
    let cfg = match config::load(&flags.config_file) {
        Ok(c) => c,
        Err(errors) => {
            print_config_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!(
        "{}: valid, {} mailbox(es)",
        flags.config_file.display(),
        cfg.mailboxes.len()
    );
    for mb in &cfg.mailboxes {
        let host = if mb.provider == Provider::Demo {
            "in-process demo relay".to_owned()
        } else {
            format!("{}:{}", mb.host, mb.port)
        };
        let auth = describe_auth(&mb.auth);
        println!(
            "  {:<24} {:<13} {} {} every {:?} (timeout {:?}), {}, {} -> {}",
            mb.name,
            mb.provider.as_str(),
            host,
            mb.security.as_str(),
            mb.interval,
            mb.timeout,
            auth,
            mb.from,
            mb.to.join(", ")
        );
    }
    if !cfg.sinks.is_empty() {
        println!(
            "{} sink(s), delivery timeout {:?}",
            cfg.sinks.len(),
            cfg.delivery.timeout
        );
    }
    for s in &cfg.sinks {
        let host = if s.provider == Provider::Demo {
            "in-process demo sink".to_owned()
        } else {
            format!("{}:{} {}", s.host, s.port, s.security.as_str())
        };
        let verifies: Vec<&str> = cfg
            .mailboxes
            .iter()
            .filter(|m| cfg.sinks_of(m).iter().any(|x| x.name == s.name))
            .map(|m| m.name.as_str())
            .collect();
        let bounces: Vec<&str> = cfg
            .mailboxes
            .iter()
            .filter(|m| m.from.eq_ignore_ascii_case(&s.address))
            .map(|m| m.name.as_str())
            .collect();
        println!(
            "  sink {:<19} {:<13} {} {}, {}, cleanup {}; verifies [{}]{}",
            s.name,
            s.provider.as_str(),
            host,
            s.address,
            describe_auth(&s.auth),
            s.cleanup,
            verifies.join(", "),
            if bounces.is_empty() {
                String::new()
            } else {
                format!("; bounces of [{}]", bounces.join(", "))
            }
        );
    }
    // Readiness findings are warnings: the config stays valid (exit 0).
    for f in crate::audit::basic_auth_findings(&cfg) {
        println!(
            "finding {} ({}) domain {}: {}",
            f.check(),
            f.severity(),
            f.domain,
            f.message()
        );
    }
    ExitCode::SUCCESS
}

/// Where each mailbox's credentials come from, by mailbox name (token caches for
/// `oauth2:` mailboxes, kept across reloads by `oauth`).
fn credentials(cfg: &Config, oauth: &CredentialSources) -> HashMap<String, CredentialSource> {
    oauth.for_config(cfg)
}

/// The OAuth token sources: one HTTP client on the prober's TLS trust, rotated refresh
/// tokens kept in `--state.dir`, token metrics on `metrics` (none for `probe NAME`).
fn oauth_sources(
    prober: &Prober,
    flags: &Flags,
    metrics: Option<Arc<Metrics>>,
) -> anyhow::Result<CredentialSources> {
    let client = TokenClient::new(prober.tls()).context("setting up the OAuth token client")?;
    let opts = CacheOptions {
        state_dir: Some(flags.state_dir.clone()),
        metrics: metrics.map(|m| m as Arc<dyn auth::TokenEvents>),
        ..CacheOptions::default()
    };
    Ok(CredentialSources::new(client, opts))
}

/// Exports the Basic-auth retirement findings; at start also logs each one once.
fn basic_auth_readiness(findings: &[crate::audit::BasicAuthFinding], metrics: &Metrics, log: bool) {
    if log {
        for f in findings {
            tracing::warn!(check = f.check(), severity = f.severity(), domain = %f.domain, mailbox = %f.mailbox, "{}", f.message());
        }
    }
    metrics.set_basic_auth_findings(findings.iter().map(|f| f.domain.as_str()));
}

/// The running demo relay and the CA file its mailboxes trust (removed on drop).
struct Demo {
    relay: Arc<DemoRelay>,
    ca_path: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

/// Points `provider: demo` mailboxes at the in-process relay, starting it the first time
/// a config has any (it then lives until exit, across reloads).
async fn attach_demo(
    cfg: &mut Config,
    store: &StateStore,
    demo: &mut Option<Demo>,
) -> anyhow::Result<()> {
    if !cfg.mailboxes.iter().any(|m| m.provider == Provider::Demo)
        && !cfg.sinks.iter().any(|s| s.provider == Provider::Demo)
    {
        return Ok(());
    }
    if demo.is_none() {
        let relay = DemoRelay::start()
            .await
            .context("starting the demo relay")?;
        // The demo mailboxes trust exactly the relay's throwaway CA, through the same
        // `tls.ca_file` path every other mailbox uses. It goes into the state directory
        // (checked, ours, locked), written under a fresh temporary name and renamed: a
        // link planted at the final name is replaced, never followed.
        let ca_path = store.dir().join("demo-ca.pem");
        let pem = relay.ca_pem().as_bytes().to_vec();
        let target = ca_path.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&target, &pem))
            .await
            .context("writing the demo CA file")?
            .with_context(|| format!("writing {}", ca_path.display()))?;
        tracing::info!(addr = %relay.addr(), "demo relay started for provider: demo mailboxes");
        *demo = Some(Demo {
            relay: Arc::new(relay),
            ca_path,
        });
    }
    let Some(d) = demo.as_ref() else {
        return Ok(());
    };
    let addr = d.relay.addr();
    for mb in cfg
        .mailboxes
        .iter_mut()
        .filter(|m| m.provider == Provider::Demo)
    {
        let mb = Arc::make_mut(mb);
        mb.host = addr.ip().to_string();
        mb.port = addr.port();
        mb.tls.ca_file = Some(d.ca_path.clone());
        if let AuthConfig::Password { password, .. } = &mut mb.auth
            && password.expose().is_empty()
        {
            *password = Secret::new(d.relay.password());
        }
    }
    Ok(())
}

fn prober(cfg: &Config, flags: &Flags) -> anyhow::Result<Prober> {
    let prober = Prober::new(ProberOptions {
        dns_server: flags.dns_server,
        helo_name: cfg.global.helo_name.clone(),
    })
    .context("setting up the resolver")?;
    // TLS configs are built once, at start, not per probe.
    for mb in &cfg.mailboxes {
        prober
            .tls()
            .client_config(mb.tls.ca_file.as_deref())
            .with_context(|| format!("mailbox {}: TLS trust", mb.name))?;
    }
    Ok(prober)
}

/// Stable shard of a mailbox name (FNV-1a: the same on every machine and release).
pub fn shard_of(name: &str, n: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(n)) as u32
}

/// `probe NAME`: one probe now. Exit 0 delivered, 1 failed, 2 usage/config error.
pub async fn probe_once(flags: &Flags, name: &str, json: bool, wait_delivery: bool) -> ExitCode {
    match probe_once_inner(flags, name, json, wait_delivery).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smtp-canary: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn probe_once_inner(
    flags: &Flags,
    name: &str,
    json: bool,
    wait_delivery: bool,
) -> anyhow::Result<ExitCode> {
    let mut cfg = match config::load(&flags.config_file) {
        Ok(c) => c,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if !cfg.mailboxes.iter().any(|m| m.name == name) {
        let names: Vec<&str> = cfg.mailboxes.iter().map(|m| m.name.as_str()).collect();
        anyhow::bail!(
            "no mailbox named {name:?} in {} (have: {})",
            flags.config_file.display(),
            names.join(", ")
        );
    }
    cfg.mailboxes.retain(|m| m.name == name);
    // The same ledger and lock as the daemon: this send counts against the budget and
    // the per-minute share, and never happens unrecorded.
    let dir = flags.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || {
        StateStore::open_waiting(&dir, Role::Probe, PROBE_LOCK_WAIT)
    })
    .await
    .context("opening --state.dir")?
    .with_context(|| format!("opening --state.dir {}", flags.state_dir.display()))?;
    let mut demo = None;
    attach_demo(&mut cfg, &store, &mut demo).await?;
    let prober = prober(&cfg, flags)?;
    let mb = cfg.mailboxes[0].clone();
    let template = Template::new(&mb.name, &mb.from, &mb.to, prober.helo_name())
        .with_context(|| format!("mailbox {name}: building the canary message"))?;
    let oauth = oauth_sources(&prober, flags, None)?;
    let creds = credentials(&cfg, &oauth)
        .remove(name)
        .unwrap_or(CredentialSource::Static(auth::Credentials::None));
    let gate = SendGate::new(Some(store.clone()));
    let tracker = Arc::new(Tracker::new(
        Some(store.clone()),
        Arc::new(crate::delivery::NoEvents),
    ));
    let mut pool = match wait_delivery {
        true => Some(SinkPool::new(
            sink_options(&prober, &tracker, &store, demo.as_ref())?,
            None,
        )),
        false => None,
    };
    if let Some(p) = &mut pool {
        p.apply(&cfg, &credentials(&cfg, &oauth)).await;
    }
    let permit = match gate.admit(&mb).await {
        Ok(p) => p,
        Err(refusal) => {
            eprintln!(
                "smtp-canary: mailbox {name} not probed ({}): {}",
                refusal.reason.as_str(),
                refusal.detail
            );
            return Ok(ExitCode::from(1));
        }
    };
    let hooks = SendHooks::new(&permit, pool.is_some().then_some(&*tracker), &mb.name);
    let result = prober.probe(&mb, &template, &creds, Some(&hooks)).await;
    log_result(&result);
    hooks.after(&result).await;
    drop(hooks);
    let (class, code) = match &result.failure {
        Some(f) => (Some(f.class), f.code.as_str()),
        None => (None, ""),
    };
    gate.finish(&mb, permit, class, code).await;
    gate.flush().await;
    let delivery = match pool {
        Some(p) if result.message_id.is_some() => {
            let wanted = tracker.route(&mb.name).len();
            let deadline =
                tokio::time::Instant::now() + cfg.delivery.timeout + Duration::from_secs(10);
            while tracker.resolutions_of(&result.probe_id).len() < wanted
                && tokio::time::Instant::now() < deadline
            {
                tracker.changed(Duration::from_secs(1)).await;
            }
            p.shutdown().await;
            Some(tracker.resolutions_of(&result.probe_id))
        }
        Some(p) => {
            p.shutdown().await;
            Some(Vec::new())
        }
        None => None,
    };
    if json {
        let mut v = result.to_json();
        if let (Some(d), Some(obj)) = (&delivery, v.as_object_mut()) {
            obj.insert(
                "delivery".into(),
                d.iter().map(|r| r.to_json()).collect::<Vec<_>>().into(),
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&v).context("encoding JSON")?
        );
    } else {
        print!("{}", result.to_text());
        for r in delivery.iter().flatten() {
            println!("delivery {}", r.to_text());
        }
    }
    let delivered = delivery.as_ref().is_none_or(|d| {
        !d.is_empty()
            && d.iter()
                .all(|r| r.outcome == crate::delivery::Outcome::Delivered)
    });
    Ok(if result.success() && delivered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What every sink reader shares: our resolver and trust, the DKIM verifier, the
/// tracker, the state directory and the demo relay.
fn sink_options(
    prober: &Prober,
    tracker: &Arc<Tracker>,
    store: &StateStore,
    demo: Option<&Demo>,
) -> anyhow::Result<SinkReaderOptions> {
    let resolver = prober.resolver().clone();
    let dkim = DkimVerifier::new(resolver.clone()).map_err(|e| anyhow::anyhow!(e))?;
    Ok(SinkReaderOptions {
        resolver,
        tls: Arc::new(TlsTrust::new()),
        dkim: Arc::new(dkim),
        tracker: tracker.clone(),
        events: tracker.events(),
        store: Some(store.clone()),
        demo: demo.map(|d| d.relay.clone()),
        command_deadline: SINK_COMMAND_DEADLINE,
    })
}

/// Deadline of each IMAP command of a sink reader.
const SINK_COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// The daemon: probe on schedule and serve HTTP until SIGTERM/SIGINT; then finish the
/// probes in flight and exit 0.
pub async fn run(flags: Flags) -> ExitCode {
    match run_inner(flags).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "smtp-canary cannot start");
            eprintln!("smtp-canary: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Makes a loaded config runnable: shard filter and demo relay.
async fn prepare(
    mut cfg: Config,
    flags: &Flags,
    store: &StateStore,
    demo: &mut Option<Demo>,
) -> anyhow::Result<(Config, Vec<crate::audit::BasicAuthFinding>)> {
    // From the whole config, before sharding: with shards, each domain's finding comes
    // from the one instance that owns the domain, like its DNS audit.
    let mut findings = crate::audit::basic_auth_findings(&cfg);
    if let Some((i, n)) = flags.shard {
        findings.retain(|f| shard_of(&f.domain, n) == i);
        // Each domain is audited by exactly one shard too, so N instances behind one
        // Prometheus export each domain's audit series once.
        let domains: Vec<_> = cfg
            .audit_domains()
            .into_iter()
            .filter(|d| shard_of(&d.domain, n) == i)
            .collect();
        cfg.dns_audit.domains = domains;
        cfg.dns_audit.from_mailboxes = false;
        let before = cfg.mailboxes.len();
        cfg.mailboxes.retain(|m| shard_of(&m.name, n) == i);
        tracing::info!(
            shard = format!("{i}/{n}"),
            mailboxes = cfg.mailboxes.len(),
            of = before,
            "sharding"
        );
    }
    attach_demo(&mut cfg, store, demo).await?;
    Ok((cfg, findings))
}

async fn run_inner(flags: Flags) -> anyhow::Result<ExitCode> {
    if let Err(e) = web::check_listen_address(&flags.listen) {
        eprintln!("smtp-canary: --web.listen-address {:?}: {e}", flags.listen);
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let web_config = match &flags.web_config_file {
        None => None,
        Some(path) => match web::config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("--web.config.file {e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
    };
    let cfg = match config::load(&flags.config_file) {
        Ok(cfg) => cfg,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    // Locked before anything is written into it (the demo CA file is).
    let store = StateStore::open(&flags.state_dir, Role::Daemon)
        .with_context(|| format!("opening --state.dir {}", flags.state_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    let mut demo = None;
    let (cfg, findings) = prepare(cfg, &flags, &store, &mut demo).await?;
    metrics.config_loaded(true);
    let prober = Arc::new(prober(&cfg, &flags)?);
    let oauth = oauth_sources(&prober, &flags, Some(metrics.clone()))?;
    basic_auth_readiness(&findings, &metrics, true);
    let board = Arc::new(Board::new());
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let state = Arc::new(WebState::new(
        metrics.clone(),
        board.clone(),
        Some(reload_tx),
    ));
    state.set_web_config(web_config.unwrap_or_default());
    let listener = web::bind(&flags.listen)
        .await
        .with_context(|| format!("listening on {}", flags.listen))?;
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| flags.listen.clone());
    tracing::info!(
        address = %address,
        https = state.web_config().tls.is_some(),
        basic_auth = state.web_config().auth.is_some(),
        mailboxes = cfg.mailboxes.len(),
        "smtp-canary started"
    );

    // The web side outlives the probes: during shutdown `/-/ready` answers 503 rather
    // than refusing connections, and the last scrape still sees the final results.
    let (web_stop_tx, web_stop_rx) = watch::channel(false);
    let web_task = tokio::spawn(web::serve(listener, state.clone(), web_stop_rx));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = Arc::new(Tracker::new(
        Some(store.clone()),
        Arc::new(Fanout {
            metrics: metrics.clone(),
            board: board.clone(),
        }),
    ));
    let mut shared = Shared::new(prober.clone(), metrics.clone(), board, Some(store.clone()));
    shared.tracker = Some(tracker.clone());
    let shared = Arc::new(shared);
    let mut sinks = SinkPool::new(
        sink_options(&prober, &tracker, &store, demo.as_ref())?,
        Some(metrics.clone()),
    );
    let creds = credentials(&cfg, &oauth);
    sinks.apply(&cfg, &creds).await;
    let source: Arc<dyn crate::metrics::QuotaSource> = shared.clone();
    metrics.set_quota_source(Arc::downgrade(&source));
    let start = if flags.immediate {
        Start::Immediate
    } else {
        Start::Spread
    };
    let mut scheduler = Scheduler::new(shared, start);
    scheduler.apply(&cfg.mailboxes, &creds);
    let audit = crate::audit::AuditTask::start(
        &cfg,
        prober.resolver().hickory().clone(),
        metrics.clone(),
        stop_rx.clone(),
    );
    state.ready.store(true, Ordering::Relaxed);

    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let (hup_tx, hup_rx) = mpsc::channel(1);
    let reloader = Reloader {
        flags: flags.clone(),
        store,
        demo,
        prober,
        metrics: metrics.clone(),
        scheduler,
        sinks,
        oauth,
        audit,
        web: state.clone(),
    };
    // Reloads run in their own task, each under a deadline, so the signal loop below
    // always answers: SIGTERM stops the daemon even while a reload is stuck.
    let worker = tokio::spawn(reloader.run(hup_rx, reload_rx, stop_rx));
    loop {
        tokio::select! {
            _ = int.recv() => { tracing::info!("SIGINT received; shutting down"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM received; shutting down"); break; }
            _ = hup.recv() => {
                if hup_tx.try_send(()).is_err() {
                    tracing::info!("SIGHUP received while a reload is pending; it is covered by that reload");
                } else {
                    tracing::info!("SIGHUP received; reloading the config");
                }
            }
        }
    }
    // A second SIGTERM or SIGINT does not wait for the probes in flight. Their sends are
    // on disk already, so this is as safe as kill -9.
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("second signal received; exiting now without waiting for probes in flight");
        std::process::exit(1);
    });
    state.ready.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let reloader = worker.await.context("the reload task failed")?;
    reloader.scheduler.shutdown().await;
    reloader.sinks.shutdown().await;
    // A token request still running may have rotated the refresh token: let it store it.
    reloader.oauth.drain(RELOAD_DEADLINE).await;
    reloader.audit.join().await;
    let _ = web_stop_tx.send(true);
    let _ = web_task.await;
    tracing::info!("all probes finished; bye");
    Ok(ExitCode::SUCCESS)
}

/// How long `probe NAME` waits for another `probe` holding the state directory.
const PROBE_LOCK_WAIT: Duration = Duration::from_secs(60);

/// The longest one reload may take (reading the config, its secret and CA files, the web
/// config). Every file read is bounded and non-blocking already; this is the backstop.
const RELOAD_DEADLINE: Duration = Duration::from_secs(20);

/// What a reload changes, owned by the reload task between reloads.
struct Reloader {
    flags: Flags,
    store: StateStore,
    demo: Option<Demo>,
    prober: Arc<Prober>,
    metrics: Arc<Metrics>,
    scheduler: Scheduler,
    sinks: SinkPool,
    oauth: CredentialSources,
    audit: crate::audit::AuditTask,
    web: Arc<WebState>,
}

impl Reloader {
    /// Serves reload requests (SIGHUP, `POST /-/reload`) one at a time until `stop`;
    /// returns itself for the shutdown. A request that arrives during a reload is
    /// answered at once by the web side (`reloading`); a SIGHUP is queued (at most one).
    async fn run(
        mut self,
        mut hup: mpsc::Receiver<()>,
        mut http: mpsc::Receiver<web::ReloadRequest>,
        mut stop: watch::Receiver<bool>,
    ) -> Reloader {
        loop {
            let done = tokio::select! {
                Some(()) = hup.recv() => None,
                Some(done) = http.recv() => {
                    tracing::info!("reload requested over HTTP");
                    Some(done)
                }
                _ = crate::util::stopped(&mut stop) => break,
            };
            self.web.reloading.store(true, Ordering::SeqCst);
            let outcome = tokio::select! {
                r = tokio::time::timeout(RELOAD_DEADLINE, self.reload_all()) => match r {
                    Ok(r) => r,
                    Err(_) => {
                        self.metrics.config_loaded(false);
                        tracing::error!(deadline_seconds = RELOAD_DEADLINE.as_secs(), "reload did not finish in time; the previous config stays active");
                        Err(anyhow::anyhow!("the reload did not finish within {RELOAD_DEADLINE:?}; the previous config stays active"))
                    }
                },
                // Shutdown abandons a reload at its next wait; nothing is half-applied
                // (applying the new config never waits).
                _ = crate::util::stopped(&mut stop) => Err(anyhow::anyhow!("shutting down")),
            };
            self.web.reloading.store(false, Ordering::SeqCst);
            if let Some(done) = done {
                let _ = done.send(outcome.map_err(|e| format!("{e:#}")));
            }
            if *stop.borrow() {
                break;
            }
        }
        self
    }

    /// The web config and the config, both or neither: the web config is read first, so
    /// a bad one fails the reload before anything of the new config is applied.
    async fn reload_all(&mut self) -> anyhow::Result<()> {
        let web = match load_web_config(&self.flags).await {
            Ok(w) => w,
            Err(e) => {
                self.metrics.config_loaded(false);
                tracing::error!(
                    error = format!("{e:#}"),
                    "web config reload failed; the previous config and web config stay active"
                );
                return Err(e);
            }
        };
        reload(
            &self.flags,
            &self.store,
            &mut self.demo,
            &self.prober,
            &self.metrics,
            &mut self.scheduler,
            &mut self.sinks,
            &self.oauth,
            &self.audit,
        )
        .await?;
        if let Some(w) = web {
            self.web.set_web_config(w);
        }
        Ok(())
    }
}

/// Reads `--web.config.file` again (rotated certificates, changed users), if there is
/// one. New connections and requests use it once it is set.
async fn load_web_config(flags: &Flags) -> anyhow::Result<Option<web::config::WebConfig>> {
    let Some(path) = flags.web_config_file.clone() else {
        return Ok(None);
    };
    match tokio::task::spawn_blocking(move || web::config::load(&path)).await {
        Ok(Ok(cfg)) => Ok(Some(cfg)),
        Ok(Err(e)) => Err(anyhow::anyhow!("--web.config.file {e}")),
        Err(e) => Err(anyhow::anyhow!("reading --web.config.file failed: {e}")),
    }
}

/// Re-reads the config. A bad one keeps the old config running and sets
/// `config_last_reload_successful 0`; a good one is applied without losing state.
#[allow(clippy::too_many_arguments)]
async fn reload(
    flags: &Flags,
    store: &StateStore,
    demo: &mut Option<Demo>,
    prober: &Arc<Prober>,
    metrics: &Metrics,
    scheduler: &mut Scheduler,
    sinks: &mut SinkPool,
    oauth: &CredentialSources,
    audit: &crate::audit::AuditTask,
) -> anyhow::Result<()> {
    // Reading the config, its secret files and CA files blocks: off the async workers.
    let path = flags.config_file.clone();
    let loaded = match tokio::task::spawn_blocking(move || config::load(&path)).await {
        Ok(Ok(cfg)) => Ok(cfg),
        Ok(Err(errors)) => Err(anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )),
        Err(e) => Err(anyhow::anyhow!("reading the config failed: {e}")),
    };
    let prepared = match loaded {
        Ok(cfg) => prepare(cfg, flags, store, demo).await,
        Err(e) => Err(e),
    };
    let (cfg, findings) = match prepared {
        Ok(c) => c,
        Err(e) => {
            metrics.config_loaded(false);
            tracing::error!(
                error = format!("{e:#}"),
                "reload failed; the previous config stays active"
            );
            return Err(e);
        }
    };
    // A changed CA file must be read again; configs in use stay valid (they are Arcs).
    let ca_files: Vec<Option<PathBuf>> = cfg
        .mailboxes
        .iter()
        .map(|m| m.tls.ca_file.clone())
        .collect();
    let sink_cas: Vec<Option<PathBuf>> = cfg.sinks.iter().map(|s| s.tls.ca_file.clone()).collect();
    let trust = sinks.opts().tls.clone();
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || trust.rebuild(sink_cas.iter().map(|c| c.as_deref())))
            .await
    {
        tracing::warn!(error = %e, "a sink's CA file cannot be read; its reader will say so");
    }
    let p = prober.clone();
    let rebuilt =
        tokio::task::spawn_blocking(move || p.tls().rebuild(ca_files.iter().map(|c| c.as_deref())))
            .await
            .map_err(|e| anyhow::anyhow!("reading CA files failed: {e}"))
            .and_then(|r| r.map_err(anyhow::Error::from));
    if let Err(e) = rebuilt {
        metrics.config_loaded(false);
        tracing::error!(
            error = format!("{e:#}"),
            "reload failed; the previous config stays active"
        );
        return Err(e);
    }
    if cfg.global.helo_name != prober.helo_name() {
        // The EHLO name lives in the prober, built once at start.
        tracing::warn!(
            running = prober.helo_name(),
            configured = %cfg.global.helo_name,
            "global.helo_name changed; it takes effect after a restart"
        );
    }
    let creds = credentials(&cfg, oauth);
    sinks.apply(&cfg, &creds).await;
    scheduler.apply(&cfg.mailboxes, &creds);
    audit.update(&cfg);
    basic_auth_readiness(&findings, metrics, false);
    metrics.config_loaded(true);
    tracing::info!(mailboxes = cfg.mailboxes.len(), "config reloaded");
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).context("installing signal handlers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parsing() {
        assert_eq!(parse_shard("0/3"), Ok((0, 3)));
        assert!(parse_shard("3/3").is_err());
        assert!(parse_shard("1").is_err());
        assert!(parse_shard("a/b").is_err());
    }

    #[test]
    fn shards_partition() {
        let n = 4;
        let mut counts = [0u32; 4];
        for i in 0..10_000 {
            counts[shard_of(&format!("mailbox-{i}"), n) as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<u32>(), 10_000);
        assert!(counts.iter().all(|c| *c > 2000), "{counts:?}");
    }
}
