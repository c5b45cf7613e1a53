//! A regression guard on the database work of one issuance: how many SQL statements (and
//! write transactions) each step of an ACME issuance sends to the store, on the backend the
//! suite runs on (`CERTWRIGHT_TEST_BACKEND=postgres` for PostgreSQL). Not a timing test:
//! the budgets are the counts achieved, so a change that adds a statement to the request
//! path fails here and has to raise the budget on purpose (docs/performance.md).

mod harness;

use std::time::Duration;

use certwright_proto::KeyType;
use certwright_server::store::{StatementCounts, Store};
use harness::{csr, http01_challenge, on_postgres, Answer, TestCa};
use serde_json::json;

/// Waits until the store has sent nothing for a while (background validation and
/// issuance are done), without reading it.
async fn quiet(store: &Store) -> StatementCounts {
    let mut last = store.statement_counts();
    let mut still = 0;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = store.statement_counts();
        if now == last {
            still += 1;
            if still == 8 {
                return now;
            }
        } else {
            still = 0;
            last = now;
        }
    }
    panic!("the store never went quiet");
}

/// One step's budget: at most `statements` statements and `transactions` transactions.
struct Budget {
    step: &'static str,
    statements: u64,
    transactions: u64,
}

/// The budgets per backend (SQLite, PostgreSQL): (step, statements, transactions). Before
/// issue 21 an issuance took 55 statements and 6 transactions on SQLite, 80 and 6 (92
/// round trips) on PostgreSQL; with the audit head's hash set by a trigger (migration
/// 0019), 43 and 6 on SQLite, 52 and 4 (60 round trips) on PostgreSQL; with a `kid`-signed
/// request's nonce redeemed in its account read (PostgreSQL), 45 and 4 (53 round trips);
/// with an authorization and its challenges read in one join, 39 and 6 on SQLite, 41 and
/// 4 (49 round trips) on PostgreSQL; with the name index (migration 0016), one more in
/// finalize on each (40 and 6 on SQLite, 42 and 4 on PostgreSQL); with `create_order`,
/// `finish_validation` and `complete_order` each one statement plus the audit entry on
/// PostgreSQL (data-modifying CTEs that also take the audit head), 33 and 4 (41 round
/// trips) there; with those three appending their audit entry in the same statement, run
/// in autocommit, 30 and 1 (32 round trips); with the views of a new order, a started
/// challenge and a finalized order built from what the request already knows instead of
/// read back, 37 and 6 on SQLite, 27 and 1 (29 round trips) on PostgreSQL; with the
/// object a request's URL names read in its nonce's and account's statement
/// (PostgreSQL), 21 and 1 (23 round trips) there.
fn budgets() -> Vec<Budget> {
    let table: &[(&str, [(u64, u64); 2])] = &[
        // HEAD newNonce (on PostgreSQL the first batch of shared nonces is recorded).
        ("newNonce", [(0, 0), (1, 0)]),
        ("newAccount", [(4, 1), (5, 1)]),
        ("newOrder", [(8, 1), (3, 0)]),
        ("authorization", [(2, 0), (1, 0)]),
        // The challenge POST and the validation it starts, to the end.
        ("challenge", [(7, 2), (3, 0)]),
        // The authorization polled once it is valid.
        ("authorization (valid)", [(2, 0), (1, 0)]),
        // The finalize POST and the issuance, to the end (the certificate's rows in the
        // name index, certificate_names, are one statement of the issuance's
        // transaction since migration 0016).
        ("finalize", [(10, 2), (5, 0)]),
        ("order", [(2, 0), (1, 0)]),
        ("certificate", [(2, 0), (1, 0)]),
    ];
    let column = usize::from(on_postgres());
    table
        .iter()
        .map(|(step, per_backend)| Budget {
            step,
            statements: per_backend[column].0,
            transactions: per_backend[column].1,
        })
        .collect()
}

#[tokio::test]
async fn statements_per_issuance_stay_within_budget() {
    let ca = TestCa::start().await;
    let store = ca.store.clone();
    let mut steps: Vec<(&str, StatementCounts)> = Vec::new();
    let mut mark = quiet(&store).await;
    let mut step = |name: &'static str, now: StatementCounts| {
        steps.push((name, now - mark));
        mark = now;
    };

    let mut acme = ca.client(KeyType::EcP256).await;
    step("newNonce", store.statement_counts());
    let r = acme.register().await;
    assert_eq!(r.status, 201);
    step("newAccount", store.statement_counts());

    let name = "statements.example.test";
    let r = acme.new_order(&[name]).await;
    assert_eq!(r.status, 201);
    let order_url = r.location();
    let order = r.json();
    step("newOrder", store.statement_counts());

    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    assert_eq!(authz["status"], "pending");
    step("authorization", store.statement_counts());

    let chall = http01_challenge(&authz);
    let token = chall["token"].as_str().unwrap();
    let thumb = acme.key.jwk().thumbprint();
    ca.responder
        .set(token, Answer::Body(format!("{token}.{thumb}")));
    let r = acme
        .post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    assert_eq!(r.status, 200);
    step("challenge", quiet(&store).await);

    let authz = acme.post(&authz_url, None).await.json();
    assert_eq!(authz["status"], "valid", "{authz}");
    step("authorization (valid)", store.statement_counts());

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let r = acme.finalize(&order, &csr(&[name], &key)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    step("finalize", quiet(&store).await);

    let done = acme.post(&order_url, None).await.json();
    assert_eq!(done["status"], "valid", "{done}");
    step("order", store.statement_counts());

    let cert = acme.post(done["certificate"].as_str().unwrap(), None).await;
    assert_eq!(cert.status, 200);
    step("certificate", store.statement_counts());

    let total = steps
        .iter()
        .fold(StatementCounts::default(), |sum, (_, c)| StatementCounts {
            statements: sum.statements + c.statements,
            transactions: sum.transactions + c.transactions,
        });
    let backend = if on_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut report = format!("statements per step on {backend}:\n");
    for (name, c) in &steps {
        report.push_str(&format!(
            "  {name:<24} {:>3} statements, {} transactions\n",
            c.statements, c.transactions
        ));
    }
    report.push_str(&format!(
        "  {:<24} {:>3} statements, {} transactions, {} round trips\n",
        "issuance",
        total.statements,
        total.transactions,
        total.round_trips()
    ));
    println!("{report}");
    for (budget, (name, counts)) in budgets().iter().zip(&steps) {
        assert_eq!(budget.step, *name);
        assert!(
            counts.statements <= budget.statements && counts.transactions <= budget.transactions,
            "{name}: {counts:?} is over its budget of {} statements and {} transactions\n{report}",
            budget.statements,
            budget.transactions
        );
    }
}
