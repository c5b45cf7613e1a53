//! Endpoints of the certificate lifecycle: keyChange, revokeCert, renewalInfo (ARI) and
//! the CRL.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use certwright_proto::types::Revocation;
use certwright_proto::Problem;

use super::auth::{Authenticated, SignedRequest};
use super::problem::ApiResult;
use super::{render, AppState};
use crate::clock::rfc3339;
use crate::ra::lifecycle::{KeyChangeOutcome, Requester, ARI_RETRY_AFTER_SECS};

/// POST /acme/key-change (§7.3.5)
pub async fn key_change(State(state): State<Arc<AppState>>, req: SignedRequest) -> ApiResult {
    let account = req.account()?;
    if req.jws.is_post_as_get() {
        return Err(Problem::malformed("keyChange needs the inner JWS as its payload").into());
    }
    let account_url = state.urls.account(account.id);
    let url = state.urls.endpoint("/acme/key-change");
    match state
        .ra
        .change_key(account, &account_url, &req.jws.payload, &url)
        .await?
    {
        KeyChangeOutcome::Changed(account) => {
            let mut r = Json(render::account(&state.urls, &account)).into_response();
            if let Ok(v) = HeaderValue::from_str(&account_url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        KeyChangeOutcome::KeyInUse(other) => {
            let mut r = super::problem::ApiError(
                Problem::malformed("the new key already belongs to another account (see Location)")
                    .with_status(409),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&state.urls.account(other)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
    }
}

/// POST /acme/revoke-cert (§7.6): by the issuing account, by an account holding valid
/// authorizations for every name, or signed with the certificate's own key (`jwk`).
pub async fn revoke_cert(State(state): State<Arc<AppState>>, req: SignedRequest) -> ApiResult {
    let payload: Revocation = req.payload()?;
    let requester = match &req.signer {
        Authenticated::Account(a) => Requester::Account(a),
        Authenticated::Key(k) => Requester::CertificateKey(k),
    };
    state.ra.revoke(requester, &payload).await?;
    Ok(StatusCode::OK.into_response())
}

/// GET /acme/renewal-info/{certID} (RFC 9773 §4.2)
pub async fn renewal_info(
    State(state): State<Arc<AppState>>,
    Path(cert_id): Path<String>,
) -> ApiResult {
    let cert = state.ra.certificate_by_ari_id(&cert_id).await?;
    let mut r = Json(state.ra.renewal_info(&cert).await).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(ARI_RETRY_AFTER_SECS));
    Ok(r)
}

/// GET /crl/{NAME}.crl: issuer NAME's full CRL (DER).
pub async fn crl(State(state): State<Arc<AppState>>, Path(file): Path<String>) -> ApiResult {
    let Some(issuer) = file.strip_suffix(".crl") else {
        return Err(crate::ra::Error::NotFound("no such CRL".into()).into());
    };
    let crl = state.ra.current_crl(issuer).await?;
    let mut r: Response = crl.der.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-crl"),
    );
    let max_age = (crl.next_update - crl.this_update).max(0) / 2;
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate(crl.this_update)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate(crl.next_update)) {
        h.insert(header::EXPIRES, v);
    }
    Ok(r)
}

/// An HTTP date (RFC 9110 IMF-fixdate).
pub fn httpdate(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).unwrap_or_else(|_| rfc3339(unix))
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates() {
        assert_eq!(super::httpdate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
