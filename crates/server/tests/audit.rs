//! The audit trail and the inventory, end to end: real ACME requests produce the expected
//! entries in order; `certwright-ca audit verify` (the real binary) passes on the intact
//! chain and names the first bad entry after one is altered or deleted; `audit export` and
//! `certs list` report what was issued. Runs on SQLite, and on PostgreSQL with
//! `CERTWRIGHT_TEST_BACKEND=postgres`.

mod harness;

use std::process::Command;

use certwright_proto::b64;
use harness::{cli, tamper, text, TestCa};
use serde_json::{json, Value};

#[tokio::test]
async fn issuance_and_revocation_are_audited_and_tampering_is_found() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let account_id: i64 = acme
        .kid
        .as_deref()
        .and_then(|k| k.rsplit('/').next())
        .and_then(|id| id.parse().ok())
        .unwrap();
    let (_, _, kept_chain) = acme.issue(&["kept.audit.test"], &ca.responder).await;
    let (_, _, revoked_chain) = acme.issue(&["gone.audit.test"], &ca.responder).await;
    let der = harness::pem_chain(&revoked_chain).remove(0);
    let revoke = acme.dir.revoke_cert.clone();
    let r = acme
        .post(
            &revoke,
            Some(&json!({"certificate": b64::encode(&der), "reason": 1})),
        )
        .await;
    assert_eq!(r.status, 200);

    // The entries, in order.
    let entries = ca.store.audit_entries(0, i64::MIN, 1000).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "account.create",
            "order.create",
            "validation",
            "certificate.issue",
            "order.create",
            "validation",
            "certificate.issue",
            "certificate.revoke",
        ],
        "{entries:#?}"
    );
    let details = |i: usize| -> Value { serde_json::from_str(&entries[i].details).unwrap() };
    assert!(entries.iter().all(|e| e.account_id == Some(account_id)));
    let validation = details(2);
    assert_eq!(validation["method"], "http-01");
    assert_eq!(validation["outcome"], "valid");
    assert_eq!(validation["identifier"]["value"], "kept.audit.test");
    assert!(
        validation["record"].to_string().contains("127.0.0.1"),
        "the address contacted is recorded: {validation}"
    );
    assert_eq!(entries[2].actor, "system");
    let issued = details(3);
    assert_eq!(issued["key_type"], "ECDSA P-256");
    assert_eq!(issued["names"][0]["value"], "kept.audit.test");
    assert_eq!(issued["profile"], "tls-server", "the default profile");
    let kept_serial = entries[3].serial.clone().unwrap();
    let revoked_serial = entries[6].serial.clone().unwrap();
    assert_eq!(entries[7].serial.as_deref(), Some(revoked_serial.as_str()));
    assert_eq!(entries[7].actor, format!("account:{account_id}"));
    assert_eq!(details(7)["reason"], 1);
    assert!(kept_chain.contains("BEGIN CERTIFICATE"));

    // The real binary agrees the chain is intact, and exports it.
    let out = cli(&ca, &["audit", "verify"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("intact: 8 entries"),
        "{}",
        text(&out)
    );
    let out = cli(
        &ca,
        &["audit", "export", "--since", "4", "--format", "jsonl"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "entries 4 to 8");
    assert_eq!(lines[0]["seq"], 4);
    assert_eq!(lines[0]["action"], "certificate.issue");
    assert_eq!(lines[0]["details"]["key_type"], "ECDSA P-256");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));

    // The inventory.
    let list = |args: Vec<&'static str>| {
        let ca = &ca;
        async move {
            let mut full = vec!["certs", "list", "--json"];
            full.extend(args);
            let out = cli(ca, &full).await;
            assert!(out.status.success(), "{}", text(&out));
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut serials: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["serial"].as_str().unwrap().to_owned())
                .collect();
            serials.sort();
            serials
        }
    };
    let mut both = vec![kept_serial.clone(), revoked_serial.clone()];
    both.sort();
    assert_eq!(list(vec![]).await, both);
    assert_eq!(list(vec!["--revoked"]).await, vec![revoked_serial.clone()]);
    assert_eq!(list(vec!["--not-revoked"]).await, vec![kept_serial.clone()]);
    assert_eq!(
        list(vec!["--name", "kept.audit.test"]).await,
        vec![kept_serial.clone()]
    );
    assert_eq!(list(vec!["--name", ".audit.test"]).await, both);
    assert!(list(vec!["--name", "audit.test"]).await.is_empty());
    assert!(list(vec!["--name", ".other.test"]).await.is_empty());
    assert_eq!(list(vec!["--expiring-within", "100"]).await, both);
    assert!(list(vec!["--expiring-within", "1"]).await.is_empty());
    assert!(list(vec!["--account", "999999"]).await.is_empty());
    assert!(list(vec!["--eab-label", "nobody"]).await.is_empty());
    assert_eq!(list(vec!["--issuer", "intermediate"]).await, both);
    assert!(list(vec!["--issuer", "int-none"]).await.is_empty());
    let newest = list(vec!["--limit", "1"]).await;
    assert_eq!(newest.len(), 1, "{newest:?}");
    assert!(both.contains(&newest[0]), "{newest:?}");
    assert_eq!(list(vec!["--limit", "5"]).await, both);
    assert_eq!(
        list(vec!["--limit", "1", "--name", "kept.audit.test"]).await,
        vec![kept_serial.clone()]
    );
    let out = cli(&ca, &["certs", "list", "--limit", "0"]).await;
    assert!(
        !out.status.success(),
        "a zero limit is refused: {}",
        text(&out)
    );
    let out = cli(&ca, &["certs", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 certificate(s)"),
        "{}",
        text(&out)
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains(&kept_serial) && table.contains("revoked (keyCompromise)"),
        "{table}"
    );

    // Tampering: an altered entry, then a deleted one, each named by verify.
    tamper(
        &ca,
        "UPDATE audit_log SET details = '{\"reason\":0}' WHERE seq = 8",
    )
    .await;
    let out = cli(&ca, &["audit", "verify"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken at entry 8") && err.contains("altered"),
        "{}",
        text(&out)
    );
    tamper(&ca, "DELETE FROM audit_log WHERE seq = 5").await;
    let out = cli(&ca, &["audit", "verify"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken at entry 5") && err.contains("deleted"),
        "{}",
        text(&out)
    );
}

/// `certwright-ca check` (the real binary): passes on a consistent database; after an
/// order is made to name another certificate, prints the violation with the serial and
/// fails.
#[tokio::test]
async fn check_reports_a_broken_invariant_and_fails() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    acme.issue(&["checked.audit.test"], &ca.responder).await;
    let out = cli(&ca, &["check"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the database is consistent"),
        "{}",
        text(&out)
    );
    let entries = ca.store.audit_entries(0, i64::MIN, 1000).await.unwrap();
    let serial = entries
        .iter()
        .find(|e| e.action == "certificate.issue")
        .and_then(|e| e.serial.clone())
        .unwrap();

    tamper(&ca, "UPDATE orders SET certificate_serial = 'not-that-one'").await;
    let out = cli(&ca, &["check"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "certificates whose order is not valid or names another serial: {serial}"
        )),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 invariant(s) violated"),
        "{}",
        text(&out)
    );
}

/// An operator command (the real binary) is audited as `operator:NAME`, the user who ran
/// it; the request's account stays the subject.
#[tokio::test]
async fn operator_commands_are_audited_with_the_operators_name() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let (_, order, _) = acme.issue(&["operator.audit.test"], &ca.responder).await;
    let serial = order["certificate"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .unwrap()
        .to_owned();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright-ca"));
    cmd.args(["renew-early", "--serial", &serial, "--data-dir"])
        .arg(&ca.data_dir)
        .env_remove("SUDO_USER")
        .env("USER", "ops-alice");
    if let Some(url) = harness::database_url_for(&ca.data_dir).await {
        cmd.args(["--database-url", &url]);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let entries = ca.store.audit_entries(0, i64::MIN, 1000).await.unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.action, "certificate.renew_early");
    assert_eq!(last.actor, "operator:ops-alice");
    assert_eq!(last.serial.as_deref(), Some(serial.as_str()));
}
