//! The ACME client: directory discovery, nonces, signed POSTs with badNonce retry, and the
//! resources built on them (accounts, orders, revocation, renewal information).

mod account;
mod nonce;
mod order;
pub mod poll;
mod revoke;

use std::sync::Arc;
use std::time::Duration;

use certwright_proto::jws::{self, Signer};
use certwright_proto::types::Directory;
use certwright_proto::{AccountKey, Problem, ProblemType, CONTENT_TYPE_JOSE};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

pub use account::{Account, AccountCredentials, Eab, NewAccountOptions};
pub use nonce::NoncePool;
pub use order::{CertificateChains, OrderHandle};
pub use poll::PollPolicy;
pub use revoke::parse_rfc3339;

use crate::error::{Error, Result};

/// How many times a request is re-sent after a `badNonce` answer.
const BAD_NONCE_RETRIES: usize = 10;

/// Options for [`AcmeClient::new`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The directory URL.
    pub directory_url: String,
    /// Extra trusted roots (PEM), e.g. a private CA's root or Pebble's listener certificate.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// How orders and authorizations are polled.
    pub poll: PollPolicy,
}

impl ClientOptions {
    /// Defaults for `directory_url`: system roots, 30 s per request, the default poll policy.
    pub fn new(directory_url: impl Into<String>) -> Self {
        Self {
            directory_url: directory_url.into(),
            extra_roots_pem: Vec::new(),
            request_timeout: Duration::from_secs(30),
            poll: PollPolicy::default(),
        }
    }

    /// Also trusts the PEM certificates in `pem`.
    pub fn trust_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_pem.push(pem.into());
        self
    }
}

/// An answer from the CA that was not a problem document.
#[derive(Debug)]
pub struct Response {
    /// The URL that answered.
    pub url: String,
    /// HTTP status.
    pub status: StatusCode,
    /// Headers (Location, Link, Retry-After, …).
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The `Location` header.
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Protocol {
            url: self.url.clone(),
            detail: format!("body is not the expected JSON: {e}"),
        })
    }

    /// URLs of `Link` headers with `rel="<rel>"`.
    pub fn links(&self, rel: &str) -> Vec<String> {
        parse_links(&self.headers, rel)
    }

    /// `Retry-After` as a duration from now.
    pub fn retry_after(&self) -> Option<Duration> {
        poll::retry_after(&self.headers)
    }
}

/// Parses `Link: <url>;rel="x"` headers (possibly several per line) and returns the URLs
/// whose relation is `rel`.
pub fn parse_links(headers: &HeaderMap, rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in split_links(value) {
            let mut parts = link.split(';');
            let Some(target) = parts.next().map(str::trim) else {
                continue;
            };
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let has_rel = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=").is_some_and(|v| {
                    v.trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case(rel))
                })
            });
            if has_rel {
                out.push(target.to_owned());
            }
        }
    }
    out
}

/// Splits a Link header value on commas outside `<…>` and quotes.
fn split_links(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_angle, mut in_quote, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            '"' if !in_angle => in_quote = !in_quote,
            ',' if !in_angle && !in_quote => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
}

/// An ACME client bound to one CA's directory. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct AcmeClient {
    http: reqwest::Client,
    directory_url: String,
    directory: Directory,
    nonces: NoncePool,
    poll: PollPolicy,
    bad_nonce_retries: std::sync::atomic::AtomicU64,
}

