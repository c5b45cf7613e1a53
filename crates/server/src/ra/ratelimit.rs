//! Rate limits, as Let's Encrypt's Boulder enforces them, each configurable and off until
//! given a count (`[rate_limits]`, docs/rate-limits.md). Windowed limits count events in
//! the store (`rate_events`) over a sliding window; the pending-authorizations limit
//! counts current state. A refusal is `rateLimited` (429) with `Retry-After`: the seconds
//! until the oldest counted event leaves the window.

use std::collections::BTreeSet;
use std::net::IpAddr;

use certwright_proto::types::{Identifier, IdentifierType};

use super::{Error, Ra};
use crate::clock::rfc3339;
use crate::store::{AccountId, AccountRecord};

/// One windowed rate limit: at most `count` events per sliding `window_secs`;
/// `count = 0` turns it off (as does the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowLimit {
    /// Events allowed per window (0: off).
    pub count: u32,
    /// Length of the sliding window, in seconds.
    pub window_secs: i64,
}

impl WindowLimit {
    /// Whether the limit applies.
    pub fn enabled(&self) -> bool {
        self.count > 0 && self.window_secs > 0
    }
}

/// The limits the RA enforces (`app::settings` fills them from `[rate_limits]`); the
/// default has every limit off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// New accounts per client address (per /64 for IPv6).
    pub new_accounts_per_ip: WindowLimit,
    /// New orders per account.
    pub new_orders_per_account: WindowLimit,
    /// Certificates per registered domain, or per IP address.
    pub certificates_per_registered_domain: WindowLimit,
    /// Failed validations per account and identifier.
    pub failed_validations_per_account_identifier: WindowLimit,
    /// Certificates for exactly the same set of names.
    pub duplicate_certificates: WindowLimit,
    /// Pending authorizations an account may hold at once (0: no limit).
    pub pending_authorizations_per_account: u32,
    /// The client address is the last `X-Forwarded-For` entry.
    pub trust_forwarded_for: bool,
}

/// The limits, by the names used in config keys, problem details and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// New accounts per client IP address.
    NewAccountsPerIp,
    /// New orders per account.
    NewOrdersPerAccount,
    /// Certificates per registered domain (public suffix list), or per IP address.
    CertificatesPerRegisteredDomain,
    /// Failed validations per account and identifier.
    FailedValidationsPerAccountIdentifier,
    /// Certificates for exactly the same set of names.
    DuplicateCertificates,
    /// Pending authorizations an account holds at once.
    PendingAuthorizationsPerAccount,
}

impl Limit {
    /// The limit's name (`new_accounts_per_ip`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::NewAccountsPerIp => "new_accounts_per_ip",
            Self::NewOrdersPerAccount => "new_orders_per_account",
            Self::CertificatesPerRegisteredDomain => "certificates_per_registered_domain",
            Self::FailedValidationsPerAccountIdentifier => {
                "failed_validations_per_account_identifier"
            }
            Self::DuplicateCertificates => "duplicate_certificates",
            Self::PendingAuthorizationsPerAccount => "pending_authorizations_per_account",
        }
    }
}

/// Seconds until a full window frees a slot: when the oldest counted event (at `oldest`)
/// leaves it. `None` while fewer than `limit.count` events are in the window.
pub fn retry_after(limit: WindowLimit, count: i64, oldest: Option<i64>, now: i64) -> Option<u64> {
    if !limit.enabled() || count < i64::from(limit.count) {
        return None;
    }
    let frees_at = oldest.unwrap_or(now) + limit.window_secs;
    Some((frees_at - now).max(1) as u64)
}

/// What the per-domain limit counts a name under: its registered domain by the public
/// suffix list (`www.shop.example.co.uk` → `example.co.uk`; a name under an unlisted
/// suffix such as `.internal` counts under its last two labels), or the address itself.
pub fn registered_domain(identifier: &Identifier) -> String {
    if identifier.kind == IdentifierType::Ip {
        return identifier.value.clone();
    }
    let name = identifier.value.trim_start_matches("*.");
    psl::domain_str(name).unwrap_or(name).to_owned()
}

/// The key of the new-accounts limit: the address, or its /64 for IPv6 (one host
/// usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The key of the failed-validations limit: the account and the name an authorization is
/// for — a wildcard's base name, since that is what its authorization validates.
fn failed_validation_key(account: AccountId, identifier: &Identifier) -> String {
    format!(
        "{}:{}",
        account.0,
        identifier.value.trim_start_matches("*.")
    )
}

