//! The agent against a small fake agent listener on loopback (the real CA's listener is
//! tested elsewhere): enrolment with the pin checked, the files it writes, a job polled,
//! run and answered over mutual TLS, and the agent stopping on 401.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certwright_proto::types::{ChallengeType, Identifier};
use certwright_va::remote::{
    EnrollRequest, EnrollResponse, EnrolmentToken, Job, JobKind, JobResult, PollRequest, CA_PATH,
    ENROLL_PATH, POLL_PATH, RENEW_PATH, RESULT_PATH,
};
use certwright_va_agent::files::{AgentDir, CA_FILE, CERT_FILE, KEY_FILE, STATE_FILE};
use certwright_va_agent::{enroll, run};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(60);

struct FakeCa {
    addr: SocketAddr,
    ca_pem: String,
    ca_der: Vec<u8>,
    results: Arc<Mutex<Vec<(String, JobResult, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCa {
    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn token(&self, pin: [u8; 32]) -> String {
        EnrolmentToken {
            id: "tok1".into(),
            secret: "s3cret".into(),
            ca_sha256: pin,
        }
        .to_string()
    }

    /// Serves the agent CA, enrolment (a certificate due for renewal) and renewal; polls
    /// get one job, then (once its result is in and the agent renewed) 401 as if the agent
    /// had been removed.
    async fn start() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fake agent CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_pem = ca_cert.pem();
        let ca_der = ca_cert.der().to_vec();
        let issuer = Arc::new(Issuer::new(ca_params, ca_key));

        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca_der.clone())).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .unwrap();
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let results = Arc::new(Mutex::new(Vec::new()));
        let served_job = Arc::new(Mutex::new(false));
        let renewed = Arc::new(Mutex::new(false));
        let (r, pem) = (results.clone(), ca_pem.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, issuer, results, pem, served_job, renewed) = (
                    acceptor.clone(),
                    issuer.clone(),
                    r.clone(),
                    pem.clone(),
                    served_job.clone(),
                    renewed.clone(),
                );
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let authenticated = tls.get_ref().1.peer_certificates().is_some();
                    let Some((method, path, body)) = read_request(&mut tls).await else {
                        return;
                    };
                    let (status, body) = handle(
                        &method,
                        &path,
                        &body,
                        authenticated,
                        &issuer,
                        &pem,
                        &results,
                        &served_job,
                        &renewed,
                    );
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            addr,
            ca_pem,
            ca_der,
            results,
            task,
        }
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut words = head.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, buf[head_end..head_end + len].to_vec()))
}

fn problem(status: &str, detail: &str) -> (String, String) {
    (
        status.to_string(),
        serde_json::json!({"type": "urn:ietf:params:acme:error:unauthorized", "detail": detail})
            .to_string(),
    )
}

