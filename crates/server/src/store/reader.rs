//! `StoreReader`: the store as the web front end sees it. It reads accounts, orders,
//! authorizations, challenges, certificates and the latest CRL, and keeps the shared
//! nonces (the front end's own table); every other write stays with the RA, which holds
//! the `Store` itself.

use certwright_proto::types::AuthorizationStatus;

use super::{
    AccountId, AccountRecord, AuthzId, AuthzRecord, CertificateRecord, ChallengeId,
    ChallengeRecord, CrlRecord, OrderId, OrderRecord, Result, Store,
};

/// A read-only view of a [`Store`] (plus the shared nonces). Cheap to clone.
#[derive(Clone)]
pub struct StoreReader(Store);

impl Store {
    /// This store as the front end may use it: reads, and the shared nonces.
    pub fn reader(&self) -> StoreReader {
        StoreReader(self.clone())
    }
}

/// Methods of `StoreReader` that call the `Store` method of the same name.
macro_rules! same_as_store {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl StoreReader {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret> {
                    self.0.$name($($arg),*).await
                }
            )*
        }
    };
}

same_as_store! {
    /// The account with `id` (`Store::account`).
    fn account(&self, id: AccountId) -> AccountRecord;
    /// The account whose key has this RFC 7638 thumbprint.
    fn account_by_thumbprint(&self, thumbprint: &str) -> Option<AccountRecord>;
    /// A page of an account's order ids, oldest first, after `after` (exclusive).
    fn account_order_ids(&self, account: AccountId, after: i64, limit: u32) -> Vec<OrderId>;
    /// The order with `id`, with its authorization ids.
    fn order(&self, id: OrderId) -> OrderRecord;
    /// Statuses and expiry of an order's authorizations, for deriving the order's status.
    fn order_authorization_states(&self, id: OrderId) -> Vec<(AuthorizationStatus, i64)>;
    /// The authorization with `id` and its challenges.
    fn authorization(&self, id: AuthzId) -> AuthzRecord;
    /// The challenge with `id`.
    fn challenge(&self, id: ChallengeId) -> ChallengeRecord;
    /// The certificate with this serial (lower-case hex).
    fn certificate(&self, serial: &str) -> CertificateRecord;
    /// The latest saved CRL of `issuer`.
    fn latest_crl(&self, issuer: &str) -> Option<CrlRecord>;
    /// Records a nonce this instance issued (shared nonces: any instance redeems it).
    fn insert_nonce(&self, nonce: &str, expires: i64) -> ();
    /// Records a batch of nonces this instance issued, in one statement.
    fn insert_nonces(&self, nonces: &[String; super::NONCE_BATCH], expires: i64) -> ();
    /// Redeems a nonce: true exactly once, and only before it expires.
    fn redeem_nonce(&self, nonce: &str, now: i64) -> bool;
    /// Redeems a nonce and reads an account (and on PostgreSQL the record `prefetch`
    /// names), in one statement on PostgreSQL.
    fn account_redeeming_nonce(&self, id: AccountId, nonce: &str, now: i64, prefetch: Option<&super::Prefetch>) -> super::Redeemed;
}
