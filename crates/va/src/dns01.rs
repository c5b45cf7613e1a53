//! dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<name>` holding
//! base64url(SHA-256(key authorization)).
//!
//! CNAMEs are followed (delegating `_acme-challenge` to another zone is the common
//! pattern) by the resolver, at most a few links. Several TXT values may sit at the name:
//! one matching is enough. Failures say how many values were found, never what they are.

use certwright_proto::keyauth::dns01_txt_value;
use certwright_proto::types::{Identifier, IdentifierType};
use certwright_proto::Problem;
use serde_json::{json, Value};

use super::resolver::DnsFailure;
use super::{Outcome, Va};

/// The name a dns-01 TXT record lives at.
pub fn challenge_name(base: &str) -> String {
    certwright_proto::challenge::dns01_name(base)
}

/// Runs the check. The client's record names the queried name and how many values were
/// found; the values themselves and the CNAMEs followed (which may name internal zones)
/// go to the operators' diagnostic only.
pub async fn validate_dns01(va: &Va, identifier: &Identifier, key_authorization: &str) -> Outcome {
    if identifier.kind != IdentifierType::Dns {
        return Outcome::plain(
            Some(Problem::malformed(
                "dns-01 cannot validate an IP address identifier",
            )),
            Value::Null,
        );
    }
    let name = challenge_name(&identifier.value);
    let expected = dns01_txt_value(key_authorization);
    match va.resolver.lookup_txt(&name).await {
        Err(failure) => {
            let detail = match failure {
                DnsFailure::NotFound { .. } => format!(
                    "{}; publish the dns-01 value there (or a CNAME to where it is published)",
                    failure.describe("TXT", &name)
                ),
                _ => failure.describe("TXT", &name),
            };
            Outcome {
                error: Some(Problem::dns(detail)),
                record: json!({"hostname": name}),
                diagnostic: json!({
                    "hostname": name,
                    "error": failure.operator_detail("TXT", &name),
                }),
            }
        }
        Ok(answer) => {
            let record = json!({"hostname": name, "valuesFound": answer.records.len()});
            let diagnostic = json!({
                "hostname": name,
                "cnames": answer.cnames,
                "txt": answer.records,
            });
            let error = if answer.records.iter().any(|v| v.trim() == expected) {
                None
            } else {
                Some(Problem::incorrect_response(format!(
                    "incorrect TXT record at {name}: {} value(s) found, none of them the expected {expected:?}",
                    answer.records.len()
                )))
            };
            Outcome {
                error,
                record,
                diagnostic,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::va_with_dns;
    use certwright_proto::ProblemType;
    use certwright_testkit::testdns::{Behaviour, TestDns};

    const KEY_AUTH: &str = "token.thumbprint";

    /// The problem and the operators' diagnostic; asserts that no TXT value or CNAME
    /// target reached the client's record or problem.
    async fn check(dns: &TestDns, name: &str) -> (Option<Problem>, Value) {
        let va = va_with_dns(dns, &[]);
        let outcome = validate_dns01(&va, &Identifier::dns(name), KEY_AUTH).await;
        let shown = format!("{:?} {}", outcome.error, outcome.record);
        let txt = outcome.diagnostic["txt"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cnames = outcome.diagnostic["cnames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for value in txt.iter().chain(&cnames) {
            let value = value.as_str().unwrap();
            assert!(
                !shown.contains(value),
                "{value:?} reached the client: {shown}"
            );
        }
        (outcome.error, outcome.diagnostic)
    }

    #[tokio::test]
    async fn the_right_value_among_several_passes() {
        let dns = TestDns::start().await.unwrap();
        let good = dns01_txt_value(KEY_AUTH);
        dns.set_txt(
            "_acme-challenge.ok.test",
            &["stale-value", &good, "another"],
        );
        let (error, record) = check(&dns, "ok.test").await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(record["txt"].as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_cname_delegation_is_followed() {
        let dns = TestDns::start().await.unwrap();
        dns.set_cname("_acme-challenge.deleg.test", "deleg.acme-zone.test");
        dns.set_txt("deleg.acme-zone.test", &[&dns01_txt_value(KEY_AUTH)]);
        let (error, record) = check(&dns, "deleg.test").await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(record["cnames"][0], "deleg.acme-zone.test", "{record}");
    }

    #[tokio::test]
    async fn each_failure_is_a_dns_or_incorrect_response_problem() {
        let dns = TestDns::start().await.unwrap();
        dns.set_txt("_acme-challenge.wrong.test", &["not-it", "nor-this"]);
        dns.set_behaviour("_acme-challenge.servfail.test", Behaviour::ServFail);
        dns.set_addrs(
            "_acme-challenge.nodata.test",
            &["127.0.0.1".parse().unwrap()],
        );
        dns.set_cname("_acme-challenge.loop.test", "loop-b.test");
        dns.set_cname("loop-b.test", "_acme-challenge.loop.test");

        let (p, _) = check(&dns, "wrong.test").await;
        let p = p.unwrap();
        assert_eq!(p.kind, ProblemType::IncorrectResponse, "{p}");
        assert!(p.detail.contains("2 value(s) found"), "{p}");

        let (p, _) = check(&dns, "missing.test").await;
        let p = p.unwrap();
        assert_eq!(p.kind, ProblemType::Dns, "{p}");
        assert!(p.detail.contains("NXDOMAIN"), "{p}");

        let (p, _) = check(&dns, "nodata.test").await;
        let p = p.unwrap();
        assert_eq!(p.kind, ProblemType::Dns, "{p}");
        assert!(p.detail.contains("no TXT record"), "{p}");

        let (p, _) = check(&dns, "servfail.test").await;
        let p = p.unwrap();
        assert_eq!(p.kind, ProblemType::Dns, "{p}");
        assert!(p.detail.contains("SERVFAIL"), "{p}");

        let (p, _) = check(&dns, "loop.test").await;
        let p = p.unwrap();
        assert_eq!(p.kind, ProblemType::Dns, "{p}");
    }

    /// 300 TXT records of 200 characters (~60 KB: truncated over UDP, fetched again over
    /// TCP): the right value among them passes; without it the problem says how many
    /// values there were, and quotes none of the 60 KB.
    #[tokio::test]
    async fn a_huge_txt_set_is_read_over_tcp_and_reported_briefly() {
        let dns = TestDns::start().await.unwrap();
        let junk: Vec<String> = (0..300)
            .map(|i| format!("{i:03}{}", "x".repeat(197)))
            .collect();
        let mut with_good: Vec<&str> = junk.iter().map(String::as_str).collect();
        let good = dns01_txt_value(KEY_AUTH);
        with_good.push(&good);
        dns.set_txt("_acme-challenge.huge.test", &with_good);
        let (error, record) = check(&dns, "huge.test").await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(record["txt"].as_array().unwrap().len(), 301);

        dns.set_txt("_acme-challenge.huge.test", &with_good[..300]);
        let (p, _) = check(&dns, "huge.test").await;
        let p = p.unwrap();
        assert_eq!(p.kind, ProblemType::IncorrectResponse, "{p}");
        assert!(p.detail.contains("300 value(s)"), "{p}");
        assert!(p.detail.len() < 2048, "{} bytes of detail", p.detail.len());
    }

    #[tokio::test]
    async fn a_silent_server_is_a_dns_timeout() {
        let dns = TestDns::start().await.unwrap();
        dns.set_behaviour("_acme-challenge.silent.test", Behaviour::Silent);
        let (p, _) = check(&dns, "silent.test").await;
        let p = p.unwrap();
        assert_eq!(p.kind, ProblemType::Dns, "{p}");
        assert!(p.detail.contains("timed out"), "{p}");
    }
}
