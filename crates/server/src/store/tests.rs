use super::*;
use crate::secrets::SecretsError;
use certwright_proto::types::{AuthorizationStatus, ChallengeType, Identifier};
use certwright_proto::{AccountKey, Jwk, KeyType, Problem, ProblemType};
use engine::columns::Columns;
use engine::tx::params;

/// A key-encryption key for EAB keys (tests only).
fn test_kek() -> Arc<Kek> {
    Arc::new(Kek::from_bytes(&[42; crate::secrets::KEK_LEN], "test").unwrap())
}

async fn store() -> Store {
    Store::open("sqlite::memory:")
        .await
        .unwrap()
        .with_eab_kek(test_kek())
}

/// The certificate `0a0b` for `a.example`, as `complete_order` stores it.
fn certificate_0a0b(account: AccountId, profile: Option<&str>) -> NewCertificate {
    NewCertificate {
        serial: "0a0b".into(),
        account_id: account,
        der: vec![0x30, 0x00],
        chain_pem: "-----BEGIN CERTIFICATE-----\n".into(),
        names: vec![Identifier::dns("a.example")],
        not_before: 1,
        not_after: 99,
        created_at: 2,
        profile: profile.map(str::to_owned),
        key_type: "ECDSA P-256".into(),
        issuer: "intermediate".into(),
    }
}

/// A new order of `account` for `a.example` with one fresh http-01 authorization.
fn one_name_order(account: AccountId) -> NewOrderRecord {
    NewOrderRecord {
        account_id: account,
        identifiers: vec![Identifier::dns("a.example")],
        expires: 100,
        not_before: None,
        not_after: None,
        authorizations: vec![NewAuthorization::Create {
            identifier: Identifier::dns("a.example"),
            wildcard: false,
            expires: 100,
            challenges: vec![(ChallengeType::Http01, "tok".into())],
        }],
        now: 1,
        profile: None,
        replaces: None,
    }
}

/// A store with an account and its `one_name_order`.
async fn store_with_order() -> (Store, AccountRecord, OrderRecord) {
    let s = store().await;
    let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    let account = s.create_account(&jwk, &[], true, 1).await.unwrap();
    let order = s.create_order(&one_name_order(account.id)).await.unwrap();
    (s, account, order)
}

/// The first challenge of the order's first authorization.
async fn first_challenge(s: &Store, order: &OrderRecord) -> ChallengeId {
    s.authorization(order.authorization_ids[0])
        .await
        .unwrap()
        .challenges[0]
        .id
}

#[tokio::test]
async fn the_reader_sees_what_the_store_wrote() {
    let (s, account, order) = store_with_order().await;
    let jwk = &account.jwk;

    let reader = s.reader();
    let copy = reader.clone();
    let read = copy.account(account.id).await.unwrap();
    assert_eq!(read.jwk.thumbprint(), jwk.thumbprint());
    let by_key = reader.account_by_thumbprint(&jwk.thumbprint()).await;
    assert_eq!(by_key.unwrap().map(|a| a.id), Some(account.id));
    let ids = reader.account_order_ids(account.id, 0, 10).await.unwrap();
    assert_eq!(ids, [order.id]);
    let read = reader.order(order.id).await.unwrap();
    assert_eq!(read.authorization_ids, order.authorization_ids);
    let states = reader.order_authorization_states(order.id).await.unwrap();
    assert_eq!(states, [(AuthorizationStatus::Pending, 100)]);
    let authz = reader
        .authorization(read.authorization_ids[0])
        .await
        .unwrap();
    let challenge = reader.challenge(authz.challenges[0].id).await.unwrap();
    assert_eq!(challenge.token, "tok");
    let missing = reader.certificate("0a0b").await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert!(reader.latest_crl("issuer").await.unwrap().is_none());

    reader.insert_nonce("n", 10).await.unwrap();
    assert!(reader.redeem_nonce("n", 5).await.unwrap());
    assert!(
        !copy.redeem_nonce("n", 5).await.unwrap(),
        "a nonce redeems once"
    );
}

#[tokio::test]
async fn account_key_is_unique() {
    let s = store().await;
    let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    let a = s
        .create_account(&jwk, &["mailto:a@example.com".into()], true, 1)
        .await
        .unwrap();
    assert_eq!(a.contact, vec!["mailto:a@example.com".to_string()]);
    assert!(matches!(
        s.create_account(&jwk, &[], true, 2).await,
        Err(StoreError::Conflict)
    ));
    let found = s
        .account_by_thumbprint(&jwk.thumbprint())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, a.id);
}

