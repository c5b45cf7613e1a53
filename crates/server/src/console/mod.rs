//! The operator console (docs/console.md): server-rendered HTML under `/console/` on the
//! admin listener, with its own sign-in (operators and sessions in the store,
//! `store::operators`), outside the admin bearer token.
//!
//! Security model: a session cookie (`HttpOnly; SameSite=Strict; Path=/console`, plus
//! `Secure` when the listener is TLS) whose token is stored only as its SHA-256; a CSRF
//! token per session in every form, compared in constant time on every POST (the sign-in
//! form uses a double-submit cookie, there being no session yet); pages without a session
//! redirect to the sign-in page and POSTs without one are refused (403); viewers read,
//! admins act; five failed sign-ins for a name or from an address within 15 minutes lock
//! both out for the rest of the window; every response carries a strict CSP, no framing,
//! no referrer and no caching. HTML is escaped by `maud`.

pub mod account;
mod actions;
mod dashboard;
pub mod password;
mod renewal;
mod troubleshoot;
mod views;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::ca::crl::{reason_name, ALLOWED_REASONS};
use crate::clock::Clock;
use crate::ra::Ra;
use crate::store::console::{CertificateState, InventoryQuery};
use crate::store::operators::{OperatorRole, OperatorSession};
use crate::store::{Actor, Store, StoreError};
use password::token_hash;

/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// The window over which failed sign-ins are counted.
pub const THROTTLE_WINDOW: i64 = 15 * 60;
/// Failed sign-ins (for one name, or from one address) that lock sign-in for the window.
pub const THROTTLE_FAILURES: i64 = 5;
/// The session cookie.
const SESSION_COOKIE: &str = "certwright_console";
/// The sign-in form's double-submit CSRF cookie.
const LOGIN_COOKIE: &str = "certwright_console_login";
/// Certificates per inventory page.
const PAGE_SIZE: usize = 50;

/// What the console works with.
#[derive(Clone)]
pub struct Console {
    store: Store,
    clock: Clock,
    secure_cookies: bool,
    /// Revokes (through the RA, which publishes the CRL); without it, no revoke action.
    ra: Option<Ra>,
}

impl Console {
    /// A console over `store`; `secure_cookies` when the admin listener speaks TLS.
    pub fn new(store: Store, clock: Clock, secure_cookies: bool) -> Self {
        Self {
            store,
            clock,
            secure_cookies,
            ra: None,
        }
    }

    /// This console with the RA that revokes.
    pub fn with_ra(self, ra: Ra) -> Self {
        Self {
            ra: Some(ra),
            ..self
        }
    }

    fn cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        format!(
            "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }
}

/// The console's routes, under `/console`.
pub fn router<S>(console: Console) -> Router<S> {
    Router::new()
        .route("/console", get(root))
        .route("/console/", get(root))
        .route("/console/style.css", get(style))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/certificates", get(inventory))
        .route("/console/certificates/{serial}", get(certificate))
        .route(
            "/console/certificates/{serial}/renew-early",
            post(renew_early),
        )
        .route("/console/certificates/{serial}/revoke", post(revoke))
        .route("/console/validations", get(troubleshoot::validations))
        .route("/console/eab", get(eab_keys).post(create_eab_key))
        .route("/console/webhooks", get(webhooks))
        .route(
            "/console/webhooks/deliveries/{seq}/retry",
            post(retry_webhook),
        )
        .merge(dashboard::routes())
        .merge(renewal::routes())
        .merge(actions::routes())
        .merge(account::routes())
        .route("/console/{*rest}", get(not_found))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, "default-src 'self'"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn same(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Why a request was not served.
enum Refusal {
    /// No valid session on a page: go sign in.
    SignIn,
    /// Refused with a status and a sentence.
    Status(StatusCode, &'static str),
    /// Refused with a status and what the RA said.
    Text(StatusCode, String),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/console/sign-in")],
            )
                .into_response(),
            Self::Status(status, text) => {
                (status, views::message(status.as_str(), text)).into_response()
            }
            Self::Text(status, text) => {
                (status, views::message(status.as_str(), &text)).into_response()
            }
            Self::Store(StoreError::NotFound) => (
                StatusCode::NOT_FOUND,
                views::message("Not found", "No such thing."),
            )
                .into_response(),
            Self::Store(e) => {
                tracing::error!(error = %e, "console: store error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    views::message("Error", "The store failed; see the server's log."),
                )
                    .into_response()
            }
        }
    }
}

type Page = Result<Response, Refusal>;

impl Console {
    async fn session(&self, headers: &HeaderMap) -> Result<Option<OperatorSession>, StoreError> {
        match cookie_value(headers, SESSION_COOKIE) {
            Some(token) if !token.is_empty() => {
                self.store
                    .operator_session(&token_hash(token), self.clock.now())
                    .await
            }
            _ => Ok(None),
        }
    }

