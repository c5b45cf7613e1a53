//! `certwright-ca agent enroll|list|remove` (the real binary): a token is printed once and
//! stored only as a hash, a name already enrolled needs `--replace`, `list` shows the
//! agents, `remove` takes one away; each change is audited. Runs on SQLite, and on
//! PostgreSQL with `CERTWRIGHT_TEST_BACKEND=postgres`.

mod harness;

use certwright_server::encoding::hex;
use certwright_server::va::remote::{sha256, EnrolmentToken};
use harness::{cli, text, TestCa};
use serde_json::Value;

#[tokio::test]
async fn agents_are_enrolled_listed_and_removed() {
    let ca = TestCa::start().await;
    let out = cli(
        &ca,
        &["agent", "enroll", "a1", "--segment", "lab", "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = EnrolmentToken::parse(printed["token"].as_str().unwrap()).unwrap();
    assert!(printed["command"]
        .as_str()
        .unwrap()
        .starts_with("certwright-va-agent enroll "));
    // The token pins the agent CA the store holds.
    let agent_ca = ca.store.agent_ca().await.unwrap().unwrap();
    assert_eq!(token.ca_sha256, sha256(&agent_ca.certificate));
    // Redeemed (as the listener does), the agent is enrolled.
    let secret_hash = hex(&sha256(token.secret.as_bytes()));
    ca.store
        .redeem_agent_token(&token.id, &secret_hash, "c1", 2_000_000_000, 1)
        .await
        .unwrap()
        .expect("the token works");

    let out = cli(&ca, &["agent", "enroll", "a1", "--segment", "lab"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--replace"), "{}", text(&out));
    let out = cli(
        &ca,
        &["agent", "enroll", "a1", "--segment", "lab", "--replace"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shown only now"), "{}", text(&out));
    let out = cli(&ca, &["agent", "enroll", "Bad!", "--segment", "lab"]).await;
    assert!(!out.status.success(), "{}", text(&out));

    let out = cli(&ca, &["agent", "list", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "a1");
    assert_eq!(list[0]["segment"], "lab");
    assert_eq!(list[0]["jobs_done"], 0);
    let out = cli(&ca, &["agent", "list"]).await;
    assert!(text(&out).contains("a1"), "{}", text(&out));

    let out = cli(&ca, &["agent", "remove", "a1"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&ca, &["agent", "remove", "a1"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(ca.store.agents().await.unwrap().is_empty());

    let actions: Vec<String> = ca
        .store
        .audit_entries(0, i64::MIN, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("agent."))
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "agent.ca_create",
            "agent.token_create",
            "agent.enroll",
            "agent.token_create",
            "agent.remove"
        ]
    );
}
