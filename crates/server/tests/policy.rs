//! The naming policy against real orders on an in-process CA: a table of allowed and
//! refused identifiers (suffix rules, denied names, wildcards off, IP ranges, an EAB-label
//! rule), and a SIGHUP reload that changes the outcome of the next order — in process, and
//! against the real `certwright-ca serve --config` binary; key types at finalize; the lifetime
//! cap.

mod harness;

use std::time::Duration;

use certwright_proto::jws::sign_eab;
use certwright_proto::types::Identifier;
use certwright_proto::{KeyType, ProblemType};
use certwright_server::config::{Config, EabRuleSection};
use certwright_testkit::port::free_port;
use certwright_testkit::process::spawn;
use harness::{Acme, Resp, TestCa};
use serde_json::json;

const MAC: &[u8] = b"0123456789abcdef0123456789abcdef";

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn table_policy(c: &mut Config) {
    c.policy.allowed_names = strings(&["*.internal", "public.example.com"]);
    c.policy.denied_names = strings(&["*.prod.internal", "ca.internal"]);
    c.policy.allow_wildcards = false;
    c.policy.allowed_ip_ranges = Some(strings(&["10.0.0.0/8"]));
    c.policy.eab.insert(
        "team-payments".into(),
        EabRuleSection {
            allowed_names: strings(&["*.pay.internal"]),
            allowed_ip_ranges: vec![],
        },
    );
}

/// An identifier by its text: an IP address or a DNS name.
fn identifier(text: &str) -> Identifier {
    if text.parse::<std::net::IpAddr>().is_ok() {
        Identifier::ip(text)
    } else {
        Identifier::dns(text)
    }
}

async fn order(acme: &Acme, names: &[&str]) -> Resp {
    let ids: Vec<Identifier> = names.iter().map(|n| identifier(n)).collect();
    let url = acme.dir.new_order.clone();
    acme.post(&url, Some(&json!({ "identifiers": ids }))).await
}

