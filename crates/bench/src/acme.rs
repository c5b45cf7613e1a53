//! A lean ACME client for load: signs with certwright-proto, sends with reqwest, keeps the
//! nonce of the last response, retries badNonce, and times every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certwright_proto::jws::{sign, Signer};
use certwright_proto::types::Directory;
use certwright_proto::{AccountKey, KeyType, CONTENT_TYPE_JOSE, CONTENT_TYPE_PROBLEM};
use serde_json::{json, Value};

use crate::stats::{Stats, Step};

/// badNonce answers retried per request before the flow fails.
pub const BAD_NONCE_RETRIES: u32 = 5;
const PROBLEM_PREFIX: &str = "urn:ietf:params:acme:error:";

/// Why a flow failed; `cause()` is the key it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// The CA answered with a problem document of this type (short name).
    Problem {
        /// The type without its `urn:ietf:params:acme:error:` prefix.
        kind: String,
        /// The document's `detail`.
        detail: String,
    },
    /// An error status without a problem document.
    Http(u16),
    /// Connection, TLS or I/O failure, or a request timeout.
    Transport(String),
    /// An authorization or order did not settle within the poll timeout.
    Timeout(&'static str),
    /// An authorization or order ended `invalid`; `kind` is its error's type, if any.
    Invalid {
        /// `authorization` or `order`.
        what: &'static str,
        /// Its error's type (or a challenge's), without the ACME prefix; `unknown` if none.
        kind: String,
    },
    /// A response was not what ACME says it should be.
    Protocol(String),
}

impl FlowError {
    /// The key under which this failure is counted.
    pub fn cause(&self) -> String {
        match self {
            Self::Problem { kind, .. } => kind.clone(),
            Self::Http(status) => format!("http-{status}"),
            Self::Transport(_) => "transport".into(),
            Self::Timeout(what) => format!("timeout-{what}"),
            Self::Invalid { what, kind } => format!("{what}-invalid:{kind}"),
            Self::Protocol(_) => "protocol".into(),
        }
    }
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Problem { kind, detail } => write!(f, "problem {kind}: {detail}"),
            Self::Http(s) => write!(f, "HTTP status {s} without a problem document"),
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Timeout(what) => write!(f, "{what} did not settle in time"),
            Self::Invalid { what, kind } => write!(f, "{what} became invalid ({kind})"),
            Self::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

fn problem_kind(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let kind = v.get("type")?.as_str()?;
    let kind = kind.strip_prefix(PROBLEM_PREFIX).unwrap_or(kind).to_owned();
    let detail = v
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some((kind, detail))
}

/// The ACME server under load: its directory and a shared HTTP client (connection pool).
pub struct Target {
    /// Shared by all sessions, so connections are pooled.
    pub http: reqwest::Client,
    /// The server's directory, fetched by [`Target::connect`].
    pub directory: Directory,
}

/// How the bench trusts the server's TLS certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system's roots (and plain HTTP URLs).
    System,
    /// Only this PEM root (e.g. certwright-ca's `root.pem`, or the Pebble listener's CA).
    Root(Vec<u8>),
    /// Accept any certificate (loopback benchmarking only).
    Insecure,
}

impl Target {
    /// Fetches the directory at `url`.
    pub async fn connect(url: &str, trust: &Trust, http2: bool) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .pool_max_idle_per_host(1024)
            .user_agent(concat!("certwright-bench/", env!("CARGO_PKG_VERSION")));
        if !http2 {
            builder = builder.http1_only();
        }
        builder = match trust {
            Trust::System => builder,
            Trust::Root(pem) => builder.tls_certs_only([reqwest::Certificate::from_pem(pem)?]),
            Trust::Insecure => builder.tls_danger_accept_invalid_certs(true),
        };
        let http = builder.build()?;
        let resp = http.get(url).send().await?;
        if !resp.status().is_success() {
            anyhow::bail!("GET {url}: HTTP {}", resp.status());
        }
        let directory: Directory = resp.json().await?;
        Ok(Self { http, directory })
    }
}

/// An account: its key and URL (`kid`).
pub struct Account {
    /// The account's key.
    pub key: AccountKey,
    /// The account URL, sent as `kid`.
    pub kid: String,
    /// RFC 7638 thumbprint of the key, for key authorizations.
    pub thumbprint: String,
}