/// The registered domains (or addresses) of a set of identifiers, each once.
fn registered_domains(identifiers: &[Identifier]) -> BTreeSet<String> {
    identifiers.iter().map(registered_domain).collect()
}

/// The key of the duplicate-certificate limit: the sorted set of names.
fn names_key(identifiers: &[Identifier]) -> String {
    let names: BTreeSet<&str> = identifiers.iter().map(|i| i.value.as_str()).collect();
    names.into_iter().collect::<Vec<_>>().join(",")
}

fn refusal(limit: Limit, w: WindowLimit, subject: &str, retry: u64, now: i64) -> Error {
    crate::metrics::rate_limit_refusal(limit.name());
    Error::RateLimited {
        detail: format!(
            "rate limit {} exceeded for {subject}: at most {} per {} s; it resets at {} (retry after {retry} s)",
            limit.name(),
            w.count,
            w.window_secs,
            rfc3339(now + retry as i64)
        ),
        retry_after: retry,
    }
}

impl Ra {
    fn limits(&self) -> &RateLimits {
        &self.inner.policy.rate_limits
    }

    /// Whether the client address comes from `X-Forwarded-For` (`[rate_limits]`).
    pub fn trusts_forwarded_for(&self) -> bool {
        self.limits().trust_forwarded_for
    }

    /// Refuses when `key` already has `w.count` events of `limit` in the window.
    async fn check_window(
        &self,
        limit: Limit,
        w: WindowLimit,
        key: &str,
        subject: &str,
    ) -> Result<(), Error> {
        if !w.enabled() {
            return Ok(());
        }
        let now = self.now();
        let (count, oldest) = self
            .inner
            .store
            .rate_events_since(limit.name(), key, now - w.window_secs)
            .await?;
        match retry_after(w, count, oldest, now) {
            Some(retry) => Err(refusal(limit, w, subject, retry, now)),
            None => Ok(()),
        }
    }

    /// Counts an event for `limit` (after the change it counts has been made). A failure
    /// is logged, not returned: the change itself succeeded.
    async fn note(&self, limit: Limit, w: WindowLimit, key: &str) {
        if !w.enabled() {
            return;
        }
        if let Err(e) = self
            .inner
            .store
            .record_rate_event(limit.name(), key, self.now())
            .await
        {
            tracing::warn!(limit = limit.name(), error = %e, "could not count a rate-limit event");
        }
    }

    /// Before creating an account for a request from `client`.
    pub(super) async fn check_new_account_rate(&self, client: Option<IpAddr>) -> Result<(), Error> {
        let Some(ip) = client else { return Ok(()) };
        let w = self.limits().new_accounts_per_ip;
        let key = client_key(ip);
        self.check_window(
            Limit::NewAccountsPerIp,
            w,
            &key,
            &format!("client address {key}"),
        )
        .await
    }

    pub(super) async fn note_new_account(&self, client: Option<IpAddr>) {
        if let Some(ip) = client {
            let w = self.limits().new_accounts_per_ip;
            self.note(Limit::NewAccountsPerIp, w, &client_key(ip)).await;
        }
    }

    /// Before creating an order. A renewal that names the certificate it replaces (ARI)
    /// is exempt from the per-domain and duplicate limits, as at Let's Encrypt.
    pub(super) async fn check_new_order_rates(
        &self,
        account: &AccountRecord,
        identifiers: &[Identifier],
        renewal: bool,
    ) -> Result<(), Error> {
        let limits = self.limits();
        let account_key = account.id.0.to_string();
        self.check_window(
            Limit::NewOrdersPerAccount,
            limits.new_orders_per_account,
            &account_key,
            &format!("account {account_key}"),
        )
        .await?;
        if limits.pending_authorizations_per_account > 0 {
            let pending = self
                .inner
                .store
                .pending_authorization_count(account.id, self.now())
                .await?;
            if pending >= i64::from(limits.pending_authorizations_per_account) {
                crate::metrics::rate_limit_refusal(Limit::PendingAuthorizationsPerAccount.name());
                return Err(Error::RateLimited {
                    detail: format!(
                        "rate limit {} exceeded for account {account_key}: it holds {pending} pending authorizations (at most {}); the count resets as they are completed, deactivated or expire",
                        Limit::PendingAuthorizationsPerAccount.name(),
                        limits.pending_authorizations_per_account
                    ),
                    retry_after: 60,
                });
            }
        }
        for id in identifiers {
            let key = failed_validation_key(account.id, id);
            self.check_window(
                Limit::FailedValidationsPerAccountIdentifier,
                limits.failed_validations_per_account_identifier,
                &key,
                &format!("{} (account {account_key})", id.value),
            )
            .await?;
        }
        if renewal {
            return Ok(());
        }
        for domain in &registered_domains(identifiers) {
            self.check_window(
                Limit::CertificatesPerRegisteredDomain,
                limits.certificates_per_registered_domain,
                domain,
                domain,
            )
            .await?;
        }
        let names = names_key(identifiers);
        self.check_window(
            Limit::DuplicateCertificates,
            limits.duplicate_certificates,
            &names,
            &format!("the names {names}"),
        )
        .await
    }