#[allow(clippy::too_many_arguments)]
fn handle(
    method: &str,
    path: &str,
    body: &[u8],
    authenticated: bool,
    issuer: &Issuer<'static, KeyPair>,
    ca_pem: &str,
    results: &Mutex<Vec<(String, JobResult, bool)>>,
    served_job: &Mutex<bool>,
    renewed: &Mutex<bool>,
) -> (String, String) {
    match (method, path) {
        ("GET", CA_PATH) => ("200 OK".into(), ca_pem.to_string()),
        ("POST", ENROLL_PATH) | ("POST", RENEW_PATH) => {
            let csr = if path == ENROLL_PATH {
                let req: EnrollRequest = serde_json::from_slice(body).unwrap();
                if !req.token.starts_with("cwva1.tok1.s3cret.") {
                    return problem("401 Unauthorized", "unknown token");
                }
                req.csr
            } else {
                if !authenticated {
                    return problem("401 Unauthorized", "no client certificate");
                }
                serde_json::from_slice::<serde_json::Value>(body).unwrap()["csr"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            let der = certwright_proto::b64::decode(&csr).unwrap();
            let mut params =
                CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
                    .unwrap();
            params.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            if path == ENROLL_PATH {
                // Two thirds of its lifetime are over at once: the agent renews at start.
                let now = time::OffsetDateTime::now_utc();
                params.params.not_before = now - time::Duration::minutes(20);
                params.params.not_after = now + time::Duration::minutes(10);
            } else {
                *renewed.lock().unwrap() = true;
            }
            let cert = params.signed_by(issuer).unwrap();
            let resp = EnrollResponse {
                name: "lab-1".into(),
                segment: "lab".into(),
                certificate: cert.pem(),
                ca: ca_pem.to_string(),
                not_after: 0,
            };
            ("200 OK".into(), serde_json::to_string(&resp).unwrap())
        }
        ("POST", POLL_PATH) => {
            if !authenticated {
                return problem("401 Unauthorized", "no client certificate");
            }
            let poll: PollRequest = serde_json::from_slice(body).unwrap();
            if poll.segment.as_deref().is_some_and(|s| s != "lab") {
                return problem(
                    "403 Forbidden",
                    "an agent receives only its own segment's jobs",
                );
            }
            let mut served = served_job.lock().unwrap();
            if *served {
                // Once the result is in and the agent renewed, the agent is "removed".
                if results.lock().unwrap().is_empty() || !*renewed.lock().unwrap() {
                    return ("204 No Content".into(), String::new());
                }
                return problem("401 Unauthorized", "this agent was removed");
            }
            *served = true;
            let job = Job {
                id: "job-1".into(),
                kind: JobKind::Validate,
                challenge: ChallengeType::Http01,
                identifier: Identifier::ip("127.0.0.1"),
                wildcard: false,
                token: "tok".into(),
                key_authorization: "tok.thumb".into(),
                account_uri: "https://ca.test/acme/acct/1".into(),
                caa_identities: vec![],
                check_caa: false,
                http01_port: 1,
                tlsalpn01_port: 1,
                timeout_ms: 2000,
            };
            ("200 OK".into(), serde_json::to_string(&job).unwrap())
        }
        ("POST", p) if p.starts_with(RESULT_PATH) => {
            let result: JobResult = serde_json::from_slice(body).unwrap();
            results.lock().unwrap().push((
                p[RESULT_PATH.len()..].to_string(),
                result,
                authenticated,
            ));
            ("204 No Content".into(), String::new())
        }
        _ => problem("404 Not Found", "no such path"),
    }
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_wrong_pin_is_refused_and_nothing_is_written() {
    let ca = FakeCa::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = AgentDir::new(tmp.path().join("agent"));
    let mut pin = certwright_va::remote::sha256(&ca.ca_der);
    pin[5] ^= 0x40;
    let err = tokio::time::timeout(
        BOUND,
        enroll::enroll(&ca.url(), &ca.token(pin), &dir, false),
    )
    .await
    .unwrap()
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("does not match the enrolment token"),
        "{text}"
    );
    assert!(!dir.dir.exists(), "nothing may be written");
}

#[tokio::test]
async fn enrols_then_runs_a_job_and_stops_on_401() {
    let ca = FakeCa::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = AgentDir::new(tmp.path().join("agent"));
    let token = ca.token(certwright_va::remote::sha256(&ca.ca_der));

    let done = tokio::time::timeout(BOUND, enroll::enroll(&ca.url(), &token, &dir, false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state.name, "lab-1");
    assert_eq!(done.state.segment, "lab");
    assert_eq!(done.state.servers, vec![ca.url()]);
    assert_eq!(mode(&dir.dir), 0o700);
    for f in [KEY_FILE, CERT_FILE, CA_FILE, STATE_FILE] {
        assert_eq!(mode(&dir.path(f)), 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path(CA_FILE)).unwrap(),
        ca.ca_pem
    );
    let key_before = std::fs::read(dir.path(KEY_FILE)).unwrap();
    let cert_before = std::fs::read(dir.path(CERT_FILE)).unwrap();

    // A second enrolment into the same directory is refused without --force.
    let err = enroll::enroll(&ca.url(), &token, &dir, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.path(KEY_FILE)).unwrap(), key_before);

    // Run: one job (an address the agent refuses: loopback), its result posted over
    // mutual TLS, then 401 stops the agent with an error.
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let outcome = tokio::time::timeout(
        BOUND,
        run::run(
            run::RunOptions {
                dir: dir.clone(),
                servers: vec![],
                dns: None,
                deny: vec![],
                max_concurrent: 2,
                metrics_listen: None,
            },
            rx,
        ),
    )
    .await
    .expect("the agent stops by itself");
    let err = outcome.unwrap_err();
    assert!(err.downcast_ref::<run::Removed>().is_some(), "{err:#}");
    let err = format!("{err:#}");
    assert!(err.contains("401") && err.contains("removed"), "{err}");
    let results = ca.results.lock().unwrap();
    assert_eq!(results.len(), 1);
    let (id, result, authenticated) = &results[0];
    assert_eq!(id, "job-1");
    assert!(authenticated, "results come with the client certificate");
    let problem = result.error.as_ref().expect("loopback is refused");
    assert!(problem.detail.contains("127.0.0.1"), "{}", problem.detail);
    // The certificate was renewed (two thirds of its lifetime had passed): a new key and
    // certificate that fit, 0600.
    let id = run::load_identity(&dir).unwrap();
    assert_ne!(id.cert_pem.as_bytes(), cert_before);
    assert_ne!(id.key_pem.as_bytes(), key_before);
    for f in [KEY_FILE, CERT_FILE] {
        assert_eq!(mode(&dir.path(f)), 0o600, "{f}");
    }
}

/// An agent enrolled with `ca` in a new temporary directory (kept while the first lives).
async fn enrolled(ca: &FakeCa) -> (tempfile::TempDir, AgentDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = AgentDir::new(tmp.path().join("agent"));
    let token = ca.token(certwright_va::remote::sha256(&ca.ca_der));
    enroll::enroll(&ca.url(), &token, &dir, false)
        .await
        .unwrap();
    (tmp, dir)
}

/// A 403 to a poll (the state names a segment the certificate is not for) cannot get
/// better by retrying: the agent stops at once, as for a 401, and says why.
#[tokio::test]
async fn a_poll_refused_for_its_segment_stops_the_agent() {
    let ca = FakeCa::start().await;
    let (_tmp, dir) = enrolled(&ca).await;
    let path = dir.path(STATE_FILE);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["segment"] = "office".into();
    std::fs::write(&path, state.to_string()).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        BOUND,
        run::run(
            run::RunOptions {
                dir: dir.clone(),
                servers: vec![],
                dns: None,
                deny: vec![],
                max_concurrent: 1,
                metrics_listen: None,
            },
            rx,
        ),
    )
    .await
    .expect("the agent stops by itself")
    .unwrap_err();
    assert!(err.downcast_ref::<run::Refused>().is_some(), "{err:#}");
    let text = format!("{err:#}");
    assert!(
        text.contains("403") && text.contains("\"office\"") && text.contains("enrol it again"),
        "{text}"
    );
    // Stopped at the first refusal, not after backing off.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(ca.results.lock().unwrap().is_empty());
}

#[tokio::test]
async fn shutdown_stops_a_polling_agent() {
    let ca = FakeCa::start().await;
    let (_tmp, dir) = enrolled(&ca).await;
    // Poll a server that is not there: the agent backs off until told to stop.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(run::run(
        run::RunOptions {
            dir: dir.clone(),
            servers: vec![nowhere],
            dns: None,
            deny: vec!["192.0.2.0/24".into()],
            max_concurrent: 1,
            metrics_listen: None,
        },
        rx,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(true).unwrap();
    tokio::time::timeout(BOUND, agent)
        .await
        .expect("stops when told")
        .unwrap()
        .expect("a clean stop");
}

/// The binary: exit status 0 after SIGTERM, 3 when the CA refuses the agent (401).
#[tokio::test]
async fn the_binary_exits_0_on_sigterm_and_3_when_removed() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let ca = FakeCa::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agent");
    let token = ca.token(certwright_va::remote::sha256(&ca.ca_der));
    let bin = env!("CARGO_BIN_EXE_certwright-va-agent");
    let dir_s = dir.to_str().unwrap().to_owned();
    let url = ca.url();
    let enrolled = tokio::task::spawn_blocking({
        let (dir_s, url) = (dir_s.clone(), url.clone());
        move || {
            Command::new(bin)
                .args(["enroll", "--server", &url, "--dir", &dir_s])
                .env("CERTWRIGHT_VA_AGENT_TOKEN", token)
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(BOUND, enrolled)
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = Command::new(bin)
        .args(["status", "--dir", &dir_s])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("segment:     lab"), "{text}");

    // SIGTERM while backing off from a server that is not there: exit 0.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut child = Command::new(bin)
        .args([
            "run",
            "--dir",
            &dir_s,
            "--server",
            &nowhere,
            "--max-concurrent",
            "1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let pid = child.id();
    let exited = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        // The agent logs this once its signal handlers are in place.
        for line in lines.by_ref() {
            if line.unwrap().contains("agent starting") {
                break;
            }
        }
        let kill = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        for _ in lines {}
        child.wait().unwrap()
    });
    let status = tokio::time::timeout(BOUND, exited).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");

    // Against the fake CA: one job, a renewal, then 401: exit 3.
    let run = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["run", "--dir", &dir_s])
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(BOUND, run).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("removed"), "{stderr}");
    assert!(
        stderr.contains("job-1") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours when not a terminal: {stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}