#[tokio::test]
async fn validation_outcome_lands_on_challenge_and_authorization() {
    let (s, acct, order) = store_with_order().await;
    let authz = s.authorization(order.authorization_ids[0]).await.unwrap();
    let chall = authz.challenges[0].id;
    assert!(s.start_validation(chall, 100).await.unwrap());
    assert!(
        !s.start_validation(chall, 100).await.unwrap(),
        "a second start must lose"
    );
    assert_eq!(
        s.claim_stale_validations(50, 200).await.unwrap(),
        vec![],
        "lease still held"
    );
    assert_eq!(
        s.claim_stale_validations(100, 200).await.unwrap(),
        vec![chall],
        "lease ran out"
    );
    assert_eq!(
        s.claim_stale_validations(150, 300).await.unwrap(),
        vec![],
        "taken over once"
    );
    assert_eq!(s.processing_counts().await.unwrap(), (1, 0));
    assert!(s
        .finish_validation(
            chall,
            None,
            &serde_json::json!({}),
            &serde_json::json!({}),
            5
        )
        .await
        .unwrap());
    let authz = s.authorization(authz.id).await.unwrap();
    assert_eq!(authz.status, AuthorizationStatus::Valid);
    assert_eq!(authz.challenges[0].validated, Some(5));
    let reuse = s
        .find_reusable_authorization(acct.id, &Identifier::dns("a.example"), false, 50)
        .await
        .unwrap();
    assert_eq!(reuse, Some(authz.id));
}

/// An issuance whose lease ran out is taken over and completed by another run; the first
/// run's failure, arriving after, leaves the order valid with its one certificate.
#[tokio::test]
async fn a_late_failure_does_not_undo_a_completed_order() {
    let (s, acct, order) = store_with_order().await;
    let chall = first_challenge(&s, &order).await;
    assert!(s.start_validation(chall, 100).await.unwrap());
    let none = serde_json::json!({});
    assert!(s
        .finish_validation(chall, None, &none, &none, 5)
        .await
        .unwrap());
    // The first run begins, and its lease (until 60) runs out.
    assert!(s.begin_finalize(order.id, b"csr", 60).await.unwrap());
    assert_eq!(
        s.claim_stale_issuances(60, 120).await.unwrap(),
        vec![order.id]
    );
    // The second run completes the order.
    s.complete_order(order.id, &certificate_0a0b(acct.id, None))
        .await
        .unwrap();
    // The first run's failure comes late: refused, nothing changes.
    let before = s.snapshot().await.unwrap();
    let failed = s
        .fail_order(order.id, &Problem::server_internal("late"))
        .await
        .unwrap();
    assert!(!failed, "a completed order was failed");
    assert_eq!(s.snapshot().await.unwrap(), before);
    let order = s.order(order.id).await.unwrap();
    assert_eq!(order.status, certwright_proto::types::OrderStatus::Valid);
    assert_eq!(order.certificate_serial.as_deref(), Some("0a0b"));
    assert!(order.error.is_none());
}

#[tokio::test]
async fn nonces_are_single_use_and_expire() {
    let s = store().await;
    s.insert_nonce("a", 100).await.unwrap();
    s.insert_nonce("b", 100).await.unwrap();
    assert!(s.redeem_nonce("a", 50).await.unwrap());
    assert!(!s.redeem_nonce("a", 50).await.unwrap());
    assert!(!s.redeem_nonce("b", 100).await.unwrap(), "expired");
    assert_eq!(s.purge_nonces(100).await.unwrap(), 1);
}

#[tokio::test]
async fn integrity_violations_name_what_a_crash_could_break() {
    let (s, _, order) = store_with_order().await;
    let chall = first_challenge(&s, &order).await;
    assert!(s.integrity_violations().await.unwrap().is_empty());
    assert!(s.start_validation(chall, 100).await.unwrap());
    let found = s.integrity_violations().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("challenges stuck processing"),
        "{found:?}"
    );
    s.finish_validation(
        chall,
        None,
        &serde_json::json!({}),
        &serde_json::json!({}),
        5,
    )
    .await
    .unwrap();
    // A valid order whose certificate row is missing (as a torn write would leave it).
    sqlx::query("UPDATE orders SET status = 'valid', certificate_serial = 'ab' WHERE id = $1")
        .bind(order.id.0)
        .execute(&s.writer)
        .await
        .unwrap();
    let found = s.integrity_violations().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("valid orders without a certificate"),
        "{found:?}"
    );
}

/// A store with a few audited changes: account, EAB key, order, revocation attempt.
async fn audited_store() -> (Store, AccountId) {
    let s = store().await;
    let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    let acct = s
        .create_account(&jwk, &["mailto:a@example.com".into()], true, 1)
        .await
        .unwrap();
    s.create_eab_key("kid-1", "team", b"secret-mac-key", 2)
        .await
        .unwrap();
    s.update_account_contact(acct.id, &[]).await.unwrap();
    let alice = s.clone().acting_as(Actor::Operator(Some("alice".into())));
    alice.revoke_eab_key("kid-1", 3).await.unwrap();
    (s, acct.id)
}

#[tokio::test]
async fn every_change_appends_a_chained_entry() {
    let (s, acct) = audited_store().await;
    let entries = s.audit_entries(0, i64::MIN, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "account.create",
            "eab.create",
            "account.update",
            "eab.revoke"
        ]
    );
    assert_eq!(entries[0].account_id, Some(acct.0));
    assert_eq!(entries[0].actor, format!("account:{}", acct.0));
    // The operator, unnamed unless the store acts as a named one (the CLI names it).
    assert_eq!(entries[1].actor, "operator");
    assert_eq!(entries[3].actor, "operator:alice");
    assert_eq!(entries[0].prev_hash, audit::GENESIS_HASH);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    assert!(
        entries.iter().all(|e| !e.details.contains("secret")),
        "no MAC key in the trail"
    );
    assert_eq!(
        s.verify_audit().await.unwrap(),
        AuditVerdict::Intact {
            entries: 4,
            head: entries[3].hash.clone()
        }
    );
}