    pub(super) async fn note_new_order(&self, account: AccountId) {
        let w = self.limits().new_orders_per_account;
        self.note(Limit::NewOrdersPerAccount, w, &account.0.to_string())
            .await;
    }

    /// After a certificate for `identifiers` was issued.
    pub(super) async fn note_issuance(&self, identifiers: &[Identifier]) {
        let limits = self.limits();
        for domain in &registered_domains(identifiers) {
            self.note(
                Limit::CertificatesPerRegisteredDomain,
                limits.certificates_per_registered_domain,
                domain,
            )
            .await;
        }
        self.note(
            Limit::DuplicateCertificates,
            limits.duplicate_certificates,
            &names_key(identifiers),
        )
        .await;
    }

    /// After a validation of `identifier` for `account` failed.
    pub(super) async fn note_failed_validation(&self, account: AccountId, identifier: &Identifier) {
        let w = self.limits().failed_validations_per_account_identifier;
        let key = failed_validation_key(account, identifier);
        self.note(Limit::FailedValidationsPerAccountIdentifier, w, &key)
            .await;
    }

    /// The longest window of any enabled limit (what the sweeper keeps).
    pub fn longest_rate_window(&self) -> i64 {
        let l = self.limits();
        [
            l.new_accounts_per_ip,
            l.new_orders_per_account,
            l.certificates_per_registered_domain,
            l.failed_validations_per_account_identifier,
            l.duplicate_certificates,
        ]
        .iter()
        .map(|w| w.window_secs)
        .max()
        .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: WindowLimit = WindowLimit {
        count: 3,
        window_secs: 3600,
    };

    #[test]
    fn a_window_is_full_at_its_count_and_frees_with_its_oldest_event() {
        assert_eq!(retry_after(W, 2, Some(1000), 1500), None);
        assert_eq!(retry_after(W, 3, Some(1000), 1500), Some(3100));
        assert_eq!(retry_after(W, 5, Some(1000), 4599), Some(1));
        // Never zero: a client told 0 would retry at once.
        assert_eq!(retry_after(W, 3, Some(1000), 4600), Some(1));
        let off = WindowLimit { count: 0, ..W };
        assert_eq!(retry_after(off, 100, Some(1000), 1500), None);
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        let dns = |v: &str| Identifier::dns(v);
        assert_eq!(
            registered_domain(&dns("www.shop.example.co.uk")),
            "example.co.uk"
        );
        assert_eq!(registered_domain(&dns("*.api.example.com")), "example.com");
        assert_eq!(
            registered_domain(&dns("a.b.corp.internal")),
            "corp.internal"
        );
        assert_eq!(registered_domain(&Identifier::ip("192.0.2.7")), "192.0.2.7");
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(
            client_key("2001:db8:1:2:3::4".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_key("192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    #[test]
    fn a_wildcard_counts_failures_under_its_authorization_name() {
        // The VA reports a wildcard's failure for the base name its authorization is for;
        // a later order for the wildcard must look under the same key.
        assert_eq!(
            failed_validation_key(AccountId(7), &Identifier::dns("*.a.test")),
            failed_validation_key(AccountId(7), &Identifier::dns("a.test"))
        );
        assert_ne!(
            failed_validation_key(AccountId(7), &Identifier::dns("a.test")),
            failed_validation_key(AccountId(8), &Identifier::dns("a.test"))
        );
    }

    #[test]
    fn duplicate_keys_ignore_order() {
        let a = [Identifier::dns("b.test"), Identifier::dns("a.test")];
        let b = [Identifier::dns("a.test"), Identifier::dns("b.test")];
        assert_eq!(names_key(&a), names_key(&b));
    }
}
