//! Loopback addresses for tests: free ports, fresh source addresses, and the DNS server
//! that never answers.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// A UDP port on loopback nobody answers on. Probers and daemons need *a* DNS server;
/// this one keeps the system resolver out of every test that names no other (an
/// IP-literal host never asks).
pub const DEAD_DNS: &str = "127.0.0.1:9";

/// [`DEAD_DNS`] as an address.
pub fn dead_dns() -> SocketAddr {
    DEAD_DNS.parse().expect("DEAD_DNS is an address")
}

/// 127.0.0.1:`port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A port with nothing listening: connecting to it is refused.
pub fn closed_port() -> u16 {
    free_port()
}

/// A loopback port free for both UDP and TCP right now (for a DNS server).
pub fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A loopback source address nobody else in this process uses: 127.x.y.z with x in
/// `x_range`, so each test has its own Postfix anvil budget (which counts per client
/// IP), and a second run of the suite within the 60 s window starts fresh too.
pub fn fresh_source(x_range: Range<u8>) -> Ipv4Addr {
    static USED: OnceLock<Mutex<HashSet<Ipv4Addr>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let ip = Ipv4Addr::new(
            127,
            rand::random_range(x_range.clone()),
            rand::random_range(1..=254u8),
            rand::random_range(2..=254u8),
        );
        if used.lock().unwrap().insert(ip) {
            return ip;
        }
    }
}
