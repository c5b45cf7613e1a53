//! The OCSP responder over HTTP (RFC 6960 Appendix A, RFC 5019): `POST /ocsp` with a DER
//! request, `GET /ocsp/{base64 of the DER request}`; and the issuer's certificate at
//! `GET /ca/intermediate.der` (the caIssuers URL). Plain HTTP, no JWS. Every OCSP request
//! gets an OCSP response (malformedRequest for what does not parse), never a panic or 500.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::lifecycle::httpdate;
use super::AppState;
use crate::ca::ocsp::{OcspError, SignedResponse};
use crate::ra::ocsp::OcspAnswer;

/// Where the responder listens, under the base URL (named in certificates' AIA).
pub const OCSP_PATH: &str = crate::ca::OCSP_PATH;
/// Where the first issuer's certificate (DER) is served (AIA caIssuers); issuer NAME's is
/// `/ca/NAME.der`.
pub const CA_ISSUERS_PATH: &str = "/ca/intermediate.der";
/// Largest DER request accepted (one with 16 CertIDs and a nonce is about 1.3 KiB).
pub const MAX_REQUEST_BYTES: usize = 4096;
/// Longest GET request text accepted: base64 of the largest request, every character
/// percent-escaped.
const MAX_GET_CHARS: usize = (MAX_REQUEST_BYTES / 3 + 1) * 4 * 3;

const CONTENT_TYPE_OCSP_RESPONSE: &str = "application/ocsp-response";

/// Standard base64, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// POST /ocsp (`application/ocsp-request`).
pub async fn post(State(state): State<Arc<AppState>>, body: Body) -> Response {
    match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(der) => answer(&state, &der).await,
        Err(_) => error_response(&OcspError::Malformed(format!(
            "the request body is unreadable or longer than {MAX_REQUEST_BYTES} bytes"
        ))),
    }
}

/// GET /ocsp/{request}: the request is the base64 (RFC 4648 §4) of the DER, usually
/// percent-encoded; it may contain `/`, hence the wildcard route.
pub async fn get(
    State(state): State<Arc<AppState>>,
    request: Result<Path<String>, PathRejection>,
) -> Response {
    let der = match request {
        Ok(Path(text)) => decode_get_request(&text),
        Err(_) => Err(OcspError::Malformed(
            "the request in the URL is not valid percent-encoded text".into(),
        )),
    };
    match der {
        Ok(der) => answer(&state, &der).await,
        Err(e) => error_response(&e),
    }
}

/// GET /ocsp without a request.
pub async fn get_without_request() -> Response {
    error_response(&OcspError::Malformed(
        "GET needs the base64 DER request after /ocsp/ (or POST it to /ocsp)".into(),
    ))
}

/// GET /ca/{NAME}.der: issuer NAME's certificate (the caIssuers URL of what it signs).
pub async fn issuer_certificate(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
) -> Response {
    let der = file
        .strip_suffix(".der")
        .and_then(|name| state.ra.issuer_certificate_der(name));
    let Some(der) = der else {
        // Like any other unknown path: a 404 problem document.
        return super::handlers::not_found().await.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "application/pkix-cert"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        der,
    )
        .into_response()
}

/// The base64 text of a GET request, decoded. Accepts the URL-safe alphabet too, and a
/// space where a `+` was (form-decoding proxies).
fn decode_get_request(text: &str) -> Result<Vec<u8>, OcspError> {
    if text.is_empty() || text.len() > MAX_GET_CHARS {
        return Err(OcspError::Malformed(format!(
            "the request in the URL must be 1 to {MAX_GET_CHARS} characters of base64"
        )));
    }
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' | ' ' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    // A DER OCSPRequest starts with 0x30, so its base64 starts with 'M': a leading '/' is
    // a doubled path separator (a base URL configured with a trailing slash).
    BASE64
        .decode(standard.trim_start_matches('/'))
        .map_err(|e| OcspError::Malformed(format!("the request in the URL is not base64: {e}")))
}

async fn answer(state: &AppState, der: &[u8]) -> Response {
    match state.ra.ocsp(der).await {
        OcspAnswer::Signed(signed) => signed_response(signed),
        OcspAnswer::Error(e) => error_response(&e),
        OcspAnswer::Disabled => super::handlers::not_found().await.into_response(),
    }
}

/// A successful response with caching headers matching thisUpdate/nextUpdate (RFC 5019
/// §6.2). One that echoes a nonce answers one request only and is not for caches.
fn signed_response(signed: SignedResponse) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_OCSP_RESPONSE),
    );
    let cache_control = if signed.has_nonce {
        "private, no-store".to_owned()
    } else {
        let max_age = (signed.next_update - signed.this_update).max(0);
        format!("max-age={max_age}, public, no-transform, must-revalidate")
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &signed.der);
    let etag = format!("\"{}\"", crate::ca::hex(&digest.as_ref()[..16]));
    for (name, value) in [
        (header::CACHE_CONTROL, cache_control),
        (header::LAST_MODIFIED, httpdate(signed.this_update)),
        (header::EXPIRES, httpdate(signed.next_update)),
        (header::ETAG, etag),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    (headers, signed.der).into_response()
}

/// An unsigned OCSP error response; HTTP 200 as OCSP clients expect (the status is
/// inside), never cached.
fn error_response(error: &OcspError) -> Response {
    tracing::debug!(error = %error, "OCSP error response");
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE_OCSP_RESPONSE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        error.response_der(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_requests_decode_in_every_spelling() {
        let der = vec![0x30, 0x0f, 0xbe, 0xfb, 0xff, 0xff, 0xff, 0x01];
        let standard = base64::engine::general_purpose::STANDARD.encode(&der);
        assert!(
            standard.contains('+') && standard.contains('/'),
            "{standard}"
        );
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der);
        let spaced = standard.replace('+', " ");
        for text in [
            &standard,
            standard.trim_end_matches('='),
            &url_safe,
            &spaced,
        ] {
            assert_eq!(decode_get_request(text).unwrap(), der, "{text}");
        }
        for bad in ["", "!!!!", "abc=def", &"A".repeat(MAX_GET_CHARS + 1)] {
            assert!(
                matches!(decode_get_request(bad), Err(OcspError::Malformed(_))),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn error_responses_carry_the_status() {
        let r = error_response(&OcspError::Unauthorized);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            CONTENT_TYPE_OCSP_RESPONSE
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