    /// The session of a page (else: go sign in).
    async fn page_session(&self, headers: &HeaderMap) -> Result<OperatorSession, Refusal> {
        self.session(headers).await?.ok_or(Refusal::SignIn)
    }

    /// The session of an action: a POST with its CSRF token, by an admin (else 403).
    async fn admin_session(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<(OperatorSession, Store), Refusal> {
        let session = self.post_session(headers, form).await?;
        if session.role != OperatorRole::Admin {
            return Err(Refusal::Status(
                StatusCode::FORBIDDEN,
                "Only an admin may do this.",
            ));
        }
        // Audited with the operator's name.
        let store = self
            .store
            .clone()
            .acting_as(Actor::Operator(Some(session.operator.clone())));
        Ok((session, store))
    }

    /// The session of a POST, whose form must carry its CSRF token (else 403).
    async fn post_session(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<OperatorSession, Refusal> {
        let forbidden = Refusal::Status(
            StatusCode::FORBIDDEN,
            "Sign in, and send the form from the console.",
        );
        let session = self.session(headers).await?.ok_or(forbidden)?;
        match form.get("csrf") {
            Some(csrf) if same(csrf, &session.csrf) => Ok(session),
            _ => Err(Refusal::Status(
                StatusCode::FORBIDDEN,
                "The form's CSRF token is missing or wrong.",
            )),
        }
    }
}

fn parse_form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The peer's address (as the listener recorded it), for throttling.
fn peer(request_extensions: &axum::http::Extensions) -> String {
    request_extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_owned(),
            |c| c.0.ip().to_canonical().to_string(),
        )
}

async fn root(State(console): State<Console>, headers: HeaderMap) -> Page {
    console.page_session(&headers).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/console/dashboard")],
    )
        .into_response())
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        views::message("Not found", "No such page."),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("style.css"),
    )
        .into_response()
}

async fn sign_in_page(State(console): State<Console>) -> Response {
    let token = password::random_token();
    (
        [(
            header::SET_COOKIE,
            console.cookie(LOGIN_COOKIE, &token, 3600),
        )],
        views::sign_in(&token, None),
    )
        .into_response()
}

async fn sign_in(State(console): State<Console>, request: Request) -> Page {
    let address = peer(request.extensions());
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| Refusal::Status(StatusCode::BAD_REQUEST, "The form is too large."))?;
    let form = parse_form(&body);
    let retry = |status: StatusCode, text: &'static str| {
        let token = password::random_token();
        (
            status,
            [(
                header::SET_COOKIE,
                console.cookie(LOGIN_COOKIE, &token, 3600),
            )],
            views::sign_in(&token, Some(text)),
        )
            .into_response()
    };
    match (cookie_value(&headers, LOGIN_COOKIE), form.get("csrf")) {
        (Some(cookie), Some(sent)) if !cookie.is_empty() && same(cookie, sent) => {}
        _ => {
            return Ok(retry(
                StatusCode::FORBIDDEN,
                "The form expired; sign in again.",
            ))
        }
    }
    // No operator name is longer; what is recorded of a failure stays small.
    let name: String = form
        .get("name")
        .map(|n| {
            n.chars()
                .take(crate::store::operators::MAX_OPERATOR_NAME + 1)
                .collect()
        })
        .unwrap_or_default();
    let name = name.as_str();
    let given = form.get("password").map(String::as_str).unwrap_or_default();
    let now = console.clock.now();
    let (by_name, by_address) = console
        .store
        .login_failures(name, &address, now - THROTTLE_WINDOW)
        .await?;
    if by_name >= THROTTLE_FAILURES || by_address >= THROTTLE_FAILURES {
        tracing::warn!(%address, "console: sign-in throttled");
        return Ok(retry(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins: try again in 15 minutes.",
        ));
    }
    let found = console.store.operator_credentials(name).await?;
    let (stored, usable) = match &found {
        Some((op, hash)) => (hash.clone(), !op.disabled),
        None => (password::dummy_hash().to_owned(), false),
    };
    let given_owned = given.to_owned();
    let matches = tokio::task::spawn_blocking(move || password::verify(&given_owned, &stored))
        .await
        .unwrap_or(false);
    let Some((operator, _)) = found.filter(|_| matches && usable) else {
        console
            .store
            .record_login_failure(name, &address, now, now - THROTTLE_WINDOW)
            .await?;
        tracing::info!(%address, "console: sign-in failed");
        return Ok(retry(StatusCode::UNAUTHORIZED, "Wrong name or password."));
    };
    let token = password::random_token();
    console
        .store
        .create_operator_session(
            &token_hash(&token),
            &operator.name,
            &password::random_token(),
            now,
            now + SESSION_SECONDS,
        )
        .await?;
    Ok(signed_in(&console, &token))
}

