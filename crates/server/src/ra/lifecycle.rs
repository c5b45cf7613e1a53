//! The certificate lifecycle beyond issuance: External Account Binding (§7.3.4), key
//! rollover (§7.3.5), revocation (§7.6) with its CRL, and renewal information (RFC 9773).

use certwright_proto::ari::{parse_cert_id, RenewalInfo, SuggestedWindow};
use certwright_proto::jws::Signer;
use certwright_proto::types::{Identifier, KeyChange, Revocation};
use certwright_proto::{b64, FlattenedJws, Jwk, JwsAlgorithm, ParsedJws};
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Error, Ra, DATABASE_FAILED};
use crate::ca::crl::{reason_name, CrlEntry, ALLOWED_REASONS};
use crate::ca::{csr, KeyPolicy};
use crate::clock::rfc3339;
use crate::store::{AccountId, AccountRecord, Actor, CertificateRecord, CrlRecord, StoreError};

/// The name of the first issuer, whose CRL the CA has always kept.
pub const CRL_ISSUER: &str = crate::ca::files::FIRST_ISSUER;
/// Seconds clients should wait before asking for renewal information again.
pub const ARI_RETRY_AFTER_SECS: u64 = 6 * 3600;

/// What a client hears when the CA cannot decrypt the EAB key it names (the reason is
/// logged for the operator).
pub const EAB_KEY_UNREADABLE: &str =
    "the CA cannot read its copy of this external account key; ask the CA operator";

