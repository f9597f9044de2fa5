//! A loopback SMTP sink for the scale benchmark (`scripts/bench-scale.sh`): STARTTLS with
//! a throwaway CA, any credentials accepted, every message discarded. It runs in its own
//! process so the benchmark measures smtp-canary's CPU alone.
//!
//! Usage: `smtp_sink LISTEN_ADDR CA_PEM_OUT` (prints "ready" when listening).

use smtp_canary::demo::{AuthVerdict, Pki, SmtpServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let ca_out = args.next().unwrap_or_else(|| "sink-ca.pem".into());
    let pki = Pki::generate(&["localhost", "127.0.0.1"])?;
    std::fs::write(&ca_out, pki.ca_pem())?;
    let server = SmtpServer::new()
        .starttls(pki.server_config()?)
        .auth_check(|_| AuthVerdict::Accept)
        .keep_records(0, 0)
        .start_on(listen.parse()?)
        .await?;
    println!("ready {}", server.local_addr());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
