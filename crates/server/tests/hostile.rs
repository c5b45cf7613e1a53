//! Hostile requests against the real HTTP stack of a running CA (malformed JWS and
//! payloads are in `acme_errors.rs`): slow clients, oversized headers, HTTP/1.0 and
//! HTTP/2, invalid UTF-8, huge numbers, duplicate keys, unknown fields, 10,000
//! identifiers, a CSR with thousands of names, CSRs with odd extensions, and a replay
//! storm of one nonce. Each gets a problem document (or a closed connection where HTTP
//! itself is broken), and a legitimate client keeps being served meanwhile.

mod harness;

use std::time::{Duration, Instant};

use certwright_proto::ProblemType;
use harness::TestCa;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory of this process (the CA runs in it), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Sends raw bytes on a fresh connection and reads the answer until the server closes
/// (bounded).
async fn raw(ca: &TestCa, request: &[u8]) -> String {
    let mut s = TcpStream::connect(ca.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_without_starving_others() {
    let ca = TestCa::start().await;
    let before = rss_kib();
    // 200 connections that send half a request head and then a byte now and then.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(ca.addr).await.unwrap();
        s.write_all(b"GET /directory HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let dribble = tokio::spawn(async move {
        let started = Instant::now();
        let mut closed = 0;
        // At most 30 s: the server's header timeout is 10 s.
        while started.elapsed() < Duration::from_secs(30) && closed < slow.len() {
            closed = 0;
            for s in slow.iter_mut() {
                if s.write_all(b"X-Slow: a\r\n").await.is_err() {
                    closed += 1;
                    continue;
                }
                let mut buf = [0u8; 512];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
                {
                    if n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408") {
                        closed += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (closed, slow.len())
    });
    // Meanwhile a legitimate client completes a whole issuance.
    let acme = ca.account().await;
    let (_, order, _) = acme.issue(&["busy.example.test"], &ca.responder).await;
    assert_eq!(order["status"], "valid");
    let (closed, total) = dribble.await.unwrap();
    assert_eq!(closed, total, "every slow connection was cut off");
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 200 * 1024, "memory grew by {grown} KiB");
}

#[tokio::test]
async fn broken_http_gets_a_status_or_a_closed_connection() {
    let ca = TestCa::start().await;
    // A header of 1 MiB: refused (431) or the connection closed; never served.
    let big = format!(
        "GET /directory HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = raw(&ca, big.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // Not HTTP at all.
    let answer = raw(&ca, b"\x16\x03\x01\x00\xff garbage\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // HTTP/1.0 is served (and the connection closed after the answer).
    let answer = raw(&ca, b"GET /directory HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.contains("newNonce"), "{answer}");
    // HTTP/2 with prior knowledge on the plain listener (as behind a TLS-terminating
    // proxy): served deliberately.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(format!("{}/directory", ca.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    // The CA still serves.
    assert_eq!(
        ca.account()
            .await
            .new_order(&["ok.example.test"])
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn hostile_payloads_get_problem_documents() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let new_order = acme.dir.new_order.clone();

    // Invalid UTF-8 where JSON is expected (inside a correctly signed JWS).
    let r = acme
        .post_raw_payload(&new_order, &[0x7b, 0xff, 0xfe, 0x7d])
        .await;
    r.assert_problem(ProblemType::Malformed, 400);

    // Huge numbers, duplicate keys and unknown fields in a payload.
    for payload in [
        json!({"identifiers": [{"type": "dns", "value": "n.example.test"}], "notAfter": 1e308}),
        json!({"identifiers": 123456789012345678901234567890_u128.to_string()}),
    ] {
        let r = acme.post(&new_order, Some(&payload)).await;
        r.assert_problem(ProblemType::Malformed, 400);
    }
    // Unknown fields are ignored, as RFC 8555 §7.3 asks of clients and servers alike.
    let r = acme
        .post(
            &new_order,
            Some(&json!({"identifiers": [{"type": "dns", "value": "u.example.test"}], "x-unknown": {"a": [1, 2]}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Duplicate keys: the payload is signed text, so build it by hand.
    let dup = r#"{"identifiers":[{"type":"dns","value":"d1.example.test"}],"identifiers":[{"type":"dns","value":"d2.example.test"}]}"#;
    let r = acme.post_raw_payload(&new_order, dup.as_bytes()).await;
    assert!(
        r.status == 400 || r.status == 201,
        "duplicate keys: a problem or one consistent reading, never a fault: {}",
        String::from_utf8_lossy(&r.body)
    );
    if r.status == 400 {
        r.assert_problem(ProblemType::Malformed, 400);
    }

    // 10,000 identifiers: the body is over the size limit.
    let ids: Vec<_> = (0..10_000)
        .map(|i| json!({"type": "dns", "value": format!("n{i}.example.test")}))
        .collect();
    let r = acme
        .post(&new_order, Some(&json!({"identifiers": ids})))
        .await;
    let p = r.problem();
    assert_eq!(r.status, 413, "{p}");
    // 1,000 fit in the body but not in the policy.
    let ids: Vec<_> = (0..1_000)
        .map(|i| json!({"type": "dns", "value": format!("m{i}.ex.test")}))
        .collect();
    let r = acme
        .post(&new_order, Some(&json!({"identifiers": ids})))
        .await;
    let p = r.problem();
    assert!(r.status == 400 && !p.detail.is_empty(), "{p}");

    // A CSR with 2,000 names for a one-name order.
    let (order_url, order) = {
        let r = acme.new_order(&["csr.example.test"]).await;
        (r.location(), r.json())
    };
    for a in acme.authorize(&order, &ca.responder).await {
        assert_eq!(a["status"], "valid");
    }
    let ready = acme.wait_order(&order_url).await;
    let names: Vec<String> = (0..2000).map(|i| format!("s{i}.example.test")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let r = acme.finalize(&ready, &harness::csr(&refs, &key)).await;
    let p = r.problem();
    assert!(
        matches!(p.kind, ProblemType::BadCsr | ProblemType::Malformed),
        "{p}"
    );
    assert!(r.status == 400 || r.status == 413, "{p}");
    // The order can still be finalized properly.
    let r = acme
        .finalize(&ready, &harness::csr(&["csr.example.test"], &key))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_storm_of_one_nonce_is_accepted_once() {
    let ca = TestCa::start().await;
    let acme = std::sync::Arc::new(ca.account().await);
    let url = acme.kid.clone().unwrap();
    // One signed request, sent 50 times at once.
    let jws = acme.jws(&url, None).await;
    let body = serde_json::to_vec(&jws).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (acme, url, body) = (acme.clone(), url.clone(), body.clone());
        tasks.spawn(async move { acme.send(&url, body, "application/jose+json").await });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        if r.status == 200 {
            ok += 1;
        } else {
            r.assert_problem(ProblemType::BadNonce, 400);
            assert!(
                r.header("replay-nonce").is_some(),
                "a fresh nonce to retry with"
            );
        }
    }
    assert_eq!(ok, 1, "exactly one request with the nonce is served");
}

/// A CSR made by `openssl req` for `name` with these `-addext` arguments (a DNS SAN for
/// `name` unless they hold a subjectAltName).
fn openssl_csr(dir: &std::path::Path, name: &str, addext: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("{name}.der"));
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")));
    if !addext.iter().any(|e| e.starts_with("subjectAltName")) {
        cmd.args(["-addext", &format!("subjectAltName=DNS:{name}")]);
    }
    for ext in addext {
        cmd.args(["-addext", ext]);
    }
    cmd.args(["-outform", "DER", "-out"]).arg(&out);
    let status = certwright_testkit::process::run_bounded(
        &mut cmd,
        certwright_testkit::peers::openssl::OPENSSL_TIMEOUT,
    )
    .status;
    assert!(status.success(), "openssl req {addext:?}");
    std::fs::read(&out).unwrap()
}

/// CSRs asking for what a subscriber must never get — a CA certificate, certificate
/// signing, an unknown critical extension, a 16 KB extension, e-mail and URI names — are
/// refused as badCSR or issued without any of it: the leaf is never a CA, never signs
/// certificates and carries only the CA's own extensions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrs_with_odd_extensions_never_shape_the_certificate() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let tmp = tempfile::tempdir().unwrap();
    let big = format!("1.3.6.1.4.1.55555.2=DER:{}", "ab".repeat(16 * 1024));
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "ca.odd.test",
            vec![
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ),
        (
            "unknown.odd.test",
            vec!["1.3.6.1.4.1.55555.1=critical,DER:0500"],
        ),
        ("big.odd.test", vec![big.as_str()]),
        (
            "eku.odd.test",
            vec!["extendedKeyUsage=codeSigning,emailProtection"],
        ),
        (
            "email.odd.test",
            vec!["subjectAltName=DNS:email.odd.test,email:root@odd.test"],
        ),
        (
            "uri.odd.test",
            vec!["subjectAltName=DNS:uri.odd.test,URI:https://odd.test/"],
        ),
    ];
    for (name, ext) in cases {
        let r = acme.new_order(&[name]).await;
        let (order_url, order) = (r.location(), r.json());
        for a in acme.authorize(&order, &ca.responder).await {
            assert_eq!(a["status"], "valid");
        }
        let ready = acme.wait_order(&order_url).await;
        let r = acme
            .finalize(&ready, &openssl_csr(tmp.path(), name, &ext))
            .await;
        if name.starts_with("email.") || name.starts_with("uri.") {
            let p = r.assert_problem(ProblemType::BadCsr, 400);
            assert!(p.detail.contains("subjectAltName"), "{name}: {p}");
            let still = acme.post(&order_url, None).await.json();
            assert_eq!(
                still["status"], "ready",
                "{name}: a refused CSR changes nothing"
            );
            continue;
        }
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let done = acme.wait_order(&order_url).await;
        let pem = acme.post(done["certificate"].as_str().unwrap(), None).await;
        let der = harness::pem_chain(&String::from_utf8(pem.body).unwrap()).remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        use x509_parser::extensions::ParsedExtension as E;
        for ext in cert.extensions() {
            let oid = ext.oid.to_id_string();
            assert!(
                !oid.starts_with("1.3.6.1.4.1.55555"),
                "{name}: {oid} was copied"
            );
            match ext.parsed_extension() {
                E::BasicConstraints(bc) => assert!(!bc.ca, "{name}: issued a CA certificate"),
                E::KeyUsage(ku) => assert!(
                    !ku.key_cert_sign() && !ku.crl_sign(),
                    "{name}: the leaf may sign certificates: {ku}"
                ),
                E::ExtendedKeyUsage(eku) => assert!(
                    eku.server_auth && !eku.code_signing && !eku.email_protection,
                    "{name}: {eku:?}"
                ),
                _ => {}
            }
        }
        let names: Vec<String> = harness::san_strings(&cert);
        assert_eq!(names, [format!("dns:{name}")], "{name}");
    }
}

/// A body over the limit gets its `413` problem document although the client is still
/// sending it: the CA decides on `Content-Length` before reading, says
/// `Connection: close`, and lingers on the socket so the answer is not destroyed by a
/// reset. A chunked body with no length is cut off at the limit with the same answer.
#[tokio::test]
async fn an_oversized_body_gets_its_413_while_the_client_is_still_sending() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let new_order = acme.dir.new_order.clone();
    let before = ca.store.snapshot().await.unwrap();

    for _ in 0..3 {
        let r = acme
            .send(&new_order, vec![b'{'; 5 << 20], "application/jose+json")
            .await;
        let p = r.assert_problem(ProblemType::Malformed, 413);
        assert!(p.detail.contains("larger than 65536 bytes"), "{p}");
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        assert!(r.header("replay-nonce").is_some());
    }

    // A client that sends its 5 MiB slowly: the answer comes while most of the body is
    // still to be sent; it must still be readable (the CA lingers instead of resetting).
    let mut s = TcpStream::connect(ca.addr).await.unwrap();
    let head = format!(
        "POST /acme/new-order HTTP/1.1\r\nHost: {}\r\nContent-Type: application/jose+json\r\nContent-Length: {}\r\n\r\n",
        ca.addr,
        5 << 20
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = s.into_split();
    // The whole body goes out without a write error (a client such as curl reports a
    // failed write as "connection reset" and never reads the answer).
    let sender = tokio::spawn(async move {
        let chunk = vec![b'{'; 64 * 1024];
        for _ in 0..80 {
            writer.write_all(&chunk).await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writer.flush().await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 413"), "{read:?}: {answer:?}");
    let sent = tokio::time::timeout(Duration::from_secs(15), sender).await;
    assert!(
        matches!(sent, Ok(Ok(Ok(())))),
        "the body could not be sent: {sent:?}"
    );

    // Chunked, no length: refused at the limit, answered all the same.
    let mut s = TcpStream::connect(ca.addr).await.unwrap();
    let head = format!(
        "POST /acme/new-order HTTP/1.1\r\nHost: {}\r\nContent-Type: application/jose+json\r\nTransfer-Encoding: chunked\r\n\r\n",
        ca.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = s.into_split();
    let sender = tokio::spawn(async move {
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
        for _ in 0..80 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:ietf:params:acme:error:malformed"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(15), sender).await;

    // Nothing was stored, and the CA serves the next request as usual.
    let after = ca.store.snapshot().await.unwrap();
    assert_eq!(before, after);
    assert_eq!(acme.new_order(&["after.example.test"]).await.status, 201);
}
