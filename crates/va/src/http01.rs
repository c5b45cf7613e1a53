//! http-01 (RFC 8555 §8.3): fetch the key authorization from
//! `http://<name>:<port>/.well-known/acme-challenge/<token>`.
//!
//! Redirects are followed by hand, at most 10, only to http/https on ports 80, 443 or the
//! configured test port. Every hop's address is checked against the VA's address rules
//! ([`super::denylist`]): a literal host before connecting, a name on each lookup (the VA's
//! resolver filters the answer reqwest connects to), and the address actually connected
//! to before anything is read. The body is capped and the whole check is bounded in time.
//!
//! What a client sees is the record of what was contacted (URL, host name, port,
//! addresses resolved and used, HTTP status) and a fixed sentence; what was read (the
//! body, a redirect target that was refused, socket error text) goes to the diagnostic
//! for operators only.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certwright_proto::types::{Identifier, IdentifierType};
use certwright_proto::Problem;
use serde_json::{json, Value};

use super::denylist::DeniedAddress;
use super::resolver::LookupError;
use super::{Outcome, Va};

/// Most redirects followed.
pub const MAX_REDIRECTS: usize = 10;
/// Most body bytes read (a key authorization is about 87 bytes).
pub const MAX_BODY: usize = 4096;
/// Body characters kept in the operators' diagnostic.
const DIAGNOSTIC_BODY_CHARS: usize = 256;

tokio::task_local! {
    /// The addresses the VA's resolver handed out during the current request (reqwest
    /// resolves inside the request's own task): the record's `addressesResolved`.
    pub(super) static RESOLVED: Arc<Mutex<Vec<IpAddr>>>;
}

/// One hop as the client sees it and as the operator sees it.
struct Hop {
    client: Value,
    diagnostic: Value,
}

/// The hops so far; turns into an [`Outcome`].
#[derive(Default)]
struct Hops(Vec<Hop>);

impl Hops {
    /// Records a hop: `client` as the client sees it; for operators the same with the
    /// full `url` and `extra` (what was read or refused).
    fn push(&mut self, client: Value, url: &reqwest::Url, extra: Value) {
        let mut full = client.clone();
        full["url"] = json!(url.as_str());
        if let (Some(full), Value::Object(extra)) = (full.as_object_mut(), extra) {
            full.extend(extra);
        }
        self.0.push(Hop {
            client,
            diagnostic: full,
        });
    }

    fn finish(self, error: Option<Problem>, body: Option<&str>) -> Outcome {
        let (client, diagnostic): (Vec<Value>, Vec<Value>) =
            self.0.into_iter().map(|h| (h.client, h.diagnostic)).unzip();
        let mut diagnostic = json!({"hops": diagnostic});
        if let Some(body) = body {
            diagnostic["body"] =
                json!(body.chars().take(DIAGNOSTIC_BODY_CHARS).collect::<String>());
        }
        Outcome {
            error,
            record: json!({"hops": client}),
            diagnostic,
        }
    }
}

/// How a client sees a hop's URL: the first in full (the CA made it from the identifier
/// and the token); a redirect target as its origin only (`http://host:port`), since its
/// path and query came from a server the CA contacted. The full URL is the operators'.
fn shown_url(url: &reqwest::Url, first: bool) -> String {
    if first {
        url.to_string()
    } else {
        url.origin().ascii_serialization()
    }
}

/// What the record says of a hop: the URL as shown, its host name and port.
fn describe_url(url: &reqwest::Url, shown: &str) -> Value {
    json!({
        "url": shown,
        "hostname": url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']'),
        "port": url.port_or_known_default(),
    })
}

