//! A small ACME client for tests, built on certwright-proto (signs what it is told, no
//! retries), and the http-01 responder it publishes key authorizations on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use certwright_proto::jws::{sign, Signer};
use certwright_proto::types::{Directory, Identifier};
use certwright_proto::{AccountKey, FlattenedJws, Problem, ProblemType};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::x509::csr;

/// What the http-01 responder answers for a token.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this body.
    Body(String),
    /// This status and no body.
    Status(u16),
    /// A 302 to this URL.
    Redirect(String),
    /// The body, after a pause (a slow server; keeps a validation in flight).
    Delayed(Duration, String),
}

/// An http-01 responder on 127.0.0.1.
#[derive(Clone)]
pub struct Responder {
    /// The port it listens on (the CA's `validation.http01_port`).
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
    /// Starts a responder on a free port of 127.0.0.1 (it answers 404 until told more).
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

    /// What to answer for `token` from now on.
    pub fn set(&self, token: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    /// The Location header (panics when absent).
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
    /// The HTTP client (plain HTTP to the test CA, 20 s timeout, no proxy).
    pub http: reqwest::Client,
    /// The CA's directory.
    pub dir: Directory,
    /// The account key requests are signed with.
    pub key: AccountKey,
    /// The account URL once registered (requests then sign with `kid`).
    pub kid: Option<String>,
    /// Like a load balancer: requests for `routes.0` go to each of `routes.1` in turn.
    pub routes: Option<(String, Vec<String>)>,
    next_route: std::sync::atomic::AtomicUsize,
}

impl Acme {
    /// A client of the CA at `base` (it reads `base/directory`) with account key `key`.
    pub async fn new(base: &str, key: AccountKey) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .no_proxy()
            .build()
            .unwrap();
        Self::with_http(base, key, http).await
    }

    /// A client of the HTTPS CA at `base` that trusts only `root_pem` (a `CaProcess`'s
    /// `root.pem`).
    pub async fn new_trusting(base: &str, key: AccountKey, root_pem: &[u8]) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(root_pem).unwrap()])
            .build()
            .unwrap();
        Self::with_http(base, key, http).await
    }

    async fn with_http(base: &str, key: AccountKey, http: reqwest::Client) -> Self {
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

    /// A fresh nonce (HEAD newNonce).
    pub async fn nonce(&self) -> String {
        let r = self
            .http
            .head(self.route(&self.dir.new_nonce))
            .send()
            .await
            .unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    /// `kid` once registered, the JWK before.
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

    /// POSTs `body` as it is, with `content_type`.
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

    /// POSTs a JWS as `application/jose+json`.
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

    /// newAccount (terms agreed, one contact); asserts success and keeps the `kid`.
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

    /// newOrder for DNS `names`.
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

    /// Finalizes `order` with a CSR (DER).
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

/// Silences the panics of test-client requests cut by a deliberate kill (a flow spawned
/// as its own task fails, and the test counts it); every other panic still prints.
pub fn quiet_cut_requests() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("reqwest::Error") {
            default(info);
        }
    }));
}
