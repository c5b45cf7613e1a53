//! Authentication of POST requests (RFC 8555 §6.2–§6.5): content type, flattened JWS,
//! algorithm, `url`, signer (`jwk` or `kid`), signature, account status and nonce.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, Request};
use certwright_proto::jws::Signer;
use certwright_proto::{Jwk, ParsedJws, Problem, ProblemType, CONTENT_TYPE_JOSE};

use super::problem::{jws_problem, ApiError};
use super::{AppState, ClientAddr};
use crate::store::{
    AccountRecord, AuthzId, AuthzRecord, CertificateRecord, OrderId, OrderRecord, Prefetch,
    Prefetched,
};
use certwright_proto::types::AccountStatus;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The answer to a body over [`MAX_BODY_BYTES`] (`malformed`, 413).
pub fn body_too_large() -> Problem {
    Problem::malformed(format!(
        "the request body is larger than {MAX_BODY_BYTES} bytes"
    ))
    .with_status(413)
}

/// Who signed an authenticated request.
#[derive(Debug, Clone)]
pub enum Authenticated {
    /// A `jwk`-signed request (newAccount; revocation by certificate key).
    Key(Jwk),
    /// A `kid`-signed request from a valid account.
    Account(AccountRecord),
}

/// A POST whose JWS has been verified and whose nonce has been redeemed.
#[derive(Debug)]
pub struct SignedRequest {
    /// The parsed JWS.
    pub jws: ParsedJws,
    /// Who signed it: an account (`kid`) or a key (`jwk`).
    pub signer: Authenticated,
    /// The client's address (for per-address rate limits), when known.
    pub client: Option<IpAddr>,
    /// The object the URL names and its read, done with the nonce's and the account's
    /// (PostgreSQL).
    pub prefetched: Option<(Prefetch, Prefetched)>,
}

/// The object a request to `path` works on, to read with its nonce and account: an
/// authorization (its URL or a challenge's), an order (its URL or its finalize URL) or a
/// certificate (its URL or an alternate chain's), its id parsed as the handler parses it.
/// The handler still checks that it is the signer's; a path that names none prefetches
/// nothing.
fn prefetch(path: &str) -> Option<Prefetch> {
    use super::handlers::{parse_id, parse_serial};
    let path = path.split('?').next().unwrap_or_default();
    let id = |text: &str| parse_id(text, "").ok();
    if let Some(rest) = path.strip_prefix("/acme/authz/") {
        return id(rest).map(|i| Prefetch::Authorization(AuthzId(i)));
    }
    if let Some(rest) = path.strip_prefix("/acme/chall/") {
        let (authz, _) = rest.split_once('/')?;
        return id(authz).map(|i| Prefetch::Authorization(AuthzId(i)));
    }
    if let Some(rest) = path.strip_prefix("/acme/order/") {
        let order = rest.strip_suffix("/finalize").unwrap_or(rest);
        return id(order).map(|i| Prefetch::Order(OrderId(i)));
    }
    let rest = path.strip_prefix("/acme/cert/")?;
    let serial = rest.split('/').next().unwrap_or_default();
    parse_serial(serial).ok().map(Prefetch::Certificate)
}

impl SignedRequest {
    /// The prefetched read of authorization `id` (`Some(None)`: there is none), or
    /// `None` when it was not read with the request and the handler reads it.
    pub fn prefetched_authorization(&mut self, id: AuthzId) -> Option<Option<AuthzRecord>> {
        match self.prefetched.take() {
            Some((Prefetch::Authorization(asked), Prefetched::Authorization(found)))
                if asked == id =>
            {
                Some(found)
            }
            _ => None,
        }
    }

    /// The prefetched read of order `id`, as [`SignedRequest::prefetched_authorization`].
    pub fn prefetched_order(&mut self, id: OrderId) -> Option<Option<OrderRecord>> {
        match self.prefetched.take() {
            Some((Prefetch::Order(asked), Prefetched::Order(found))) if asked == id => Some(found),
            _ => None,
        }
    }

