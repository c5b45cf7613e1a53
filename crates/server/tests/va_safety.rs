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
            "127.0.0.2 (in an address range this CA does not validate)",
        ),
        (
            "to-denied-ip.test",
            ProblemType::Connection,
            "the CA does not connect to 127.0.0.2: it lies in an address range this CA does not validate",
        ),
    ];
    for (name, kind, words) in cases {
        let err = validate(&acme, name).await;
        assert_eq!(err["type"], kind.uri(), "{name}: {err}");
        let detail = err["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{name}: {detail}");
        // The operator's configuration is not shown to clients.
        assert!(!detail.contains("deny_ranges"), "{name}: {detail}");
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

/// What an internal service on the CA's own host would answer.
const SECRET: &str = "internal-secret-4f0c2a9e";

/// A challenge server for the address-rule cases: `leak.test` answers 200 with a body
/// holding [`SECRET`]; `to-N.test` redirects to the N-th of `targets`; every other Host
/// (a request that reached the server through a refused address) is recorded in `hits`
/// and answered with the secret too.
async fn redirecting_server(
    targets: Arc<Vec<String>>,
    hits: Arc<std::sync::Mutex<Vec<String>>>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (targets, hits) = (targets.clone(), hits.clone());
            tokio::spawn(async move {
                let Some(host) = request_host(&mut stream).await else {
                    return;
                };
                let index = host
                    .strip_prefix("to-")
                    .and_then(|h| h.strip_suffix(".test"))
                    .and_then(|n| n.parse::<usize>().ok());
                let answer = match index.and_then(|i| targets.get(i)) {
                    Some(target) => format!(
                        "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
                        target.replace("PORT", &port.to_string())
                    ),
                    None => {
                        if host != "leak.test" {
                            hits.lock().unwrap().push(host);
                        }
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{SECRET}",
                            SECRET.len()
                        )
                    }
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// Every client-visible byte about an order: the order, its authorization and challenge.
async fn client_view(acme: &Acme, name: &str) -> (String, Value) {
    let r = acme.new_order(&[name]).await;
    let order_url = r.location();
    let order = r.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    let chall = harness::http01_challenge(&authz);
    let chall_url = chall["url"].as_str().unwrap().to_owned();
    let answer = acme.post(&chall_url, Some(&json!({}))).await;
    let settled = acme.wait_authz(&authz_url).await;
    assert_eq!(settled["status"], "invalid", "{name}: {settled}");
    let mut seen = answer.json().to_string();
    seen.push_str(&settled.to_string());
    seen.push_str(&acme.post(&chall_url, None).await.json().to_string());
    seen.push_str(&acme.wait_order(&order_url).await.to_string());
    (seen, harness::http01_challenge(&settled))
}

/// The high-severity hole of an open redirect into the CA's own network: an account that
/// answers its http-01 challenge with a redirect to an address the VA must never contact
/// (every spelling of the unspecified, link-local — the cloud metadata address —,
/// multicast and broadcast addresses, and names resolving there) gets a `connection`
/// problem naming the address, and no connection is made: the server behind those
/// addresses (this one, which 0.0.0.0 would reach) never sees a request. A body holding
/// a secret reaches no client-visible byte, only the operators' audit record.
#[tokio::test]
async fn the_validator_does_not_reach_or_reveal_internal_services() {
    let targets: Vec<String> = [
        "http://0.0.0.0:PORT/latest/meta-data/",
        "http://0:PORT/x",
        "http://0x00000000:PORT/x",
        "http://[::]:PORT/x",
        "http://[::ffff:0.0.0.0]:PORT/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://0xa9fea9fe/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[fe80::1]:PORT/x",
        "http://224.0.0.1:PORT/x",
        "http://[ff02::1]:PORT/x",
        "http://255.255.255.255:PORT/x",
        "http://zero.test:PORT/x",
        "http://metadata.test/latest/meta-data/",
        "http://mapped-metadata.test/latest/meta-data/",
        // Followed (leak.test is allowed): its path and query are not the client's to see.
        "http://leak.test:PORT/x?session=q-secret-77",
    ]
    .map(String::from)
    .to_vec();
    let refused = targets.len() - 1;
    let hits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = redirecting_server(Arc::new(targets.clone()), hits.clone()).await;
    let ca = TestCa::start_with(move |c| {
        c.validation.http01_port = port;
        c.validation.timeout_secs = 3;
    })
    .await;
    let acme = ca.account().await;

    for (i, target) in targets.iter().enumerate().take(refused) {
        let name = format!("to-{i}.test");
        let (seen, chall) = client_view(&acme, &name).await;
        let err = &chall["error"];
        assert_eq!(
            err["type"],
            ProblemType::Connection.uri(),
            "{target}: {err}"
        );
        let detail = err["detail"].as_str().unwrap();
        assert!(
            detail.contains("the CA does not connect to"),
            "{target}: {detail}"
        );
        assert!(!seen.contains(SECRET), "{target}: {seen}");
        // A redirect target is shown as its origin only.
        assert!(!seen.contains("meta-data"), "{target}: {seen}");
        // The refused hop was never contacted: no address used, no status.
        let hops = chall["validationRecord"]["hops"].as_array().unwrap();
        assert_eq!(hops.len(), 2, "{target}: {hops:?}");
        assert_eq!(hops[0]["status"], 302, "{target}: {hops:?}");
        assert!(hops[1].get("addressUsed").is_none(), "{target}: {hops:?}");
        assert!(hops[1].get("status").is_none(), "{target}: {hops:?}");
    }

    // A followed redirect: the target's path and query stay the operators'.
    let (seen, chall) = client_view(&acme, &format!("to-{refused}.test")).await;
    assert_eq!(
        chall["error"]["type"],
        ProblemType::IncorrectResponse.uri(),
        "{chall}"
    );
    let hops = chall["validationRecord"]["hops"].as_array().unwrap();
    assert_eq!(
        hops[1]["url"],
        format!("http://leak.test:{port}"),
        "{hops:?}"
    );
    assert_eq!(hops[1]["status"], 200, "{hops:?}");
    assert!(
        !seen.contains("q-secret-77") && !seen.contains(SECRET),
        "{seen}"
    );

    // A name resolving to 0.0.0.0 is refused at the first hop.
    let (seen, chall) = client_view(&acme, "zero.test").await;
    let detail = chall["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("zero.test resolves only to addresses the CA does not connect to: 0.0.0.0"),
        "{detail}"
    );
    assert!(!seen.contains(SECRET), "{seen}");
    assert_eq!(*hits.lock().unwrap(), Vec::<String>::new());

    // A body holding a secret: the client learns that it was not the key authorization,
    // not what it was.
    let (seen, chall) = client_view(&acme, "leak.test").await;
    assert_eq!(
        chall["error"]["type"],
        ProblemType::IncorrectResponse.uri(),
        "{chall}"
    );
    assert!(!seen.contains(SECRET), "{seen}");
    assert!(!seen.contains(&SECRET[..12]), "{seen}");
    // Operators still see what was read, in the audit record.
    let audit = ca.store.audit_entries(0, i64::MIN, 10_000).await.unwrap();
    let diagnostic = audit
        .iter()
        .filter(|e| e.action == "validation")
        .map(|e| e.details.to_string())
        .find(|d| d.contains("leak.test"))
        .expect("the validation was audited");
    assert!(diagnostic.contains(SECRET), "{diagnostic}");
}

/// Without the test switch the VA does not validate against loopback at all: a name
/// resolving to 127.0.0.1 is refused before any connection, and an IP identifier on
/// loopback is refused at newOrder, with nothing stored.
#[tokio::test]
async fn loopback_is_refused_without_the_test_switch() {
    let hits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = redirecting_server(Arc::new(Vec::new()), hits.clone()).await;
    let ca = TestCa::start_with(move |c| {
        c.validation.http01_port = port;
        c.validation.allow_loopback = false;
    })
    .await;
    let acme = ca.account().await;
    let (seen, chall) = client_view(&acme, "local.test").await;
    let err = &chall["error"];
    assert_eq!(err["type"], ProblemType::Connection.uri(), "{err}");
    assert_eq!(
        err["detail"],
        "local.test resolves only to addresses the CA does not connect to: 127.0.0.1 (a loopback address)",
    );
    assert!(!seen.contains(SECRET), "{seen}");
    assert_eq!(*hits.lock().unwrap(), Vec::<String>::new());
    let hops = chall["validationRecord"]["hops"].as_array().unwrap();
    assert!(hops[0].get("addressUsed").is_none(), "{hops:?}");

    let before = ca.store.snapshot().await.unwrap();
    for ip in ["127.0.0.1", "::1"] {
        let r = acme
            .post(
                &acme.dir.new_order.clone(),
                Some(&json!({"identifiers": [{"type": "ip", "value": ip}]})),
            )
            .await;
        let problem = r.assert_problem(ProblemType::RejectedIdentifier, 400);
        assert!(problem.detail.contains("loopback"), "{ip}: {problem:?}");
    }
    let after = ca.store.snapshot().await.unwrap();
    assert_eq!(before, after, "a refused order changed the store");
}
