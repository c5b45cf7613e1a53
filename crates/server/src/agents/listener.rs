//! The agent listener: the protocol of [`crate::va::remote`] over HTTPS with client
//! certificates of the agent CA (`pki`), its own HTTP surface (like the admin listener).
//!
//! TLS accepts connections without a client certificate (the CA certificate and
//! enrolment need none); every other route needs one whose SHA-256 is the current
//! certificate of an enrolled agent. The agent is looked up at each request, so removing
//! an agent or renewing its certificate takes effect at once, also on open connections.
//!
//! Refusals (`application/problem+json`; internal error text never reaches the agent):
//!
//! | case | status | type |
//! | --- | --- | --- |
//! | no client certificate, or not an enrolled agent's current one | 401 | `unauthorized` |
//! | enrolment token unknown, wrong secret, used, expired, or pinned to another CA | 403 | `unauthorized` |
//! | CSR not base64url, not a CSR, or its signature does not verify | 400 | `badCSR` |
//! | a poll naming a segment other than the agent's | 403 | `unauthorized` |
//! | a result for an unknown job id, or for another agent's job | 404 | `malformed` |
//! | a result for the agent's own job that was already answered or timed out | 409 | `malformed` |
//! | a body that is not the expected JSON | 400 | `malformed` |
//! | a body over the route's limit (64 KiB for results, 16 KiB otherwise) | 413 | `malformed` |
//! | a failure inside the CA (store, signing) | 500 | `serverInternal` |
//!
//! Renewal (`RENEW_PATH`) makes the new certificate the agent's current one at once. The
//! certificate the request came with keeps working until the agent first presents the new
//! one, so an agent whose renewal answer was lost renews again with it (and the
//! certificate it never received stops working then).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use certwright_proto::Problem;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::hub::{AnswerError, Hub};
use super::pki::{fingerprint, AgentCa, PkiError};
use crate::clock::Clock;
use crate::store::agents::AgentRecord;
use crate::store::Store;
use crate::va::remote::{
    EnrollRequest, EnrollResponse, EnrolmentToken, JobResult, PollRequest, RenewRequest, CA_PATH,
    ENROLL_PATH, MAX_WAIT_MS, POLL_PATH, RENEW_PATH, RESULT_PATH,
};

/// The largest result body accepted.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// The largest body of the other routes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 512;
/// Of those, connections without a client certificate (CA download, enrolment).
pub const MAX_ANONYMOUS_CONNECTIONS: usize = 32;
/// How long a connection without a client certificate may stay open in all.
const ANONYMOUS_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// The longest a request may take (a poll waits up to `MAX_WAIT_MS`, then answers).
const REQUEST_TIMEOUT: Duration = Duration::from_millis(MAX_WAIT_MS + 15_000);
/// How long an agent has to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener serves with.
pub struct ListenerState {
    /// The store (agents, tokens).
    pub store: Store,
    /// The jobs.
    pub hub: Hub,
    /// The agent CA.
    pub ca: Arc<AgentCa>,
    /// The clock.
    pub clock: Clock,
    /// Days an agent certificate is valid.
    pub certificate_days: u32,
}

/// The SHA-256 (hex) of the connection's client certificate, if it sent one.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<String>);

/// A refusal as a problem document.
struct Refusal(Problem);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

fn refuse(problem: Problem, status: u16) -> Refusal {
    Refusal(problem.with_status(status))
}

fn internal(what: &str, error: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %error, "agent listener: {what}");
    refuse(Problem::server_internal("internal error"), 500)
}

fn unauthenticated() -> Refusal {
    refuse(
        Problem::unauthorized("a client certificate of an enrolled agent is required"),
        401,
    )
}

/// The body as `T`, within the route's limit.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Refusal> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            refuse(Problem::malformed("the request body is too large"), 413)
        } else {
            refuse(
                Problem::malformed("the request body could not be read"),
                400,
            )
        }
    })?;
    serde_json::from_slice(&body).map_err(|_| {
        refuse(
            Problem::malformed("the request body is not the expected JSON"),
            400,
        )
    })
}

