//! CAA (RFC 8659), with the `accounturi` and `validationmethods` parameters of RFC 8657.
//!
//! The relevant record set is found by climbing from the name towards the root: the first
//! name (the name itself, then each parent, the root excluded) whose CAA query returns
//! records holds it; a CNAME at a name is followed by the resolver and its target's records
//! count for that name. No records anywhere: issuance is allowed.
//!
//! In the relevant set:
//! - a record with the critical flag and a tag this CA does not know forbids issuance;
//! - for a wildcard, `issuewild` records decide when there are any, else `issue` records;
//!   for other names `issue` records decide; when the deciding tag has no records at all,
//!   issuance is allowed;
//! - a deciding record allows issuance when its issuer domain is one of this CA's
//!   identities (`[directory] caa_identities`), its `accounturi` (if any) is the
//!   requesting account's URL and its `validationmethods` (if any) include the method
//!   used. Unknown parameters are ignored; a value that does not parse matches nothing.
//!
//! A lookup that fails (SERVFAIL, timeout, …) fails closed: no issuance.

use certwright_proto::types::ChallengeType;
use certwright_proto::Problem;
use futures_util::StreamExt;
use hickory_resolver::proto::rr::rdata::CAA;
use serde_json::json;

use super::resolver::{DnsFailure, NameResolver};
use super::Outcome;

/// What CAA is checked against.
#[derive(Debug, Clone)]
pub struct CaaRequest<'a> {
    /// The name (for a wildcard, the base name without `*.`).
    pub name: &'a str,
    /// The order asked for `*.` plus `name`.
    pub wildcard: bool,
    /// The requesting account's URL (for `accounturi`).
    pub account_uri: &'a str,
    /// The method that validated the name (for `validationmethods`).
    pub method: ChallengeType,
}

/// One CAA record as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaaRecord {
    /// The issuer-critical flag (0x80 in `flags`).
    pub critical: bool,
    /// The flags byte.
    pub flags: u8,
    /// The property tag, e.g. `issue`.
    pub tag: String,
    /// The property value.
    pub value: String,
}

impl CaaRecord {
    fn from_rdata(caa: &CAA) -> Self {
        Self {
            critical: caa.issuer_critical(),
            flags: caa.flags(),
            tag: caa.tag().as_str().to_owned(),
            value: String::from_utf8_lossy(caa.raw_value()).into_owned(),
        }
    }

    /// Presentation form: `0 issue "ca.example"`.
    pub fn text(&self) -> String {
        format!("{} {} {:?}", self.flags, self.tag, self.value)
    }
}

/// An `issue`/`issuewild` value: issuer domain (None: `;`, nobody) and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueValue {
    /// The issuer domain name.
    pub issuer: Option<String>,
    /// The `key=value` parameters, in order.
    pub parameters: Vec<(String, String)>,
}

/// Parses an issue value (RFC 8659 §4.2). Lenient about whitespace and a trailing `;`.
pub fn parse_issue_value(value: &str) -> Result<IssueValue, String> {
    let (domain, params) = match value.split_once(';') {
        Some((d, p)) => (d.trim(), Some(p)),
        None => (value.trim(), None),
    };
    let issuer = if domain.is_empty() {
        None
    } else {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(format!("{domain:?} is not an issuer domain name"));
        }
        Some(d)
    };
    let mut parameters = Vec::new();
    for p in params.into_iter().flat_map(|p| p.split(';')) {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("parameter {p:?} has no '='"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("{k:?} is not a parameter tag"));
        }
        if v.bytes().any(|b| !(0x21..=0x7e).contains(&b) || b == b';') {
            return Err(format!("parameter {k} has an invalid value"));
        }
        parameters.push((k.to_ascii_lowercase(), v.to_owned()));
    }
    Ok(IssueValue { issuer, parameters })
}

/// Why one deciding record does not allow this issuance (None: it allows it).
fn record_refuses(
    record: &CaaRecord,
    identities: &[String],
    request: &CaaRequest<'_>,
) -> Option<String> {
    let value = match parse_issue_value(&record.value) {
        Ok(v) => v,
        Err(e) => return Some(format!("its value does not parse ({e})")),
    };
    let Some(issuer) = value.issuer else {
        return Some("it names no issuer (issuance by any CA is forbidden)".into());
    };
    if !identities.iter().any(|i| i.eq_ignore_ascii_case(&issuer)) {
        return Some(format!("it names {issuer}, not this CA"));
    }
    for (k, v) in &value.parameters {
        match k.as_str() {
            "accounturi" if v != request.account_uri => {
                return Some(format!(
                    "its accounturi {v} is not the requesting account {}",
                    request.account_uri
                ))
            }
            "validationmethods" if !v.split(',').any(|m| m.trim() == request.method.as_str()) => {
                return Some(format!(
                    "its validationmethods {v} do not include {}",
                    request.method
                ))
            }
            _ => {}
        }
    }
    None
}