/// A registered account bound to an EAB key with `label`.
async fn eab_account(ca: &TestCa, kid: &str, label: &str) -> Acme {
    ca.store
        .create_eab_key(kid, label, MAC, ca.clock.now())
        .await
        .unwrap();
    let mut acme = ca.client(KeyType::EcP256).await;
    let url = acme.dir.new_account.clone();
    let binding = sign_eab(MAC, kid, &url, &acme.key.jwk());
    let r = acme
        .post(
            &url,
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    acme.kid = Some(r.location());
    acme
}

#[tokio::test]
async fn policy_table_against_real_orders() {
    let ca = TestCa::start_with(table_policy).await;
    let plain = ca.account().await;
    let payments = eab_account(&ca, "kid-pay", "team-payments").await;
    let other_label = eab_account(&ca, "kid-other", "team-other").await;

    // (who, identifiers, refused identifiers with a piece of the rule that refused each)
    type Row<'a> = (&'a str, &'a Acme, Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let table: Vec<Row> = vec![
        ("suffix rule", &plain, vec!["web.internal"], vec![]),
        (
            "suffix rule, any depth, and an exact name",
            &plain,
            vec!["a.b.internal", "public.example.com"],
            vec![],
        ),
        (
            "outside the allowed names",
            &plain,
            vec!["www.example.com"],
            vec![("www.example.com", "allowed_names [")],
        ),
        (
            "below an exact allowed name",
            &plain,
            vec!["www.public.example.com"],
            vec![("www.public.example.com", "allowed_names [")],
        ),
        (
            "denied by suffix",
            &plain,
            vec!["db.prod.internal"],
            vec![("db.prod.internal", "denied_names \"*.prod.internal\"")],
        ),
        (
            "denied exact name",
            &plain,
            vec!["ca.internal"],
            vec![("ca.internal", "denied_names \"ca.internal\"")],
        ),
        (
            "wildcards off",
            &plain,
            vec!["*.web.internal"],
            vec![("*.web.internal", "allow_wildcards = false")],
        ),
        ("IP in range", &plain, vec!["10.1.2.3"], vec![]),
        (
            "IP out of range",
            &plain,
            vec!["192.0.2.1"],
            vec![("192.0.2.1", "allowed_ip_ranges [\"10.0.0.0/8\"]")],
        ),
        (
            "each refused identifier is a subproblem",
            &plain,
            vec!["ok.internal", "x.prod.internal", "example.org", "192.0.2.9"],
            vec![
                ("x.prod.internal", "denied_names \"*.prod.internal\""),
                ("example.org", "allowed_names ["),
                ("192.0.2.9", "allowed_ip_ranges"),
            ],
        ),
        (
            "EAB label rule allows its names",
            &payments,
            vec!["api.pay.internal"],
            vec![],
        ),
        (
            "EAB label rule refuses others",
            &payments,
            vec!["web.internal"],
            vec![(
                "web.internal",
                "eab.\"team-payments\".allowed_names [\"*.pay.internal\"]",
            )],
        ),
        (
            "EAB label rule: no IPs",
            &payments,
            vec!["10.1.2.3"],
            vec![("10.1.2.3", "eab.\"team-payments\".allowed_ip_ranges")],
        ),
        (
            "global denials apply to EAB accounts",
            &payments,
            vec!["x.prod.internal"],
            vec![("x.prod.internal", "denied_names")],
        ),
        (
            "a label without a rule gets the global rules",
            &other_label,
            vec!["web.internal"],
            vec![],
        ),
    ];
    for (case, acme, names, refused) in table {
        let before = ca.store.snapshot().await.unwrap();
        let r = order(acme, &names).await;
        if refused.is_empty() {
            assert_eq!(
                r.status,
                201,
                "{case}: {}",
                String::from_utf8_lossy(&r.body)
            );
            continue;
        }
        let p = r.assert_problem(ProblemType::RejectedIdentifier, 400);
        assert_eq!(p.subproblems.len(), refused.len(), "{case}: {p}");
        for (sub, (value, rule)) in p.subproblems.iter().zip(&refused) {
            assert_eq!(sub.kind, ProblemType::RejectedIdentifier, "{case}: {p}");
            assert_eq!(
                sub.identifier.as_ref().unwrap().value,
                *value,
                "{case}: {p}"
            );
            assert!(sub.detail.contains(rule), "{case}: {sub} lacks {rule:?}");
        }
        assert_eq!(
            ca.store.snapshot().await.unwrap(),
            before,
            "{case}: a refusal changed the store"
        );
    }
}

#[tokio::test]
async fn max_names_per_order() {
    let ca = TestCa::start_with(|c| c.orders.max_identifiers = 2).await;
    let acme = ca.account().await;
    assert_eq!(
        order(&acme, &["a.example.com", "b.example.com"])
            .await
            .status,
        201
    );
    let r = order(&acme, &["a.example.com", "b.example.com", "c.example.com"]).await;
    let p = r.assert_problem(ProblemType::RejectedIdentifier, 400);
    assert!(p.detail.contains("at most 2"), "{p}");
}

