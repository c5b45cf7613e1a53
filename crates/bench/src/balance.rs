//! A TCP load balancer for loopback benchmarks of several CA instances: each accepted
//! connection goes to the next backend in turn, skipping backends that refuse connections.
//! TLS passes through untouched (each instance terminates it), as with an L4 balancer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// Serves forever: accepts on `listener` and splices each connection to a backend.
pub async fn serve(listener: TcpListener, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
    anyhow::ensure!(!backends.is_empty(), "give at least one backend");
    let backends = Arc::new(backends);
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut inbound, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of file descriptors or a reset before accept: back off (an error that
            // repeats at once would otherwise spin a core), keep serving.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (backends, next) = (backends.clone(), next.clone());
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            let first = next.fetch_add(1, Ordering::Relaxed);
            for i in 0..backends.len() {
                let backend = backends[(first + i) % backends.len()];
                if let Ok(mut outbound) = TcpStream::connect(backend).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every connection with its own tag.
    async fn tagged(tag: u8) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(&[tag]).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn connections_alternate_and_skip_a_dead_backend() {
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let backends = vec![tagged(1).await, dead, tagged(2).await];
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, backends));
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut tag = [0u8];
            s.read_exact(&mut tag).await.unwrap();
            seen.push(tag[0]);
        }
        assert!(seen.contains(&1) && seen.contains(&2), "{seen:?}");
        assert!(!seen.contains(&0));
    }
}