/// A response, read whole.
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON; a body that is not JSON is a [`FlowError::Protocol`].
    pub fn json(&self) -> Result<Value, FlowError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| FlowError::Protocol(format!("response is not JSON: {e}")))
    }

    /// The `Location` header; its absence is a [`FlowError::Protocol`].
    pub fn location(&self) -> Result<String, FlowError> {
        self.location
            .clone()
            .ok_or_else(|| FlowError::Protocol("no Location header".into()))
    }
}

/// One client's conversation: the nonce of the last response, and where samples go.
pub struct Session<'a> {
    /// The server it talks to.
    pub target: &'a Target,
    /// Where its latency samples and counters go.
    pub stats: &'a mut Stats,
    nonce: Option<String>,
}

fn transport(e: reqwest::Error) -> FlowError {
    FlowError::Transport(e.to_string())
}

impl<'a> Session<'a> {
    /// A session with no nonce yet.
    pub fn new(target: &'a Target, stats: &'a mut Stats) -> Self {
        Self {
            target,
            stats,
            nonce: None,
        }
    }

    /// `HEAD newNonce`; keeps the nonce for the next request.
    pub async fn new_nonce(&mut self) -> Result<(), FlowError> {
        let started = Instant::now();
        let resp = self
            .target
            .http
            .head(&self.target.directory.new_nonce)
            .send()
            .await
            .map_err(transport)?;
        let elapsed = started.elapsed();
        self.stats.record(Step::NewNonce, elapsed);
        self.stats.record(Step::Request, elapsed);
        if !resp.status().is_success() {
            return Err(FlowError::Http(resp.status().as_u16()));
        }
        self.take_nonce(&resp);
        if self.nonce.is_none() {
            return Err(FlowError::Protocol("newNonce sent no Replay-Nonce".into()));
        }
        Ok(())
    }

    fn take_nonce(&mut self, resp: &reqwest::Response) {
        if let Some(n) = resp
            .headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
        {
            self.nonce = Some(n.to_owned());
        }
    }

    /// A signed POST (`payload` `None`: POST-as-GET); retries badNonce with the nonce the
    /// refusal carried. Error statuses become `FlowError`s.
    pub async fn post(
        &mut self,
        key: &AccountKey,
        signer: &Signer,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<Reply, FlowError> {
        let payload = payload.map(|p| p.to_string()).unwrap_or_default();
        let mut attempt = 0;
        loop {
            if self.nonce.is_none() {
                self.new_nonce().await?;
            }
            let nonce = self.nonce.take().expect("a nonce was just fetched");
            let jws = sign(key, signer, Some(&nonce), url, payload.as_bytes())
                .map_err(|e| FlowError::Protocol(format!("signing: {e}")))?;
            let body = serde_json::to_vec(&jws).expect("a JWS serializes");
            let started = Instant::now();
            let resp = self
                .target
                .http
                .post(url)
                .header("content-type", CONTENT_TYPE_JOSE)
                .body(body)
                .send()
                .await
                .map_err(transport)?;
            self.take_nonce(&resp);
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let is_problem = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(CONTENT_TYPE_PROBLEM));
            let body = resp.bytes().await.map_err(transport)?.to_vec();
            self.stats.record(Step::Request, started.elapsed());
            if status < 400 {
                return Ok(Reply {
                    status,
                    location,
                    body,
                });
            }
            match is_problem.then(|| problem_kind(&body)).flatten() {
                Some((kind, _)) if kind == "badNonce" && attempt < BAD_NONCE_RETRIES => {
                    attempt += 1;
                    self.stats.bad_nonce_retries += 1;
                    continue;
                }
                Some((kind, detail)) => return Err(FlowError::Problem { kind, detail }),
                None => return Err(FlowError::Http(status)),
            }
        }
    }

    /// `POST newAccount` with a fresh key of `kind`.
    pub async fn new_account(&mut self, kind: KeyType) -> Result<Arc<Account>, FlowError> {
        let key = AccountKey::generate(kind)
            .map_err(|e| FlowError::Protocol(format!("account key: {e}")))?;
        let jwk = key.jwk();
        let thumbprint = jwk.thumbprint();
        let url = self.target.directory.new_account.clone();
        let started = Instant::now();
        let reply = self
            .post(
                &key,
                &Signer::Jwk(jwk),
                &url,
                Some(&json!({"termsOfServiceAgreed": true})),
            )
            .await?;
        self.stats.record(Step::NewAccount, started.elapsed());
        let kid = reply.location()?;
        Ok(Arc::new(Account {
            key,
            kid,
            thumbprint,
        }))
    }
}