impl AcmeClient {
    /// How many requests were re-sent after a `badNonce` answer (for tests and metrics).
    pub fn bad_nonce_retries(&self) -> u64 {
        self.bad_nonce_retries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Builds the HTTP client and fetches the directory.
    pub async fn new(options: ClientOptions) -> Result<Arc<Self>> {
        let http = build_http(&options)?;
        let url = options.directory_url.clone();
        let resp = http.get(&url).send().await.map_err(|error| Error::Http {
            url: url.clone(),
            error,
        })?;
        // Whatever answers a directory GET with an error is no ACME directory: a wrong
        // URL, not the CA refusing a request.
        let resp = read_response(&url, resp).await.map_err(|e| match e {
            Error::Acme {
                url,
                status,
                problem,
            } => Error::Protocol {
                url,
                detail: format!(
                    "no ACME directory here (HTTP {status}: {problem}); check the --server URL"
                ),
            },
            other => other,
        })?;
        let directory: Directory = resp.json()?;
        Ok(Arc::new(Self {
            http,
            directory_url: options.directory_url,
            directory,
            nonces: NoncePool::default(),
            poll: options.poll,
            bad_nonce_retries: Default::default(),
        }))
    }

    /// The directory object.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The directory URL this client was made for.
    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    /// The poll policy.
    pub fn poll_policy(&self) -> PollPolicy {
        self.poll
    }

    /// The underlying HTTP client (shares trust settings).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn fresh_nonce(&self) -> Result<String> {
        if let Some(n) = self.nonces.take() {
            return Ok(n);
        }
        let url = &self.directory.new_nonce;
        let resp = self
            .http
            .head(url)
            .send()
            .await
            .map_err(|error| Error::Http {
                url: url.clone(),
                error,
            })?;
        resp.headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol {
                url: url.clone(),
                detail: "newNonce answered without a Replay-Nonce header".into(),
            })
    }

    /// Sends a JWS-signed POST (`payload` `None` = POST-as-GET). A `badNonce` answer is
    /// retried with the nonce it carries, a bounded number of times.
    pub async fn post(
        &self,
        key: &AccountKey,
        signer: &Signer,
        url: &str,
        payload: Option<&[u8]>,
    ) -> Result<Response> {
        let payload = payload.unwrap_or_default();
        let mut attempt = 0;
        loop {
            let nonce = self.fresh_nonce().await?;
            let body = jws::sign(key, signer, Some(&nonce), url, payload)?;
            let resp = self
                .http
                .post(url)
                .header(CONTENT_TYPE, CONTENT_TYPE_JOSE)
                .body(serde_json::to_vec(&body).expect("a JWS serializes"))
                .send()
                .await
                .map_err(|error| Error::Http {
                    url: url.to_owned(),
                    error,
                })?;
            if let Some(n) = resp
                .headers()
                .get("replay-nonce")
                .and_then(|v| v.to_str().ok())
            {
                self.nonces.put(n);
            }
            match read_response(url, resp).await {
                Err(e) if e.is_problem(ProblemType::BadNonce) && attempt < BAD_NONCE_RETRIES => {
                    attempt += 1;
                    self.bad_nonce_retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(url, attempt, "badNonce; retrying with a fresh nonce");
                }
                other => return other,
            }
        }
    }

    /// POST with a JSON payload.
    pub async fn post_json<T: serde::Serialize>(
        &self,
        key: &AccountKey,
        signer: &Signer,
        url: &str,
        payload: &T,
    ) -> Result<Response> {
        let body = serde_json::to_vec(payload).expect("payload serializes");
        self.post(key, signer, url, Some(&body)).await
    }

    /// An unauthenticated GET (renewalInfo, directory refresh).
    pub async fn get(&self, url: &str) -> Result<Response> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|error| Error::Http {
                url: url.to_owned(),
                error,
            })?;
        read_response(url, resp).await
    }
}

fn build_http(options: &ClientOptions) -> Result<reqwest::Client> {
    let mut roots = Vec::new();
    for pem in &options.extra_roots_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::Config(format!("a trusted root is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Config(
                "a trusted-root file holds no certificate".into(),
            ));
        }
        roots.extend(certs);
    }
    let builder = || {
        reqwest::Client::builder()
            .user_agent(concat!("certwright/", env!("CARGO_PKG_VERSION")))
            .timeout(options.request_timeout)
            .connect_timeout(Duration::from_secs(10))
    };
    let merged = builder().tls_certs_merge(roots.clone()).build();
    match merged {
        Ok(c) => Ok(c),
        // A verifier that cannot merge: trust only the given roots (a private CA).
        Err(_) if !roots.is_empty() => builder()
            .tls_certs_only(roots)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}"))),
        Err(e) => Err(Error::Config(format!("HTTP client: {e}"))),
    }
}

/// Reads a response; a 4xx/5xx or problem+json answer becomes [`Error::Acme`].
async fn read_response(url: &str, resp: reqwest::Response) -> Result<Response> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let is_problem = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(certwright_proto::CONTENT_TYPE_PROBLEM));
    let body = resp
        .bytes()
        .await
        .map_err(|error| Error::Http {
            url: url.to_owned(),
            error,
        })?
        .to_vec();
    if status.is_client_error() || status.is_server_error() || is_problem {
        // Only a problem document is the CA refusing; anything else (a 404 page, a proxy's
        // 502) means the URL does not lead to a working ACME server.
        let Ok(problem) = serde_json::from_slice::<Problem>(&body) else {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(Error::HttpStatus {
                url: url.to_owned(),
                status: status.as_u16(),
                text,
            });
        };
        return Err(Error::Acme {
            url: url.to_owned(),
            status: status.as_u16(),
            problem: Box::new(problem),
        });
    }
    Ok(Response {
        url: url.to_owned(),
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, LINK};

    #[test]
    fn link_headers_by_relation() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(
                r#"<https://ca/dir>;rel="index", <https://ca/cert/1/1>; rel="alternate""#,
            ),
        );
        h.append(
            LINK,
            HeaderValue::from_static("<https://ca/cert/1/2>;rel=alternate"),
        );
        h.append(
            LINK,
            HeaderValue::from_static(r#"<https://ca/a,b>;rel="up""#),
        );
        assert_eq!(
            parse_links(&h, "alternate"),
            vec!["https://ca/cert/1/1", "https://ca/cert/1/2"]
        );
        assert_eq!(parse_links(&h, "index"), vec!["https://ca/dir"]);
        assert_eq!(parse_links(&h, "up"), vec!["https://ca/a,b"]);
        assert!(parse_links(&h, "next").is_empty());
    }
}