impl ListenerState {
    /// The enrolled agent whose current (or previous, not yet retired) certificate the
    /// connection presented. The first request with the current one retires the previous.
    async fn agent(&self, peer: &PeerCertificate) -> Result<AgentRecord, Refusal> {
        let Some(sha) = &peer.0 else {
            return Err(unauthenticated());
        };
        let agent = match self.store.agent_by_certificate(sha).await {
            Ok(Some(agent)) => agent,
            Ok(None) => return Err(unauthenticated()),
            Err(e) => return Err(internal("looking up an agent", e)),
        };
        if agent.previous_cert_sha256.is_some() && agent.cert_sha256 == *sha {
            self.store
                .retire_previous_agent_certificate(&agent.name, sha)
                .await
                .map_err(|e| internal("retiring an agent's previous certificate", e))?;
        }
        Ok(agent)
    }

    fn issue(
        &self,
        csr: &str,
        name: &str,
        segment: &str,
    ) -> Result<super::pki::AgentCertificate, Refusal> {
        let der = certwright_proto::b64::decode(csr)
            .map_err(|_| refuse(Problem::bad_csr("the CSR is not base64url"), 400))?;
        match self
            .ca
            .issue_agent(&der, name, segment, self.certificate_days, self.clock.now())
        {
            Ok(c) => Ok(c),
            Err(PkiError::BadCsr(_)) => Err(refuse(
                Problem::bad_csr("the CSR does not parse or its signature does not verify"),
                400,
            )),
            Err(e) => Err(internal("issuing an agent certificate", e)),
        }
    }

    fn response(
        &self,
        agent: &str,
        segment: &str,
        cert: &super::pki::AgentCertificate,
    ) -> Response {
        axum::Json(EnrollResponse {
            name: agent.to_owned(),
            segment: segment.to_owned(),
            certificate: cert.pem.clone(),
            ca: self.ca.pem().to_owned(),
            not_after: cert.not_after,
        })
        .into_response()
    }
}

async fn ca_certificate(State(s): State<Arc<ListenerState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        s.ca.pem().to_owned(),
    )
        .into_response()
}

async fn enroll(
    State(s): State<Arc<ListenerState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let req: EnrollRequest = json_body(body)?;
    let refused = || {
        refuse(
            Problem::unauthorized("the enrolment token does not work"),
            403,
        )
    };
    let token = EnrolmentToken::parse(&req.token).ok_or_else(refused)?;
    if token.ca_sha256 != s.ca.sha256() {
        return Err(refused());
    }
    let secret_hash = token.secret_hash();
    let now = s.clock.now();
    let record = s
        .store
        .agent_token(&token.id, &secret_hash, now)
        .await
        .map_err(|e| internal("reading an enrolment token", e))?
        .ok_or_else(refused)?;
    let cert = s.issue(&req.csr, &record.agent, &record.segment)?;
    // The redemption decides: of two at once, one wins; the loser's certificate is
    // known to no one and works nowhere.
    let agent = s
        .store
        .redeem_agent_token(&token.id, &secret_hash, &cert.sha256, cert.not_after, now)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => refuse(
                Problem::unauthorized(
                    "an agent of this name is already enrolled; its replacement needs a token made with --replace",
                ),
                403,
            ),
            e => internal("redeeming an enrolment token", e),
        })?
        .ok_or_else(refused)?;
    tracing::info!(agent = %agent.name, segment = %agent.segment, "validation agent enrolled");
    Ok(s.response(&agent.name, &agent.segment, &cert))
}

