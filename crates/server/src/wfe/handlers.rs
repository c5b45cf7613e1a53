//! The ACME endpoints.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use certwright_proto::types::{
    AccountUpdate, ChallengeStatus, Finalize, NewAccount, NewOrder, OrderStatus, OrdersList,
};
use certwright_proto::{Problem, CONTENT_TYPE_PEM_CHAIN};
use serde::Deserialize;
use serde_json::Value;

use super::auth::SignedRequest;
use super::problem::ApiResult;
use super::{render, AppState};
use crate::store::{AccountId, AuthzId, ChallengeId, OrderId};

/// Orders per page of an account's orders list.
pub const ORDERS_PAGE_SIZE: u32 = 100;
/// Seconds a client should wait before polling something in progress.
pub const RETRY_AFTER_SECS: u64 = 1;

fn with_location(mut r: Response, url: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn add_link(r: &mut Response, url: &str, rel: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{url}>;rel=\"{rel}\"")) {
        r.headers_mut().append(header::LINK, v);
    }
}

fn retry_after(r: &mut Response) {
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
}

pub(super) fn parse_id(text: &str, what: &str) -> Result<i64, Problem> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        Problem::malformed(format!("{text:?} is not a valid {what} id")).with_status(404)
    })
}

/// GET /directory
pub async fn directory(State(state): State<Arc<AppState>>) -> Response {
    Json(state.directory.clone()).into_response()
}

/// HEAD/GET /acme/new-nonce: 200 for HEAD, 204 for GET (§7.2); the nonce is added by the
/// response layer.
pub async fn new_nonce(method: axum::http::Method) -> Response {
    let status = if method == axum::http::Method::HEAD {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    let mut r = status.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// POST /acme/new-account
pub async fn new_account(State(state): State<Arc<AppState>>, req: SignedRequest) -> ApiResult {
    let jwk = req.jwk()?;
    let payload: NewAccount = req.payload()?;
    let url = state.urls.endpoint("/acme/new-account");
    let (account, created) = state
        .ra
        .new_account(jwk, &payload, &url, req.client)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = render::account(&state.urls, &account);
    Ok(with_location(
        (status, Json(body)).into_response(),
        &state.urls.account(account.id),
    ))
}

/// POST /acme/acct/{id}: fetch (POST-as-GET), update or deactivate.
pub async fn account(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: SignedRequest,
) -> ApiResult {
    let account = req.account()?;
    let id = AccountId(parse_id(&id, "account")?);
    if id != account.id {
        return Err(Problem::unauthorized(
            "the request is signed by another account than the one in the URL",
        )
        .into());
    }
    let account = if req.jws.is_post_as_get() {
        account.clone()
    } else {
        let update: AccountUpdate = req.payload()?;
        state.ra.update_account(account, &update).await?
    };
    let body = render::account(&state.urls, &account);
    Ok(with_location(
        Json(body).into_response(),
        &state.urls.account(account.id),
    ))
}

/// The query of the orders list: `cursor` is the last order id of the previous page.
#[derive(Debug, Deserialize)]
pub struct Cursor {
    cursor: Option<i64>,
}

/// POST /acme/acct/{id}/orders: the account's orders, paginated (§7.1.2.1).
pub async fn account_orders(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(cursor): Query<Cursor>,
    req: SignedRequest,
) -> ApiResult {
    req.require_post_as_get()?;
    let account = req.account()?;
    if AccountId(parse_id(&id, "account")?) != account.id {
        return Err(Problem::unauthorized("the orders list belongs to another account").into());
    }
    let after = cursor.cursor.unwrap_or(0);
    let ids = state
        .ra
        .store()
        .account_order_ids(account.id, after, ORDERS_PAGE_SIZE + 1)
        .await
        .map_err(crate::ra::Error::from)?;
    let more = ids.len() > ORDERS_PAGE_SIZE as usize;
    let page = &ids[..ids.len().min(ORDERS_PAGE_SIZE as usize)];
    let list = OrdersList {
        orders: page.iter().map(|id| state.urls.order(*id)).collect(),
    };
    let mut r = Json(list).into_response();
    if let (true, Some(last)) = (more, page.last()) {
        add_link(
            &mut r,
            &format!(
                "{}?cursor={}",
                state.urls.account_orders(account.id),
                last.0
            ),
            "next",
        );
    }
    Ok(r)
}

/// POST /acme/new-order
pub async fn new_order(State(state): State<Arc<AppState>>, req: SignedRequest) -> ApiResult {
    let account = req.account()?;
    let payload: NewOrder = req.payload()?;
    let view = state.ra.new_order(account, &payload).await?;
    let body = render::order(&state.urls, &view);
    Ok(with_location(
        (StatusCode::CREATED, Json(body)).into_response(),
        &state.urls.order(view.record.id),
    ))
}

/// POST /acme/order/{id} (POST-as-GET)
pub async fn order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    mut req: SignedRequest,
) -> ApiResult {
    req.require_post_as_get()?;
    let id = OrderId(parse_id(&id, "order")?);
    let known = req.prefetched_order(id);
    let view = state.ra.order_known(req.account()?, id, known).await?;
    Ok(order_response(&state, &view))
}

fn order_response(state: &AppState, view: &crate::ra::OrderView) -> Response {
    let mut r = Json(render::order(&state.urls, view)).into_response();
    if view.status == OrderStatus::Processing {
        retry_after(&mut r);
    }
    with_location(r, &state.urls.order(view.record.id))
}

/// POST /acme/order/{id}/finalize
pub async fn finalize(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    mut req: SignedRequest,
) -> ApiResult {
    let id = OrderId(parse_id(&id, "order")?);
    let known = req.prefetched_order(id);
    let account = req.account()?;
    let payload: Finalize = req.payload()?;
    let view = state
        .ra
        .finalize_known(account, id, &payload.csr, known)
        .await?;
    Ok(order_response(&state, &view))
}

/// POST /acme/authz/{id}: fetch (POST-as-GET) or deactivate (§7.5.2).
pub async fn authorization(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    mut req: SignedRequest,
) -> ApiResult {
    let id = AuthzId(parse_id(&id, "authorization")?);
    let known = req.prefetched_authorization(id);
    let account = req.account()?;
    let view = if req.jws.is_post_as_get() {
        state.ra.authorization_known(account, id, known).await?
    } else {
        let update: Value = req.payload()?;
        if update.get("status").and_then(Value::as_str) != Some("deactivated") {
            return Err(Problem::malformed(
                "an authorization update must be {\"status\": \"deactivated\"}",
            )
            .into());
        }
        state.ra.deactivate_authorization(account, id).await?
    };
    let processing = view
        .record
        .challenges
        .iter()
        .any(|c| c.status == ChallengeStatus::Processing);
    let mut r = Json(render::authorization(&state.urls, &view)).into_response();
    if processing {
        retry_after(&mut r);
    }
    Ok(with_location(r, &state.urls.authorization(view.record.id)))
}

/// POST /acme/chall/{authz}/{id}: `{}` starts validation; POST-as-GET fetches.
pub async fn challenge(
    State(state): State<Arc<AppState>>,
    Path((authz, id)): Path<(String, String)>,
    mut req: SignedRequest,
) -> ApiResult {
    let authz_id = AuthzId(parse_id(&authz, "authorization")?);
    let challenge_id = ChallengeId(parse_id(&id, "challenge")?);
    let known = req.prefetched_authorization(authz_id);
    let account = req.account()?;
    let challenge = if req.jws.is_post_as_get() {
        let view = state
            .ra
            .authorization_known(account, authz_id, known)
            .await?;
        view.record
            .challenges
            .into_iter()
            .find(|c| c.id == challenge_id)
            .ok_or_else(|| {
                Problem::malformed("no such challenge for this account").with_status(404)
            })?
    } else {
        let _: serde_json::Map<String, Value> = req.payload()?;
        state
            .ra
            .respond_to_challenge_known(account, authz_id, challenge_id, known)
            .await?
            .1
    };
    let mut r = Json(render::challenge(&state.urls, authz_id, &challenge)).into_response();
    add_link(&mut r, &state.urls.authorization(authz_id), "up");
    if challenge.status == ChallengeStatus::Processing {
        retry_after(&mut r);
    }
    Ok(r)
}

/// POST /acme/cert/{serial} (POST-as-GET): the PEM chain, leaf first (§7.4.2).
pub async fn certificate(
    State(state): State<Arc<AppState>>,
    Path(serial): Path<String>,
    req: SignedRequest,
) -> ApiResult {
    certificate_chain(&state, &serial, 0, req).await
}

/// POST-as-GET /acme/cert/{serial}/{n}: the n-th alternate chain (RFC 8555 §7.4.2).
pub async fn alternate_certificate(
    State(state): State<Arc<AppState>>,
    Path((serial, n)): Path<(String, String)>,
    req: SignedRequest,
) -> ApiResult {
    let n = n
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .ok_or_else(|| Problem::malformed("no such alternate chain").with_status(404))?;
    certificate_chain(&state, &serial, n, req).await
}

/// A certificate serial from a URL (hex, at most 64 digits), lower-cased as stored.
pub(super) fn parse_serial(text: &str) -> Result<String, Problem> {
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            Problem::malformed(format!("{text:?} is not a certificate serial")).with_status(404),
        );
    }
    Ok(text.to_ascii_lowercase())
}

