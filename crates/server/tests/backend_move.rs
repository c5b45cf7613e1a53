//! Moving a CA from SQLite to PostgreSQL with `export`/`import` keeps every account,
//! certificate and revocation; the moved CA keeps serving the same clients.

mod harness;

use certwright_proto::b64;
use certwright_server::clock::Clock;
use certwright_server::secrets::{KekSource, KEK_FILE};
use certwright_server::store::Store;
use harness::TestCa;
use serde_json::json;

#[tokio::test]
async fn sqlite_to_postgres_keeps_everything() {
    // On SQLite: an account, two certificates, one revoked, an EAB key.
    std::env::remove_var("CERTWRIGHT_TEST_BACKEND");
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let kid = acme.kid.clone().unwrap();
    let (_, kept, _) = acme.issue(&["kept.example.test"], &ca.responder).await;
    let (_, _, chain) = acme.issue(&["revoked.example.test"], &ca.responder).await;
    let der = harness::pem_chain(&chain).remove(0);
    let revoke = acme.dir.revoke_cert.clone();
    assert_eq!(
        acme.post(
            &revoke,
            Some(&json!({"certificate": b64::encode(&der), "reason": 1}))
        )
        .await
        .status,
        200
    );
    ca.store
        .create_eab_key("kid-move", "team", b"secret", 1)
        .await
        .unwrap();
    let before = ca.store.snapshot().await.unwrap();
    let rows = ca.store.export().await.unwrap();

    // Into a fresh PostgreSQL database.
    let (tmp, dir, addr, responder) = ca.stop().await;
    std::fs::remove_file(dir.join("certwright.db")).ok();
    std::env::set_var("CERTWRIGHT_TEST_BACKEND", "postgres");
    let url = harness::database_url_for(&dir).await.unwrap();
    // The EAB key travels sealed: the target needs the data directory's KEK.
    let kek = KekSource::DataDir(dir.join(KEK_FILE)).load(false).unwrap();
    let bare = Store::open(&url).await.unwrap();
    assert!(
        bare.import(&rows).await.is_err(),
        "sealed keys need the KEK"
    );
    assert!(
        bare.eab_keys().await.unwrap().is_empty(),
        "nothing imported"
    );
    let target = bare.with_eab_kek(std::sync::Arc::new(kek));
    assert_eq!(target.import(&rows).await.unwrap(), rows.len());
    assert_eq!(
        target.snapshot().await.unwrap(),
        before,
        "every row arrived"
    );
    assert!(
        target.import(&rows).await.is_err(),
        "import refuses a non-empty database"
    );
    // The audit trail moved whole, and records the import itself.
    match target.verify_audit().await.unwrap() {
        certwright_server::store::AuditVerdict::Intact { entries, .. } => {
            let moved = rows.iter().filter(|r| r["table"] == "audit_log").count() as i64;
            assert!(moved > 0, "the export holds the trail");
            assert_eq!(entries, moved + 1, "the moved entries plus admin.import");
        }
        broken => panic!("the moved trail does not verify: {broken:?}"),
    }
    drop(target);

    // The CA on PostgreSQL serves the same account and certificates.
    let mut moved = TestCa::start_in(dir, Some(addr), responder, Clock::system(), |_| {}).await;
    moved.adopt(tmp);
    assert_eq!(acme.post(&kid, None).await.status, 200, "the account moved");
    let cert = acme.post(kept["certificate"].as_str().unwrap(), None).await;
    assert_eq!(cert.status, 200);
    let crl = moved
        .store
        .revoked_certificates("intermediate", moved.clock.now())
        .await
        .unwrap();
    assert_eq!(crl.len(), 1);
    assert_eq!(crl[0].reason, 1);
    let moved_key = moved.store.eab_key("kid-move").await.unwrap().unwrap();
    assert_eq!(
        moved.store.eab_hmac_key(&moved_key).unwrap(),
        b"secret",
        "the moved EAB key still opens with the data directory's KEK"
    );
    // New rows get fresh ids past the imported ones.
    acme.issue(&["after-move.example.test"], &moved.responder)
        .await;
}
