use super::*;
use certwright_proto::types::ChallengeType;
use certwright_proto::{AccountKey, KeyType};

async fn store() -> Store {
    Store::open("sqlite::memory:").await.unwrap()
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
    let s = store().await;
    let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
    let acct = s.create_account(&jwk, &[], true, 1).await.unwrap();
    let order = s
        .create_order(&NewOrderRecord {
            account_id: acct.id,
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
        })
        .await
        .unwrap();
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
        .finish_validation(chall, None, &serde_json::json!({}), 5)
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
