//! Loopback ports: one way to find a free one and one way to wait for a listener.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long [`wait_for_port`] waits for a peer to open its port.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now, for a peer to bind soon after.
///
/// It is chosen below the kernel's ephemeral range (`ip_local_port_range`), which is
/// where `bind(0)` and every outgoing connection take their ports: a port from that range
/// can be taken by some test's client connection between this call and the peer's bind
/// (certbot once failed with "Could not bind TCP port … already in use"). Each call in a
/// process moves on from a random start, so two calls never return the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let (low, high) = (10_000u32, ephemeral_low().clamp(10_001, 32_768));
    let span = high - low;
    let next = NEXT.get_or_init(|| {
        let mut seed = [0u8; 4];
        aws_lc_rs::rand::fill(&mut seed).expect("random bytes");
        AtomicU32::new(u32::from_le_bytes(seed) % span)
    });
    for _ in 0..span {
        let port = low + next.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("below 32768");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Waits (at most [`LISTEN_TIMEOUT`]) until 127.0.0.1:`port` accepts TCP connections;
/// panics naming `what` otherwise.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_below_the_ephemeral_range_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for port in ports {
            assert!(u32::from(port) < ephemeral_low(), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