/// Sends SIGHUP to this test process (the CA's handler is installed first).
fn sighup_self() {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Orders `name` until the outcome is `want` (a reload is asynchronous); at most 10 s.
async fn wait_for_outcome(acme: &Acme, name: &str, want: u16) {
    for _ in 0..100 {
        if order(acme, &[name]).await.status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("an order for {name} never answered {want} after the reload");
}

#[tokio::test]
async fn a_sighup_reload_changes_the_outcome_of_the_next_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("certwright-ca.toml");
    std::fs::write(&file, "[policy]\ndenied_names = [\"*.blocked.example\"]\n").unwrap();
    let ca = TestCa::start_with(|c| {
        c.policy = Config::from_file(&file).unwrap().policy;
    })
    .await;
    ca.policy.reload_on_sighup(Some(file.clone())).unwrap();
    let acme = ca.account().await;
    let r = order(&acme, &["www.blocked.example"]).await;
    r.assert_problem(ProblemType::RejectedIdentifier, 400);
    assert_eq!(order(&acme, &["www.fine.example"]).await.status, 201);

    // Swap the rule around and reload: the next order sees the new policy.
    std::fs::write(&file, "[policy]\ndenied_names = [\"*.fine.example\"]\n").unwrap();
    sighup_self();
    wait_for_outcome(&acme, "www.blocked.example", 201).await;
    let r = order(&acme, &["www.fine.example"]).await;
    let p = r.assert_problem(ProblemType::RejectedIdentifier, 400);
    assert!(p.detail.contains("*.fine.example"), "{p}");

    // A broken file is logged and the policy in force stays.
    let metrics = || async {
        reqwest::get(format!("{}/metrics", ca.admin_base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let failed = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("certwright_policy_reloads_total{outcome=\"failed\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .unwrap_or(0.0)
    };
    let failed_before = failed(&metrics().await);
    std::fs::write(&file, "[policy]\ndenied_names = [\"not a name\"]\n").unwrap();
    sighup_self();
    let mut seen = false;
    for _ in 0..100 {
        if failed(&metrics().await) > failed_before {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the failed reload was not counted");
    order(&acme, &["www.fine.example"])
        .await
        .assert_problem(ProblemType::RejectedIdentifier, 400);
    assert_eq!(order(&acme, &["www.blocked.example"]).await.status, 201);
}

#[tokio::test]
async fn a_shorter_max_lifetime_caps_the_profile() {
    let ca = TestCa::start_with(|c| c.policy.max_lifetime_days = Some(3)).await;
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["short.example.com"], &ca.responder).await;
    let der = harness::pem_chain(&chain).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let validity = cert.validity();
    let secs = validity.not_after.timestamp() - validity.not_before.timestamp();
    // 3 days plus the backdating allowance, far below the profile's 90 days.
    assert!(secs <= 3 * 86400 + 3600, "lifetime {secs} s");
}

/// The real binary: `serve --config FILE --admin-listen ADDR`, then `kill -HUP` changes
/// the next order's outcome, and the admin listener counts the reload.
#[tokio::test]
async fn the_binary_reloads_its_config_file_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("certwright-ca.toml");
    let deny = |pattern: &str| {
        std::fs::write(&file, format!("[policy]\ndenied_names = [\"{pattern}\"]\n")).unwrap()
    };
    deny("*.blocked.example");
    let (port, admin_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let log = std::fs::File::create(dir.path().join("stderr.txt")).unwrap();
    let mut child = spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_certwright-ca"))
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--base-url", &base])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--pki-http-listen", "off"])
            .arg("--no-tls")
            .stdout(std::process::Stdio::null())
            .stderr(log),
    );
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{admin}/readyz")).send().await {
            if r.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stderr = || std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
    assert!(ready, "certwright-ca never became ready:\n{}", stderr());

    let mut acme = Acme::new(
        &base,
        certwright_proto::AccountKey::generate(KeyType::EcP256).unwrap(),
    )
    .await;
    acme.register().await;
    order(&acme, &["www.blocked.example"])
        .await
        .assert_problem(ProblemType::RejectedIdentifier, 400);
    assert_eq!(order(&acme, &["www.fine.example"]).await.status, 201);

    deny("*.fine.example");
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_outcome(&acme, "www.blocked.example", 201).await;
    order(&acme, &["www.fine.example"])
        .await
        .assert_problem(ProblemType::RejectedIdentifier, 400);
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("certwright_policy_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(stderr().contains("policy reloaded"), "{}", stderr());
    child.0.kill().unwrap();
}

#[tokio::test]
async fn key_types_are_checked_at_finalize() {
    let ca = TestCa::start_with(|c| c.policy.key_types = Some(strings(&["p384"]))).await;
    let acme = ca.account().await;
    let names = ["keys.example.com"];
    let r = order(&acme, &names).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let url = r.location();
    for a in acme.authorize(&r.json(), &ca.responder).await {
        assert_eq!(a["status"], "valid", "{a}");
    }
    let ready = acme.wait_order(&url).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let before = ca.store.snapshot().await.unwrap();
    let p = acme
        .finalize(&ready, &harness::csr(&names, &p256))
        .await
        .assert_problem(ProblemType::BadCsr, 400);
    assert_eq!(ca.store.snapshot().await.unwrap(), before, "{p}");
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let r = acme.finalize(&ready, &harness::csr(&names, &p384)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(acme.wait_order(&url).await["status"], "valid");
}
