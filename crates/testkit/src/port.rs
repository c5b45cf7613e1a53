//! Loopback ports: one way to find a free one and one way to wait for a listener.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long [`wait_for_port`] waits for a peer to open its port.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now (bind 127.0.0.1:0 and let it go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
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