/// The answer to a sign-in: to the dashboard, with the session's cookie set and the
/// sign-in form's cookie cleared.
pub(super) fn signed_in(console: &Console, session_token: &str) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/console/dashboard")],
    )
        .into_response();
    let h = response.headers_mut();
    for cookie in [
        console.cookie(SESSION_COOKIE, session_token, SESSION_SECONDS),
        console.cookie(LOGIN_COOKIE, "", 0),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

async fn sign_out(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Page {
    let session = console.post_session(&headers, &parse_form(&body)).await?;
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE) {
        console
            .store
            .delete_operator_session(&token_hash(token), &session.operator)
            .await?;
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/sign-in".to_owned()),
            (header::SET_COOKIE, console.cookie(SESSION_COOKIE, "", 0)),
        ],
    )
        .into_response())
}

/// The inventory's query string, parsed (empty fields are no filter).
fn inventory_query(params: &HashMap<String, String>, now: i64) -> Result<InventoryQuery, Refusal> {
    let field = |k: &str| {
        params
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let bad = |text| Refusal::Status(StatusCode::BAD_REQUEST, text);
    let after = match field("after") {
        None => None,
        Some(a) => {
            let (at, serial) = a.split_once(':').ok_or(bad("bad page cursor"))?;
            Some((
                at.parse().map_err(|_| bad("bad page cursor"))?,
                serial.to_owned(),
            ))
        }
    };
    Ok(InventoryQuery {
        serial: field("serial").map(|s| s.replace(':', "").to_ascii_lowercase()),
        account: field("account")
            .map(|a| a.parse().map_err(|_| bad("the account is a number")))
            .transpose()?,
        issuer: field("issuer"),
        name: field("name"),
        eab_label: field("eab_label"),
        profile: field("profile"),
        state: field("state")
            .map(|s| CertificateState::parse(&s).ok_or(bad("unknown state")))
            .transpose()?,
        after,
        limit: PAGE_SIZE,
        now,
    })
}

async fn inventory(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let now = console.clock.now();
    let mut query = inventory_query(&params, now)?;
    match params.get("format").map(String::as_str) {
        Some("json") | Some("csv") => {
            // An export walks the whole search, page by page (bounded pages).
            query.limit = 1000;
            let mut items = Vec::new();
            loop {
                let page = console.store.inventory_page(&query).await?;
                items.extend(page.items);
                match page.next {
                    Some(next) if items.len() < 100_000 => query.after = Some(next),
                    _ => break,
                }
            }
            if params.get("format").map(String::as_str) == Some("json") {
                let body = serde_json::to_string_pretty(&items).unwrap_or_default();
                return Ok((
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"certificates.json\"",
                        ),
                    ],
                    body,
                )
                    .into_response());
            }
            return Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"certificates.csv\"",
                    ),
                ],
                views::csv(&items),
            )
                .into_response());
        }
        _ => {}
    }
    let page = console.store.inventory_page(&query).await?;
    Ok(views::inventory(&session, &params, &page).into_response())
}