/// Runs the check; the outcome's record holds the hops contacted.
pub async fn validate_http01(
    va: &Va,
    identifier: &Identifier,
    token: &str,
    expected: &str,
) -> Outcome {
    let host = match identifier.kind {
        IdentifierType::Dns => identifier.value.clone(),
        IdentifierType::Ip if identifier.value.contains(':') => format!("[{}]", identifier.value),
        IdentifierType::Ip => identifier.value.clone(),
    };
    let first = format!(
        "http://{host}:{}{}",
        va.config.http01_port,
        certwright_proto::challenge::http01_path(token)
    );
    let mut hops = Hops::default();
    let mut url = match reqwest::Url::parse(&first) {
        Ok(u) => u,
        Err(_) => {
            return hops.finish(
                Some(Problem::malformed(
                    "the identifier cannot be made into an http-01 URL",
                )),
                None,
            )
        }
    };
    for hop_index in 0..=MAX_REDIRECTS {
        let shown = shown_url(&url, hop_index == 0);
        let mut hop = describe_url(&url, &shown);
        if let Err(denied) = check_literal_host(va, &url) {
            hops.push(hop, &url, json!({"refused": denied.to_string()}));
            return hops.finish(Some(Problem::connection(denied.client_detail())), None);
        }
        let resolved = Arc::new(Mutex::new(Vec::new()));
        let sent = RESOLVED.scope(resolved.clone(), va.http.get(url.clone()).send());
        let result = sent.await;
        let resolved = std::mem::take(&mut *resolved.lock().expect("not poisoned"));
        if !resolved.is_empty() {
            hop["addressesResolved"] = json!(resolved);
        }
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let (problem, cause) = request_problem(&url, &shown, &e);
                hops.push(hop, &url, json!({"error": cause}));
                return hops.finish(Some(problem), None);
            }
        };
        let status = response.status();
        if let Some(used) = response.remote_addr() {
            hop["addressUsed"] = json!(used.ip());
            // The address connected to is checked once more before anything is read.
            if let Err(denied) = va.deny.check(used.ip()) {
                hops.push(hop, &url, json!({"refused": denied.to_string()}));
                return hops.finish(Some(Problem::connection(denied.client_detail())), None);
            }
        }
        hop["status"] = json!(status.as_u16());
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location else {
                hops.push(hop, &url, json!({}));
                return hops.finish(
                    Some(Problem::connection(format!(
                        "{shown} answered {status} without a usable Location header"
                    ))),
                    None,
                );
            };
            let next = match response.url().join(&location) {
                Ok(u) => u,
                Err(_) => {
                    hops.push(hop, &url, json!({"location": location}));
                    return hops.finish(
                        Some(Problem::connection(format!(
                            "{shown} redirected to a Location that is not a valid URL"
                        ))),
                        None,
                    );
                }
            };
            if let Err(why) = redirect_allowed(&next, va.config.http01_port) {
                hops.push(hop, &url, json!({"location": location, "refused": why}));
                return hops.finish(
                    Some(Problem::connection(format!(
                        "{shown} redirected to a URL the CA does not follow: {why}"
                    ))),
                    None,
                );
            }
            hops.push(hop, &url, json!({}));
            url = next;
            continue;
        }
        if status != reqwest::StatusCode::OK {
            hops.push(hop, &url, json!({}));
            return hops.finish(
                Some(Problem::unauthorized(format!(
                    "invalid response from {shown}: HTTP {} (expected 200 with the key authorization)",
                    status.as_u16()
                ))),
                None,
            );
        }
        let body = match read_capped(response).await {
            Ok(b) => b,
            Err(e) => {
                // A body that trickles in ends with the request timeout, which reqwest
                // reports as a body error: say what happened.
                let cause = root_cause(&e);
                let detail = if e.is_timeout() || cause.contains("timed out") {
                    format!("timed out reading the response from {shown}")
                } else {
                    format!("reading the response from {shown} failed")
                };
                hops.push(hop, &url, json!({"error": cause}));
                return hops.finish(Some(Problem::connection(detail)), None);
            }
        };
        hops.push(hop, &url, json!({}));
        let text = String::from_utf8_lossy(&body);
        let found = text.trim_end();
        if found == expected {
            return hops.finish(None, Some(found));
        }
        return hops.finish(
            Some(Problem::incorrect_response(format!(
                "the response from {shown} did not contain the key authorization for this challenge"
            ))),
            Some(found),
        );
    }
    hops.finish(
        Some(Problem::connection(format!(
            "more than {MAX_REDIRECTS} redirects, the last to {}",
            shown_url(&url, false)
        ))),
        None,
    )
}