/// Who asks for a revocation.
pub enum Requester<'a> {
    /// A `kid`-signed request.
    Account(&'a AccountRecord),
    /// A `jwk`-signed request: the certificate's own key.
    CertificateKey(&'a Jwk),
}

/// Outcome of a key change.
pub enum KeyChangeOutcome {
    /// The key was changed: the account as updated.
    Changed(AccountRecord),
    /// Another account already uses the new key (answered 409 with its Location).
    KeyInUse(AccountId),
}

fn unauthorized(detail: impl Into<String>) -> Error {
    Error::Unauthorized(detail.into())
}

fn malformed(detail: impl Into<String>) -> Error {
    Error::Malformed(detail.into())
}

/// Lower-case hex of bytes.
fn hex(bytes: &[u8]) -> String {
    crate::ca::hex(bytes)
}

impl Ra {
    /// Checks an `externalAccountBinding` (§7.3.4) for a new account with `account_key`;
    /// returns the EAB key id it binds to.
    pub(crate) async fn verify_eab(
        &self,
        binding: &Value,
        account_key: &Jwk,
        new_account_url: &str,
    ) -> Result<String, Error> {
        let jws: FlattenedJws = serde_json::from_value(binding.clone()).map_err(|e| {
            malformed(format!(
                "externalAccountBinding is not a flattened JWS: {e}"
            ))
        })?;
        let inner = ParsedJws::from_flattened(&jws).map_err(|error| Error::Jws {
            context: "externalAccountBinding",
            error,
        })?;
        if inner.header.alg != JwsAlgorithm::Hs256 {
            return Err(Error::BadSignatureAlgorithm(format!(
                "externalAccountBinding must be signed with HS256, not {}",
                inner.header.alg
            )));
        }
        if inner.header.nonce.is_some() {
            return Err(malformed("externalAccountBinding must not carry a nonce"));
        }
        if inner.header.url != new_account_url {
            return Err(malformed(format!(
                "externalAccountBinding \"url\" must be the newAccount URL {new_account_url:?}"
            )));
        }
        let Signer::Kid(kid) = &inner.header.signer else {
            return Err(malformed(
                "externalAccountBinding must name its key with \"kid\"",
            ));
        };
        let key =
            self.inner.store.eab_key(kid).await?.ok_or_else(|| {
                unauthorized(format!("external account key id {kid:?} is unknown"))
            })?;
        if key.revoked_at.is_some() {
            return Err(unauthorized(format!(
                "external account key {kid:?} has been revoked"
            )));
        }
        if key.account_id.is_some() {
            return Err(unauthorized(format!(
                "external account key {kid:?} is already bound to an account"
            )));
        }
        // A wrong key-encryption key or a damaged row: the operator's problem, told in the
        // log; the client learns only that the CA failed.
        let hmac_key = self.inner.store.eab_hmac_key(&key).map_err(|e| {
            Error::internal(
                EAB_KEY_UNREADABLE,
                format_args!("cannot decrypt the EAB key {kid:?}: {e}"),
            )
        })?;
        inner.verify_hmac(&hmac_key).map_err(|_| {
            unauthorized("externalAccountBinding MAC does not verify with that key")
        })?;
        let payload: Value = serde_json::from_slice(&inner.payload)
            .map_err(|_| malformed("externalAccountBinding payload is not a JWK"))?;
        let bound = Jwk::from_value(&payload)
            .map_err(|e| malformed(format!("externalAccountBinding payload: {e}")))?;
        if &bound != account_key {
            return Err(unauthorized(
                "externalAccountBinding binds another key than this account's",
            ));
        }
        Ok(kid.clone())
    }

    /// Account key rollover (§7.3.5). `inner` is the payload of the outer JWS.
    pub async fn change_key(
        &self,
        account: &AccountRecord,
        account_url: &str,
        inner: &[u8],
        key_change_url: &str,
    ) -> Result<KeyChangeOutcome, Error> {
        let jws: FlattenedJws = serde_json::from_slice(inner)
            .map_err(|e| malformed(format!("the keyChange payload is not a flattened JWS: {e}")))?;
        let inner = ParsedJws::from_flattened(&jws).map_err(|error| Error::Jws {
            context: "inner JWS",
            error,
        })?;
        if inner.header.alg.is_mac() {
            return Err(Error::BadSignatureAlgorithm(
                "the inner JWS must not use a MAC algorithm".into(),
            ));
        }
        let Signer::Jwk(new_key) = &inner.header.signer else {
            return Err(malformed("the inner JWS must carry the new key in \"jwk\""));
        };
        if inner.header.nonce.is_some() {
            return Err(malformed("the inner JWS must not carry a nonce"));
        }
        if inner.header.url != key_change_url {
            return Err(malformed("the inner JWS \"url\" must equal the outer one"));
        }
        inner.verify(new_key).map_err(|error| Error::Jws {
            context: "the inner JWS does not verify with its jwk",
            error,
        })?;
        let change: KeyChange = serde_json::from_slice(&inner.payload)
            .map_err(|e| malformed(format!("the inner payload is not a keyChange object: {e}")))?;
        if change.account != account_url {
            return Err(unauthorized(
                "the inner payload names another account than the signer",
            ));
        }
        let old =
            Jwk::from_value(&change.old_key).map_err(|e| malformed(format!("oldKey: {e}")))?;
        if old != account.jwk {
            return Err(unauthorized("oldKey is not the account's current key"));
        }
        if *new_key == account.jwk {
            return Err(malformed("the new key is the same as the current key"));
        }
        let store = &self.inner.store;
        if let Some(other) = store.account_by_thumbprint(&new_key.thumbprint()).await? {
            return Ok(KeyChangeOutcome::KeyInUse(other.id));
        }
        match store.change_account_key(account.id, new_key).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                let other = store
                    .account_by_thumbprint(&new_key.thumbprint())
                    .await?
                    .ok_or_else(|| {
                        Error::internal(DATABASE_FAILED, "a key conflict without an owner")
                    })?;
                return Ok(KeyChangeOutcome::KeyInUse(other.id));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(account = %account.id, key = %new_key.describe(), "account key changed");
        Ok(KeyChangeOutcome::Changed(store.account(account.id).await?))
    }

    /// revokeCert (§7.6).
    pub async fn revoke(
        &self,
        requester: Requester<'_>,
        request: &Revocation,
    ) -> Result<CertificateRecord, Error> {
        let der = b64::decode(&request.certificate)
            .map_err(|_| malformed("\"certificate\" is not base64url"))?;
        let (rest, cert) = X509Certificate::from_der(&der)
            .map_err(|_| malformed("\"certificate\" is not a DER X.509 certificate"))?;
        if !rest.is_empty() {
            return Err(malformed("\"certificate\" has trailing bytes"));
        }
        let serial = hex(cert.raw_serial());
        let record = match self.inner.store.certificate(&serial).await {
            Ok(r) if r.der == der => r,
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(Error::NotFound(
                    "this CA did not issue that certificate".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let reason = request.reason.unwrap_or(0);
        if !ALLOWED_REASONS.contains(&reason) {
            return Err(Error::BadRevocationReason(format!(
                "reason {reason} ({}) is not accepted; use one of {:?}",
                reason_name(reason),
                ALLOWED_REASONS
                    .iter()
                    .map(|r| format!("{r} {}", reason_name(*r)))
                    .collect::<Vec<_>>()
            )));
        }
        match requester {
            Requester::Account(account) if account.id == record.account_id => {}
            Requester::Account(account) => {
                let now = self.now();
                if !self
                    .inner
                    .store
                    .has_valid_authorizations(account.id, &record.names, now)
                    .await?
                {
                    return Err(unauthorized(
                        "this account neither requested the certificate nor holds valid authorizations for all its names",
                    ));
                }
            }
            Requester::CertificateKey(jwk) => {
                let permissive = KeyPolicy {
                    rsa_max_bits: 8192,
                    allow_ed25519: true,
                    ..KeyPolicy::default()
                };
                let key = csr::public_key_jwk(cert.public_key(), &permissive)
                    .map_err(|_| unauthorized("the certificate's key type is not supported"))?;
                if &key != jwk {
                    return Err(unauthorized(
                        "the request is not signed by the certificate's key",
                    ));
                }
            }
        }
        if record.revoked_at.is_some() {
            return Err(already_revoked(&serial));
        }
        self.forward_revocation(&record, reason).await?;
        let now = self.now();
        let by = match requester {
            Requester::Account(account) => Actor::Account(account.id),
            Requester::CertificateKey(_) => Actor::CertificateKey,
        };
        if !self
            .inner
            .store
            .revoke_certificate(&serial, reason, now, &by)
            .await?
        {
            return Err(already_revoked(&serial));
        }
        tracing::info!(%serial, reason = reason_name(reason), "certificate revoked");
        crate::metrics::revocation(reason_name(reason));
        if self.is_backend(&record.issuer) {
            // The backend publishes its own CRL.
        } else if let Err(e) = self.publish_crl(&record.issuer).await {
            tracing::error!(error = %e, "publishing the CRL after a revocation failed");
        }
        Ok(self.inner.store.certificate(&serial).await?)
    }

    /// Revocation by the CA operator (admin command): any allowed reason, any certificate.
    pub async fn revoke_by_operator(
        &self,
        serial: &str,
        reason: u8,
    ) -> Result<CertificateRecord, Error> {
        let operator = self.inner.store.operator().clone();
        self.revoke_by_operator_as(serial, reason, &operator).await
    }

    /// `revoke_by_operator`, audited as `operator` (the console's signed-in operator,
    /// where the RA's store was opened acting as someone else).
    pub async fn revoke_by_operator_as(
        &self,
        serial: &str,
        reason: u8,
        operator: &crate::store::Actor,
    ) -> Result<CertificateRecord, Error> {
        if !ALLOWED_REASONS.contains(&reason) {
            return Err(Error::BadRevocationReason(format!(
                "reason {reason} ({}) is not accepted",
                reason_name(reason)
            )));
        }
        let serial = serial.replace(':', "").to_ascii_lowercase();
        let record = match self.inner.store.certificate(&serial).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => {
                return Err(Error::NotFound(format!(
                    "no certificate with serial {serial}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if record.revoked_at.is_some() {
            return Err(already_revoked(&serial));
        }
        self.forward_revocation(&record, reason).await?;
        if !self
            .inner
            .store
            .revoke_certificate(&serial, reason, self.now(), operator)
            .await?
        {
            return Err(already_revoked(&serial));
        }
        tracing::info!(%serial, reason = reason_name(reason), "certificate revoked by the operator");
        crate::metrics::revocation(reason_name(reason));
        if !self.is_backend(&record.issuer) {
            self.publish_crl(&record.issuer).await?;
        }
        Ok(self.inner.store.certificate(&serial).await?)
    }

    /// Signs and stores a new CRL for `issuer`.
    pub async fn publish_crl(&self, issuer: &str) -> Result<CrlRecord, Error> {
        let store = &self.inner.store;
        let now = self.now();
        let Some(signer) = self.inner.ca.issuer_named(issuer) else {
            return Err(Error::NotFound(format!("no issuer named {issuer:?}")));
        };
        let number = store.allocate_crl_number(issuer).await?;
        let revoked = store.revoked_certificates(issuer, now).await?;
        let entries: Vec<CrlEntry<'_>> = revoked
            .iter()
            .map(|e| CrlEntry {
                serial: &e.serial,
                revoked_at: e.revoked_at,
                reason: e.reason,
            })
            .collect();
        let next_update = now + self.inner.policy.crl_validity_secs;
        let der = signer
            .build_crl(number, &entries, now, next_update)
            .map_err(|e| {
                Error::internal(
                    "the CA could not sign a CRL; try again shortly",
                    format_args!("signing the CRL failed: {e}"),
                )
            })?;
        let record = CrlRecord {
            number,
            der,
            this_update: now,
            next_update,
        };
        store.save_crl(issuer, &record).await?;
        Ok(record)
    }

    /// The current CRL of `issuer`, published anew if there is none or half its validity
    /// has passed.
    pub async fn current_crl(&self, issuer: &str) -> Result<CrlRecord, Error> {
        let now = self.now();
        match self.inner.store.latest_crl(issuer).await? {
            Some(crl) if now < crl.this_update + (crl.next_update - crl.this_update) / 2 => Ok(crl),
            _ => self.publish_crl(issuer).await,
        }
    }

    /// Keeps every issuer's CRL current (startup and a timer). An issuer whose CRL cannot
    /// be signed (its token away) does not stop the others; the first error is returned.
    pub async fn refresh_crls(&self) -> Result<(), Error> {
        let mut first_error = None;
        for issuer in self.inner.ca.issuers().iter() {
            if let Err(e) = self.current_crl(issuer.name()).await {
                tracing::error!(issuer = %issuer.name(), problem = %e, "refreshing the CRL failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Finds the certificate an ARI certID names (RFC 9773 §4.1).
    pub async fn certificate_by_ari_id(&self, cert_id: &str) -> Result<CertificateRecord, Error> {
        let (aki, serial) = parse_cert_id(cert_id).ok_or_else(|| {
            malformed(format!(
                "{cert_id:?} is not an ARI certificate identifier (AKI.serial, base64url)"
            ))
        })?;
        let issuer = self.inner.ca.issuer_by_key_id(&aki);
        let record = match self.inner.store.certificate(&hex(&serial)).await {
            Ok(r) if issuer.as_ref().is_some_and(|i| i.name() == r.issuer) => r,
            // A backend's certificate: its AKI is the backend issuer's.
            Ok(r)
                if self.is_backend(&r.issuer) && authority_key_id(&r.der) == Some(aki.clone()) =>
            {
                r
            }
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(Error::NotFound(format!(
                    "no certificate of this CA has the identifier {cert_id:?}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(record)
    }

    /// renewalInfo for a certificate (RFC 9773 §4.2): its [`Ra::renewal_window`].
    pub async fn renewal_info(&self, cert: &CertificateRecord) -> RenewalInfo {
        let (start, end) = self.renewal_window(cert).await;
        RenewalInfo {
            suggested_window: SuggestedWindow {
                start: rfc3339(start),
                end: rfc3339(end),
            },
            explanation_url: None,
        }
    }

    /// The suggested renewal window of a certificate (Unix seconds), as renewalInfo
    /// reports it: [`own_window`] (a window in the past when it is revoked or an operator
    /// marked it; [`default_window`]; before a retired issuer's renew-before date), or
    /// for a certificate a backend issued, the backend's window when it suggests one
    /// (ARI pass-through). The console's ARI view shows the same window.
    pub async fn renewal_window(&self, cert: &CertificateRecord) -> (i64, i64) {
        let now = self.now();
        if cert.revoked_at.is_none() && !cert.renew_early {
            if let Some(window) = self.backend_window(cert).await {
                return window;
            }
        }
        let retire_by = self
            .inner
            .ca
            .issuer_named(&cert.issuer)
            .and_then(|i| match i.state() {
                crate::ca::IssuerState::Retired { by } => Some(by),
                crate::ca::IssuerState::Active => None,
            });
        own_window(cert, now, retire_by)
    }

    /// Checks newOrder's `replaces` (RFC 9773 §5): the certificate exists, belongs to the
    /// account and shares a name with the order. Returns its serial.
    pub(crate) async fn check_replaces(
        &self,
        account: &AccountRecord,
        cert_id: &str,
        identifiers: &[Identifier],
    ) -> Result<String, Error> {
        let cert = self.certificate_by_ari_id(cert_id).await?;
        if cert.account_id != account.id {
            return Err(unauthorized(
                "the certificate named in \"replaces\" belongs to another account",
            ));
        }
        if !cert.names.iter().any(|n| identifiers.contains(n)) {
            return Err(malformed(
                "the certificate named in \"replaces\" shares no identifier with this order",
            ));
        }
        if cert.replaced_by_order.is_some() {
            return Err(already_replaced(cert_id));
        }
        Ok(cert.serial)
    }
}

/// The keyIdentifier of a certificate's authorityKeyIdentifier, if it has one.
fn authority_key_id(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// The suggested renewal window of a certificate valid from `not_before` to `not_after`
/// (Unix seconds), in Let's Encrypt's shape: centred where a third of the lifetime is left
/// (half, for certificates under 10 days), 1/50 of the lifetime wide. A 90-day certificate
/// gets days 59.1–60.9, leaving 29 days before expiry; a 7-day one 3.43–3.57 days.
pub(crate) fn default_window(not_before: i64, not_after: i64) -> (i64, i64) {
    const SHORT_LIVED_SECS: i64 = 10 * 86400;
    let lifetime = (not_after - not_before).max(0);
    let left = if lifetime < SHORT_LIVED_SECS {
        lifetime / 2
    } else {
        lifetime / 3
    };
    let centre = not_after - left;
    let margin = lifetime / 100;
    (centre - margin, centre + margin)
}

/// The window of a certificate of one of the CA's own issuers at `now`: in the past
/// (renew now) when it is revoked or an operator marked it; else [`default_window`],
/// pulled before `retire_by` when its issuer is retired ([`before_retirement`]).
pub(crate) fn own_window(cert: &CertificateRecord, now: i64, retire_by: Option<i64>) -> (i64, i64) {
    if cert.revoked_at.is_some() || cert.renew_early {
        return (now - 2 * 3600, now - 3600);
    }
    let window = default_window(cert.not_before, cert.not_after);
    match retire_by {
        Some(by) => before_retirement(window, by, now),
        None => window,
    }
}

/// The `alreadyReplaced` refusal (RFC 9773 §5).
pub(crate) fn already_replaced(cert_id: &str) -> Error {
    Error::AlreadyReplaced(format!(
        "the certificate {cert_id:?} was already replaced by another order"
    ))
}

fn already_revoked(serial: &str) -> Error {
    Error::AlreadyRevoked(format!("certificate {serial} is already revoked"))
}

/// The ARI window of a certificate whose issuer retires at `by`: its usual `window` if
/// that ends before `by`; else a window ending an hour before `by` and starting at the
/// usual start or, when that is too late, halfway from `now` to the end; a `by` less than
/// an hour away means renew now (a window in the past).
pub(crate) fn before_retirement(window: (i64, i64), by: i64, now: i64) -> (i64, i64) {
    let (start, end) = window;
    if end <= by {
        return window;
    }
    let end = by - 3600;
    if end <= now {
        return (now - 2 * 3600, now - 3600);
    }
    let start = if start < end {
        start
    } else {
        now + (end - now) / 2
    };
    (start.max(now.min(end)), end)
}

#[cfg(test)]
mod retirement_tests {
    use super::before_retirement;

    #[test]
    fn a_retiring_issuer_pulls_the_window_before_its_date() {
        let now = 1_000_000;
        // The usual window ends before the date: unchanged.
        assert_eq!(
            before_retirement((now + 10, now + 20), now + 100, now),
            (now + 10, now + 20)
        );
        // It ends after: it ends an hour before the date, starting as usual.
        let by = now + 10 * 86400;
        assert_eq!(
            before_retirement((now + 86400, now + 30 * 86400), by, now),
            (now + 86400, by - 3600)
        );
        // Starting after the new end: starts halfway from now.
        assert_eq!(
            before_retirement((now + 20 * 86400, now + 30 * 86400), by, now),
            (now + (by - 3600 - now) / 2, by - 3600)
        );
        // The date is (nearly) here: renew now.
        let (start, end) = before_retirement((now + 86400, now + 30 * 86400), now + 1800, now);
        assert!(start < end && end < now);
    }
}

#[cfg(test)]
mod window_tests {
    use super::default_window;

    const DAY: i64 = 86400;

    #[test]
    fn ninety_days_around_day_sixty_with_a_month_left() {
        let nb = 1_900_000_000;
        let (start, end) = default_window(nb, nb + 90 * DAY);
        assert_eq!(start, nb + 60 * DAY - 90 * DAY / 100);
        assert_eq!(end, nb + 60 * DAY + 90 * DAY / 100);
        assert!(
            nb + 90 * DAY - end > 29 * DAY,
            "a good margin before expiry"
        );
    }

    #[test]
    fn short_lived_around_half_the_lifetime() {
        let nb = 1_900_000_000;
        let (start, end) = default_window(nb, nb + 7 * DAY);
        let half = nb + 7 * DAY / 2;
        assert!(start < half && half < end);
        assert_eq!(end - start, 2 * (7 * DAY / 100));
        // Six days: ends well before expiry (almost three days left).
        let (_, end) = default_window(nb, nb + 6 * DAY);
        assert!(nb + 6 * DAY - end > 2 * DAY + DAY / 2);
        // Ten days is not short-lived: two thirds.
        let (start, end) = default_window(nb, nb + 10 * DAY);
        assert!(start < nb + 10 * DAY * 2 / 3 && nb + 10 * DAY * 2 / 3 < end);
    }

    #[test]
    fn a_degenerate_validity_gives_an_empty_window_at_expiry() {
        assert_eq!(default_window(100, 100), (100, 100));
        assert_eq!(default_window(100, 50), (50, 50));
    }
}
