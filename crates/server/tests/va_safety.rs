//! The VA against hostile challenge servers: one that never answers, one that drips a
//! byte at a time, one that sends gigabytes, one whose header never ends, and redirects
//! into the deny-list (by name and by literal address). Each validation ends (bounded in
//! time: the authorization settles while the test polls) with the right problem, the VA
//! reads only a few kilobytes of the flood, and the CA keeps serving meanwhile.
//! (Wrong content, 404, a refused connection, redirect loops, bad ports and schemes are in
//! `acme_flow.rs`.)

mod harness;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certwright_proto::ProblemType;
use harness::{Acme, TestCa};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most bytes the flood and endless-header servers write before giving up.
const FLOOD_CAP: u64 = 1 << 30;

/// Reads a request head (bounded) and returns its Host name, without the port.
async fn request_host(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let host = head.lines().find_map(|l| l.strip_prefix("host:"))?.trim();
    Some(host.split(':').next().unwrap_or(host).to_owned())
}

/// Writes `chunk` until the peer stops reading or `FLOOD_CAP` is reached; counts bytes.
async fn flood(stream: &mut TcpStream, chunk: &[u8], written: &AtomicU64) {
    while written.load(Ordering::Relaxed) < FLOOD_CAP {
        if stream.write_all(chunk).await.is_err() {
            return;
        }
        written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// A challenge server that misbehaves according to the Host it is asked for.
async fn hostile_server(flooded: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let flooded = flooded.clone();
            tokio::spawn(async move {
                let Some(host) = request_host(&mut stream).await else {
                    return;
                };
                let zeros = vec![b'0'; 64 * 1024];
                match host.as_str() {
                    // Accepts, reads the request, says nothing (until the test ends).
                    "silent.test" => tokio::time::sleep(Duration::from_secs(120)).await,
                    // A promised body, one byte every half second.
                    "drip.test" => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                            .await;
                        for _ in 0..240 {
                            if stream.write_all(b"x").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                    // Ten gigabytes of body.
                    "flood.test" => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
                            .await;
                        flood(&mut stream, &zeros, &flooded).await;
                    }
                    // A header line that never ends.
                    "endless-header.test" => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ").await;
                        flood(&mut stream, &zeros, &flooded).await;
                    }
                    // Redirects into the deny-list: by a name resolving there, and literally.
                    "to-denied-name.test" | "to-denied-ip.test" => {
                        let target = if host == "to-denied-name.test" {
                            "refused.test"
                        } else {
                            "127.0.0.2"
                        };
                        let _ = stream
                            .write_all(
                                format!(
                                    "HTTP/1.1 302 Found\r\nLocation: http://{target}:{port}/.well-known/acme-challenge/x\r\nContent-Length: 0\r\n\r\n"
                                )
                                .as_bytes(),
                            )
                            .await;
                    }
                    _ => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    port
}

/// Orders `name`, answers its http-01 challenge, waits (bounded) for the authorization
/// to settle, and returns the challenge's error.
async fn validate(acme: &Acme, name: &str) -> Value {
    let order = acme.new_order(&[name]).await.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    let chall = harness::http01_challenge(&authz);
    acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    // wait_authz polls for at most 10 s; the validation timeout here is 3 s.
    let settled = acme.wait_authz(&authz_url).await;
    assert_eq!(settled["status"], "invalid", "{name}: {settled}");
    let chall = harness::http01_challenge(&settled);
    chall["error"].clone()
}

#[tokio::test]
async fn hostile_challenge_servers_are_bounded_and_reported() {
    let flooded = Arc::new(AtomicU64::new(0));
    let port = hostile_server(flooded.clone()).await;
    let ca = TestCa::start_with(move |c| {
        c.validation.http01_port = port;
        c.validation.timeout_secs = 3;
        c.validation.deny_ranges = vec!["127.0.0.2/32".into()];
    })
    .await;
    let acme = ca.account().await;

    let cases = [
        ("silent.test", ProblemType::Connection, "timed out"),
        ("drip.test", ProblemType::Connection, "timed out"),
        ("endless-header.test", ProblemType::Connection, ""),
        (
            "to-denied-name.test",
            ProblemType::Connection,
            "deny_ranges",
        ),
        ("to-denied-ip.test", ProblemType::Connection, "deny_ranges"),
    ];
    for (name, kind, words) in cases {
        let err = validate(&acme, name).await;
        assert_eq!(err["type"], kind.uri(), "{name}: {err}");
        let detail = err["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{name}: {detail}");
    }

    // A flood: the VA reads a few kilobytes, compares them and hangs up.
    let err = validate(&acme, "flood.test").await;
    assert_eq!(err["type"], ProblemType::IncorrectResponse.uri(), "{err}");
    let written = flooded.load(Ordering::Relaxed);
    assert!(
        written < 64 << 20,
        "the VA kept reading: {written} bytes were sent before it hung up"
    );

    // Meanwhile the CA serves a legitimate client as usual.
    let other = ca.account().await;
    assert_eq!(other.new_order(&["fine.example.test"]).await.status, 201);
}

/// Orders `name`, answers its tls-alpn-01 challenge and returns the settled challenge's
/// error (the authorization must end invalid within `wait_authz`'s bound).
async fn validate_alpn(acme: &Acme, name: &str) -> Value {
    let order = acme.new_order(&[name]).await.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    let pick = |a: &Value| {
        a["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "tls-alpn-01")
            .unwrap()
            .clone()
    };
    acme.post(pick(&authz)["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    let settled = acme.wait_authz(&authz_url).await;
    assert_eq!(settled["status"], "invalid", "{name}: {settled}");
    pick(&settled)["error"].clone()
}

#[tokio::test]
async fn hostile_tls_alpn_servers_are_bounded_and_reported() {
    // Accepts and reads the ClientHello; then either says nothing or floods junk records.
    let flooded = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stall = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (flood_count, stall_mode) = (flooded.clone(), stall.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (written, stall) = (flood_count.clone(), stall_mode.load(Ordering::SeqCst));
            tokio::spawn(async move {
                let mut hello = [0u8; 4096];
                let _ = stream.read(&mut hello).await;
                if stall {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                } else {
                    // A handshake record header promising a maximal record, then endless bytes.
                    let zeros = vec![0u8; 64 * 1024];
                    let _ = stream.write_all(&[0x16, 0x03, 0x03, 0xff, 0xff]).await;
                    flood(&mut stream, &zeros, &written).await;
                }
            });
        }
    });
    let ca = TestCa::start_with(move |c| {
        c.validation.tlsalpn01_port = port;
        c.validation.timeout_secs = 3;
    })
    .await;
    let acme = ca.account().await;

    let err = validate_alpn(&acme, "alpn-stall.test").await;
    assert_eq!(err["type"], ProblemType::Connection.uri(), "{err}");
    let detail = err["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("did not finish"), "{detail}");

    stall.store(false, Ordering::SeqCst);
    let err = validate_alpn(&acme, "alpn-flood.test").await;
    assert!(
        err["type"] == ProblemType::Tls.uri() || err["type"] == ProblemType::Connection.uri(),
        "{err}"
    );
    let written = flooded.load(Ordering::Relaxed);
    assert!(
        written < 64 << 20,
        "the VA kept reading: {written} bytes were sent before it hung up"
    );
}