/// The certificate's default chain (`alt` 0) or alternate chain `alt`, with a
/// `Link: rel="alternate"` for every other chain.
async fn certificate_chain(
    state: &AppState,
    serial: &str,
    alt: usize,
    mut req: SignedRequest,
) -> ApiResult {
    req.require_post_as_get()?;
    let serial = parse_serial(serial)?;
    let known = req.prefetched_certificate(&serial);
    let cert = state.ra.certificate(req.account()?, &serial, known).await?;
    let mut alternates = state.ra.alternate_chains(&cert);
    let count = alternates.len();
    let body = match alt {
        0 => cert.chain_pem,
        n if n <= alternates.len() => alternates.swap_remove(n - 1),
        _ => {
            return Err(Problem::malformed("no such alternate chain")
                .with_status(404)
                .into())
        }
    };
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_PEM_CHAIN),
    );
    let url = state.urls.certificate(&serial);
    for other in (0..=count).filter(|i| *i != alt) {
        let target = match other {
            0 => url.clone(),
            n => format!("{url}/{n}"),
        };
        add_link(&mut r, &target, "alternate");
    }
    Ok(r)
}

/// Any other path.
pub async fn not_found() -> ApiResult {
    Err(Problem::new(
        certwright_proto::ProblemType::AboutBlank,
        "no such resource",
    )
    .with_status(404)
    .into())
}

/// A known path with the wrong method.
pub async fn method_not_allowed() -> ApiResult {
    Err(Problem::malformed("method not allowed for this resource (ACME resources take POST; the directory and newNonce also GET)")
        .with_status(405)
        .into())
}