/// Decides on the relevant set found at `owner`: why issuance is allowed, or why CAA
/// forbids it (a `caa` problem's detail).
pub fn evaluate(
    owner: &str,
    records: &[CaaRecord],
    identities: &[String],
    request: &CaaRequest<'_>,
) -> Result<String, String> {
    if let Some(r) = records.iter().find(|r| {
        r.critical
            && !matches!(
                r.tag.to_ascii_lowercase().as_str(),
                "issue" | "issuewild" | "iodef"
            )
    }) {
        return Err(format!(
            "CAA record at {owner} ({}) has the critical flag and the tag {:?}, which this CA does not understand: issuance is forbidden",
            r.text(),
            r.tag
        ));
    }
    let of_tag = |tag: &str| -> Vec<&CaaRecord> {
        records
            .iter()
            .filter(|r| r.tag.eq_ignore_ascii_case(tag))
            .collect()
    };
    let (tag, deciding) = match (request.wildcard, of_tag("issuewild")) {
        (true, wild) if !wild.is_empty() => ("issuewild", wild),
        _ => ("issue", of_tag("issue")),
    };
    if deciding.is_empty() {
        return Ok(format!("CAA records at {owner} restrict no {tag}: allowed"));
    }
    let mut reasons = Vec::new();
    for r in &deciding {
        match record_refuses(r, identities, request) {
            None => return Ok(format!("allowed by CAA record at {owner}: {}", r.text())),
            Some(why) => reasons.push(format!("{} ({why})", r.text())),
        }
    }
    Err(format!(
        "CAA {tag} records at {owner} forbid issuance for {}{} by this CA (identities {:?}): {}",
        if request.wildcard { "*." } else { "" },
        request.name,
        identities,
        reasons.join("; ")
    ))
}

/// How many names of one CAA climb are asked at the same time.
const PARALLEL_LOOKUPS: usize = 8;