/// IP-literal URLs skip the resolver (and its address filter): check them here. The URL
/// parser has already turned every spelling of an address (`0x7f000001`, `127.1`,
/// `2130706433`, `[::ffff:7f00:1]`) into the address itself.
fn check_literal_host(va: &Va, url: &reqwest::Url) -> Result<(), DeniedAddress> {
    match url.host() {
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
        return Err("the URL has no host");
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

/// Classifies a request failure into the problem a client sees (a fixed sentence per
/// kind of failure) and the cause an operator sees (the error's own words).
fn request_problem(url: &reqwest::Url, shown: &str, e: &reqwest::Error) -> (Problem, String) {
    let cause = root_cause(e);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(denied) = s.downcast_ref::<DeniedAddress>() {
            return (
                Problem::connection(denied.client_detail()),
                denied.to_string(),
            );
        }
        if let Some(lookup) = s.downcast_ref::<LookupError>() {
            return (Problem::dns(lookup.client_detail()), lookup.to_string());
        }
        source = s.source();
    }
    let host = url.host_str().unwrap_or_default();
    let detail = if e.is_timeout() {
        format!("timed out fetching {shown}")
    } else if let Some(kind) = io_error_kind(e) {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionRefused => {
                format!("could not connect to {shown}: connection refused by {host}")
            }
            K::ConnectionReset | K::ConnectionAborted => {
                format!("fetching {shown} failed: the connection was reset by {host}")
            }
            K::TimedOut => format!("timed out fetching {shown}"),
            K::HostUnreachable | K::NetworkUnreachable => {
                format!("could not connect to {shown}: {host} is unreachable")
            }
            K::UnexpectedEof => format!("fetching {shown} failed: {host} closed the connection"),
            _ => format!("could not connect to {shown}"),
        }
    } else if url.scheme() == "https" && e.is_connect() {
        format!("could not connect to {shown}: the TLS handshake failed")
    } else if e.is_connect() {
        format!("could not connect to {shown}")
    } else {
        format!("fetching {shown} failed: the answer was not a valid HTTP response")
    };
    (Problem::connection(detail), cause)
}

/// The kind of the first I/O error in `e`'s chain.
fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::va_with;
    use certwright_testkit::testdns::TestDns;

    /// Every spelling of a loopback address in a URL is refused before any connection
    /// when loopback is not allowed (the URL parser normalizes them; the rules judge the
    /// address).
    #[tokio::test]
    async fn every_spelling_of_a_reserved_address_in_a_url_is_refused() {
        let dns = TestDns::start().await.unwrap();
        let va = va_with(&dns, &[], |c| {
            c.deny = c.deny.clone().allowing_loopback(false)
        });
        for url in [
            "http://127.0.0.1/x",
            "http://0x7f000001/x",
            "http://2130706433/x",
            "http://127.1/x",
            "http://0177.0.0.1/x",
            "http://[::1]/x",
            "http://[::ffff:7f00:1]/x",
            "http://0.0.0.0/x",
            "http://0/x",
            "http://[::]/x",
            "http://169.254.169.254/x",
            "http://[::ffff:a9fe:a9fe]/x",
            "http://[64:ff9b::a9fe:a9fe]/x",
            "http://224.0.0.1/x",
            "http://255.255.255.255/x",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(
                check_literal_host(&va, &parsed).is_err(),
                "{url} was not refused"
            );
        }
        for url in [
            "http://10.1.2.3/x",
            "http://[fd00::1]/x",
            "http://name.test/x",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(
                check_literal_host(&va, &parsed).is_ok(),
                "{url} was refused"
            );
        }
    }
}