async fn certificate(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(serial): Path<String>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let serial = serial.replace(':', "").to_ascii_lowercase();
    let store = &console.store;
    let cert = store.certificate(&serial).await?;
    let order = store.order(cert.order_id).await?;
    let account = store.account(cert.account_id).await?;
    // The `replaces` chain back (an order's `replaces` is an ARI certificate id,
    // `base64url(AKI).base64url(serial)`), a few steps at most.
    let mut predecessors = Vec::new();
    let mut replaces = order.replaces.as_deref().and_then(ari_serial);
    while let Some(previous) = replaces.take() {
        if predecessors.len() >= 10 || predecessors.contains(&previous) {
            break;
        }
        replaces = match store.certificate(&previous).await {
            Ok(c) => store
                .order(c.order_id)
                .await
                .ok()
                .and_then(|o| o.replaces.as_deref().and_then(ari_serial)),
            Err(_) => None,
        };
        predecessors.push(previous);
    }
    let replaced_by = match cert.replaced_by_order {
        Some(id) => store
            .order(id)
            .await
            .ok()
            .and_then(|o| o.certificate_serial),
        None => None,
    };
    let names: Vec<String> = cert.names.iter().map(|i| i.value.clone()).collect();
    let later = store
        .later_certificates_for_names(
            cert.account_id.0,
            &names,
            cert.not_after,
            console.clock.now(),
            10,
        )
        .await?;
    Ok(views::certificate(
        &session,
        &views::CertificatePage {
            cert: &cert,
            order: &order,
            account: &account,
            predecessors: &predecessors,
            replaced_by: replaced_by.as_deref(),
            later: &later,
            now: console.clock.now(),
        },
    )
    .into_response())
}