/// Looks up and applies CAA for `request`; returns the problem (if refused) and what was
/// seen at each name.
///
/// The names of the climb are asked at once (at most eight in flight), so
/// the check takes about one DNS round trip instead of one per label; the answers are
/// still taken in order from the name itself upwards, and the first one that decides (a
/// record set, or a failed lookup) ends the check, exactly as a one-by-one climb would.
/// Lookups above that name are cancelled and their answers never used.
pub async fn check_caa(
    resolver: &NameResolver,
    identities: &[String],
    request: &CaaRequest<'_>,
) -> Outcome {
    let labels: Vec<&str> = request.name.split('.').collect();
    let names: Vec<String> = (0..labels.len()).map(|i| labels[i..].join(".")).collect();
    // The lookups are collected first: a stream that maps borrowed names to futures
    // defeats the compiler's `Send` inference for the spawned validation task.
    let lookups: Vec<_> = names
        .iter()
        .map(|name| async move { (name.as_str(), resolver.lookup_caa(name).await) })
        .collect();
    let mut answers = futures_util::stream::iter(lookups).buffered(PARALLEL_LOOKUPS);
    let mut seen = Vec::new();
    while let Some((name, answer)) = answers.next().await {
        match answer {
            Err(DnsFailure::NotFound { .. }) => seen.push(json!({"name": name, "records": []})),
            Err(failure) => {
                let mut diagnostic = seen.clone();
                seen.push(json!({"name": name, "error": failure.describe("CAA", name)}));
                diagnostic
                    .push(json!({"name": name, "error": failure.operator_detail("CAA", name)}));
                return Outcome {
                    error: Some(Problem::dns(format!(
                        "{}; CAA must be checked before issuing for {}, so issuance is refused until the lookup succeeds",
                        failure.describe("CAA", name),
                        request.name
                    ))),
                    record: json!({"checked": seen}),
                    diagnostic: json!({"checked": diagnostic}),
                };
            }
            Ok(answer) => {
                let records: Vec<CaaRecord> =
                    answer.records.iter().map(CaaRecord::from_rdata).collect();
                // The CNAMEs followed may name internal zones: the operators' only.
                let mut diagnostic = seen.clone();
                let texts: Vec<String> = records.iter().map(CaaRecord::text).collect();
                seen.push(json!({"name": name, "records": texts}));
                diagnostic.push(json!({"name": name, "cnames": answer.cnames, "records": texts}));
                let decision = evaluate(name, &records, identities, request);
                let (error, summary) = match decision {
                    Ok(s) => (None, s),
                    Err(why) => (
                        Some(Problem::new(
                            certwright_proto::ProblemType::Caa,
                            why.clone(),
                        )),
                        why,
                    ),
                };
                return Outcome {
                    error,
                    record: json!({"checked": seen, "decision": summary}),
                    diagnostic: json!({"checked": diagnostic, "decision": summary}),
                };
            }
        }
    }
    Outcome::plain(
        None,
        json!({"checked": seen, "decision": "no CAA records: allowed"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(flags: u8, tag: &str, value: &str) -> CaaRecord {
        CaaRecord {
            critical: flags & 0x80 != 0,
            flags,
            tag: tag.into(),
            value: value.into(),
        }
    }

    const ACCOUNT: &str = "https://ca.test/acme/acct/7";

    fn request(wildcard: bool, method: ChallengeType) -> CaaRequest<'static> {
        CaaRequest {
            name: "www.example.test",
            wildcard,
            account_uri: ACCOUNT,
            method,
        }
    }

    #[test]
    fn issue_values_parse() {
        assert_eq!(
            parse_issue_value(" ca.test ; accounturi=https://x/1;validationmethods=dns-01 ")
                .unwrap(),
            IssueValue {
                issuer: Some("ca.test".into()),
                parameters: vec![
                    ("accounturi".into(), "https://x/1".into()),
                    ("validationmethods".into(), "dns-01".into())
                ],
            }
        );
        assert_eq!(parse_issue_value(";").unwrap().issuer, None);
        assert_eq!(parse_issue_value("").unwrap().issuer, None);
        assert_eq!(
            parse_issue_value("CA.Test.").unwrap().issuer.as_deref(),
            Some("ca.test")
        );
        for bad in ["ca test", "ca.test; novalue", "ca..test", "ca.test; a=b c"] {
            assert!(parse_issue_value(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_decision_table() {
        let ids = vec!["ca.test".to_string()];
        let http = request(false, ChallengeType::Http01);
        let wild = request(true, ChallengeType::Dns01);
        let allowed = |records: &[CaaRecord], req: &CaaRequest<'_>| {
            evaluate("example.test", records, &ids, req).is_ok()
        };
        assert!(allowed(&[rec(0, "issue", "ca.test")], &http));
        assert!(allowed(
            &[rec(0, "issue", "other.test"), rec(0, "issue", "ca.test")],
            &http
        ));
        assert!(!allowed(&[rec(0, "issue", "other.test")], &http));
        assert!(!allowed(&[rec(0, "issue", ";")], &http));
        // issuewild only: names are unrestricted, wildcards decided by it.
        assert!(allowed(&[rec(0, "issuewild", "other.test")], &http));
        assert!(!allowed(&[rec(0, "issuewild", "other.test")], &wild));
        assert!(allowed(
            &[
                rec(0, "issue", "other.test"),
                rec(0, "issuewild", "ca.test")
            ],
            &wild
        ));
        assert!(!allowed(&[rec(0, "issue", "other.test")], &wild));
        // RFC 8657 parameters.
        assert!(allowed(
            &[rec(0, "issue", &format!("ca.test; accounturi={ACCOUNT}"))],
            &http
        ));
        assert!(!allowed(
            &[rec(
                0,
                "issue",
                "ca.test; accounturi=https://ca.test/acme/acct/8"
            )],
            &http
        ));
        assert!(allowed(
            &[rec(0, "issue", "ca.test; validationmethods=dns-01,http-01")],
            &http
        ));
        assert!(!allowed(
            &[rec(0, "issue", "ca.test; validationmethods=dns-01")],
            &http
        ));
        assert!(allowed(
            &[rec(0, "issue", "ca.test; unknown-param=1")],
            &http
        ));
        // Critical unknown tags forbid; non-critical ones and iodef do not.
        assert!(!allowed(
            &[rec(128, "tbs", "x"), rec(0, "issue", "ca.test")],
            &http
        ));
        assert!(allowed(
            &[rec(0, "tbs", "x"), rec(0, "issue", "ca.test")],
            &http
        ));
        assert!(allowed(&[rec(128, "iodef", "mailto:a@b.test")], &http));
        // The refusal names the record.
        let why = evaluate(
            "example.test",
            &[rec(0, "issue", "other.test")],
            &ids,
            &http,
        )
        .unwrap_err();
        assert!(why.contains("0 issue \"other.test\""), "{why}");
        // No identities configured: any issue record forbids.
        assert!(evaluate("example.test", &[rec(0, "issue", "ca.test")], &[], &http).is_err());
    }

    /// A resolver asking `dns`, giving up on a silent name after 2 × 300 ms.
    fn resolver(dns: &certwright_testkit::testdns::TestDns) -> NameResolver {
        NameResolver::dns_with_timeout(Some(dns.addr), std::time::Duration::from_millis(300))
            .unwrap()
    }

    fn climb(name: &'static str) -> CaaRequest<'static> {
        CaaRequest {
            name,
            wildcard: false,
            account_uri: ACCOUNT,
            method: ChallengeType::Http01,
        }
    }

    /// The parents are asked while the name itself has not answered yet: a one-by-one
    /// climb stops at the silent name and never asks them. The decision is still the
    /// silent name's: fail closed.
    #[tokio::test]
    async fn the_climb_asks_every_name_at_once() {
        use certwright_testkit::testdns::{Behaviour, TestDns};
        let dns = TestDns::start().await.unwrap();
        dns.set_behaviour("slow.a.climb.test", Behaviour::Silent);
        dns.add_caa("a.climb.test", 0, "issue", "ca.test");
        let identities = vec!["ca.test".to_owned()];
        let Outcome {
            error: problem,
            record,
            ..
        } = check_caa(&resolver(&dns), &identities, &climb("slow.a.climb.test")).await;
        let problem = problem.expect("a silent name must refuse issuance");
        assert_eq!(
            problem.kind,
            certwright_proto::ProblemType::Dns,
            "{problem:?}"
        );
        assert!(problem.detail.contains("slow.a.climb.test"), "{problem:?}");
        let queries = dns.queries();
        for parent in ["a.climb.test", "climb.test", "test"] {
            assert!(
                queries.contains(&format!("CAA {parent}")),
                "{parent} not asked: {queries:?}"
            );
        }
        // Only the deciding name is reported.
        assert_eq!(record["checked"].as_array().unwrap().len(), 1, "{record}");
    }

    /// Answers above the deciding name are not used, even failed ones; a failure below a
    /// record set still refuses.
    #[tokio::test]
    async fn the_closest_answer_decides() {
        use certwright_testkit::testdns::{Behaviour, TestDns};
        let dns = TestDns::start().await.unwrap();
        let identities = vec!["ca.test".to_owned()];
        let resolver = resolver(&dns);

        dns.add_caa("b.climb.test", 0, "issue", "ca.test");
        dns.set_behaviour("climb.test", Behaviour::ServFail);
        let Outcome {
            error: problem,
            record,
            ..
        } = check_caa(&resolver, &identities, &climb("www.b.climb.test")).await;
        assert!(problem.is_none(), "{problem:?} {record}");
        let checked: Vec<&str> = record["checked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(checked, ["www.b.climb.test", "b.climb.test"], "{record}");

        dns.add_caa("c.other.test", 0, "issue", "other-ca.test");
        dns.set_behaviour("www.c.other.test", Behaviour::ServFail);
        let problem = check_caa(&resolver, &identities, &climb("www.c.other.test"))
            .await
            .error;
        let problem = problem.expect("a failed lookup must refuse issuance");
        assert_eq!(
            problem.kind,
            certwright_proto::ProblemType::Dns,
            "{problem:?}"
        );
        assert!(problem.detail.contains("SERVFAIL"), "{problem:?}");

        dns.add_caa("e.other.test", 0, "issue", "other-ca.test");
        dns.set_behaviour("other.test", Behaviour::ServFail);
        let problem = check_caa(&resolver, &identities, &climb("www.e.other.test"))
            .await
            .error;
        let problem = problem.expect("the record set at e.other.test forbids issuance");
        assert_eq!(
            problem.kind,
            certwright_proto::ProblemType::Caa,
            "{problem:?}"
        );
    }
}
