//! The `smtp-canary` command line: the daemon (default), `check-config` and `probe`.
//! Errors get their context here; exit codes follow the contract (2 for usage and config
//! errors).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use smtp_canary::daemon::{self, Flags};
use smtp_canary::logging::{self, LogFormat, LogLevel};

/// Probes SMTP submission mailboxes with real canary messages and exports Prometheus
/// metrics.
#[derive(Parser, Debug)]
#[command(name = "smtp-canary", version, about)]
struct Cli {
    /// The YAML config file.
    #[arg(long = "config.file", default_value = "config.yaml", global = true)]
    config_file: PathBuf,
    /// Address for /metrics, the status page and health endpoints.
    #[arg(long = "web.listen-address", default_value = daemon::DEFAULT_LISTEN, global = true)]
    web_listen_address: String,
    /// TLS and basic-auth settings for the HTTP endpoints (exporter-toolkit format).
    #[arg(long = "web.config.file", global = true)]
    web_config_file: Option<PathBuf>,
    /// Directory for state that must survive restarts (budget counters).
    #[arg(long = "state.dir", default_value = "state", global = true)]
    state_dir: PathBuf,
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    log_level: LogLevel,
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,
    /// Use this DNS server (IP or IP:PORT, UDP and TCP) instead of the system resolver.
    #[arg(long = "dns-server", value_parser = smtp_canary::probe::parse_dns_server, global = true)]
    dns_server: Option<std::net::SocketAddr>,
    /// Probe only the mailboxes whose name hashes to shard I of N (0-based), as I/N.
    #[arg(long = "shard", value_parser = daemon::parse_shard, global = true)]
    shard: Option<(u32, u32)>,
    /// Start every mailbox's first probe at once instead of spreading them over the
    /// first interval (for demos).
    #[arg(long = "probe.immediate", global = true)]
    immediate: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config and print a summary; exit 0 if valid, 2 if not.
    CheckConfig,
    /// Probe one mailbox now and print the result; exit 0 delivered, 1 failed, 2 error.
    Probe {
        /// The mailbox name from the config.
        name: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Wait for the canary in every sink of the mailbox (up to delivery.timeout) and
        /// print where it landed; exit 1 unless it was delivered everywhere.
        #[arg(long)]
        wait_delivery: bool,
    },
    /// DNS audit of SPF, DKIM, DMARC and MX; exit 0 no error-severity finding, 1 at least
    /// one (or a domain that could not be audited), 2 usage error.
    Audit {
        /// The domains to audit.
        #[arg(required = true, value_parser = smtp_canary::audit::parse_domain)]
        domains: Vec<String>,
        /// The provider that sends for them: its SPF include and DKIM selectors are
        /// expected (microsoft365, google, ses, sendgrid, generic).
        #[arg(long)]
        provider: Option<smtp_canary::config::Provider>,
        /// A DKIM selector to check besides the provider's (repeatable).
        #[arg(long = "dkim-selector", value_parser = smtp_canary::audit::parse_selector)]
        dkim_selector: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level, cli.log_format);
    let flags = Flags {
        config_file: cli.config_file.clone(),
        listen: cli.web_listen_address.clone(),
        web_config_file: cli.web_config_file.clone(),
        state_dir: cli.state_dir.clone(),
        dns_server: cli.dns_server,
        shard: cli.shard,
        immediate: cli.immediate,
    };
    match cli.command {
        Some(Command::CheckConfig) => daemon::check_config(&flags),
        Some(Command::Probe {
            name,
            format,
            wait_delivery,
        }) => runtime_run(daemon::probe_once(
            &flags,
            &name,
            format == Format::Json,
            wait_delivery,
        )),
        Some(Command::Audit {
            domains,
            provider,
            dkim_selector,
            format,
        }) => {
            let args = smtp_canary::audit::AuditArgs {
                domains,
                provider,
                dkim_selectors: dkim_selector,
                json: format == Format::Json,
            };
            runtime_run(smtp_canary::audit::run_command(
                &flags.config_file,
                flags.dns_server,
                args,
            ))
        }
        None => runtime_run(daemon::run(flags)),
    }
}

fn runtime_run(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = rt.block_on(fut);
            // A blocking read or write abandoned at its deadline (a hung NFS mount, a
            // stalled disk) must not keep the process from exiting.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            code
        }
        Err(e) => {
            eprintln!("smtp-canary: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}