#[tokio::test]
async fn an_altered_entry_breaks_the_chain_there() {
    let (s, _) = audited_store().await;
    sqlx::query("UPDATE audit_log SET details = '{\"kid\":\"kid-2\"}' WHERE seq = 4")
        .execute(&s.writer)
        .await
        .unwrap();
    match s.verify_audit().await.unwrap() {
        AuditVerdict::Broken { seq: 4, reason } => assert!(reason.contains("altered"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_deleted_entry_is_found_in_the_middle_and_at_the_end() {
    let (s, _) = audited_store().await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(&s.writer)
        .await
        .unwrap();
    match s.verify_audit().await.unwrap() {
        AuditVerdict::Broken { seq: 4, reason } => assert!(reason.contains("deleted"), "{reason}"),
        other => panic!("{other:?}"),
    }
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(&s.writer)
        .await
        .unwrap();
    match s.verify_audit().await.unwrap() {
        AuditVerdict::Broken { seq: 2, reason } => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_rewritten_chain_is_caught_by_its_links() {
    let (s, _) = audited_store().await;
    // Re-hash entry 2 after altering it: its own hash is consistent, but entry 3 still
    // links to the old one.
    let mut e = s.audit_entries(1, i64::MIN, 1).await.unwrap().remove(0);
    e.actor = "account:99".into();
    e.hash = e.compute_hash();
    sqlx::query("UPDATE audit_log SET actor = $1, hash = $2 WHERE seq = 2")
        .bind(&e.actor)
        .bind(&e.hash)
        .execute(&s.writer)
        .await
        .unwrap();
    match s.verify_audit().await.unwrap() {
        AuditVerdict::Broken { seq: 3, reason } => {
            assert!(reason.contains("prev_hash"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sqlite_writer_is_fsynced_per_commit_unless_normal_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    for (setting, expected) in [
        (SqliteSynchronous::default(), 2), // FULL
        (SqliteSynchronous::Normal, 1),
    ] {
        let url = format!("sqlite://{}", dir.path().join("ca.db").display());
        let options = StoreOptions {
            sqlite_synchronous: setting,
            ..Default::default()
        };
        let store = Store::open_with(&url, &options).await.unwrap();
        // The writer thread's connection is the one that commits.
        let level = store
            .write(|tx| {
                Box::pin(async move {
                    tx.fetch_one("PRAGMA synchronous", &[])
                        .await?
                        .int("synchronous")
                })
            })
            .await
            .unwrap();
        assert_eq!(level, expected, "{setting:?}");
        drop(store);
    }
}

/// Concurrent writes share commits; a write that fails inside a batch (a key that already
/// has an account) gets its own error and leaves the others and the audit chain intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_group_committed_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ca.db").display());
    let s = Store::open(&url).await.unwrap();
    let taken = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    s.create_account(&taken, &[], true, 1).await.unwrap();
    let before = s.group_commits().unwrap();
    let keys: Vec<_> = (0..200)
        .map(|i| match i % 10 {
            0 => taken.clone(),
            _ => AccountKey::generate(KeyType::EcP256).unwrap().jwk(),
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for jwk in keys {
        let s = s.clone();
        tasks.spawn(async move { s.create_account(&jwk, &[], true, 2).await });
    }
    let (mut created, mut conflicts) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Conflict) => conflicts += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((created, conflicts), (180, 20));
    let commits = s.group_commits().unwrap() - before;
    assert!(
        commits < 200,
        "{commits} commits for 200 concurrent writes: nothing was grouped"
    );
    let accounts: i64 = sqlx::query("SELECT COUNT(*) FROM accounts")
        .fetch_one(&s.reader)
        .await
        .unwrap()
        .get(0);
    assert_eq!(accounts, 181);
    assert!(matches!(
        s.verify_audit().await.unwrap(),
        AuditVerdict::Intact { .. }
    ));
}

/// An operation that panics fails its caller and rolls back its batch; the writer thread
/// goes on serving.
#[tokio::test]
async fn a_panicking_write_costs_its_batch_not_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&format!("sqlite://{}", dir.path().join("ca.db").display()))
        .await
        .unwrap();
    let r = s
        .write(|tx| {
            Box::pin(async move {
                tx.execute("UPDATE audit_head SET seq = 99 WHERE id = 1", &[])
                    .await?;
                if std::hint::black_box(true) {
                    panic!("an operation panics (expected in this test)");
                }
                Ok::<(), StoreError>(())
            })
        })
        .await;
    assert!(matches!(r, Err(StoreError::Commit(_))), "{r:?}");
    let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    s.create_account(&jwk, &[], true, 1).await.unwrap();
    // The panicking operation's change was rolled back: the chain is intact.
    assert!(matches!(
        s.verify_audit().await.unwrap(),
        AuditVerdict::Intact { entries: 1, .. }
    ));
}

/// An operation that fails rolls back to its savepoint: what it wrote before failing is
/// gone.
#[tokio::test]
async fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&format!("sqlite://{}", dir.path().join("ca.db").display()))
        .await
        .unwrap();
    let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    let account = s.create_account(&jwk, &[], true, 1).await.unwrap();
    let r = s
        .write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE accounts SET status = 'deactivated' WHERE id = $1",
                    &params![account.id.0],
                )
                .await?;
                tx.execute("INSERT INTO no_such_table VALUES (1)", &[])
                    .await?;
                Ok(())
            })
        })
        .await;
    assert!(matches!(r, Err(StoreError::Sqlite(_))), "{r:?}");
    let after = s.account(account.id).await.unwrap();
    assert_eq!(after.status, certwright_proto::types::AccountStatus::Valid);
}

/// An operation whose savepoint journal outgrows what SQLite keeps in memory by default
/// (64 KiB: the writer keeps it in memory, `temp_store = MEMORY`) still rolls back alone,
/// and the operations of its batch before and after it stay committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_failed_write_rolls_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&format!("sqlite://{}", dir.path().join("ca.db").display()))
        .await
        .unwrap();
    s.write(|tx| {
        Box::pin(async move {
            tx.execute(
                "CREATE TABLE scratch (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
                &[],
            )
            .await?;
            // About 1 MiB: some 250 pages that a later update has to journal.
            for id in 0..2000_i64 {
                tx.execute(
                    "INSERT INTO scratch (id, body) VALUES ($1, $2)",
                    &params![id, "a".repeat(500)],
                )
                .await?;
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    let count = |s: Store, body: &'static str| async move {
        s.write(move |tx| {
            Box::pin(async move {
                tx.fetch_one(
                    "SELECT COUNT(*) AS n FROM scratch WHERE body = $1",
                    &params![body.repeat(500)],
                )
                .await?
                .int("n")
            })
        })
        .await
        .unwrap()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20_i64 {
        let s = s.clone();
        tasks.spawn(async move {
            s.write(move |tx| {
                Box::pin(async move {
                    if i == 10 {
                        tx.execute("UPDATE scratch SET body = $1", &params!["b".repeat(500)])
                            .await?;
                        tx.execute("INSERT INTO no_such_table VALUES (1)", &[])
                            .await?;
                    } else {
                        tx.execute(
                            "UPDATE scratch SET body = $1 WHERE id = $2",
                            &params!["c".repeat(500), 100 + i],
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
            .is_ok()
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        ok += usize::from(r.unwrap());
    }
    assert_eq!(ok, 19);
    assert_eq!(count(s.clone(), "b").await, 0);
    assert_eq!(count(s.clone(), "c").await, 19);
    assert_eq!(count(s.clone(), "a").await, 2000 - 19);
}

/// On an SQLite file the request-path reads run on the calling thread (`sqlite_reads`);
/// they must return exactly what the sqlx read pool returns, for every record kind and for
/// rows that do not exist.
#[tokio::test]
async fn reads_on_the_calling_thread_match_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("reads.db").display());
    let s = Store::open(&url).await.unwrap();
    assert!(
        s.reads.is_some(),
        "a file database reads on the calling thread"
    );
    let pool = Store {
        reads: None,
        ..s.clone()
    };

    let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    let account = s.create_account(&jwk, &[], true, 1).await.unwrap();
    let order = s.create_order(&one_name_order(account.id)).await.unwrap();
    let authz = order.authorization_ids[0];
    let challenge = s.authorization(authz).await.unwrap().challenges[0].id;
    assert!(s.start_validation(challenge, 50).await.unwrap());
    let problem = Problem::new(ProblemType::Connection, "refused");
    let record = serde_json::json!({"url": "http://a.example/"});
    assert!(s
        .finish_validation(challenge, Some(&problem), &record, &record, 2)
        .await
        .unwrap());
    assert!(s.begin_finalize(order.id, b"csr", 60).await.unwrap());
    let cert = certificate_0a0b(account.id, Some("default"));
    s.complete_order(order.id, &cert).await.unwrap();

    let same = |a: String, b: String| assert_eq!(a, b);
    same(
        format!("{:?}", s.account(account.id).await.unwrap()),
        format!("{:?}", pool.account(account.id).await.unwrap()),
    );
    same(
        format!("{:?}", s.account_by_thumbprint(&jwk.thumbprint()).await),
        format!("{:?}", pool.account_by_thumbprint(&jwk.thumbprint()).await),
    );
    let read_order = s.order(order.id).await.unwrap();
    assert_eq!(read_order.certificate_serial.as_deref(), Some("0a0b"));
    same(
        format!("{read_order:?}"),
        format!("{:?}", pool.order(order.id).await.unwrap()),
    );
    same(
        format!("{:?}", s.order_authorization_states(order.id).await),
        format!("{:?}", pool.order_authorization_states(order.id).await),
    );
    let read_authz = s.authorization(authz).await.unwrap();
    assert_eq!(read_authz.challenges[0].error.as_ref(), Some(&problem));
    assert_eq!(read_authz.challenges[0].record.as_ref(), Some(&record));
    same(
        format!("{read_authz:?}"),
        format!("{:?}", pool.authorization(authz).await.unwrap()),
    );
    same(
        format!("{:?}", s.challenge(challenge).await.unwrap()),
        format!("{:?}", pool.challenge(challenge).await.unwrap()),
    );
    let read_cert = s.certificate("0a0b").await.unwrap();
    assert_eq!(read_cert.der, cert.der);
    same(
        format!("{read_cert:?}"),
        format!("{:?}", pool.certificate("0a0b").await.unwrap()),
    );
    same(
        format!(
            "{:?}",
            s.find_reusable_authorization(account.id, &Identifier::dns("a.example"), false, 0)
                .await
        ),
        format!(
            "{:?}",
            pool.find_reusable_authorization(account.id, &Identifier::dns("a.example"), false, 0)
                .await
        ),
    );
    assert!(matches!(
        s.account(AccountId(999)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.order(OrderId(999)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.authorization(AuthzId(999)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.challenge(ChallengeId(999)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.certificate("ff").await,
        Err(StoreError::NotFound)
    ));
}

/// Every write operation, run once.
async fn every_write(s: &Store, key: &Jwk, other_key: &Jwk) {
    let account = s.create_account(key, &[], false, 1).await.unwrap();
    s.update_account_contact(account.id, &["mailto:a@example.org".into()])
        .await
        .unwrap();
    s.set_account_tos_agreed(account.id).await.unwrap();
    let mut new = one_name_order(account.id);
    if let NewAuthorization::Create { challenges, .. } = &mut new.authorizations[0] {
        challenges.push((ChallengeType::Dns01, "tok2".into()));
    }
    let order = s.create_order(&new).await.unwrap();
    let challenge = first_challenge(s, &order).await;
    assert!(s.start_validation(challenge, 50).await.unwrap());
    assert!(!s.start_validation(challenge, 50).await.unwrap());
    let record = serde_json::json!({"url": "http://a.example/"});
    assert!(s
        .finish_validation(challenge, None, &record, &record, 2)
        .await
        .unwrap());
    assert!(s.begin_finalize(order.id, b"csr", 60).await.unwrap());
    let cert = certificate_0a0b(account.id, None);
    s.complete_order(order.id, &cert).await.unwrap();
    // A renewal that replaces it, with a reused authorization; then one that fails.
    let reuse = s
        .find_reusable_authorization(account.id, &Identifier::dns("a.example"), false, 3)
        .await
        .unwrap()
        .unwrap();
    let renewal = NewOrderRecord {
        authorizations: vec![NewAuthorization::Reuse(reuse)],
        replaces: Some(("ari".into(), "0a0b".into())),
        ..one_name_order(account.id)
    };
    let renewal = s.create_order(&renewal).await.unwrap();
    let again = NewOrderRecord {
        replaces: Some(("ari".into(), "0a0b".into())),
        ..one_name_order(account.id)
    };
    assert!(matches!(
        s.create_order(&again).await,
        Err(StoreError::AlreadyReplaced)
    ));
    assert!(s.begin_finalize(renewal.id, b"csr", 60).await.unwrap());
    assert!(s
        .fail_order(renewal.id, &Problem::new(ProblemType::BadCsr, "no"))
        .await
        .unwrap());
    assert!(s.mark_renew_early("0a0b").await.unwrap());
    assert!(s
        .revoke_certificate("0a0b", 1, 5, &Actor::Operator(None))
        .await
        .unwrap());
    assert!(!s
        .revoke_certificate("0a0b", 1, 5, &Actor::Operator(None))
        .await
        .unwrap());
    assert!(s.deactivate_authorization(reuse).await.unwrap());
    s.create_eab_key("kid", "team", b"mac", 1).await.unwrap();
    assert!(matches!(
        s.create_eab_key("kid", "team", b"mac", 1).await,
        Err(StoreError::Conflict)
    ));
    let bound = s
        .create_account_with_eab(other_key, &[], true, 1, "kid")
        .await
        .unwrap();
    assert!(matches!(
        s.change_account_key(account.id, other_key).await,
        Err(StoreError::Conflict)
    ));
    assert!(!s.revoke_eab_key("kid-unknown", 1).await.unwrap());
    assert!(s.revoke_eab_key("kid", 1).await.unwrap());
    s.deactivate_account(bound.id).await.unwrap();
    s.record_rate_event("orders", "acct", 1).await.unwrap();
    s.record_rate_event("orders", "acct", 9).await.unwrap();
    assert_eq!(s.prune_rate_events(1).await.unwrap(), 1);
    s.record_audit_event(&AuditEvent::new(&Actor::Operator(None), "test"))
        .await
        .unwrap();
    // CRL numbers, and a save that lost to a newer number.
    assert_eq!(s.allocate_crl_number("root").await.unwrap(), 1);
    assert_eq!(s.allocate_crl_number("root").await.unwrap(), 2);
    let crl = |number| CrlRecord {
        number,
        der: vec![0x30, number as u8],
        this_update: 1,
        next_update: 2,
    };
    assert!(!s.save_crl("root", &crl(1)).await.unwrap());
    assert!(s.save_crl("root", &crl(2)).await.unwrap());
    assert_eq!(s.latest_crl("root").await.unwrap().unwrap().der, [0x30, 2]);
    // A validation whose lease ran out is claimed once.
    let stale = s.create_order(&one_name_order(account.id)).await.unwrap();
    let challenge = first_challenge(s, &stale).await;
    assert!(s.start_validation(challenge, 50).await.unwrap());
    assert_eq!(
        s.claim_stale_validations(60, 100).await.unwrap(),
        [challenge]
    );
    assert!(s.claim_stale_validations(60, 100).await.unwrap().is_empty());
    assert!(s.claim_stale_issuances(60, 100).await.unwrap().is_empty());
}

/// On an SQLite file the writes run on the writer thread's own connection
/// (`writer`); they must leave exactly the rows and audit entries that the same
/// operations leave through a sqlx transaction (the PostgreSQL code path).
#[tokio::test]
async fn the_writer_thread_and_sqlx_transactions_write_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let threaded = Store::open(&url("thread.db"))
        .await
        .unwrap()
        .with_eab_kek(test_kek());
    assert!(threaded.group.is_some());
    let plain = Store {
        group: None,
        ..Store::open(&url("sqlx.db"))
            .await
            .unwrap()
            .with_eab_kek(test_kek())
    };
    let key = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    let other_key = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    every_write(&threaded, &key, &other_key).await;
    every_write(&plain, &key, &other_key).await;
    // The reads off the hottest path return the same on the calling thread as through
    // the sqlx pool.
    let pool = Store {
        reads: None,
        ..threaded.clone()
    };
    for s in [&threaded, &pool] {
        assert_eq!(
            s.rate_events_since("orders", "acct", 0).await.unwrap(),
            (1, Some(9))
        );
        assert_eq!(
            s.rate_events_since("orders", "none", 0).await.unwrap(),
            (0, None)
        );
        assert_eq!(
            s.pending_authorization_count(AccountId(1), 0)
                .await
                .unwrap(),
            1
        );
        let revoked = s.revoked_certificates("intermediate", 0).await.unwrap();
        assert_eq!(revoked.len(), 1);
        assert!(s.revoked_certificates("other", 0).await.unwrap().is_empty());
        assert_eq!(
            (
                revoked[0].serial.as_str(),
                revoked[0].revoked_at,
                revoked[0].reason
            ),
            ("0a0b", 5, 1)
        );
        assert_eq!(s.latest_crl("root").await.unwrap().unwrap().number, 2);
        assert!(s.latest_crl("other").await.unwrap().is_none());
        let eab = s.eab_key("kid").await.unwrap().unwrap();
        assert_eq!(
            format!("{eab:?}"),
            format!("{:?}", s.eab_keys().await.unwrap()[0])
        );
        assert!(s.eab_key("nope").await.unwrap().is_none());
    }
    assert_eq!(
        threaded.snapshot().await.unwrap(),
        plain.snapshot().await.unwrap()
    );
    let trail = |entries: Vec<AuditEntry>| {
        entries
            .into_iter()
            .map(|e| {
                (
                    e.seq,
                    e.actor,
                    e.action,
                    e.account_id,
                    e.order_id,
                    e.authz_id,
                    e.challenge_id,
                    e.serial,
                    e.details,
                )
            })
            .collect::<Vec<_>>()
    };
    let threaded_trail = trail(threaded.audit_entries(0, 0, 100).await.unwrap());
    assert_eq!(threaded_trail.len(), 17);
    assert_eq!(
        threaded_trail,
        trail(plain.audit_entries(0, 0, 100).await.unwrap())
    );
    for s in [&threaded, &plain] {
        assert!(matches!(
            s.verify_audit().await.unwrap(),
            AuditVerdict::Intact { entries: 17, .. }
        ));
    }
}

/// Every encoding of `key` an operator or a dump tool might show (raw, base64,
/// base64url, hex).
fn encodings(key: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        key.to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(key)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(key)
            .into_bytes(),
        certwright_proto::b64::encode(key).into_bytes(),
        hex.clone().into_bytes(),
        hex.to_ascii_uppercase().into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key).unwrap();
    key
}

#[tokio::test]
async fn eab_keys_are_sealed_in_the_database_file_and_open_with_the_kek() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let s = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
        .with_eab_kek(test_kek());
    let key = random_key();
    s.create_eab_key("kid-1", "team", &key, 1).await.unwrap();

    let record = s.eab_key("kid-1").await.unwrap().unwrap();
    assert_eq!(record.kek_id.as_deref(), Some(test_kek().id()));
    assert!(record.stored_key.as_bytes().starts_with(b"v1:"));
    assert_eq!(s.eab_hmac_key(&record).unwrap(), key);
    assert!(!format!("{record:?}").contains(&format!("{:?}", key[0..4].to_vec())));

    // Neither the column nor the database file (with its WAL) holds the key.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let column: Vec<u8> = conn
        .query_row(
            "SELECT hmac_key FROM eab_keys WHERE kid = 'kid-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut file = std::fs::read(&path).unwrap();
    file.extend(std::fs::read(dir.path().join("ca.db-wal")).unwrap_or_default());
    assert!(contains(&file, b"kid-1"), "the scan reads the rows");
    for encoding in encodings(&key) {
        assert!(!contains(&column, &encoding), "the column reveals the key");
        assert!(
            !contains(&file, &encoding),
            "the database file reveals the key"
        );
    }

    // Another KEK cannot open it; a store without one neither seals nor opens.
    let other = s.clone().with_eab_kek(Arc::new(
        Kek::from_bytes(&[1; crate::secrets::KEK_LEN], "other").unwrap(),
    ));
    assert!(matches!(
        other.eab_hmac_key(&record),
        Err(StoreError::Secret(SecretsError::WrongKek { .. }))
    ));
    let bare = Store::open("sqlite::memory:").await.unwrap();
    assert!(matches!(
        bare.create_eab_key("k", "l", b"m", 1).await,
        Err(StoreError::Secret(SecretsError::NoKek))
    ));
    assert!(bare.eab_hmac_key(&record).is_err());
}

#[tokio::test]
async fn the_database_file_and_its_wal_are_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let s = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
        .with_eab_kek(test_kek());
    s.create_eab_key("kid", "team", b"k", 1).await.unwrap();
    for name in ["ca.db", "ca.db-wal", "ca.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

/// Inserts a plaintext EAB key the way a version before sealing stored it.
async fn insert_legacy_key(s: &Store, kid: &str, key: &[u8]) {
    sqlx::query(
        "INSERT INTO eab_keys (kid, label, hmac_key, created_at) VALUES ($1, 'old', $2, 1)",
    )
    .bind(kid)
    .bind(key.to_vec())
    .execute(&s.writer)
    .await
    .unwrap();
}

#[tokio::test]
async fn legacy_plaintext_keys_are_sealed_once_in_an_audited_transaction() {
    let s = store().await;
    let (a, b) = (random_key(), random_key());
    insert_legacy_key(&s, "old-a", &a).await;
    insert_legacy_key(&s, "old-b", &b).await;
    s.create_eab_key("new", "team", b"new key", 1)
        .await
        .unwrap();
    let legacy = s.eab_key("old-a").await.unwrap().unwrap();
    assert!(legacy.kek_id.is_none());
    assert!(
        matches!(
            s.eab_hmac_key(&legacy),
            Err(StoreError::Secret(SecretsError::Plaintext { .. }))
        ),
        "a plaintext row is not used as it is"
    );
    assert!(
        matches!(
            s.export().await,
            Err(StoreError::Secret(SecretsError::Plaintext { .. }))
        ),
        "no export while keys are in plaintext"
    );

    assert_eq!(s.seal_legacy_eab_keys().await.unwrap(), 2);
    assert_eq!(s.seal_legacy_eab_keys().await.unwrap(), 0, "once");
    for (kid, key) in [("old-a", &a), ("old-b", &b)] {
        let record = s.eab_key(kid).await.unwrap().unwrap();
        assert_eq!(record.kek_id.as_deref(), Some(test_kek().id()));
        assert_eq!(&s.eab_hmac_key(&record).unwrap(), key);
        for encoding in encodings(key) {
            assert!(!contains(record.stored_key.as_bytes(), &encoding));
        }
    }
    let entries = s.audit_entries(0, i64::MIN, 100).await.unwrap();
    let sealed: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "eab.encrypt_legacy")
        .collect();
    assert_eq!(sealed.len(), 1, "one entry for the one transaction");
    let details: serde_json::Value = serde_json::from_str(&sealed[0].details).unwrap();
    assert_eq!(details["count"], 2);
    assert!(matches!(
        s.verify_audit().await.unwrap(),
        AuditVerdict::Intact { .. }
    ));
}

#[tokio::test]
async fn export_carries_sealed_keys_and_import_needs_the_same_kek() {
    let s = store().await;
    let key = random_key();
    s.create_eab_key("kid", "team", &key, 1).await.unwrap();
    let rows = s.export().await.unwrap();
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    assert!(text.contains("\"kid\""));
    for encoding in encodings(&key) {
        assert!(
            !contains(text.as_bytes(), &encoding),
            "the export reveals the key"
        );
    }

    // Into a store with another KEK: refused, nothing imported.
    let other = Store::open("sqlite::memory:")
        .await
        .unwrap()
        .with_eab_kek(Arc::new(
            Kek::from_bytes(&[9; crate::secrets::KEK_LEN], "the other CA's KEK").unwrap(),
        ));
    let e = other.import(&rows).await.unwrap_err().to_string();
    assert!(
        e.contains("the other CA's KEK") && e.contains("nothing was imported"),
        "{e}"
    );
    assert!(other.eab_keys().await.unwrap().is_empty());
    let bare = Store::open("sqlite::memory:").await.unwrap();
    assert!(bare.import(&rows).await.is_err());

    // With the same KEK the key moves as it was stored, and still opens.
    let same = Store::open("sqlite::memory:")
        .await
        .unwrap()
        .with_eab_kek(test_kek());
    assert_eq!(same.import(&rows).await.unwrap(), rows.len());
    let moved = same.eab_key("kid").await.unwrap().unwrap();
    assert_eq!(
        moved.stored_key,
        s.eab_key("kid").await.unwrap().unwrap().stored_key
    );
    assert_eq!(same.eab_hmac_key(&moved).unwrap(), key);
}

#[tokio::test]
async fn an_export_of_an_older_version_is_imported_and_its_keys_sealed() {
    let s = store().await;
    let key = random_key();
    s.create_eab_key("kid", "team", &key, 1).await.unwrap();
    // What a version before sealing exported: the plaintext key, no kek_id.
    let rows: Vec<serde_json::Value> = s
        .export()
        .await
        .unwrap()
        .into_iter()
        .map(|mut line| {
            if line["table"] == "eab_keys" {
                let row = line["row"].as_object_mut().unwrap();
                row.remove("kek_id");
                row.insert(
                    "hmac_key".into(),
                    certwright_proto::b64::encode(&key).into(),
                );
            }
            line
        })
        .collect();
    let target = store().await;
    target.import(&rows).await.unwrap();
    assert!(target
        .eab_key("kid")
        .await
        .unwrap()
        .unwrap()
        .kek_id
        .is_none());
    assert_eq!(target.seal_legacy_eab_keys().await.unwrap(), 1);
    let record = target.eab_key("kid").await.unwrap().unwrap();
    assert_eq!(target.eab_hmac_key(&record).unwrap(), key);
}

/// A certificate stored before migration 0016 (its name index, `certificate_names`), with
/// these identifiers.
const OLD_CERTIFICATE: &str = r#"
    INSERT INTO accounts (key_thumbprint, jwk, contact, status, created_at) VALUES ('t', '{}', '[]', 'valid', 1);
    INSERT INTO orders (account_id, status, identifiers, expires, created_at) VALUES (1, 'valid', '[]', 1, 1);
    INSERT INTO certificates (serial, account_id, order_id, der, chain_pem, names, not_before, not_after, created_at, issuer)
    VALUES ('0a', 1, 1, 'x', 'x', '[{"type":"dns","value":"WWW.Example.com"},{"type":"dns","value":"*.example.com"},{"type":"ip","value":"10.0.0.1"},{"type":"dns","value":"localhost"},{"type":"dns","value":"www.example.com"}]', 1, 5, 1, 'i');"#;

/// The rows the Rust side writes for `OLD_CERTIFICATE`.
fn expected() -> Vec<(String, String, i64, String)> {
    let names: Vec<Identifier> = vec![
        Identifier::dns("WWW.Example.com"),
        Identifier::dns("*.example.com"),
        Identifier::ip("10.0.0.1"),
        Identifier::dns("localhost"),
    ];
    let keys: std::collections::BTreeSet<(&str, String)> =
        names.iter().map(certificate_names::key).collect();
    keys.into_iter()
        .map(|(k, n)| (k.to_owned(), n, 5, "0a".to_owned()))
        .collect()
}

#[test]
fn the_sqlite_migration_backfills_the_certificates_stored_before_it() {
    let migrations = &SQLITE_MIGRATIONS;
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    for m in migrations.iter().filter(|m| m.version < 16) {
        conn.execute_batch(&m.sql).unwrap();
    }
    conn.execute_batch(OLD_CERTIFICATE).unwrap();
    let m16 = migrations.iter().find(|m| m.version == 16).unwrap();
    conn.execute_batch(&m16.sql).unwrap();
    let mut stmt = conn
        .prepare("SELECT kind, name, not_after, serial FROM certificate_names ORDER BY kind, name")
        .unwrap();
    let rows: Vec<(String, String, i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows, expected());
}

#[tokio::test]
async fn the_postgres_migration_backfills_the_certificates_stored_before_it() {
    if std::env::var("CERTWRIGHT_TEST_BACKEND").as_deref() != Ok("postgres") {
        return;
    }
    let url = certwright_testkit::peers::postgres::create_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let migrations = &POSTGRES_MIGRATIONS;
    for m in migrations.iter().filter(|m| m.version < 16) {
        sqlx::raw_sql(&m.sql).execute(&pool).await.unwrap();
    }
    sqlx::raw_sql(OLD_CERTIFICATE.replace("'x', 'x'", "'\\x00', 'x'").as_str())
        .execute(&pool)
        .await
        .unwrap();
    let m16 = migrations.iter().find(|m| m.version == 16).unwrap();
    sqlx::raw_sql(&m16.sql).execute(&pool).await.unwrap();
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT kind, name, not_after, serial FROM certificate_names ORDER BY kind, name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows, expected());
}