async fn renew_early(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    body: Bytes,
) -> Page {
    let (_, store) = console.admin_session(&headers, &parse_form(&body)).await?;
    let serial = serial.replace(':', "").to_ascii_lowercase();
    if !store.mark_renew_early(&serial).await? {
        return Err(Refusal::Store(StoreError::NotFound));
    }
    let to = format!("/console/certificates/{serial}");
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

async fn revoke(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    body: Bytes,
) -> Page {
    let form = parse_form(&body);
    let (session, _) = console.admin_session(&headers, &form).await?;
    let Some(ra) = &console.ra else {
        return Err(Refusal::Status(
            StatusCode::NOT_FOUND,
            "Revocation is not available here.",
        ));
    };
    let reason = form
        .get("reason")
        .and_then(|r| r.parse::<u8>().ok())
        .filter(|r| ALLOWED_REASONS.contains(r))
        .ok_or(Refusal::Status(
            StatusCode::BAD_REQUEST,
            "Choose a revocation reason.",
        ))?;
    let operator = Actor::Operator(Some(session.operator.clone()));
    match ra.revoke_by_operator_as(&serial, reason, &operator).await {
        Ok(cert) => {
            tracing::info!(serial = %cert.serial, operator = %session.operator, reason = reason_name(reason), "console: revoked");
            let to = format!("/console/certificates/{}", cert.serial);
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
        }
        Err(e) => {
            let status = match &e {
                crate::ra::Error::NotFound(_) => StatusCode::NOT_FOUND,
                crate::ra::Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::CONFLICT,
            };
            Err(Refusal::Text(status, e.to_string()))
        }
    }
}

/// The reasons an operator may give, for the revoke form.
pub(crate) fn revocation_reasons() -> impl Iterator<Item = (u8, &'static str)> {
    ALLOWED_REASONS.iter().map(|r| (*r, reason_name(*r)))
}

async fn create_eab_key(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Page {
    let form = parse_form(&body);
    let (session, store) = console.admin_session(&headers, &form).await?;
    let label = form.get("label").map(|l| l.trim()).unwrap_or_default();
    if label.is_empty() || label.len() > 200 {
        return Err(Refusal::Status(
            StatusCode::BAD_REQUEST,
            "A label of 1 to 200 characters is needed.",
        ));
    }
    // As `certwright-ca eab create` makes them: never starting with '-'.
    let random = |len: usize| loop {
        let mut b = vec![0u8; len];
        aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
        let text = certwright_proto::b64::encode(&b);
        if !text.starts_with('-') {
            break (text, b);
        }
    };
    let (kid, _) = random(12);
    let (key_text, key) = random(32);
    store
        .create_eab_key(&kid, label, &key, console.clock.now())
        .await?;
    let keys = console.store.eab_keys().await?;
    Ok(views::eab_keys_created(
        &session, &keys, &kid, &key_text, label,
    ))
}

/// The serial (lower-case hex) of an ARI certificate id (RFC 9773 §4.1).
fn ari_serial(id: &str) -> Option<String> {
    certwright_proto::ari::parse_cert_id(id).map(|(_, serial)| crate::encoding::hex(&serial))
}

async fn eab_keys(State(console): State<Console>, headers: HeaderMap) -> Page {
    let session = console.page_session(&headers).await?;
    let keys = console.store.eab_keys().await?;
    Ok(views::eab_keys(&session, &keys).into_response())
}

/// Deliveries of each kind listed per endpoint.
const WEBHOOK_ROWS: i64 = 20;

async fn webhooks(State(console): State<Console>, headers: HeaderMap) -> Page {
    let session = console.page_session(&headers).await?;
    let mut endpoints = Vec::new();
    for route in console.store.webhook_routes().endpoints() {
        let deliveries = console
            .store
            .webhook_deliveries(&route.name, WEBHOOK_ROWS)
            .await?;
        endpoints.push((route.clone(), deliveries));
    }
    Ok(views::webhooks(&session, &endpoints, console.clock.now()))
}

async fn retry_webhook(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(seq): Path<String>,
    body: Bytes,
) -> Page {
    let (session, store) = console.admin_session(&headers, &parse_form(&body)).await?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| Refusal::Store(StoreError::NotFound))?;
    if !store
        .retry_webhook_delivery(seq, console.clock.now())
        .await?
    {
        return Err(Refusal::Status(
            StatusCode::CONFLICT,
            "That delivery has not failed (or does not exist).",
        ));
    }
    tracing::info!(delivery = seq, operator = %session.operator, "console: webhook delivery queued again");
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/console/webhooks")],
    )
        .into_response())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::console::tests::{account, issue};
    use axum::body::Body;
    use tower::ServiceExt;

    #[tokio::test]
    async fn cookies_and_hashes() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; certwright_console=tok; b=2"),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie_value(&h, "c"), None);
        assert_eq!(token_hash("tok").len(), 64);
        assert_ne!(token_hash("tok"), token_hash("tol"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        let store = Store::open("sqlite::memory:").await.unwrap();
        let plain = Console::new(store.clone(), Clock::system(), false);
        assert_eq!(
            plain.cookie(SESSION_COOKIE, "t", 60),
            "certwright_console=t; Path=/console; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let tls = Console::new(store, Clock::system(), true);
        assert!(tls.cookie(SESSION_COOKIE, "t", 60).ends_with("; Secure"));
    }

    /// A router over an in-memory store, and requests to it (also `actions`' tests).
    pub(super) struct Fixture {
        pub(super) store: Store,
        pub(super) router: Router,
    }

    impl Fixture {
        pub(super) async fn new() -> Self {
            let kek =
                crate::secrets::Kek::from_bytes(&[7; crate::secrets::KEK_LEN], "test").unwrap();
            let store = Store::open("sqlite::memory:")
                .await
                .unwrap()
                .with_eab_kek(std::sync::Arc::new(kek));
            let router = router(Console::new(store.clone(), Clock::system(), false));
            Self { store, router }
        }

        /// A session of a new operator `name` with `role`: (cookie header, csrf).
        pub(super) async fn session(&self, name: &str, role: OperatorRole) -> (String, String) {
            self.store
                .add_operator(name, role, "$argon2id$none", 1)
                .await
                .unwrap();
            self.another_session(name).await
        }

        /// One more session of the existing operator `name`: (cookie header, csrf).
        pub(super) async fn another_session(&self, name: &str) -> (String, String) {
            let (token, csrf) = (password::random_token(), password::random_token());
            let now = Clock::system().now();
            self.store
                .create_operator_session(&token_hash(&token), name, &csrf, now, now + 600)
                .await
                .unwrap();
            (format!("{SESSION_COOKIE}={token}"), csrf)
        }

        pub(super) async fn send(
            &self,
            method: &str,
            uri: &str,
            cookie: Option<&str>,
            form: Option<&str>,
        ) -> (StatusCode, HeaderMap, String) {
            let mut r = axum::http::Request::builder().method(method).uri(uri);
            if let Some(c) = cookie {
                r = r.header(header::COOKIE, c);
            }
            if form.is_some() {
                r = r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            let r = r
                .body(Body::from(form.unwrap_or_default().to_owned()))
                .unwrap();
            let response = self.router.clone().oneshot(r).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, 1 << 22).await.unwrap();
            (
                parts.status,
                parts.headers,
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    }

    #[tokio::test]
    async fn pages_need_a_session_and_escape_what_clients_and_operators_chose() {
        let f = Fixture::new().await;
        let script = "<script>alert(1)</script>";
        let a = account(&f.store, &[&format!("mailto:{script}@x.example")]).await;
        issue(
            &f.store,
            a,
            &[&format!("{script}.example")],
            "0abc",
            i64::MAX / 2,
            None,
        )
        .await;
        f.store
            .create_eab_key("kid1", script, &[1; 32], 1)
            .await
            .unwrap();
        for page in [
            "/console",
            "/console/dashboard",
            "/console/certificates",
            "/console/certificates/0abc",
            "/console/renewal",
            "/console/eab",
        ] {
            let (status, headers, _) = f.send("GET", page, None, None).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
            assert_eq!(headers[header::LOCATION], "/console/sign-in", "{page}");
            let (status, _, _) = f
                .send("GET", page, Some("certwright_console=forged"), None)
                .await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{page} with a forged cookie");
        }
        let (cookie, _) = f.session("vera", OperatorRole::Viewer).await;
        for page in [
            "/console/certificates",
            "/console/certificates/0abc",
            "/console/eab",
            "/console/certificates?name=.example",
        ] {
            let (status, headers, body) = f.send("GET", page, Some(&cookie), None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert!(
                !body.contains("<script>"),
                "{page} carries raw HTML: {body}"
            );
            assert!(
                body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{page} lost the text: {body}"
            );
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                "default-src 'self'"
            );
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        }
        let (_, _, body) = f
            .send("GET", "/console/certificates/0abc", Some(&cookie), None)
            .await;
        assert!(
            body.contains("mailto:&lt;script&gt;"),
            "the contact is shown escaped: {body}"
        );
        let (_, _, csv) = f
            .send(
                "GET",
                "/console/certificates?format=csv",
                Some(&cookie),
                None,
            )
            .await;
        assert!(csv.contains("0abc"), "{csv}");
        let (_, _, json) = f
            .send(
                "GET",
                "/console/certificates?format=json&state=valid",
                Some(&cookie),
                None,
            )
            .await;
        let items: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(items[0]["serial"], "0abc", "{json}");
    }

    #[tokio::test]
    async fn posts_need_a_session_its_csrf_token_and_an_admin() {
        let f = Fixture::new().await;
        let a = account(&f.store, &[]).await;
        issue(&f.store, a, &["a.example"], "0abc", i64::MAX / 2, None).await;
        let renew = "/console/certificates/0abc/renew-early";
        let renewed = |s: Store| async move { s.certificate("0abc").await.unwrap().renew_early };
        let (viewer, viewer_csrf) = f.session("vera", OperatorRole::Viewer).await;
        let (admin, admin_csrf) = f.session("root", OperatorRole::Admin).await;
        let cases = [
            (None, "csrf=x".to_owned()),
            (Some(viewer.as_str()), format!("csrf={viewer_csrf}")),
            (Some(admin.as_str()), String::new()),
            (Some(admin.as_str()), "csrf=wrong".to_owned()),
            (Some(admin.as_str()), format!("csrf={viewer_csrf}")),
        ];
        for (cookie, form) in &cases {
            let (status, _, _) = f.send("POST", renew, *cookie, Some(form)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{cookie:?} {form}");
            assert!(
                !renewed(f.store.clone()).await,
                "{cookie:?} {form} changed the certificate"
            );
            let (status, _, _) = f
                .send(
                    "POST",
                    "/console/eab",
                    *cookie,
                    Some(&format!("{form}&label=x")),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{cookie:?} {form}");
            assert!(f.store.eab_keys().await.unwrap().is_empty());
        }
        let (status, _, _) = f
            .send(
                "POST",
                renew,
                Some(&admin),
                Some(&format!("csrf={admin_csrf}")),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(renewed(f.store.clone()).await);
        let (status, _, body) = f
            .send(
                "POST",
                "/console/eab",
                Some(&admin),
                Some(&format!("csrf={admin_csrf}&label=team-a")),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let key = &f.store.eab_keys().await.unwrap()[0];
        assert!(
            body.contains(&key.kid) && body.contains("--eab-hmac-key"),
            "{body}"
        );
        let actors: Vec<String> = f
            .store
            .audit_entries(0, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.actor, e.action))
            .collect();
        assert!(
            actors.contains(&"operator:root certificate.renew_early".to_owned()),
            "{actors:?}"
        );
        assert!(
            actors.contains(&"operator:root eab.create".to_owned()),
            "{actors:?}"
        );

        // Sign-out: refused without the token (the session stays), then ends the session.
        let (status, _, _) = f
            .send("POST", "/console/sign-out", Some(&admin), Some(""))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = f
            .send("GET", "/console/dashboard", Some(&admin), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, headers, _) = f
            .send(
                "POST",
                "/console/sign-out",
                Some(&admin),
                Some(&format!("csrf={admin_csrf}")),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let (status, _, _) = f
            .send("GET", "/console/dashboard", Some(&admin), None)
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "the session row is gone");
    }

    #[tokio::test]
    async fn the_webhooks_page_shows_failures_and_only_an_admin_retries_one() {
        use crate::store::webhooks::tests::route;
        let kek = crate::secrets::Kek::from_bytes(&[7; crate::secrets::KEK_LEN], "test").unwrap();
        let store = Store::open("sqlite::memory:")
            .await
            .unwrap()
            .with_eab_kek(std::sync::Arc::new(kek))
            .with_webhooks(crate::store::WebhookRoutes::new(vec![route("ops", &[])]));
        let f = Fixture {
            router: router(Console::new(store.clone(), Clock::system(), false)),
            store,
        };
        // An issuance queues certificate.issued; its one attempt fails: given up.
        let a = account(&f.store, &[]).await;
        issue(&f.store, a, &["a.example"], "0abc", i64::MAX / 2, None).await;
        let now = Clock::system().now();
        let d = f
            .store
            .claim_webhook_delivery("ops", now, now + 60)
            .await
            .unwrap()
            .unwrap();
        f.store
            .webhook_attempt_failed(d.seq, now, "HTTP 503", None)
            .await
            .unwrap();
        let failed =
            |s: Store| async move { s.webhook_deliveries("ops", 10).await.unwrap().failed.len() };
        let retries = |s: Store| async move {
            s.audit_entries(0, 0, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "webhook.retry")
                .map(|e| e.actor)
                .collect::<Vec<_>>()
        };

        let (status, headers, _) = f.send("GET", "/console/webhooks", None, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/sign-in");
        let (viewer, viewer_csrf) = f.session("vera", OperatorRole::Viewer).await;
        let (admin, admin_csrf) = f.session("root", OperatorRole::Admin).await;
        let (status, _, body) = f
            .send("GET", "/console/webhooks", Some(&viewer), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("ops") && body.contains(&d.event_id) && body.contains("HTTP 503"),
            "{body}"
        );
        assert!(
            body.contains("certificate.issued") && !body.contains("Retry now"),
            "{body}"
        );
        let (_, _, body) = f.send("GET", "/console/webhooks", Some(&admin), None).await;
        assert!(body.contains("Retry now"), "{body}");

        let retry = format!("/console/webhooks/deliveries/{}/retry", d.seq);
        for (cookie, form) in [
            (None, "csrf=x".to_owned()),
            (Some(viewer.as_str()), format!("csrf={viewer_csrf}")),
            (Some(admin.as_str()), String::new()),
            (Some(admin.as_str()), "csrf=wrong".to_owned()),
            (Some(admin.as_str()), format!("csrf={viewer_csrf}")),
        ] {
            let (status, _, _) = f.send("POST", &retry, cookie, Some(&form)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{cookie:?} {form}");
            assert_eq!(
                failed(f.store.clone()).await,
                1,
                "{cookie:?} {form} changed it"
            );
            assert!(retries(f.store.clone()).await.is_empty());
        }
        let form = format!("csrf={admin_csrf}");
        let (status, headers, _) = f.send("POST", &retry, Some(&admin), Some(&form)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/webhooks");
        let listed = f.store.webhook_deliveries("ops", 10).await.unwrap();
        assert_eq!((listed.failed.len(), listed.queued.len()), (0, 1));
        assert_eq!(retries(f.store.clone()).await, ["operator:root"]);
        // Not failed any more: refused, nothing changes.
        let (status, _, _) = f.send("POST", &retry, Some(&admin), Some(&form)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _, _) = f
            .send(
                "POST",
                "/console/webhooks/deliveries/x/retry",
                Some(&admin),
                Some(&form),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(retries(f.store.clone()).await.len(), 1);
    }

    #[tokio::test]
    async fn five_wrong_passwords_lock_the_name_even_for_the_right_one() {
        let f = Fixture::new().await;
        let hash = password::hash("the right password").unwrap();
        f.store
            .add_operator("root", OperatorRole::Admin, &hash, 1)
            .await
            .unwrap();
        let login = "certwright_console_login=L";
        let sign_in = |password: &str| format!("csrf=L&name=root&password={password}");
        // Without the sign-in form's token: refused before any password check.
        let (status, _, _) = f
            .send(
                "POST",
                "/console/sign-in",
                None,
                Some(&sign_in("the+right+password")),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, headers, _) = f
            .send(
                "POST",
                "/console/sign-in",
                Some(login),
                Some(&sign_in("the+right+password")),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let cookie = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("certwright_console="))
            .unwrap();
        assert!(
            cookie.contains("; HttpOnly")
                && cookie.contains("; SameSite=Strict")
                && cookie.contains("; Path=/console"),
            "{cookie}"
        );
        for _ in 0..THROTTLE_FAILURES {
            let (status, _, _) = f
                .send(
                    "POST",
                    "/console/sign-in",
                    Some(login),
                    Some(&sign_in("wrong")),
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, headers, body) = f
            .send(
                "POST",
                "/console/sign-in",
                Some(login),
                Some(&sign_in("the+right+password")),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(headers
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("certwright_console=")));
        assert!(body.contains("Too many failed sign-ins"));
    }

    #[tokio::test]
    async fn the_validations_page_shows_the_evidence_escaped_and_needs_a_session() {
        let f = Fixture::new().await;
        let script = "<script>alert(1)</script>";
        let a = account(&f.store, &[]).await;
        issue(&f.store, a, &["web.example"], "0a", i64::MAX / 2, None).await;
        let trace = f
            .store
            .validation_traces(
                &crate::store::troubleshoot::TraceQuery::Name("web.example".into()),
                None,
                5,
            )
            .await
            .unwrap()
            .remove(0);
        let challenge = trace.authz.challenges[0].id;
        assert!(f
            .store
            .start_validation(challenge, i64::MAX / 4)
            .await
            .unwrap());
        f.store
            .finish_validation(
                challenge,
                Some(&certwright_proto::Problem::incorrect_response(format!(
                    "the response was {script}"
                ))),
                &serde_json::json!({"url": "http://web.example/x", "caa": {"decision": "no CAA records: allowed"}}),
                &serde_json::json!({"body": script}),
                5,
            )
            .await
            .unwrap();

        let uri = "/console/validations?name=web.example";
        let (status, headers, _) = f.send("GET", uri, None, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/sign-in");

        let (cookie, _) = f.session("vera", OperatorRole::Viewer).await;
        let (status, _, body) = f.send("GET", uri, Some(&cookie), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("incorrectResponse"), "{body}");
        assert!(body.contains("no CAA records: allowed"), "{body}");
        assert!(body.contains("What the VA saw"), "{body}");
        assert!(!body.contains(script), "escaped");
        assert!(body.contains("&lt;script&gt;"), "{body}");
        let (_, _, body) = f
            .send(
                "GET",
                &format!("/console/validations?account={}", a.0),
                Some(&cookie),
                None,
            )
            .await;
        assert!(body.contains("web.example"), "{body}");
        let (status, _, body) = f
            .send("GET", "/console/validations?account=x", Some(&cookie), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("An account is given by its number."),
            "{body}"
        );
    }
}
