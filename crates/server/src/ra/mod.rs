//! The registration authority: ACME's business rules. Accounts, orders, authorizations,
//! challenges and finalize; every status change goes through here (and `status`).

pub mod contact;
mod error;
pub mod lifecycle;
pub mod ocsp;
pub mod policy;
pub mod ratelimit;
mod upstream;
mod validation;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use certwright_proto::identifier::{normalize, IdentifierError, NormalizedIdentifier};
use certwright_proto::keyauth::{key_authorization, new_token};
use certwright_proto::types::{
    AccountStatus, AccountUpdate, AuthorizationStatus, ChallengeStatus, Identifier, NewAccount,
    NewOrder, OrderStatus,
};
use certwright_proto::{b64, Jwk, Problem};

use crate::backend::Backends;
use crate::ca::{parse_csr, CertificateAuthority, CheckedCsr, IssueError, Profile};
use crate::clock::Clock;
use crate::status;
use crate::store::{
    AccountId, AccountRecord, AuthzId, AuthzRecord, CertificateRecord, ChallengeId,
    ChallengeRecord, NewAuthorization, NewCertificate, NewOrderRecord, OrderId, OrderRecord, Store,
    StoreError, StoreReader,
};
use crate::va::{Applicant, Validator};

/// Rules the RA applies.
#[derive(Debug, Clone)]
pub struct RaPolicy {
    /// How long a new order stays usable, in seconds.
    pub order_lifetime_secs: i64,
    /// How long a new authorization stays pending, in seconds.
    pub pending_authz_lifetime_secs: i64,
    /// How long a valid authorization stays usable (and reusable), in seconds.
    pub valid_authz_lifetime_secs: i64,
    /// Naming, key and lifetime policy; replaced whole on SIGHUP (see `policy`).
    pub live: policy::PolicyHandle,
    /// Newaccount must carry `termsOfServiceAgreed: true` (when the CA has terms).
    pub terms_of_service: bool,
    /// Newaccount must carry an External Account Binding.
    pub external_account_required: bool,
    /// Certificate profiles by name, and the one used when an order names none.
    pub profiles: BTreeMap<String, Profile>,
    /// The profile of orders that name none.
    pub default_profile: String,
    /// Seconds between a CRL's thisUpdate and nextUpdate.
    pub crl_validity_secs: i64,
    /// Seconds an instance holds work it started (a validation, an issuance) before
    /// another may take it over.
    pub lease_secs: i64,
    /// Rate limits (`ratelimit`).
    pub rate_limits: ratelimit::RateLimits,
    /// How long finalize's CAA re-check may take, all names together; it must end well
    /// before the finalize request times out.
    pub recheck_budget: std::time::Duration,
}

pub use error::{Error, IdentifierRefusal, RefusalKind, DATABASE_FAILED};

/// Retries, within one issuance, of a signature the issuer's key did not make.
const KEY_RETRIES: u32 = 3;
/// The first retry's delay (then twice, three times this).
const KEY_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// The order's `error` when issuance failed inside the CA (the cause is logged).
pub const ISSUANCE_FAILED: &str =
    "the CA could not issue the certificate for this order; the operator's log has the cause";

/// An order with its status derived at read time.
#[derive(Debug, Clone)]
pub struct OrderView {
    /// The order as stored.
    pub record: OrderRecord,
    /// Its status at read time, from its expiry and authorizations (`crate::status`).
    pub status: OrderStatus,
}

/// An authorization with its status derived at read time.
#[derive(Debug, Clone)]
pub struct AuthzView {
    /// The authorization as stored.
    pub record: AuthzRecord,
    /// Its status at read time (`pending` and `valid` ones expire).
    pub status: AuthorizationStatus,
}

/// The registration authority. Cheap to clone.
#[derive(Clone)]
pub struct Ra {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ca: Arc<CertificateAuthority>,
    va: Arc<dyn Validator>,
    clock: Clock,
    policy: RaPolicy,
    /// Backend CAs and the routing rules (empty: every order is signed here).
    backends: Backends,
}