    /// The prefetched read of certificate `serial`, as
    /// [`SignedRequest::prefetched_authorization`].
    pub fn prefetched_certificate(&mut self, serial: &str) -> Option<Option<CertificateRecord>> {
        match self.prefetched.take() {
            Some((Prefetch::Certificate(asked), Prefetched::Certificate(found)))
                if asked == serial =>
            {
                Some(found)
            }
            _ => None,
        }
    }
}

/// The client's address: the connection's peer, or with `trust_forwarded_for` the last
/// `X-Forwarded-For` entry (what the operator's own proxy appended).
fn client_address(req: &Request<Body>, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.extensions().get::<ClientAddr>().map(|c| c.0.ip())
}

impl SignedRequest {
    /// The signing account; refuses `jwk`-signed requests.
    pub fn account(&self) -> Result<&AccountRecord, ApiError> {
        match &self.signer {
            Authenticated::Account(a) => Ok(a),
            Authenticated::Key(_) => Err(Problem::malformed(
                "this request must be signed by an account (\"kid\"), not a bare \"jwk\"",
            )
            .into()),
        }
    }

    /// The signing key of a `jwk`-signed request; refuses `kid`.
    pub fn jwk(&self) -> Result<&Jwk, ApiError> {
        match &self.signer {
            Authenticated::Key(k) => Ok(k),
            Authenticated::Account(_) => Err(Problem::malformed(
                "newAccount must be signed with the account key in \"jwk\", not \"kid\"",
            )
            .into()),
        }
    }

    /// Parses the payload as JSON of type `T`; POST-as-GET payloads are refused.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.jws.is_post_as_get() {
            return Err(
                Problem::malformed("this request needs a JSON payload, not POST-as-GET").into(),
            );
        }
        serde_json::from_slice(&self.jws.payload).map_err(|e| {
            Problem::malformed(format!("the payload is not valid for this request: {e}")).into()
        })
    }

    /// Requires POST-as-GET (empty payload).
    pub fn require_post_as_get(&self) -> Result<(), ApiError> {
        if self.jws.is_post_as_get() {
            Ok(())
        } else {
            Err(Problem::malformed(
                "this resource is fetched with POST-as-GET: the payload must be empty",
            )
            .into())
        }
    }
}