async fn renew(
    State(s): State<Arc<ListenerState>>,
    Extension(peer): Extension<PeerCertificate>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let agent = s.agent(&peer).await?;
    let req: RenewRequest = json_body(body)?;
    let cert = s.issue(&req.csr, &agent.name, &agent.segment)?;
    let presented = peer.0.as_deref().unwrap_or_default();
    let renewed = s
        .store
        .renew_agent_certificate(&agent.name, presented, &cert.sha256, cert.not_after)
        .await
        .map_err(|e| internal("renewing an agent certificate", e))?;
    if !renewed {
        return Err(unauthenticated());
    }
    tracing::info!(agent = %agent.name, "validation agent renewed its certificate");
    Ok(s.response(&agent.name, &agent.segment, &cert))
}

async fn poll(
    State(s): State<Arc<ListenerState>>,
    Extension(peer): Extension<PeerCertificate>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let agent = s.agent(&peer).await?;
    let req: PollRequest = match body {
        Ok(b) if b.is_empty() => PollRequest::default(),
        other => json_body(other)?,
    };
    if req
        .segment
        .as_ref()
        .is_some_and(|seg| *seg != agent.segment)
    {
        return Err(refuse(
            Problem::unauthorized("an agent receives only its own segment's jobs"),
            403,
        ));
    }
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(MAX_WAIT_MS).min(MAX_WAIT_MS));
    Ok(match s.hub.take(&agent.name, &agent.segment, wait).await {
        Some(job) => {
            // The agent may have been removed (or renewed away) while it waited: such an
            // agent never sees the job, which goes to another agent at once.
            if let Err(refusal) = s.agent(&peer).await {
                s.hub.withdraw(&agent.name, &job.id);
                return Err(refusal);
            }
            axum::Json(job).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn result(
    State(s): State<Arc<ListenerState>>,
    Extension(peer): Extension<PeerCertificate>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let agent = s.agent(&peer).await?;
    let result: JobResult = json_body(body)?;
    match s.hub.answer(&agent.name, &id, result) {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        // Another agent's job looks like no job at all: a forger learns nothing.
        Err(AnswerError::Unknown | AnswerError::NotYours) => {
            Err(refuse(Problem::malformed("no such job"), 404))
        }
        Err(AnswerError::AlreadyAnswered) => Err(refuse(
            Problem::malformed("the job was already answered"),
            409,
        )),
        Err(AnswerError::TimedOut) => Err(refuse(
            Problem::malformed("the job timed out and went elsewhere"),
            409,
        )),
    }
}

/// The listener's routes.
pub fn router(state: Arc<ListenerState>) -> Router {
    Router::new()
        .route(CA_PATH, get(ca_certificate))
        .route(
            ENROLL_PATH,
            post(enroll).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route(
            RENEW_PATH,
            post(renew).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route(
            POLL_PATH,
            post(poll).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route(
            &format!("{RESULT_PATH}{{id}}"),
            post(result).layer(DefaultBodyLimit::max(MAX_RESULT_BYTES)),
        )
        .fallback(|| async { refuse(Problem::malformed("no such resource"), 404) })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Serves the agent protocol on `listener` with `tls` (the agent CA's configuration,
/// `AgentCa::server_tls_config`) until `shutdown` resolves; then up to 5 s for open
/// connections.
pub async fn serve(
    state: Arc<ListenerState>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let router = router(state);
    let mut connections = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let anonymous = Arc::new(tokio::sync::Semaphore::new(MAX_ANONYMOUS_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = "agents", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_CONNECTIONS, "agent listener: too many connections; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, router, anonymous) = (acceptor.clone(), router.clone(), anonymous.clone());
        connections.spawn(async move {
            let _slot = slot;
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "agent TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "agent TLS handshake timed out");
                        return;
                    }
                };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| fingerprint(c));
            if cert.is_some() {
                serve_connection(tls, router, peer, PeerCertificate(cert)).await;
                return;
            }
            // Without a certificate: a few at once, for a bounded time.
            let Ok(_permit) = anonymous.try_acquire_owned() else {
                tracing::debug!(%peer, "agent listener: too many connections without a client certificate; closed");
                return;
            };
            let _ = tokio::time::timeout(
                ANONYMOUS_CONNECTION_LIFETIME,
                serve_connection(tls, router, peer, PeerCertificate(None)),
            )
            .await;
        });
        while connections.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn serve_connection<S>(io: S, router: Router, peer: SocketAddr, cert: PeerCertificate)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(16);
    let service = TowerToHyperService::new(tower::util::MapRequest::new(
        router,
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(cert.clone());
            req
        },
    ));
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(%peer, error = %e, "agent connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use serde_json::{json, Value};

    use super::*;
    use crate::agents::hub::HubSettings;
    use crate::agents::pki::tests::csr;
    use crate::agents::Dispatch;
    use crate::store::agents::NewAgentToken;
    use crate::va::remote::{Job, JobResult};

    struct Fixture {
        base: String,
        store: Store,
        hub: Hub,
        ca: Arc<AgentCa>,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    async fn fixture() -> Fixture {
        let kek = crate::secrets::Kek::from_bytes(&[9u8; 32], "test").unwrap();
        let store = crate::store::console::tests::test_store()
            .await
            .with_eab_kek(Arc::new(kek));
        let clock = Clock::system();
        let ca = Arc::new(AgentCa::load_or_create(&store, clock.now()).await.unwrap());
        let hub = Hub::new(
            HubSettings {
                job_timeout: Duration::from_secs(3),
                pickup_timeout: Duration::from_secs(3),
                attempts: 1,
            },
            Some(store.clone()),
            clock.clone(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = Arc::new(ca.server_tls_config(&[], addr, clock.now()).unwrap());
        let state = Arc::new(ListenerState {
            store: store.clone(),
            hub: hub.clone(),
            ca: ca.clone(),
            clock,
            certificate_days: 30,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(state, listener, tls, async move {
            let _ = stopped.await;
        }));
        Fixture {
            base: format!("https://127.0.0.1:{}", addr.port()),
            store,
            hub,
            ca,
            _stop: stop,
        }
    }

    /// A client trusting `ca`, presenting `identity` (certificate PEM, PKCS#8 key).
    fn client(ca: &[u8], identity: Option<(&str, &rcgen::KeyPair)>) -> reqwest::Client {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.to_vec())).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((pem, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    /// A token for `agent` of `segment` (expired when `expired`), as printed.
    async fn token(f: &Fixture, id: &str, agent: &str, segment: &str, expired: bool) -> String {
        let token = EnrolmentToken {
            id: id.into(),
            secret: format!("secret-{id}"),
            ca_sha256: f.ca.sha256(),
        };
        let now = Clock::system().now();
        f.store
            .create_agent_token(&NewAgentToken {
                id,
                agent,
                segment,
                secret_sha256: &token.secret_hash(),
                now,
                expires_at: if expired { now - 1 } else { now + 3600 },
                replace: false,
            })
            .await
            .unwrap();
        token.to_string()
    }

    async fn problem(resp: reqwest::Response, status: u16, kind: &str) {
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["type"],
            format!("urn:ietf:params:acme:error:{kind}"),
            "{body}"
        );
    }

    async fn post(c: &reqwest::Client, url: String, body: Value) -> reqwest::Response {
        c.post(url).json(&body).send().await.unwrap()
    }

    /// Enrols with `token`; the client of the new agent.
    async fn enrol(f: &Fixture, token: &str) -> reqwest::Client {
        let (der, key) = csr();
        let resp = post(
            &client(f.ca.der(), None),
            format!("{}{ENROLL_PATH}", f.base),
            json!({"token": token, "csr": certwright_proto::b64::encode(der)}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let enrolled: EnrollResponse = resp.json().await.unwrap();
        assert_eq!(enrolled.ca, f.ca.pem());
        client(f.ca.der(), Some((&enrolled.certificate, &key)))
    }

    fn job() -> Job {
        serde_json::from_value(json!({
            "id": "x", "kind": "validate", "challenge": "http-01",
            "identifier": {"type": "dns", "value": "web.lab.test"}, "wildcard": false,
            "token": "t", "key_authorization": "t.k", "account_uri": "https://ca.test/acct/1",
            "caa_identities": [], "check_caa": false, "http01_port": 80,
            "tlsalpn01_port": 443, "timeout_ms": 1000
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn enrolment_and_authentication_refusals() {
        let f = fixture().await;
        let anonymous = client(f.ca.der(), None);
        // The CA certificate needs no client certificate; a poll does.
        let resp = anonymous
            .get(format!("{}{CA_PATH}", f.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), f.ca.pem());
        problem(
            post(&anonymous, format!("{}{POLL_PATH}", f.base), json!({})).await,
            401,
            "unauthorized",
        )
        .await;

        // A certificate of another CA: the handshake is refused.
        let other = crate::agents::pki::tests::test_ca();
        let (der, key) = csr();
        let foreign = other
            .issue_agent(&der, "a1", "lab", 1, Clock::system().now())
            .unwrap();
        let stranger = client(f.ca.der(), Some((&foreign.pem, &key)));
        assert!(
            stranger
                .post(format!("{}{POLL_PATH}", f.base))
                .json(&json!({}))
                .send()
                .await
                .is_err(),
            "a foreign client certificate must fail the handshake"
        );

        // A bad CSR does not use the token.
        let t1 = token(&f, "t1", "a1", "lab", false).await;
        problem(
            post(
                &anonymous,
                format!("{}{ENROLL_PATH}", f.base),
                json!({"token": t1, "csr": "AAAA"}),
            )
            .await,
            400,
            "badCSR",
        )
        .await;
        assert!(f.store.agents().await.unwrap().is_empty());

        // The token works once.
        let a1 = enrol(&f, &t1).await;
        let before = f.store.agents().await.unwrap();
        assert_eq!(before.len(), 1);
        let (der, _) = csr();
        let again = json!({"token": t1, "csr": certwright_proto::b64::encode(&der)});
        problem(
            post(&anonymous, format!("{}{ENROLL_PATH}", f.base), again).await,
            403,
            "unauthorized",
        )
        .await;
        assert_eq!(f.store.agents().await.unwrap(), before, "nothing changed");

        // Expired, forged secret, unknown: refused alike.
        let expired = token(&f, "t2", "a2", "lab", true).await;
        let forged = t1.replace("secret-t1", "secret-xx");
        for bad in [
            expired,
            forged,
            "cwva1.nope.nope.AAAA".into(),
            "garbage".into(),
        ] {
            let body = json!({"token": bad, "csr": certwright_proto::b64::encode(&der)});
            problem(
                post(&anonymous, format!("{}{ENROLL_PATH}", f.base), body).await,
                403,
                "unauthorized",
            )
            .await;
        }
        assert_eq!(f.store.agents().await.unwrap(), before, "nothing changed");

        // An agent polls its own segment only.
        problem(
            post(
                &a1,
                format!("{}{POLL_PATH}", f.base),
                json!({"segment": "office", "wait_ms": 10}),
            )
            .await,
            403,
            "unauthorized",
        )
        .await;
        let resp = post(
            &a1,
            format!("{}{POLL_PATH}", f.base),
            json!({"segment": "lab", "wait_ms": 10}),
        )
        .await;
        assert_eq!(resp.status(), 204);

        // Oversized bodies are refused.
        let big = json!({"record": "x".repeat(MAX_RESULT_BYTES + 1)});
        problem(
            post(&a1, format!("{}{RESULT_PATH}whatever", f.base), big).await,
            413,
            "malformed",
        )
        .await;

        // Renewal: the answer is "lost" (the agent keeps its old certificate, which still
        // works), so it renews again with the old one; the certificate it never received
        // stops working.
        async fn renew(f: &Fixture, c: &reqwest::Client) -> reqwest::Client {
            let (der, key) = csr();
            let resp = post(
                c,
                format!("{}{RENEW_PATH}", f.base),
                json!({"csr": certwright_proto::b64::encode(der)}),
            )
            .await;
            assert_eq!(resp.status(), 200);
            let renewed: EnrollResponse = resp.json().await.unwrap();
            client(f.ca.der(), Some((&renewed.certificate, &key)))
        }
        async fn poll(f: &Fixture, c: &reqwest::Client) -> StatusCode {
            post(c, format!("{}{POLL_PATH}", f.base), json!({"wait_ms": 10}))
                .await
                .status()
        }
        let lost = renew(&f, &a1).await;
        assert_eq!(poll(&f, &a1).await, 204);
        let a1_new = renew(&f, &a1).await;
        assert_eq!(poll(&f, &lost).await, 401);
        // The new certificate works; once it has, the old one stops.
        assert_eq!(poll(&f, &a1_new).await, 204);
        problem(
            post(
                &a1,
                format!("{}{POLL_PATH}", f.base),
                json!({"wait_ms": 10}),
            )
            .await,
            401,
            "unauthorized",
        )
        .await;
        let resp = post(
            &a1_new,
            format!("{}{POLL_PATH}", f.base),
            json!({"wait_ms": 10}),
        )
        .await;
        assert_eq!(resp.status(), 204);

        // A removed agent is refused.
        assert!(f.store.remove_agent("a1").await.unwrap());
        problem(
            post(
                &a1_new,
                format!("{}{POLL_PATH}", f.base),
                json!({"wait_ms": 10}),
            )
            .await,
            401,
            "unauthorized",
        )
        .await;
    }

    #[tokio::test]
    async fn results_are_bound_to_the_job_and_its_taker() {
        let f = fixture().await;
        let t1 = token(&f, "t1", "a1", "lab", false).await;
        let t2 = token(&f, "t2", "a2", "lab", false).await;
        let (a1, a2) = (enrol(&f, &t1).await, enrol(&f, &t2).await);
        let run = {
            let hub = f.hub.clone();
            tokio::spawn(async move { hub.run("lab", job()).await })
        };
        let resp = post(
            &a1,
            format!("{}{POLL_PATH}", f.base),
            json!({"wait_ms": 5000}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let taken: Job = resp.json().await.unwrap();
        let answer = |tag: &str| json!({"error": null, "record": {"by": tag}, "diagnostic": {}});
        // A forged id, and the taker's job answered by another agent: no such job.
        problem(
            post(&a1, format!("{}{RESULT_PATH}forged", f.base), answer("a1")).await,
            404,
            "malformed",
        )
        .await;
        problem(
            post(
                &a2,
                format!("{}{RESULT_PATH}{}", f.base, taken.id),
                answer("a2"),
            )
            .await,
            404,
            "malformed",
        )
        .await;
        let resp = post(
            &a1,
            format!("{}{RESULT_PATH}{}", f.base, taken.id),
            answer("a1"),
        )
        .await;
        assert_eq!(resp.status(), 204);
        // A replay is refused, and the outcome is the taker's answer.
        problem(
            post(
                &a1,
                format!("{}{RESULT_PATH}{}", f.base, taken.id),
                answer("replay"),
            )
            .await,
            409,
            "malformed",
        )
        .await;
        let answered = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(answered.agent, "a1");
        let expected: JobResult = serde_json::from_value(answer("a1")).unwrap();
        assert_eq!(answered.result, expected);
        assert_eq!(f.hub.in_flight(), (0, 0));
        // The answer is counted (written at once).
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if f.store.agent("a1").await.unwrap().unwrap().jobs_done == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a1's answer is counted");
    }
}