impl Ra {
    /// An RA over its collaborators (the local [`crate::va::Va`], or any validator).
    pub fn new(
        store: Store,
        ca: Arc<CertificateAuthority>,
        va: impl Validator,
        clock: Clock,
        policy: RaPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ca,
                va: Arc::new(va),
                clock,
                policy,
                backends: Backends::default(),
            }),
        }
    }

    /// This RA forwarding orders to `backends` by their routing rules. Called while the
    /// RA is being built, before it is cloned.
    pub fn with_backends(mut self, backends: Backends) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_backends is called before the RA is shared")
            .backends = backends;
        self
    }

    /// The store as the front end may use it: reads only (and the shared nonces). Every
    /// other write goes through the RA.
    pub fn store(&self) -> StoreReader {
        self.inner.store.reader()
    }

    /// The CA whose issuers this RA signs with (the console shows their OCSP responders).
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.inner.ca
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    // ------------------------------------------------------------------ accounts

    /// newAccount (§7.3). Returns the account and whether it was created now.
    pub async fn new_account(
        &self,
        jwk: &Jwk,
        request: &NewAccount,
        new_account_url: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<(AccountRecord, bool), Error> {
        let store = &self.inner.store;
        if let Some(existing) = store.account_by_thumbprint(&jwk.thumbprint()).await? {
            if existing.status != AccountStatus::Valid {
                return Err(Error::Unauthorized(format!(
                    "the account for this key is {}",
                    existing.status
                )));
            }
            return Ok((existing, false));
        }
        if request.only_return_existing == Some(true) {
            return Err(Error::AccountDoesNotExist(
                "no account exists for this key (onlyReturnExisting was set)".into(),
            ));
        }
        let eab_kid = match &request.external_account_binding {
            Some(binding) => Some(self.verify_eab(binding, jwk, new_account_url).await?),
            None if self.inner.policy.external_account_required => {
                return Err(Error::ExternalAccountRequired(
                    "this CA requires an external account binding (EAB key id and HMAC key from the CA operator) for new accounts".into(),
                ));
            }
            None => None,
        };
        let tos = request.terms_of_service_agreed == Some(true);
        if self.inner.policy.terms_of_service && !tos {
            return Err(Error::TermsNotAgreed(
                "you must agree to the terms of service (termsOfServiceAgreed: true)".into(),
            ));
        }
        let contact = contact::validate_contacts(request.contact.as_deref().unwrap_or(&[]))?;
        self.check_new_account_rate(client).await?;
        let created = match &eab_kid {
            Some(kid) => {
                store
                    .create_account_with_eab(jwk, &contact, tos, self.now(), kid)
                    .await
            }
            None => store.create_account(jwk, &contact, tos, self.now()).await,
        };
        match created {
            Ok(account) => {
                tracing::info!(account = %account.id, key = %jwk.describe(), "account created");
                self.note_new_account(client).await;
                Ok((account, true))
            }
            // Two newAccount requests with one key raced: the other one won.
            Err(StoreError::Conflict) => {
                let existing = store
                    .account_by_thumbprint(&jwk.thumbprint())
                    .await?
                    .ok_or_else(|| {
                        Error::internal(DATABASE_FAILED, "the account vanished during creation")
                    })?;
                Ok((existing, false))
            }
            Err(StoreError::EabUnavailable) => Err(Error::Unauthorized(
                "the external account key was revoked or bound to another account meanwhile".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Account update or deactivation (§7.3.2, §7.3.6).
    pub async fn update_account(
        &self,
        account: &AccountRecord,
        update: &AccountUpdate,
    ) -> Result<AccountRecord, Error> {
        let store = &self.inner.store;
        match update.status {
            None => {}
            Some(AccountStatus::Deactivated) => {
                if update.contact.is_some() {
                    return Err(Error::Malformed(
                        "deactivation cannot be combined with other changes".into(),
                    ));
                }
                store.deactivate_account(account.id).await?;
                tracing::info!(account = %account.id, "account deactivated");
                return Ok(store.account(account.id).await?);
            }
            Some(other) => {
                return Err(Error::Malformed(format!(
                    "an account's status can only be set to \"deactivated\", not \"{other}\""
                )))
            }
        }
        if let Some(contact) = &update.contact {
            let contact = contact::validate_contacts(contact)?;
            store.update_account_contact(account.id, &contact).await?;
        }
        if update.terms_of_service_agreed == Some(true) && !account.tos_agreed {
            store.set_account_tos_agreed(account.id).await?;
        }
        Ok(store.account(account.id).await?)
    }

    // ------------------------------------------------------------------ orders

    /// Checks and normalizes an order's identifiers; refusals carry subproblems.
    fn check_identifiers(
        &self,
        identifiers: &[Identifier],
        applicant: &Applicant,
    ) -> Result<Vec<NormalizedIdentifier>, Error> {
        if identifiers.is_empty() {
            return Err(Error::Malformed(
                "an order needs at least one identifier".into(),
            ));
        }
        let max = self.policy().max_names;
        if identifiers.len() > max {
            return Err(Error::RejectedOrder(format!(
                "an order may hold at most {max} identifiers, this one has {}",
                identifiers.len()
            )));
        }
        let mut out = Vec::new();
        let mut refusals = Vec::new();
        let mut seen = BTreeSet::new();
        for id in identifiers {
            let refuse = |kind, detail| IdentifierRefusal {
                identifier: id.clone(),
                kind,
                detail,
            };
            match normalize(id) {
                Err(IdentifierError::BadDnsName(_, why)) => refusals.push(refuse(
                    RefusalKind::Rejected,
                    format!("{:?} is not a valid DNS name: {why}", id.value),
                )),
                Err(e @ IdentifierError::BadIp(_)) => {
                    refusals.push(refuse(RefusalKind::Malformed, e.to_string()))
                }
                Ok(n) => match self.ip_refusal(&n, applicant) {
                    Some(why) => refusals.push(refuse(RefusalKind::Rejected, why)),
                    None => {
                        if seen.insert(n.identifier.clone()) {
                            out.push(n);
                        }
                    }
                },
            }
        }
        let detail = match refusals.as_slice() {
            [] => return Ok(out),
            [one] => format!("{}: {}", one.identifier.value, one.detail),
            many => format!("{} identifiers were refused; see subproblems", many.len()),
        };
        Err(Error::RejectedIdentifiers { detail, refusals })
    }

    /// newOrder (§7.4).
    pub async fn new_order(
        &self,
        account: &AccountRecord,
        request: &NewOrder,
    ) -> Result<OrderView, Error> {
        if request.not_before.is_some() || request.not_after.is_some() {
            return Err(Error::Malformed(
                "this CA sets validity itself; remove notBefore and notAfter from the order".into(),
            ));
        }
        let policy = &self.inner.policy;
        let profile = match &request.profile {
            None => policy.default_profile.clone(),
            Some(name) if policy.profiles.contains_key(name) => name.clone(),
            Some(name) => {
                return Err(Error::InvalidProfile(format!(
                    "profile {name:?} is not offered by this CA; it offers {:?}",
                    policy.profiles.keys().collect::<Vec<_>>()
                )))
            }
        };
        let applicant = Applicant {
            account_id: account.id.0,
            eab_label: account.eab_label.clone(),
            profile: Some(profile.clone()),
        };
        let identifiers = self.check_identifiers(&request.identifiers, &applicant)?;
        self.check_naming_policy(account, &identifiers)?;
        let replaces = match &request.replaces {
            None => None,
            Some(cert_id) => {
                let ids: Vec<Identifier> =
                    identifiers.iter().map(|n| n.identifier.clone()).collect();
                Some((
                    cert_id.clone(),
                    self.check_replaces(account, cert_id, &ids).await?,
                ))
            }
        };
        let ordered: Vec<Identifier> = identifiers.iter().map(|n| n.identifier.clone()).collect();
        self.check_new_order_rates(account, &ordered, replaces.is_some())
            .await?;
        let now = self.now();
        let mut expires = now + policy.order_lifetime_secs;
        let mut authorizations = Vec::with_capacity(identifiers.len());
        // The authorizations' states as the new order's view needs them: known here, so
        // the view costs no read.
        let mut states = Vec::with_capacity(identifiers.len());
        for n in &identifiers {
            let authz_id = n.authorization_identifier();
            let reuse = self
                .inner
                .store
                .find_reusable_authorization(account.id, &authz_id, n.wildcard, now + 3600)
                .await?;
            match reuse {
                Some(id) => {
                    let authz = self.inner.store.authorization(id).await?;
                    expires = expires.min(authz.expires);
                    states.push((authz.status, authz.expires));
                    authorizations.push(NewAuthorization::Reuse(id));
                }
                None => {
                    let authz_expires = now + policy.pending_authz_lifetime_secs;
                    expires = expires.min(authz_expires);
                    states.push((AuthorizationStatus::Pending, authz_expires));
                    authorizations.push(NewAuthorization::Create {
                        identifier: authz_id,
                        wildcard: n.wildcard,
                        expires: authz_expires,
                        challenges: validation::offered_challenges(n)
                            .into_iter()
                            .map(|kind| (kind, new_token()))
                            .collect(),
                    });
                }
            }
        }
        let created = self
            .inner
            .store
            .create_order(&NewOrderRecord {
                account_id: account.id,
                identifiers: ordered,
                expires,
                not_before: None,
                not_after: None,
                authorizations,
                now,
                profile: Some(profile),
                replaces: replaces.clone(),
            })
            .await;
        let record = match created {
            Ok(r) => r,
            Err(StoreError::AlreadyReplaced) => {
                return Err(lifecycle::already_replaced(
                    request.replaces.as_deref().unwrap_or_default(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(account = %account.id, order = %record.id, identifiers = ?record.identifiers, "order created");
        self.note_new_order(account.id).await;
        Ok(self.order_view(record, &states))
    }

    /// Derives an order's current status.
    pub async fn view_order(&self, record: OrderRecord) -> Result<OrderView, Error> {
        // Only a live `pending` order's status depends on its authorizations
        // (`status::order_status`): no read for the others (processing, valid, …).
        let states = if record.status == OrderStatus::Pending && self.now() < record.expires {
            self.inner
                .store
                .order_authorization_states(record.id)
                .await?
        } else {
            Vec::new()
        };
        Ok(self.order_view(record, &states))
    }

    /// An order's view, given its authorizations' states (status, expiry).
    fn order_view(&self, record: OrderRecord, states: &[(AuthorizationStatus, i64)]) -> OrderView {
        let status = status::order_status(record.status, record.expires, states, self.now());
        OrderView { record, status }
    }

    /// An order of `account`.
    pub async fn order(&self, account: &AccountRecord, id: OrderId) -> Result<OrderView, Error> {
        self.order_known(account, id, None).await
    }

    /// An order of `account`, read unless `known` holds its read already (the request's
    /// prefetch: `Some(None)` when there is no such order).
    pub async fn order_known(
        &self,
        account: &AccountRecord,
        id: OrderId,
        known: Option<Option<OrderRecord>>,
    ) -> Result<OrderView, Error> {
        let read = self.inner.store.order(id);
        let mine = |r: &OrderRecord| r.id == id && r.account_id == account.id;
        let Some(record) = owned(known, read, mine).await? else {
            return Err(not_found("order"));
        };
        self.view_order(record).await
    }

    /// An authorization of `account`.
    pub async fn authorization(
        &self,
        account: &AccountRecord,
        id: AuthzId,
    ) -> Result<AuthzView, Error> {
        self.authorization_known(account, id, None).await
    }

    /// An authorization of `account`, read unless `known` holds its read already (as
    /// [`Ra::order_known`]).
    pub async fn authorization_known(
        &self,
        account: &AccountRecord,
        id: AuthzId,
        known: Option<Option<AuthzRecord>>,
    ) -> Result<AuthzView, Error> {
        let read = self.inner.store.authorization(id);
        let mine = |r: &AuthzRecord| r.id == id && r.account_id == account.id;
        let Some(record) = owned(known, read, mine).await? else {
            return Err(not_found("authorization"));
        };
        let status = status::authorization_status(record.status, record.expires, self.now());
        Ok(AuthzView { record, status })
    }

    /// Client-side authorization deactivation (§7.5.2).
    pub async fn deactivate_authorization(
        &self,
        account: &AccountRecord,
        id: AuthzId,
    ) -> Result<AuthzView, Error> {
        let view = self.authorization(account, id).await?;
        if !matches!(
            view.status,
            AuthorizationStatus::Pending | AuthorizationStatus::Valid
        ) {
            return Err(Error::Malformed(format!(
                "only a pending or valid authorization can be deactivated; this one is {}",
                view.status
            )));
        }
        if !self.inner.store.deactivate_authorization(id).await? {
            return Err(Error::Malformed(
                "the authorization changed status meanwhile; fetch it again".into(),
            ));
        }
        self.authorization(account, id).await
    }

    /// Responding to a challenge (§7.5.1): starts validation in the background and returns
    /// at once. Responding again to a challenge already under way returns it unchanged.
    pub async fn respond_to_challenge(
        &self,
        account: &AccountRecord,
        authz_id: AuthzId,
        challenge_id: ChallengeId,
    ) -> Result<(AuthzView, ChallengeRecord), Error> {
        self.respond_to_challenge_known(account, authz_id, challenge_id, None)
            .await
    }

    /// [`Ra::respond_to_challenge`] with the authorization's read already done when
    /// `known` holds it (as [`Ra::order_known`]).
    pub async fn respond_to_challenge_known(
        &self,
        account: &AccountRecord,
        authz_id: AuthzId,
        challenge_id: ChallengeId,
        known: Option<Option<AuthzRecord>>,
    ) -> Result<(AuthzView, ChallengeRecord), Error> {
        let authz = self.authorization_known(account, authz_id, known).await?;
        let Some(challenge) = authz
            .record
            .challenges
            .iter()
            .find(|c| c.id == challenge_id)
            .cloned()
        else {
            return Err(not_found("challenge"));
        };
        if challenge.status != ChallengeStatus::Pending {
            // Nothing changes: the challenge as just read.
            return Ok((authz, challenge));
        }
        if authz.status != AuthorizationStatus::Pending {
            return Err(Error::Malformed(format!(
                "the authorization is {}; its challenges can no longer be attempted",
                authz.status
            )));
        }
        if !self
            .inner
            .store
            .start_validation(challenge.id, self.now() + self.inner.policy.lease_secs)
            .await?
        {
            // Another request started it meanwhile: show it as it is now.
            let challenge = self.inner.store.challenge(challenge_id).await?;
            return Ok((authz, challenge));
        }
        self.spawn_validation(&authz.record, challenge.clone(), account);
        // Started here: `processing` (the answer does not wait for the outcome).
        let processing = ChallengeRecord {
            status: ChallengeStatus::Processing,
            ..challenge
        };
        Ok((authz, processing))
    }

    fn spawn_validation(
        &self,
        authz: &AuthzRecord,
        challenge: ChallengeRecord,
        account: &AccountRecord,
    ) {
        let ra = self.clone();
        let (identifier, wildcard, authz_id) = (authz.identifier.clone(), authz.wildcard, authz.id);
        let (account_id, account_key) = (account.id, account.jwk.clone());
        let mut applicant = Applicant {
            account_id: account.id.0,
            eab_label: account.eab_label.clone(),
            profile: None,
        };
        tokio::spawn(async move {
            let key_auth = key_authorization(&challenge.token, &account_key);
            let started = std::time::Instant::now();
            let mut unroutable = None;
            if ra.inner.va.routes_by_profile() {
                match ra.inner.store.authorization_profile(authz_id).await {
                    Ok(profile) => applicant.profile = profile,
                    // Routing must not guess (a guess could skip a corroboration route):
                    // the validation fails, and the client may try again.
                    Err(e) => {
                        tracing::error!(authz = %authz_id, error = %e, "could not read the order profile for validation routing");
                        unroutable = Some(crate::va::Outcome::plain(
                            Some(Problem::server_internal(
                                "the validation could not be routed (the order's profile could not be read); try again",
                            )),
                            serde_json::json!({}),
                        ));
                    }
                }
            }
            let outcome = match unroutable {
                Some(outcome) => outcome,
                None => {
                    ra.inner
                        .va
                        .validate_for_issuance(
                            &challenge.kind,
                            &identifier,
                            wildcard,
                            &challenge.token,
                            &key_auth,
                            &applicant,
                        )
                        .await
                }
            };
            match &outcome.error {
                None => {
                    tracing::info!(challenge = %challenge.id, %identifier, kind = %challenge.kind, "validation succeeded")
                }
                Some(p) => {
                    tracing::info!(challenge = %challenge.id, %identifier, kind = %challenge.kind, problem = %p, "validation failed");
                    // What the VA read (a body, error text) can be an internal service's:
                    // debug level only; the audit entry keeps it whatever the log level.
                    tracing::debug!(challenge = %challenge.id, diagnostic = %outcome.diagnostic, "validation failed: what the VA saw")
                }
            }
            crate::metrics::validation(
                challenge.kind.as_str(),
                outcome.error.is_none(),
                started.elapsed(),
            );
            let now = ra.now();
            if let Err(e) = ra
                .inner
                .store
                .finish_validation(
                    challenge.id,
                    outcome.error.as_ref(),
                    &outcome.record,
                    &outcome.diagnostic,
                    now,
                )
                .await
            {
                // Left `processing`: the next start resumes it.
                tracing::error!(challenge = %challenge.id, error = %e, "could not record validation outcome");
            } else if outcome.error.is_some() {
                ra.note_failed_validation(account_id, &identifier).await;
            }
        });
    }

    // ------------------------------------------------------------------ finalize

    /// Finalize (§7.4): checks the CSR against the order, then issues.
    pub async fn finalize(
        &self,
        account: &AccountRecord,
        id: OrderId,
        csr_b64: &str,
    ) -> Result<OrderView, Error> {
        self.finalize_known(account, id, csr_b64, None).await
    }

    /// [`Ra::finalize`] with the order's read already done when `known` holds it (as
    /// [`Ra::order_known`]).
    pub async fn finalize_known(
        &self,
        account: &AccountRecord,
        id: OrderId,
        csr_b64: &str,
        known: Option<Option<OrderRecord>>,
    ) -> Result<OrderView, Error> {
        let view = self.order_known(account, id, known).await?;
        if view.status != OrderStatus::Ready {
            return Err(Error::OrderNotReady(format!(
                "the order is {}, not ready; {}",
                view.status,
                match view.status {
                    OrderStatus::Pending => "complete its authorizations first",
                    OrderStatus::Processing | OrderStatus::Valid => "it was already finalized",
                    _ => "create a new order",
                }
            )));
        }
        let der = b64::decode(csr_b64)
            .map_err(|_| Error::Malformed("\"csr\" is not base64url".into()))?;
        let csr = parse_csr(&der, &self.policy().key_policy).map_err(|e| Error::BadCsr(e.0))?;
        let ordered: BTreeSet<Identifier> = view.record.identifiers.iter().cloned().collect();
        if csr.identifiers != ordered {
            let extra: Vec<String> = csr
                .identifiers
                .difference(&ordered)
                .map(|i| i.value.clone())
                .collect();
            let missing: Vec<String> = ordered
                .difference(&csr.identifiers)
                .map(|i| i.value.clone())
                .collect();
            return Err(Error::BadCsr(format!(
                "the CSR's names must be exactly the order's identifiers; not in the order: {extra:?}; missing from the CSR: {missing:?}"
            )));
        }
        if csr.key.thumbprint() == account.jwk.thumbprint() {
            return Err(Error::BadCsr(
                "the CSR's public key must not be the account key".into(),
            ));
        }
        self.recheck_caa(account, &view.record).await?;
        if let Some(entry) = self.backend_for(account, &view.record) {
            self.forward(&view.record, &der, &entry).await?;
            return self.order(account, id).await;
        }
        if !self
            .inner
            .store
            .begin_finalize(id, &der, self.now() + self.inner.policy.lease_secs)
            .await?
        {
            return Err(Error::OrderNotReady(
                "the order is already being finalized".into(),
            ));
        }
        // The CSR was parsed and checked above and the order read: no need to again.
        match self.issue(&view.record, &csr).await {
            // Valid with its certificate, as `complete_order` left it: no read.
            Some(serial) => Ok(self.order_view(
                OrderRecord {
                    status: OrderStatus::Valid,
                    certificate_serial: Some(serial),
                    csr: None,
                    ..view.record
                },
                &[],
            )),
            // Failed, or left processing until the issuer's key is back: as it is now.
            None => self.order(account, id).await,
        }
    }

    /// Issues for an order left in `processing` (resumed after a restart): reads it and
    /// parses its stored CSR, then issues.
    async fn issue_for_order(&self, id: OrderId) {
        match self.inner.store.backend_job(id).await {
            // A backend may take minutes (and retries longer): not on the sweeper's time.
            Ok(Some(_)) => {
                let ra = self.clone();
                tokio::spawn(async move { ra.run_backend_job(id).await });
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(order = %id, error = %e, "reading the order's backend job failed; the sweeper resumes it");
                return;
            }
        }
        let order = match self.inner.store.order(id).await {
            Ok(o) => o,
            Err(e) => return self.fail_issuance(id, e.to_string()).await,
        };
        let Some(der) = order.csr.as_deref() else {
            return self
                .fail_issuance(id, "the order lost its CSR".into())
                .await;
        };
        match parse_csr(der, &self.policy().key_policy) {
            Ok(csr) => {
                self.issue(&order, &csr).await;
            }
            Err(why) => self.fail_issuance(id, why.0).await,
        }
    }

    /// Marks an order whose issuance failed invalid. `detail` (a store, signing or CSR
    /// error in its own words) goes to the log; the order's `error`, which the client
    /// reads, is a fixed sentence.
    async fn fail_issuance(&self, id: OrderId, detail: String) {
        tracing::error!(order = %id, %detail, "issuance failed");
        crate::metrics::issuance_failure();
        match self
            .inner
            .store
            .fail_order(id, &Problem::server_internal(ISSUANCE_FAILED))
            .await
        {
            Ok(true) => {}
            // Another run (after this one's lease ran out) finished it: its outcome stands.
            Ok(false) => {
                tracing::warn!(order = %id, "the order is no longer being issued here; its state is left as it is")
            }
            Err(e) => {
                tracing::error!(order = %id, error = %e, "could not record the failed issuance; the order is resumed later")
            }
        }
    }

    /// Signs and stores the certificate for `order` (in `processing`) from its checked
    /// `csr`, and returns its serial; or marks the order invalid, or leaves it
    /// `processing` while the issuer's key is unavailable (`None` for both).
    async fn issue(&self, order: &OrderRecord, csr: &CheckedCsr) -> Option<String> {
        let (store, id) = (&self.inner.store, order.id);
        let fail = |detail: String| self.fail_issuance(id, detail);
        let profile_name = order
            .profile
            .as_deref()
            .unwrap_or(&self.inner.policy.default_profile);
        let Some(profile) = self.inner.policy.profiles.get(profile_name) else {
            fail(format!(
                "the order's profile {profile_name:?} is no longer configured"
            ))
            .await;
            return None;
        };
        let profile = &self.policy().cap_lifetime(profile);
        let mut key_retries = 0;
        let mut serial_draws = 0;
        while serial_draws < 3 {
            let now = self.now();
            let issued = match self.inner.ca.issue(csr, &order.identifiers, profile, now) {
                Ok(i) => i,
                // The issuer's key did not sign (a token away or refusing): nothing was
                // issued. Try again shortly; then leave the order `processing` under its
                // lease, and the sweeper resumes it once the lease runs out.
                Err(IssueError::KeyUnavailable) if key_retries < KEY_RETRIES => {
                    key_retries += 1;
                    tracing::warn!(order = %id, attempt = key_retries, "the issuer's key did not sign; retrying");
                    tokio::time::sleep(KEY_RETRY_DELAY * key_retries).await;
                    continue;
                }
                Err(IssueError::KeyUnavailable) if now < order.expires => {
                    tracing::error!(order = %id, "the issuer's key is unavailable; the issuance is resumed when the order's lease runs out");
                    return None;
                }
                Err(e) => {
                    fail(e.to_string()).await;
                    return None;
                }
            };
            serial_draws += 1;
            let record = NewCertificate {
                serial: issued.serial_hex.clone(),
                account_id: order.account_id,
                der: issued.der,
                chain_pem: issued.chain_pem,
                names: order.identifiers.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                created_at: now,
                profile: order.profile.clone(),
                key_type: csr.key.describe(),
                issuer: issued.issuer,
            };
            match store.complete_order(id, &record).await {
                Ok(()) => {
                    tracing::info!(order = %id, serial = %record.serial, "certificate issued");
                    crate::metrics::issuance(profile_name);
                    self.note_issuance(&order.identifiers).await;
                    return Some(record.serial);
                }
                Err(StoreError::Conflict) => continue, // serial collision: draw another
                Err(e) => {
                    fail(e.to_string()).await;
                    return None;
                }
            }
        }
        fail("could not draw a unique serial number".into()).await;
        None
    }

    /// A certificate of `account`, by serial, read unless `known` holds its read already
    /// (as [`Ra::order_known`]).
    pub async fn certificate(
        &self,
        account: &AccountRecord,
        serial: &str,
        known: Option<Option<CertificateRecord>>,
    ) -> Result<CertificateRecord, Error> {
        let read = self.inner.store.certificate(serial);
        let mine = |c: &CertificateRecord| c.serial == serial && c.account_id == account.id;
        owned(known, read, mine)
            .await?
            .ok_or_else(|| not_found("certificate"))
    }

    /// The alternate chains of a certificate (RFC 8555 §7.4.2): the leaf followed by each
    /// chain through a cross-signed certificate of its issuer.
    pub fn alternate_chains(&self, cert: &CertificateRecord) -> Vec<String> {
        let Some(issuer) = self.inner.ca.issuer_named(&cert.issuer) else {
            return Vec::new();
        };
        let leaf_end = cert
            .chain_pem
            .find("-----END CERTIFICATE-----")
            .map(|i| i + "-----END CERTIFICATE-----".len());
        let Some(end) = leaf_end else {
            return Vec::new();
        };
        issuer
            .alternate_chains()
            .iter()
            .map(|alt| format!("{}\n{alt}", &cert.chain_pem[..end]))
            .collect()
    }

    /// Resumes work left in flight whose lease ran out — by a previous run of this
    /// instance, or by another instance that died. `everything` takes all of it regardless
    /// of leases (a single-instance store at startup). Nothing stays `processing`.
    pub async fn recover(&self, everything: bool) -> Result<(usize, usize), StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        let lease_until = now + self.inner.policy.lease_secs;
        let horizon = if everything { i64::MAX } else { now };
        let challenges = store.claim_stale_validations(horizon, lease_until).await?;
        for id in &challenges {
            let challenge = store.challenge(*id).await?;
            let authz = store.authorization(challenge.authorization_id).await?;
            let account = store.account(authz.account_id).await?;
            tracing::info!(challenge = %id, "resuming a validation left in flight");
            self.spawn_validation(&authz, challenge, &account);
        }
        let orders = store.claim_stale_issuances(horizon, lease_until).await?;
        for id in &orders {
            tracing::info!(order = %id, "resuming an issuance left in flight");
            self.issue_for_order(*id).await;
        }
        Ok((challenges.len(), orders.len()))
    }

    /// Looks up an account by id (for `kid` authentication).
    pub async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>, Error> {
        match self.inner.store.account(id).await {
            Ok(a) => Ok(Some(a)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The record `known` holds (the request's prefetched read) or else `read` finds, if
/// `mine` accepts it (the id asked for, the signer's): `None` when there is none or it is
/// someone else's, which callers answer alike.
async fn owned<T>(
    known: Option<Option<T>>,
    read: impl std::future::Future<Output = Result<T, StoreError>>,
    mine: impl Fn(&T) -> bool,
) -> Result<Option<T>, Error> {
    let found = match known {
        Some(found) => found,
        None => match read.await {
            Ok(found) => Some(found),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    Ok(found.filter(mine))
}

fn not_found(what: &str) -> Error {
    Error::NotFound(format!("no such {what} for this account"))
}

#[cfg(test)]
mod tests;
