//! Every validation method end to end against an in-process CA whose VA asks a test DNS
//! server on loopback: dns-01 (wildcards included), tls-alpn-01 and http-01 for IP
//! identifiers, the deny-list, and a table of CAA cases — each failure with its problem
//! type, and nothing issued when validation or CAA refuses.

mod harness;

use certwright_proto::keyauth::dns01_txt_value;
use certwright_proto::types::Identifier;
use certwright_proto::ProblemType;
use certwright_server::config::Config;
use certwright_server::va::tlsalpn01::sni_name;
use certwright_testkit::testalpn::{challenge_cert, Flaw, TlsAlpnResponder};
use certwright_testkit::testdns::{Behaviour, TestDns};
use harness::{csr, pem_chain, Acme, Answer, TestCa};
use serde_json::{json, Value};

/// This CA's CAA identity in these tests.
const CA_IDENTITY: &str = "ca.test";

async fn start(dns: &TestDns, tweak: impl FnOnce(&mut Config)) -> TestCa {
    let addr = dns.addr;
    TestCa::start_with(move |c| {
        c.validation.dns_resolver = Some(addr);
        c.directory.caa_identities = vec![CA_IDENTITY.into()];
        tweak(c);
    })
    .await
}

async fn order(acme: &Acme, ids: &[Identifier]) -> (String, Value) {
    let url = acme.dir.new_order.clone();
    let r = acme.post(&url, Some(&json!({ "identifiers": ids }))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    (r.location(), r.json())
}

fn key_auth(acme: &Acme, chall: &Value) -> String {
    format!(
        "{}.{}",
        chall["token"].as_str().unwrap(),
        acme.key.jwk().thumbprint()
    )
}

fn challenge(authz: &Value, kind: &str) -> Option<Value> {
    authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

fn kinds(authz: &Value) -> Vec<String> {
    authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Publishes the dns-01 value of the order's first authorization, answers the challenge
/// and returns the settled authorization.
async fn pass_dns01(acme: &Acme, dns: &TestDns, order: &Value) -> Value {
    let authz_url = order["authorizations"][0].as_str().unwrap();
    let authz = acme.post(authz_url, None).await.json();
    let chall = challenge(&authz, "dns-01").expect("dns-01 offered");
    let name = format!(
        "_acme-challenge.{}",
        authz["identifier"]["value"].as_str().unwrap()
    );
    dns.set_txt(&name, &[&dns01_txt_value(&key_auth(acme, &chall))]);
    let r = acme
        .post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    acme.wait_authz(authz_url).await
}

/// The problem of the authorization's one failed challenge.
fn failure(authz: &Value) -> (ProblemType, String) {
    assert_eq!(authz["status"], "invalid", "{authz}");
    let c = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "invalid")
        .expect("an invalid challenge");
    let p: certwright_proto::Problem = serde_json::from_value(c["error"].clone()).unwrap();
    (p.kind, p.detail)
}

fn sans(pem: &str) -> Vec<String> {
    let der = pem_chain(pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    harness::san_strings(&cert)
}

async fn finalize_and_fetch(acme: &Acme, order_url: &str, names: &[&str]) -> String {
    let ready = acme.wait_order(order_url).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let r = acme.finalize(&ready, &csr(names, &key)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let done = acme.wait_order(order_url).await;
    assert_eq!(done["status"], "valid", "{done}");
    let cert = acme.post(done["certificate"].as_str().unwrap(), None).await;
    String::from_utf8(cert.body).unwrap()
}

#[tokio::test]
async fn a_wildcard_is_authorized_for_its_base_name_by_dns01_only() {
    let dns = TestDns::start().await.unwrap();
    let ca = start(&dns, |_| {}).await;
    let acme = ca.account().await;
    let (url, o) = order(&acme, &[Identifier::dns("*.Wild.test")]).await;
    assert_eq!(o["identifiers"][0]["value"], "*.wild.test");
    let authz = acme
        .post(o["authorizations"][0].as_str().unwrap(), None)
        .await
        .json();
    assert_eq!(
        authz["identifier"],
        json!({"type": "dns", "value": "wild.test"})
    );
    assert_eq!(authz["wildcard"], true);
    assert_eq!(kinds(&authz), vec!["dns-01"]);
    let authz = pass_dns01(&acme, &dns, &o).await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let record = &authz["challenges"][0]["validationRecord"];
    assert_eq!(record["hostname"], "_acme-challenge.wild.test", "{record}");
    assert_eq!(record["valuesFound"], 1, "{record}");
    assert!(record["caa"]["decision"].is_string(), "{record}");
    let pem = finalize_and_fetch(&acme, &url, &["*.wild.test"]).await;
    assert_eq!(sans(&pem), vec!["dns:*.wild.test"]);
}

#[tokio::test]
async fn a_plain_name_is_offered_all_three_methods_and_passes_dns01_via_cname() {
    let dns = TestDns::start().await.unwrap();
    let ca = start(&dns, |_| {}).await;
    let acme = ca.account().await;
    let (url, o) = order(&acme, &[Identifier::dns("deleg.test")]).await;
    let authz_url = o["authorizations"][0].as_str().unwrap();
    let authz = acme.post(authz_url, None).await.json();
    let mut offered = kinds(&authz);
    offered.sort();
    assert_eq!(offered, vec!["dns-01", "http-01", "tls-alpn-01"]);
    let chall = challenge(&authz, "dns-01").unwrap();
    dns.set_cname("_acme-challenge.deleg.test", "deleg.validation-zone.test");
    dns.set_txt(
        "deleg.validation-zone.test",
        &["unrelated", &dns01_txt_value(&key_auth(&acme, &chall))],
    );
    acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    let authz = acme.wait_authz(authz_url).await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let pem = finalize_and_fetch(&acme, &url, &["deleg.test"]).await;
    assert_eq!(sans(&pem), vec!["dns:deleg.test"]);
}

#[tokio::test]
async fn dns01_failures_leave_the_order_invalid_with_their_problem() {
    let dns = TestDns::start().await.unwrap();
    let ca = start(&dns, |_| {}).await;
    let acme = ca.account().await;
    dns.set_behaviour("_acme-challenge.servfail.test", Behaviour::ServFail);
    dns.set_behaviour("_acme-challenge.silent.test", Behaviour::Silent);
    for (name, setup, kind, words) in [
        (
            "wrong.test",
            Some("a-wrong-value"),
            ProblemType::IncorrectResponse,
            "1 value(s) found",
        ),
        ("absent.test", None, ProblemType::Dns, "NXDOMAIN"),
        ("servfail.test", None, ProblemType::Dns, "SERVFAIL"),
        ("silent.test", None, ProblemType::Dns, "timed out"),
    ] {
        let (url, o) = order(&acme, &[Identifier::dns(name)]).await;
        let authz_url = o["authorizations"][0].as_str().unwrap();
        let authz = acme.post(authz_url, None).await.json();
        let chall = challenge(&authz, "dns-01").unwrap();
        if let Some(v) = setup {
            dns.set_txt(&format!("_acme-challenge.{name}"), &[v]);
        }
        acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        let (k, detail) = failure(&acme.wait_authz(authz_url).await);
        assert_eq!(k, kind, "{name}: {detail}");
        assert!(detail.contains(words), "{name}: {detail}");
        // What the DNS held is the operator's to see, not the client's.
        assert!(!detail.contains("a-wrong-value"), "{name}: {detail}");
        assert_eq!(acme.wait_order(&url).await["status"], "invalid", "{name}");
    }
}

#[tokio::test]
async fn ip_identifiers_validate_by_tls_alpn01_and_http01_and_get_ip_sans() {
    let dns = TestDns::start().await.unwrap();
    let responder = TlsAlpnResponder::start().await;
    let port = responder.port;
    let ca = start(&dns, move |c| c.validation.tlsalpn01_port = port).await;
    let acme = ca.account().await;

    // Canonical form, and the methods RFC 8738 allows.
    let (_, o) = order(&acme, &[Identifier::ip("0:0::0:1")]).await;
    assert_eq!(o["identifiers"][0], json!({"type": "ip", "value": "::1"}));
    let authz = acme
        .post(o["authorizations"][0].as_str().unwrap(), None)
        .await
        .json();
    assert_eq!(kinds(&authz), vec!["http-01", "tls-alpn-01"]);

    // tls-alpn-01, SNI by the reverse name.
    let id = Identifier::ip("127.0.0.1");
    let (url, o) = order(&acme, std::slice::from_ref(&id)).await;
    let authz_url = o["authorizations"][0].as_str().unwrap();
    let authz = acme.post(authz_url, None).await.json();
    let chall = challenge(&authz, "tls-alpn-01").unwrap();
    responder.set(
        &sni_name(&id).unwrap(),
        challenge_cert(&id, &key_auth(&acme, &chall), Flaw::None),
    );
    acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    let authz = acme.wait_authz(authz_url).await;
    assert_eq!(authz["status"], "valid", "{authz}");
    assert_eq!(
        authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "tls-alpn-01")
            .unwrap()["validationRecord"]["sni"],
        "1.0.0.127.in-addr.arpa"
    );
    let pem = finalize_and_fetch(&acme, &url, &["127.0.0.1"]).await;
    assert_eq!(sans(&pem), vec!["ip:127.0.0.1"]);

    // A CSR naming the address as a DNS name does not match the order.
    let (url, o) = order(&acme, std::slice::from_ref(&id)).await;
    let ready = acme.wait_order(&url).await;
    assert_eq!(ready["status"], "ready", "{o}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::DnsName("127.0.0.2".try_into().unwrap())];
    let bad = params.serialize_request(&key).unwrap().der().to_vec();
    acme.finalize(&ready, &bad)
        .await
        .assert_problem(ProblemType::BadCsr, 400);

    // http-01 for an IP address (a fresh account: nothing to reuse).
    let other = ca.account().await;
    let (url, o) = order(&other, std::slice::from_ref(&id)).await;
    let authz_url = o["authorizations"][0].as_str().unwrap();
    let authz = other.post(authz_url, None).await.json();
    let chall = challenge(&authz, "http-01").unwrap();
    let token = chall["token"].as_str().unwrap();
    ca.responder
        .set(token, Answer::Body(key_auth(&other, &chall)));
    other
        .post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    assert_eq!(other.wait_authz(authz_url).await["status"], "valid");
    let pem = finalize_and_fetch(&other, &url, &["127.0.0.1"]).await;
    assert_eq!(sans(&pem), vec!["ip:127.0.0.1"]);
}

#[tokio::test]
async fn tls_alpn01_failures_have_their_problem_types() {
    let dns = TestDns::start().await.unwrap();
    let responder = TlsAlpnResponder::start().await;
    let port = responder.port;
    let ca = start(&dns, move |c| c.validation.tlsalpn01_port = port).await;
    let acme = ca.account().await;
    for (name, flaw, kind) in [
        (
            "digest.test",
            Some(Flaw::WrongDigest),
            ProblemType::IncorrectResponse,
        ),
        ("noalpn.test", Some(Flaw::NoAlpn), ProblemType::Tls),
        ("nocert.test", None, ProblemType::Tls),
    ] {
        let id = Identifier::dns(name);
        let (url, o) = order(&acme, std::slice::from_ref(&id)).await;
        let authz_url = o["authorizations"][0].as_str().unwrap();
        let authz = acme.post(authz_url, None).await.json();
        let chall = challenge(&authz, "tls-alpn-01").unwrap();
        if let Some(flaw) = flaw {
            responder.set(name, challenge_cert(&id, &key_auth(&acme, &chall), flaw));
        }
        acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        let (k, detail) = failure(&acme.wait_authz(authz_url).await);
        assert_eq!(k, kind, "{name}: {detail}");
        assert_eq!(acme.wait_order(&url).await["status"], "invalid");
    }
}

#[tokio::test]
async fn the_deny_list_keeps_the_va_away_from_its_ranges() {
    let dns = TestDns::start().await.unwrap();
    let ca = start(&dns, |c| {
        c.validation.deny_ranges = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()]
    })
    .await;
    let acme = ca.account().await;
    // An IP identifier inside a range is refused at once.
    let url = acme.dir.new_order.clone();
    let r = acme
        .post(
            &url,
            Some(&json!({"identifiers": [{"type": "ip", "value": "10.1.2.3"}]})),
        )
        .await;
    let p = r.assert_problem(ProblemType::RejectedIdentifier, 400);
    assert!(p.detail.contains("does not validate"), "{p}");
    assert!(
        !p.detail.contains("10.0.0.0/8"),
        "the configured range is not shown: {p}"
    );
    // A name resolving into a range: http-01 never connects.
    let (url, o) = order(&acme, &[Identifier::dns("inside.test")]).await;
    let authz_url = o["authorizations"][0].as_str().unwrap();
    let authz = acme.post(authz_url, None).await.json();
    let chall = challenge(&authz, "http-01").unwrap();
    ca.responder.set(
        chall["token"].as_str().unwrap(),
        Answer::Body(key_auth(&acme, &chall)),
    );
    acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    let (k, detail) = failure(&acme.wait_authz(authz_url).await);
    assert_eq!(k, ProblemType::Connection, "{detail}");
    assert!(detail.contains("does not validate"), "{detail}");
    assert_eq!(acme.wait_order(&url).await["status"], "invalid");
}

/// What one CAA case expects.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Issued,
    Refused(ProblemType, &'static str),
}

#[tokio::test]
async fn caa_cases() {
    let dns = TestDns::start().await.unwrap();
    let ca = start(&dns, |_| {}).await;
    let acme = ca.account().await;
    let account_uri = acme.kid.clone().unwrap();
    let other_account = format!("{}/acme/acct/999999", ca.base);
    // (case, name ordered, records: (owner, flags, tag, value), expectation)
    type Rec = (&'static str, u8, &'static str, String);
    let cases: Vec<(&str, &str, Vec<Rec>, Expect)> = vec![
        ("no record", "none.caa.test", vec![], Expect::Issued),
        (
            "issue for us",
            "ours.caa.test",
            vec![("ours.caa.test", 0, "issue", CA_IDENTITY.into())],
            Expect::Issued,
        ),
        (
            "issue for another CA",
            "theirs.caa.test",
            vec![("theirs.caa.test", 0, "issue", "other-ca.test".into())],
            Expect::Refused(ProblemType::Caa, "0 issue \"other-ca.test\""),
        ),
        (
            "issue forbidding everyone",
            "nobody.caa.test",
            vec![("nobody.caa.test", 0, "issue", ";".into())],
            Expect::Refused(ProblemType::Caa, "0 issue \";\""),
        ),
        (
            "issuewild only, plain name",
            "wildonly.caa.test",
            vec![("wildonly.caa.test", 0, "issuewild", "other-ca.test".into())],
            Expect::Issued,
        ),
        (
            "issuewild only, wildcard",
            "*.wildonly2.caa.test",
            vec![("wildonly2.caa.test", 0, "issuewild", "other-ca.test".into())],
            Expect::Refused(ProblemType::Caa, "issuewild \"other-ca.test\""),
        ),
        (
            "issuewild for us overrides issue for a wildcard",
            "*.wildours.caa.test",
            vec![
                ("wildours.caa.test", 0, "issue", "other-ca.test".into()),
                ("wildours.caa.test", 0, "issuewild", CA_IDENTITY.into()),
            ],
            Expect::Issued,
        ),
        (
            "accounturi of this account",
            "acct-ok.caa.test",
            vec![(
                "acct-ok.caa.test",
                0,
                "issue",
                format!("{CA_IDENTITY}; accounturi={account_uri}"),
            )],
            Expect::Issued,
        ),
        (
            "accounturi of another account",
            "acct.caa.test",
            vec![(
                "acct.caa.test",
                0,
                "issue",
                format!("{CA_IDENTITY}; accounturi={other_account}"),
            )],
            Expect::Refused(ProblemType::Caa, "accounturi"),
        ),
        (
            "validationmethods including dns-01",
            "vm-ok.caa.test",
            vec![(
                "vm-ok.caa.test",
                0,
                "issue",
                format!("{CA_IDENTITY}; validationmethods=http-01,dns-01"),
            )],
            Expect::Issued,
        ),
        (
            "validationmethods excluding dns-01",
            "vm.caa.test",
            vec![(
                "vm.caa.test",
                0,
                "issue",
                format!("{CA_IDENTITY}; validationmethods=http-01"),
            )],
            Expect::Refused(ProblemType::Caa, "validationmethods"),
        ),
        (
            "critical unknown tag",
            "crit.caa.test",
            vec![
                ("crit.caa.test", 0, "issue", CA_IDENTITY.into()),
                ("crit.caa.test", 128, "futuretag", "x".into()),
            ],
            Expect::Refused(ProblemType::Caa, "128 futuretag"),
        ),
        (
            "non-critical unknown tag",
            "noncrit.caa.test",
            vec![
                ("noncrit.caa.test", 0, "issue", CA_IDENTITY.into()),
                ("noncrit.caa.test", 0, "futuretag", "x".into()),
            ],
            Expect::Issued,
        ),
        (
            "record on a parent",
            "deep.sub.parent.caa.test",
            vec![("parent.caa.test", 0, "issue", "other-ca.test".into())],
            Expect::Refused(ProblemType::Caa, "at parent.caa.test"),
        ),
        (
            "the closest record wins over a parent's",
            "child.parent2.caa.test",
            vec![
                ("parent2.caa.test", 0, "issue", "other-ca.test".into()),
                ("child.parent2.caa.test", 0, "issue", CA_IDENTITY.into()),
            ],
            Expect::Issued,
        ),
        (
            "CNAME to a record",
            "alias.caa.test",
            vec![("target.elsewhere.test", 0, "issue", "other-ca.test".into())],
            Expect::Refused(ProblemType::Caa, "other-ca.test"),
        ),
        (
            "SERVFAIL",
            "broken.caa.test",
            vec![],
            Expect::Refused(ProblemType::Dns, "SERVFAIL"),
        ),
    ];
    assert!(cases.len() >= 10);
    dns.set_cname("alias.caa.test", "target.elsewhere.test");
    dns.set_behaviour("broken.caa.test", Behaviour::ServFail);
    for (case, name, records, expect) in cases {
        for (owner, flags, tag, value) in &records {
            dns.add_caa(owner, *flags, tag, value);
        }
        let (url, o) = order(&acme, &[Identifier::dns(name)]).await;
        let authz = pass_dns01(&acme, &dns, &o).await;
        match expect {
            Expect::Issued => {
                assert_eq!(authz["status"], "valid", "{case}: {authz}");
                let pem = finalize_and_fetch(&acme, &url, &[name]).await;
                assert_eq!(sans(&pem), vec![format!("dns:{name}")], "{case}");
            }
            Expect::Refused(kind, words) => {
                let (k, detail) = failure(&authz);
                assert_eq!(k, kind, "{case}: {detail}");
                assert!(detail.contains(words), "{case}: {detail}");
                let o = acme.wait_order(&url).await;
                assert_eq!(o["status"], "invalid", "{case}");
                assert!(o["certificate"].is_null(), "{case}");
            }
        }
        eprintln!("ok: CAA {case}");
    }
}

#[tokio::test]
async fn finalize_rechecks_caa_for_old_validations() {
    let dns = TestDns::start().await.unwrap();
    let ca = start(&dns, |_| {}).await;
    let acme = ca.account().await;
    let name = "recheck.caa.test";
    let (url, o) = order(&acme, &[Identifier::dns(name)]).await;
    assert_eq!(pass_dns01(&acme, &dns, &o).await["status"], "valid");
    // CAA now forbids us. Within the re-check age, finalize does not look again.
    dns.add_caa(name, 0, "issue", "other-ca.test");
    ca.clock.advance(7 * 3600);
    let ready = acme.wait_order(&url).await;
    assert_eq!(ready["status"], "ready");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr_der = csr(&[name], &key);
    // Past 8 hours it does, and refuses.
    ca.clock.advance(2 * 3600);
    let r = acme.finalize(&ready, &csr_der).await;
    let p = r.assert_problem(ProblemType::Caa, 403);
    assert!(p.detail.contains("other-ca.test"), "{p}");
    let after = acme.post(&url, None).await.json();
    assert!(after["certificate"].is_null(), "{after}");
    // The operator fixes CAA: the same order finalizes.
    dns.clear(name);
    dns.add_caa(name, 0, "issue", CA_IDENTITY);
    let r = acme.finalize(&ready, &csr_der).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(acme.wait_order(&url).await["status"], "valid");
}

#[tokio::test]
async fn finalize_within_the_recheck_age_does_not_look_again() {
    let dns = TestDns::start().await.unwrap();
    let ca = start(&dns, |_| {}).await;
    let acme = ca.account().await;
    let name = "fresh.caa.test";
    let (url, o) = order(&acme, &[Identifier::dns(name)]).await;
    assert_eq!(pass_dns01(&acme, &dns, &o).await["status"], "valid");
    dns.add_caa(name, 0, "issue", "other-ca.test");
    ca.clock.advance(7 * 3600);
    let pem = finalize_and_fetch(&acme, &url, &[name]).await;
    assert_eq!(sans(&pem), vec![format!("dns:{name}")]);
}
