//! http-01 (RFC 8555 §8.3): fetch the key authorization from
//! `http://<name>:<port>/.well-known/acme-challenge/<token>`.
//!
//! Redirects are followed by hand, at most 10, only to http/https on ports 80, 443 or the
//! configured test port. The body is capped and the whole check is bounded in time.

use std::time::Duration;

use certwright_proto::types::{Identifier, IdentifierType};
use certwright_proto::Problem;
use serde_json::{json, Value};

use super::denylist::DeniedAddress;
use super::resolver::LookupError;
use super::Va;

/// Most redirects followed.
pub const MAX_REDIRECTS: usize = 10;
/// Most body bytes read (a key authorization is about 87 bytes).
pub const MAX_BODY: usize = 4096;

/// Runs the check; returns the problem (if it failed) and the hops seen.
pub async fn validate_http01(
    va: &Va,
    identifier: &Identifier,
    token: &str,
    expected: &str,
) -> (Option<Problem>, Value) {
    let host = match identifier.kind {
        IdentifierType::Dns => identifier.value.clone(),
        IdentifierType::Ip if identifier.value.contains(':') => format!("[{}]", identifier.value),
        IdentifierType::Ip => identifier.value.clone(),
    };
    let mut url = format!(
        "http://{host}:{}/.well-known/acme-challenge/{token}",
        va.config.http01_port
    );
    let mut hops = Vec::new();
    for _ in 0..=MAX_REDIRECTS {
        if let Err(denied) = check_literal_host(va, &url) {
            hops.push(json!({"url": url, "error": denied.0}));
            return (Some(Problem::connection(denied.0)), json!({"hops": hops}));
        }
        let response = match va.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                hops.push(json!({"url": url, "error": e.to_string()}));
                return (Some(request_problem(&url, &e)), json!({"hops": hops}));
            }
        };
        let status = response.status();
        let address = response.remote_addr().map(|a| a.to_string());
        hops.push(json!({"url": url, "address": address, "status": status.as_u16()}));
        if status.is_redirection() {
            let Some(location) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return (
                    Some(Problem::connection(format!(
                        "{url} answered {status} without a usable Location header"
                    ))),
                    json!({"hops": hops}),
                );
            };
            let next = match response.url().join(location) {
                Ok(u) => u,
                Err(_) => {
                    return (
                        Some(Problem::connection(format!(
                            "{url} redirected to an invalid URL {location:?}"
                        ))),
                        json!({"hops": hops}),
                    )
                }
            };
            if let Err(why) = redirect_allowed(&next, va.config.http01_port) {
                return (
                    Some(Problem::connection(format!(
                        "{url} redirected to {next}, which is not allowed: {why}"
                    ))),
                    json!({"hops": hops}),
                );
            }
            url = next.to_string();
            continue;
        }
        if status != reqwest::StatusCode::OK {
            return (
                Some(Problem::unauthorized(format!(
                    "invalid response from {url}: HTTP {status} (expected 200 with the key authorization)"
                ))),
                json!({"hops": hops}),
            );
        }
        let body = match read_capped(response).await {
            Ok(b) => b,
            Err(e) => {
                // A body that trickles in ends with the request timeout, which reqwest
                // reports as a body error: say what happened.
                let cause = root_cause(&e);
                let detail = if e.is_timeout() || cause.contains("timed out") {
                    format!("timed out reading the response from {url}")
                } else {
                    format!("reading the response from {url} failed: {cause}")
                };
                return (Some(Problem::connection(detail)), json!({"hops": hops}));
            }
        };
        let text = String::from_utf8_lossy(&body);
        let found = text.trim_end();
        let record = json!({"hops": hops, "body": found.chars().take(256).collect::<String>()});
        if found == expected {
            return (None, record);
        }
        return (
            Some(Problem::incorrect_response(format!(
                "the key authorization from {url} does not match: expected {expected:?}, found {:?}",
                found.chars().take(128).collect::<String>()
            ))),
            record,
        );
    }
    (
        Some(Problem::connection(format!(
            "more than {MAX_REDIRECTS} redirects, last to {url}"
        ))),
        json!({"hops": hops}),
    )
}

/// IP-literal URLs skip the resolver (and its deny-list filter): check them here.
fn check_literal_host(va: &Va, url: &str) -> Result<(), DeniedAddress> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(());
    };
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => va.deny.check(ip.into()),
        Some(url::Host::Ipv6(ip)) => va.deny.check(ip.into()),
        _ => Ok(()),
    }
}

fn redirect_allowed(url: &reqwest::Url, test_port: u16) -> Result<(), &'static str> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http and https are followed");
    }
    let port = url.port_or_known_default().unwrap_or(0);
    if port != 80 && port != 443 && port != test_port {
        return Err("only ports 80 and 443 are followed");
    }
    if url.host_str().is_none() {
        return Err("no host");
    }
    Ok(())
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(body)
}

/// Classifies a request failure: DNS, timeout or connection.
fn request_problem(url: &str, e: &reqwest::Error) -> Problem {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(denied) = s.downcast_ref::<DeniedAddress>() {
            return Problem::connection(denied.0.clone());
        }
        if let Some(lookup) = s.downcast_ref::<LookupError>() {
            return Problem::dns(lookup.0.clone());
        }
        source = s.source();
    }
    if e.is_timeout() {
        return Problem::connection(format!("timed out fetching {url}"));
    }
    if e.is_connect() {
        return Problem::connection(format!("could not connect to {url}: {}", root_cause(e)));
    }
    Problem::connection(format!("fetching {url} failed: {}", root_cause(e)))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Per-request timeout inside the overall validation timeout.
pub(super) fn request_timeout(total: Duration) -> Duration {
    total.mul_f32(0.8)
}
