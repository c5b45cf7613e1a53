//! The web front end: HTTP routing, JWS authentication, nonces, problem documents and the
//! Link/Location/Retry-After headers. Owns nothing durable.

pub mod auth;
pub mod handlers;
pub mod key_cache;
pub mod lifecycle;
pub mod nonce;
pub mod ocsp;
pub mod problem;
pub mod render;
pub mod urls;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use certwright_proto::types::{Directory, DirectoryMeta};

use crate::ra::Ra;
pub use nonce::NonceStore;
pub use urls::Urls;

/// The peer address of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Everything a request handler needs.
pub struct AppState {
    /// The registration authority.
    pub ra: Ra,
    /// Issues and redeems nonces.
    pub nonces: NonceStore,
    /// Builds the URLs of ACME resources.
    pub urls: Urls,
    /// The directory resource (`GET /directory`).
    pub directory: Directory,
    /// Account keys parsed for verification.
    pub keys: key_cache::KeyCache,
    /// `Link: <directory>;rel="index"`, added to every response (None if the directory
    /// URL is not a header value).
    index_link: Option<HeaderValue>,
}

impl AppState {
    /// Builds the state and its directory object.
    pub fn new(ra: Ra, nonces: NonceStore, urls: Urls, meta: DirectoryMeta) -> Self {
        let directory = Directory {
            new_nonce: urls.endpoint("/acme/new-nonce"),
            new_account: urls.endpoint("/acme/new-account"),
            new_order: urls.endpoint("/acme/new-order"),
            new_authz: None,
            revoke_cert: urls.endpoint("/acme/revoke-cert"),
            key_change: urls.endpoint("/acme/key-change"),
            renewal_info: Some(urls.endpoint("/acme/renewal-info")),
            meta: Some(meta),
        };
        let index_link =
            HeaderValue::from_str(&format!("<{}>;rel=\"index\"", urls.endpoint("/directory"))).ok();
        Self {
            ra,
            nonces,
            urls,
            directory,
            keys: key_cache::KeyCache::new(),
            index_link,
        }
    }
}

/// Adds `Replay-Nonce` and `Link: <directory>;rel="index"` to every response.
async fn acme_headers(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&state.nonces.issue().await) {
        headers.insert("replay-nonce", v);
    }
    if let Some(link) = &state.index_link {
        headers.append(header::LINK, link.clone());
    }
    response
}

/// Refuses a request whose `Content-Length` is over the body limit before reading any of
/// it, and closes the connection after any `413` (the rest of an oversized body is not
/// read: see `linger.rs` for how the client still gets to read the answer).
async fn refuse_oversized_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let http1 = request.version() <= axum::http::Version::HTTP_11;
    let mut response = match declared {
        Some(length) if length > auth::MAX_BODY_BYTES as u64 => {
            axum::response::IntoResponse::into_response(problem::ApiError(auth::body_too_large()))
        }
        _ => next.run(request).await,
    };
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && http1 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Seconds one request may take before the server answers 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The ACME router.
pub fn router(state: Arc<AppState>) -> Router {
    use handlers as h;
    Router::new()
        .route("/directory", get(h::directory))
        .route("/acme/new-nonce", get(h::new_nonce).head(h::new_nonce))
        .route("/acme/new-account", post(h::new_account))
        .route("/acme/new-order", post(h::new_order))
        .route("/acme/revoke-cert", post(lifecycle::revoke_cert))
        .route("/acme/key-change", post(lifecycle::key_change))
        .route("/acme/renewal-info/{cert_id}", get(lifecycle::renewal_info))
        .merge(pki_routes())
        .route("/acme/acct/{id}", post(h::account))
        .route("/acme/acct/{id}/orders", post(h::account_orders))
        .route("/acme/order/{id}", post(h::order))
        .route("/acme/order/{id}/finalize", post(h::finalize))
        .route("/acme/authz/{id}", post(h::authorization))
        .route("/acme/chall/{authz}/{id}", post(h::challenge))
        .route("/acme/cert/{serial}", post(h::certificate))
        .route("/acme/cert/{serial}/{alt}", post(h::alternate_certificate))
        .fallback(h::not_found)
        .method_not_allowed_fallback(h::method_not_allowed)
        .layer(middleware::from_fn(refuse_oversized_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), acme_headers))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(crate::metrics::track_requests))
        .with_state(state)
}

/// The read-only PKI resources relying parties fetch: each issuer's CRL
/// (`/crl/NAME.crl`) and certificate (`/ca/NAME.der`), and OCSP (GET and POST). Signed data or public certificates, so no TLS is needed.
fn pki_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/crl/{file}", get(lifecycle::crl))
        .route(
            ocsp::OCSP_PATH,
            post(ocsp::post).get(ocsp::get_without_request),
        )
        .route("/ocsp/{*request}", get(ocsp::get))
        .route("/ca/{file}", get(ocsp::issuer_certificate))
}

/// The router of the plain-HTTP PKI listener: the PKI resources and nothing else (every
/// ACME resource is 404 there), without nonces or the directory Link; the same request
/// timeout and request metrics as the ACME router.
pub fn pki_router(state: Arc<AppState>) -> Router {
    pki_routes()
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(pki_method_not_allowed)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(crate::metrics::track_requests))
        .with_state(state)
}

/// A PKI resource with the wrong method.
async fn pki_method_not_allowed() -> problem::ApiResult {
    Err(certwright_proto::Problem::malformed(
        "method not allowed for this resource (the CRL and the issuer certificate take GET; OCSP GET or POST)",
    )
    .with_status(405)
    .into())
}