impl FromRequest<Arc<AppState>> for SignedRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.split(';').next().unwrap_or("").trim() != CONTENT_TYPE_JOSE {
            return Err(Problem::malformed(format!(
                "Content-Type must be {CONTENT_TYPE_JOSE}, not {content_type:?}"
            ))
            .with_status(415)
            .into());
        }
        let client = client_address(&req, state.ra.trusts_forwarded_for());
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| body_too_large())?;
        let jws = ParsedJws::parse(&body).map_err(|e| jws_problem(None, &e))?;
        if jws.header.alg.is_mac() {
            return Err(Problem::bad_signature_algorithm(format!(
                "{} is a MAC algorithm; sign with ES256, ES384, RS256 or EdDSA",
                jws.header.alg
            ))
            .into());
        }
        let expected_url = format!("{}{}", state.urls.base, path);
        if jws.header.url != expected_url {
            return Err(Problem::unauthorized(format!(
                "the JWS \"url\" {:?} does not match the request URL {expected_url:?}",
                jws.header.url
            ))
            .into());
        }
        let Some(nonce) = jws.header.nonce.clone() else {
            return Err(
                Problem::bad_nonce("the JWS has no \"nonce\"; get one from newNonce").into(),
            );
        };
        let nonce_failure = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "nonce lookup failed");
            Problem::server_internal("the CA's database is unavailable; retry shortly")
        };
        // Shared nonces are redeemed with the account's read, and on PostgreSQL the read
        // of the object the URL names, in one statement.
        let mut redeemed = None;
        let mut prefetched = None;
        let signer = match &jws.header.signer {
            Signer::Jwk(jwk) => {
                jws.verify(jwk).map_err(|e| jws_problem(None, &e))?;
                Authenticated::Key(jwk.clone())
            }
            Signer::Kid(kid) => {
                let account = match state.urls.parse_account(kid) {
                    Some(id) => {
                        let asked = prefetch(&path);
                        match state
                            .nonces
                            .redeem_reading_account(&nonce, id, asked.as_ref())
                            .await
                            .map_err(nonce_failure)?
                        {
                            Some(found) => {
                                redeemed = Some(found.spent);
                                prefetched = asked.zip(found.prefetched);
                                found.account
                            }
                            None => state.ra.account(id).await?,
                        }
                    }
                    None => None,
                };
                let Some(account) = account else {
                    return Err(Problem::account_does_not_exist(format!(
                        "no account is known by the key id {kid:?}"
                    ))
                    .into());
                };
                jws.verify_with(&state.keys.get(&account.jwk))
                    .map_err(|e| jws_problem(None, &e))?;
                if account.status != AccountStatus::Valid {
                    return Err(Problem::unauthorized(format!(
                        "account {} is {}; it can no longer be used",
                        account.id, account.status
                    ))
                    .into());
                }
                crate::metrics::record_account(account.id);
                Authenticated::Account(account)
            }
        };
        let redeemed = match redeemed {
            Some(spent) => spent,
            None => state.nonces.redeem(&nonce).await.map_err(nonce_failure)?,
        };
        if !redeemed {
            return Err(Problem::new(
                ProblemType::BadNonce,
                "the nonce is unknown, expired or already used; retry with the nonce in this response",
            )
            .into());
        }
        Ok(SignedRequest {
            jws,
            signer,
            client,
            prefetched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(forwarded: &[&str]) -> Request<Body> {
        let mut b = Request::builder().uri("/acme/new-account");
        for f in forwarded {
            b = b.header("x-forwarded-for", *f);
        }
        let mut req = b.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ClientAddr("192.0.2.1:4000".parse().unwrap()));
        req
    }

    /// The object a URL names is prefetched; anything else, or an id that is not one,
    /// prefetches nothing (the handler reads, and refuses, as it would).
    #[test]
    fn a_request_prefetches_the_object_its_url_names() {
        let cases: &[(&str, Option<Prefetch>)] = &[
            ("/acme/authz/12", Some(Prefetch::Authorization(AuthzId(12)))),
            (
                "/acme/chall/12/7",
                Some(Prefetch::Authorization(AuthzId(12))),
            ),
            ("/acme/order/5", Some(Prefetch::Order(OrderId(5)))),
            ("/acme/order/5/finalize", Some(Prefetch::Order(OrderId(5)))),
            ("/acme/order/5?x=1", Some(Prefetch::Order(OrderId(5)))),
            (
                "/acme/cert/0A1b",
                Some(Prefetch::Certificate("0a1b".into())),
            ),
            (
                "/acme/cert/0a1b/1",
                Some(Prefetch::Certificate("0a1b".into())),
            ),
            ("/acme/order/abc", None),
            ("/acme/order/", None),
            ("/acme/authz/-1", None),
            ("/acme/authz/99999999999999999999", None),
            ("/acme/chall/12", None),
            ("/acme/cert/xyz", None),
            ("/acme/acct/3", None),
            ("/acme/new-order", None),
        ];
        for (path, expected) in cases {
            assert_eq!(&prefetch(path), expected, "{path}");
        }
    }

    #[test]
    fn the_client_is_the_peer_unless_the_proxy_is_trusted() {
        let req = request(&["203.0.113.9"]);
        assert_eq!(client_address(&req, false), "192.0.2.1".parse().ok());
        // The last entry is the one the operator's proxy appended.
        let req = request(&["198.51.100.1, 203.0.113.9", "2001:db8::7"]);
        assert_eq!(client_address(&req, true), "2001:db8::7".parse().ok());
        let req = request(&["not-an-address"]);
        assert_eq!(client_address(&req, true), "192.0.2.1".parse().ok());
        assert_eq!(
            client_address(&request(&[]), true),
            "192.0.2.1".parse().ok()
        );
    }
}
