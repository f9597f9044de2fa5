//! DNS servers on loopback for the tests that must see an answer (or none) without the
//! system resolver: NXDOMAIN for everything, SERVFAIL for everything, or a black hole;
//! and the SOA query that tells whether a real server is up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A DNS server on loopback UDP that answers every query with NXDOMAIN (the question
/// echoed, no records). Returns its address and a counter of queries answered.
pub async fn nxdomain_responder() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let addr = sock.local_addr().expect("udp addr");
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            if let Some(resp) = nxdomain(&buf[..n])
                && sock.send_to(&resp, peer).await.is_ok()
            {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, answered, task)
}

/// Builds the NXDOMAIN response to `query` by hand (RFC 1035 §4.1): same ID, QR set,
/// opcode and RD copied, RA set, RCODE 3, the single question echoed, nothing else.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // Walk the QNAME labels to find where the question ends (no compression in queries).
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        i += len;
    }
    let end = i + 4; // QTYPE, QCLASS
    if end > query.len() {
        return None;
    }
    let mut r = Vec::with_capacity(end);
    r.extend_from_slice(&query[..2]); // ID
    r.push(0x80 | (query[2] & 0x79)); // QR | opcode | RD
    r.push(0x80 | 3); // RA | RCODE=NXDOMAIN
    r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    r.extend_from_slice(&query[12..end]);
    Some(r)
}

/// A UDP (and TCP) DNS server on loopback that answers every query with SERVFAIL, or
/// (`answer: false`) reads queries and never answers.
pub struct Responder {
    pub addr: SocketAddr,
    _udp: tokio::task::JoinHandle<()>,
    _tcp: tokio::net::TcpListener,
}

pub async fn responder(answer: bool) -> Responder {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP");
    let addr = udp.local_addr().expect("addr");
    // TCP on the same port accepts into the backlog and never reads: a black hole for
    // hickory's TCP fallback too, rather than a quick "connection refused".
    let tcp = tokio::net::TcpListener::bind(addr).await.expect("bind TCP");
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            if !answer || n < 12 {
                continue;
            }
            // Same id and question, QR=1, RA=1, RCODE=2 (SERVFAIL), no records.
            let mut reply = buf[..n].to_vec();
            reply[2] = 0x80 | (buf[2] & 0x01);
            reply[3] = 0x80 | 2;
            reply[6..12].fill(0);
            // Drop any EDNS OPT record from the question copy.
            reply[10] = 0;
            reply[11] = 0;
            let _ = udp.send_to(&reply, peer).await;
        }
    });
    Responder {
        addr,
        _udp: task,
        _tcp: tcp,
    }
}

/// A DNS query for `name` SOA, as bytes.
pub fn soa_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    q
}
