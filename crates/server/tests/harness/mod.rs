//! In-process test fixture: a certwright-ca on a loopback port (plain HTTP), an http-01
//! responder it validates against, and a small ACME client built on certwright-proto.

#![allow(dead_code)]

pub mod pg;
pub mod x509;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use certwright_proto::jws::{sign, Signer};
use certwright_proto::types::{Directory, Identifier};
use certwright_proto::{AccountKey, FlattenedJws, KeyType, Problem, ProblemType};
use certwright_server::app::{CaServer, Options};
use certwright_server::clock::Clock;
use certwright_server::config::{Config, PkiHttpListen};
use certwright_server::store::Store;
use certwright_server::va::NameResolver;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// What the http-01 responder answers for a token.
#[derive(Clone, Debug)]
pub enum Answer {
    Body(String),
    Status(u16),
    Redirect(String),
    /// The body, after a pause (a slow server; keeps a validation in flight).
    Delayed(Duration, String),
}

/// An http-01 responder on 127.0.0.1.
#[derive(Clone)]
pub struct Responder {
    pub port: u16,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
}

async fn respond(
    State(answers): State<Arc<Mutex<HashMap<String, Answer>>>>,
    Path(token): Path<String>,
) -> Response {
    let answer = answers.lock().unwrap().get(&token).cloned();
    match answer {
        Some(Answer::Body(b)) => b.into_response(),
        Some(Answer::Status(s)) => StatusCode::from_u16(s).unwrap().into_response(),
        Some(Answer::Redirect(to)) => {
            let mut h = HeaderMap::new();
            h.insert(header::LOCATION, to.parse().unwrap());
            (StatusCode::FOUND, h).into_response()
        }
        Some(Answer::Delayed(pause, b)) => {
            tokio::time::sleep(pause).await;
            b.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl Responder {
    pub async fn start() -> Self {
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/.well-known/acme-challenge/{token}",
                axum::routing::get(respond),
            )
            .with_state(answers.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { port, answers }
    }

    pub fn set(&self, token: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }
}

/// A running CA.
pub struct TestCa {
    pub base: String,
    pub addr: SocketAddr,
    pub store: Store,
    pub clock: Clock,
    pub data_dir: PathBuf,
    pub responder: Responder,
    pub root_pem: String,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), e.g. `http://127.0.0.1:PORT`.
    pub admin_base: String,
    /// The admin endpoints' state (for requests that must look remote).
    pub admin: Arc<certwright_server::admin::Admin>,
    /// The plain-HTTP PKI listener as named in certificates (`pki_base_url`), e.g.
    /// `http://127.0.0.1:PORT`; the base URL itself when a test turned the listener off.
    pub pki_base: String,
    /// Reloads the policy in force from a file, as a SIGHUP does.
    pub policy: certwright_server::app::PolicyReloader,
    _tmp: Option<tempfile::TempDir>,
    pki_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Every name is 127.0.0.1, except `refused.test`, which is 127.0.0.2 where nothing
/// listens, and names that resolve to addresses the VA must never contact:
/// `zero.test` (0.0.0.0), `metadata.test` (169.254.169.254) and `mapped-metadata.test`
/// (::ffff:169.254.169.254).
fn resolver() -> NameResolver {
    let mut table = HashMap::new();
    table.insert(
        "refused.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))],
    );
    table.insert(
        "zero.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
    );
    table.insert(
        "metadata.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))],
    );
    table.insert(
        "mapped-metadata.test".to_string(),
        vec!["::ffff:169.254.169.254".parse().unwrap()],
    );
    NameResolver::Static {
        table: Arc::new(table),
        default: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

impl TestCa {
    /// A fresh CA in a new temporary directory.
    pub async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let responder = Responder::start().await;
        let mut ca = Self::start_in(dir, None, responder, Clock::system(), |_| {}).await;
        ca._tmp = Some(tmp);
        ca
    }

    /// A fresh CA with a configuration tweak.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let responder = Responder::start().await;
        let mut ca = Self::start_in(dir, None, responder, Clock::system(), tweak).await;
        ca._tmp = Some(tmp);
        ca
    }

    /// A CA on `data_dir` (reusing `addr` if given).
    pub async fn start_in(
        data_dir: PathBuf,
        addr: Option<SocketAddr>,
        responder: Responder,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = TcpListener::bind(addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            listen: addr,
            tls: false,
            data_dir: data_dir.clone(),
            database_url: database_url_for(&data_dir).await,
            base_url: Some(format!("http://{addr}")),
            ..Config::default()
        };
        config.validation.http01_port = responder.port;
        config.validation.timeout_secs = 5;
        // The challenge servers listen on loopback (the test switch).
        config.validation.allow_loopback = true;
        // The plain-HTTP PKI listener on a port of its own (a test may turn it off).
        let pki_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pki_addr = pki_listener.local_addr().unwrap();
        config.pki_http_listen = PkiHttpListen(Some(pki_addr));
        tweak(&mut config);
        let pki_listener = (config.pki_http_listen.0 == Some(pki_addr)).then_some(pki_listener);
        // A test that names a DNS server (validation.dns_resolver) gets real lookups.
        let resolver = config.validation.dns_resolver.is_none().then(resolver);
        let server = CaServer::open(
            config,
            Options {
                resolver,
                clock: clock.clone(),
                admin: false,
                ..Options::default()
            },
        )
        .await
        .unwrap();
        let base = server.state.urls.base.clone();
        let pki_base = server.config.pki_base_url();
        let (pki_tx, pki_rx) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = pki_listener {
            tokio::spawn(certwright_server::app::serve_pki_http(
                server.state.clone(),
                listener,
                async {
                    let _ = pki_rx.await;
                },
            ));
        }
        let store = server.store.clone();
        let root_pem = server.root_pem.clone();
        let policy =
            certwright_server::app::PolicyReloader::new(server.state.ra.policy_handle().clone());
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_base = format!("http://{}", admin_listener.local_addr().unwrap());
        let admin = server.admin.clone();
        let admin_state = admin.clone();
        tokio::spawn(async move {
            let _ = certwright_server::admin::serve_admin(
                admin_listener,
                admin,
                std::future::pending(),
            )
            .await;
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            base,
            addr,
            store,
            clock,
            data_dir,
            responder,
            root_pem,
            admin_base,
            admin: admin_state,
            pki_base,
            policy,
            _tmp: None,
            pki_shutdown: Some(pki_tx),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Takes ownership of the temporary data directory (and the test database with it).
    pub fn adopt(&mut self, tmp: Option<tempfile::TempDir>) {
        self._tmp = tmp;
    }

    /// Stops serving and returns the pieces to start again on the same data.
    pub async fn stop(mut self) -> (Option<tempfile::TempDir>, PathBuf, SocketAddr, Responder) {
        if let Some(tx) = self.pki_shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
        (
            self._tmp.take(),
            self.data_dir.clone(),
            self.addr,
            self.responder.clone(),
        )
    }

    /// A client with a fresh key of `kind` (not yet registered).
    pub async fn client(&self, kind: KeyType) -> Acme {
        Acme::new(&self.base, AccountKey::generate(kind).unwrap()).await
    }

    /// A registered client (ES256).
    pub async fn account(&self) -> Acme {
        let mut c = self.client(KeyType::EcP256).await;
        c.register().await;
        c
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        // The owner of the data directory also removes the test's PostgreSQL database.
        if self._tmp.is_none() {
            return;
        }
        let Ok(url) = std::fs::read_to_string(self.data_dir.join(DATABASE_MARKER)) else {
            return;
        };
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let admin = pg::admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Marker file in a test data directory holding its PostgreSQL database URL.
const DATABASE_MARKER: &str = "test-database-url";

/// Whether the suite runs on PostgreSQL (`CERTWRIGHT_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("CERTWRIGHT_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// The database for a test CA: SQLite in its data directory (None: the default), or a
/// fresh PostgreSQL database of its own, created on first use and reused on restarts.
pub async fn database_url_for(data_dir: &std::path::Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let marker = data_dir.join(DATABASE_MARKER);
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let url = pg::create_database().await;
    std::fs::write(&marker, &url).unwrap();
    Some(url)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    pub fn location(&self) -> String {
        self.header("location").expect("Location header")
    }
    /// The problem document, asserting the content type.
    pub fn problem(&self) -> Problem {
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "status {} body {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        serde_json::from_slice(&self.body).unwrap()
    }
    /// Asserts a problem of `kind` with HTTP `status`.
    pub fn assert_problem(&self, kind: ProblemType, status: u16) -> Problem {
        let p = self.problem();
        assert_eq!(
            (p.kind.clone(), self.status),
            (kind, status),
            "problem: {p}"
        );
        assert_eq!(p.status, Some(status));
        assert!(!p.detail.is_empty(), "a problem needs a detail");
        p
    }
}

/// A minimal ACME client for tests: signs what it is told, no retries.
pub struct Acme {
    pub http: reqwest::Client,
    pub dir: Directory,
    pub key: AccountKey,
    pub kid: Option<String>,
    /// Like a load balancer: requests for `routes.0` go to each of `routes.1` in turn.
    pub routes: Option<(String, Vec<String>)>,
    next_route: std::sync::atomic::AtomicUsize,
}

impl Acme {
    pub async fn new(base: &str, key: AccountKey) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .no_proxy()
            .build()
            .unwrap();
        let dir = http
            .get(format!("{base}/directory"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            http,
            dir,
            key,
            kid: None,
            routes: None,
            next_route: Default::default(),
        }
    }

    /// The same client state with another key (not registered).
    pub fn rekeyed(&self, key: AccountKey) -> Acme {
        Acme {
            http: self.http.clone(),
            dir: self.dir.clone(),
            key,
            kid: None,
            routes: self.routes.clone(),
            next_route: Default::default(),
        }
    }

    /// Where a request for `url` is sent (the next instance, when routed).
    pub fn route(&self, url: &str) -> String {
        match &self.routes {
            Some((base, targets)) if url.starts_with(base.as_str()) => {
                let i = self
                    .next_route
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("{}{}", targets[i % targets.len()], &url[base.len()..])
            }
            _ => url.to_owned(),
        }
    }

    pub async fn nonce(&self) -> String {
        let r = self
            .http
            .head(self.route(&self.dir.new_nonce))
            .send()
            .await
            .unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    pub fn signer(&self) -> Signer {
        match &self.kid {
            Some(kid) => Signer::Kid(kid.clone()),
            None => Signer::Jwk(self.key.jwk()),
        }
    }

    /// A signed JWS for `url` with a fresh nonce.
    pub async fn jws(&self, url: &str, payload: Option<&Value>) -> FlattenedJws {
        let nonce = self.nonce().await;
        let body = payload.map(|p| p.to_string()).unwrap_or_default();
        sign(
            &self.key,
            &self.signer(),
            Some(&nonce),
            url,
            body.as_bytes(),
        )
        .unwrap()
    }

    pub async fn send(&self, url: &str, body: Vec<u8>, content_type: &str) -> Resp {
        capture("request", &body);
        let r = self
            .http
            .post(self.route(url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap().to_vec();
        capture("response", &body);
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn send_jws(&self, url: &str, jws: &FlattenedJws) -> Resp {
        self.send(
            url,
            serde_json::to_vec(jws).unwrap(),
            "application/jose+json",
        )
        .await
    }

    /// POST a payload given as raw bytes (signed as they are: invalid UTF-8, duplicate
    /// keys, …).
    pub async fn post_raw_payload(&self, url: &str, payload: &[u8]) -> Resp {
        let nonce = self.nonce().await;
        let jws = sign(&self.key, &self.signer(), Some(&nonce), url, payload).unwrap();
        self.send_jws(url, &jws).await
    }

    /// POST (payload) or POST-as-GET (None).
    pub async fn post(&self, url: &str, payload: Option<&Value>) -> Resp {
        let jws = self.jws(url, payload).await;
        self.send_jws(url, &jws).await
    }

    pub async fn register(&mut self) -> Resp {
        let url = self.dir.new_account.clone();
        let r = self
            .post(
                &url,
                Some(&json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.com"]})),
            )
            .await;
        assert!(
            r.status == 201 || r.status == 200,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        self.kid = Some(r.location());
        r
    }

    pub async fn new_order(&self, names: &[&str]) -> Resp {
        let ids: Vec<Identifier> = names.iter().map(|n| Identifier::dns(*n)).collect();
        let url = self.dir.new_order.clone();
        self.post(&url, Some(&json!({ "identifiers": ids }))).await
    }

    /// Publishes key authorizations on the responder and answers every pending http-01
    /// challenge of the order; waits (bounded) for the authorizations to settle.
    pub async fn authorize(&self, order: &Value, responder: &Responder) -> Vec<Value> {
        let thumb = self.key.jwk().thumbprint();
        let mut results = Vec::new();
        for authz_url in order["authorizations"].as_array().unwrap() {
            let authz_url = authz_url.as_str().unwrap();
            let authz = self.post(authz_url, None).await.json();
            if authz["status"] == "pending" {
                let chall = http01_challenge(&authz);
                let token = chall["token"].as_str().unwrap();
                responder.set(token, Answer::Body(format!("{token}.{thumb}")));
                let r = self
                    .post(chall["url"].as_str().unwrap(), Some(&json!({})))
                    .await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            }
            results.push(self.wait_authz(authz_url).await);
        }
        results
    }

    /// Polls an authorization until it leaves `pending` (at most 10 s).
    pub async fn wait_authz(&self, url: &str) -> Value {
        for _ in 0..200 {
            let a = self.post(url, None).await.json();
            if a["status"] != "pending" {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("authorization {url} stayed pending");
    }

    /// Polls an order until its status is not `pending`/`processing` (at most 10 s).
    pub async fn wait_order(&self, url: &str) -> Value {
        for _ in 0..200 {
            let o = self.post(url, None).await.json();
            if o["status"] != "pending" && o["status"] != "processing" {
                return o;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("order {url} did not settle");
    }

    pub async fn finalize(&self, order: &Value, csr_der: &[u8]) -> Resp {
        let payload = json!({"csr": certwright_proto::b64::encode(csr_der)});
        self.post(order["finalize"].as_str().unwrap(), Some(&payload))
            .await
    }

    /// Full issuance; returns (order URL, final order, PEM chain).
    pub async fn issue(&self, names: &[&str], responder: &Responder) -> (String, Value, String) {
        let r = self.new_order(names).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let order_url = r.location();
        let order = r.json();
        for a in self.authorize(&order, responder).await {
            assert_eq!(a["status"], "valid", "{a}");
        }
        let ready = self.wait_order(&order_url).await;
        assert_eq!(ready["status"], "ready", "{ready}");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let r = self.finalize(&ready, &csr(names, &key)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let done = self.wait_order(&order_url).await;
        assert_eq!(done["status"], "valid", "{done}");
        let cert = self.post(done["certificate"].as_str().unwrap(), None).await;
        assert_eq!(cert.status, 200);
        (order_url, done, String::from_utf8(cert.body).unwrap())
    }
}

/// A CSR (DER) for `names` with no subject, signed by `key`.
pub fn csr(names: &[&str], key: &rcgen::KeyPair) -> Vec<u8> {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serialize_request(key).unwrap().der().to_vec()
}

/// Splits a PEM chain into DER certificates.
pub fn pem_chain(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// The ARI certificate identifier of a certificate.
pub fn ari_id(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    certwright_proto::ari::cert_id(&aki, cert.raw_serial())
}

/// With `CERTWRIGHT_CAPTURE_DIR` set, keeps every request and response body the test
/// client exchanges (scripts/fuzz-seeds turns them into fuzzing seed corpora).
fn capture(kind: &str, body: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let Ok(dir) = std::env::var("CERTWRIGHT_CAPTURE_DIR") else {
        return;
    };
    if body.is_empty() {
        return;
    }
    let dir = std::path::Path::new(&dir).join(kind);
    let _ = std::fs::create_dir_all(&dir);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let _ = std::fs::write(dir.join(format!("{}-{n}", std::process::id())), body);
}

/// The http-01 challenge of an authorization object.
pub fn http01_challenge(authz: &Value) -> Value {
    authz["challenges"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "http-01"))
        .cloned()
        .unwrap_or_else(|| panic!("no http-01 challenge in {authz}"))
}

/// A certificate a test client received: (index of the client in `clients`, certificate
/// URL, PEM chain).
pub type Received = (usize, String, String);

/// The lower-case hex serial of the leaf of a PEM chain, as the store keys it.
pub fn leaf_serial(chain: &str) -> String {
    let der = pem_chain(chain).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial_as_string().replace(':', "").to_lowercase()
}

/// Waits (polling, at most `within`) until `store` has no integrity violations, i.e. a
/// (re)started CA has settled what was in flight; fails with them and `logs()` otherwise.
pub async fn wait_for_integrity(store: &Store, within: Duration, logs: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let violations = store.integrity_violations().await.unwrap();
        if violations.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after {within:?}: {violations:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The subjectAltNames of `cert` as `dns:NAME` and `ip:ADDRESS` (anything else in
/// x509-parser's debug form).
pub fn san_strings(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    cert.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(o) if o.len() == 4 => {
                format!("ip:{}", std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3]))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

/// Every certificate the clients received is in `store` under its own serial (none
/// twice), with the exact chain served, and still downloads. `context` prefixes failures.
pub async fn assert_received_are_stored(
    store: &Store,
    clients: &[Arc<Acme>],
    received: &[Received],
    context: &str,
) {
    let mut serials: Vec<String> = received.iter().map(|(_, _, c)| leaf_serial(c)).collect();
    serials.sort();
    let total = serials.len();
    serials.dedup();
    assert_eq!(serials.len(), total, "{context}: a serial was served twice");
    for (client, url, chain) in received {
        let serial = leaf_serial(chain);
        let stored = store
            .certificate(&serial)
            .await
            .unwrap_or_else(|e| panic!("{context}: received {serial} is not stored: {e}"));
        assert_eq!(
            stored.chain_pem, *chain,
            "{context}: stored chain of {serial}"
        );
        let again = clients[*client].post(url, None).await;
        assert_eq!(again.status, 200, "{context}: {url}");
        assert_eq!(
            String::from_utf8(again.body).unwrap(),
            *chain,
            "{context}: {url}"
        );
    }
}

/// Seconds one openssl run may take.
pub const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the real `openssl` in `dir` (bounded in time, no proxy); returns (success,
/// stdout+stderr).
pub async fn openssl(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let child = tokio::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        // Loopback only: no proxy in between.
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env("no_proxy", "*")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl runs");
    let out = tokio::time::timeout(OPENSSL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("openssl {args:?} took longer than {OPENSSL_TIMEOUT:?}"))
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
