//! Orders a backend CA signs (`crate::backend`, `docs/upstream.md`): finalize forwards
//! the checked CSR as a durable job and answers `processing`; the job runs in the
//! background under the order's lease, retrying transient failures with backoff until
//! its deadline; what the backend returns is converted and checked against the order
//! before it is stored. A run that dies leaves the job to the sweeper, which resumes it
//! — re-sending an interrupted request only to a backend that is `resumable`.

use std::time::{Duration, Instant};

use certwright_proto::keyauth::new_token;
use certwright_proto::Problem;

use super::{Error, Ra};
use crate::backend::{
    check, convert, BackendEntry, BackendError, BackendRequest, Checkpoint, OrderFacts, Refusal,
    RevokeRequest,
};
use crate::ca::parse_csr;
use crate::store::{
    AccountRecord, BackendJob, NewBackendJob, NewCertificate, OrderId, OrderRecord, Store,
};

/// The order's `error` when a backend refused the CSR.
const REFUSED_CSR: &str = "the backend CA refused the CSR";
/// … refused the identifiers.
const REFUSED_NAMES: &str = "the backend CA refused to issue for these identifiers";
/// … refused for another reason.
const REFUSED: &str =
    "the backend CA refused to issue this certificate; the operator's log has the cause";
/// … returned something that is not a certificate for this order.
const MISMATCH: &str =
    "the backend CA returned a certificate that does not match this order; nothing was delivered";
/// … did not deliver before the job's deadline.
const EXPIRED: &str = "the backend CA did not issue the certificate in time";
/// … an interrupted request to a backend that cannot be asked twice.
const INTERRUPTED: &str = "the request to the backend CA was interrupted and cannot be repeated safely; the operator must check the backend";
/// The client's sentence when a revocation could not be forwarded.
const REVOKE_FAILED: &str =
    "the backend CA that issued this certificate could not revoke it now; try again later";

/// Margin on an attempt's lease beyond the backend's time-out.
const LEASE_MARGIN_SECS: i64 = 30;
/// First retry delay, doubled per attempt up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a revocation or renewal-info request to a backend may take.
const SIDE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The retry delay after `attempts` failed attempts.
fn backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.clamp(1, 16) - 1).unwrap_or(0);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// The job's store, as a backend's checkpoint.
struct JobCheckpoint {
    store: Store,
    order: OrderId,
}

impl Checkpoint for JobCheckpoint {
    fn save<'a>(
        &'a self,
        state: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.store
                .save_backend_state(self.order, state)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// What follows an attempt.
enum Ended {
    /// Nothing more here: the order is valid or invalid, another run has it, or the
    /// sweeper resumes it.
    Done,
    /// A transient failure: try again after this (the store holds the lease until then).
    Retry(Duration),
}

impl Ra {
    /// The backend that signs `order` of `account`, by the routing rules; `None`: the
    /// CA's own issuers.
    pub(super) fn backend_for(
        &self,
        account: &AccountRecord,
        order: &OrderRecord,
    ) -> Option<BackendEntry> {
        let facts = OrderFacts {
            identifiers: &order.identifiers,
            profile: order.profile.as_deref(),
            eab_label: account.eab_label.as_deref(),
        };
        self.inner.backends.route(&facts).cloned()
    }

    /// Forwards `order` (ready, its CSR `der` checked) to `entry`: the order becomes
    /// `processing` with its job in one transaction, and the job starts in the
    /// background.
    pub(super) async fn forward(
        &self,
        order: &OrderRecord,
        der: &[u8],
        entry: &BackendEntry,
    ) -> Result<(), Error> {
        let now = self.now();
        let job = NewBackendJob {
            backend: entry.name.clone(),
            request_id: format!("cw-{}", new_token()),
            deadline: now + secs(entry.settings.deadline),
            created_at: now,
        };
        let lease = now + secs(entry.settings.timeout) + LEASE_MARGIN_SECS;
        if !self
            .inner
            .store
            .begin_forward(order.id, der, lease, &job)
            .await?
        {
            return Err(Error::OrderNotReady(
                "the order is already being finalized".into(),
            ));
        }
        tracing::info!(order = %order.id, backend = %entry.name, request_id = %job.request_id, "order forwarded to a backend CA");
        let ra = self.clone();
        let id = order.id;
        tokio::spawn(async move { ra.run_backend_job(id).await });
        Ok(())
    }

    /// Runs the job of forwarded order `id` until the order is valid or invalid, or the
    /// job is left for the sweeper (the store failing, its backend no longer configured).
    pub(super) async fn run_backend_job(&self, id: OrderId) {
        let store = &self.inner.store;
        loop {
            let job = match store.backend_job(id).await {
                Ok(Some(job)) => job,
                Ok(None) => return, // done by another run
                Err(e) => {
                    tracing::error!(order = %id, error = %e, "reading a backend job failed; the sweeper resumes it");
                    return;
                }
            };
            let Some(entry) = self.inner.backends.get(&job.backend).cloned() else {
                if self.now() >= job.deadline {
                    self.fail_job(
                        &job,
                        EXPIRED,
                        "order.fail",
                        "the backend is no longer configured",
                    )
                    .await;
                } else {
                    tracing::error!(order = %id, backend = %job.backend, "the order's backend is not configured; the job waits until its deadline");
                }
                return;
            };
            match self.attempt(&job, &entry).await {
                Ended::Done => return,
                Ended::Retry(delay) => tokio::time::sleep(delay).await,
            }
        }
    }

    /// One attempt at the backend for `job`; its outcome is counted once in the metrics.
    async fn attempt(&self, job: &BackendJob, entry: &BackendEntry) -> Ended {
        let (store, id) = (&self.inner.store, job.order_id);
        let now = self.now();
        if now >= job.deadline {
            self.fail_job(
                job,
                EXPIRED,
                "order.fail",
                job.last_error.as_deref().unwrap_or("the deadline passed"),
            )
            .await;
            crate::metrics::backend_attempt(&entry.name, "expired", Duration::ZERO);
            return Ended::Done;
        }
        if job.in_flight && !entry.backend.resumable() {
            self.fail_job(
                job,
                INTERRUPTED,
                "backend.interrupted",
                "an attempt was interrupted",
            )
            .await;
            crate::metrics::backend_attempt(&entry.name, "refused", Duration::ZERO);
            return Ended::Done;
        }
        let lease = now + secs(entry.settings.timeout) + LEASE_MARGIN_SECS;
        match store.start_backend_attempt(id, lease).await {
            Ok(true) => {}
            Ok(false) => return Ended::Done, // another run finished the order
            Err(e) => {
                tracing::error!(order = %id, error = %e, "recording a backend attempt failed; the sweeper resumes it");
                return Ended::Done;
            }
        }
        let Some(request) = self.backend_request(job).await else {
            return Ended::Done;
        };
        let checkpoint = JobCheckpoint {
            store: store.clone(),
            order: id,
        };
        let started = Instant::now();
        // The backend bounds its own attempt; this bounds a backend that does not.
        let limit = entry.settings.timeout + Duration::from_secs(10);
        let outcome =
            match tokio::time::timeout(limit, entry.backend.issue(&request, &checkpoint)).await {
                Ok(outcome) => outcome,
                Err(_) if entry.backend.resumable() => Err(BackendError::Transient(format!(
                    "no answer within {}s",
                    limit.as_secs()
                ))),
                Err(_) => Err(BackendError::Refused {
                    refusal: Refusal::Other,
                    cause: format!(
                        "no answer within {}s and the backend is not resumable",
                        limit.as_secs()
                    ),
                }),
            };
        let elapsed = started.elapsed();
        match outcome {
            Ok(bytes) => {
                let outcome = self.deliver(job, entry, &request, &bytes).await;
                crate::metrics::backend_attempt(&entry.name, outcome, elapsed);
                Ended::Done
            }
            Err(BackendError::Transient(cause)) => {
                // `job.attempts` was read before this attempt started.
                let delay = backoff(job.attempts + 1);
                let retry_at = self.now() + secs(delay);
                tracing::warn!(order = %id, backend = %entry.name, attempt = job.attempts + 1, %cause, "the backend CA failed for now; retrying");
                if retry_at >= job.deadline {
                    crate::metrics::backend_attempt(&entry.name, "expired", elapsed);
                    self.fail_job(job, EXPIRED, "order.fail", &cause).await;
                    return Ended::Done;
                }
                crate::metrics::backend_attempt(&entry.name, "transient", elapsed);
                let lease = retry_at + secs(entry.settings.timeout) + LEASE_MARGIN_SECS;
                if let Err(e) = store.backend_attempt_failed(id, &cause, lease).await {
                    tracing::error!(order = %id, error = %e, "recording a failed backend attempt failed; the sweeper resumes it");
                    return Ended::Done;
                }
                Ended::Retry(delay)
            }
            Err(BackendError::Refused { refusal, cause }) => {
                crate::metrics::backend_attempt(&entry.name, "refused", elapsed);
                let public = match refusal {
                    Refusal::BadCsr => Problem::bad_csr(REFUSED_CSR),
                    Refusal::RejectedIdentifier => Problem::rejected_identifier(REFUSED_NAMES),
                    Refusal::Other => Problem::server_internal(REFUSED),
                };
                tracing::error!(order = %id, backend = %entry.name, %cause, "the backend CA refused the order");
                self.fail_with(job, &public, "order.fail", &cause).await;
                Ended::Done
            }
        }
    }

    /// The request for `job`'s order; `None` (the order failed) if it cannot be made.
    async fn backend_request(&self, job: &BackendJob) -> Option<BackendRequest> {
        let store = &self.inner.store;
        let order = match store.order(job.order_id).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(order = %job.order_id, error = %e, "reading a forwarded order failed");
                return None;
            }
        };
        let Some(csr_der) = order.csr.clone() else {
            self.fail_job(job, REFUSED, "order.fail", "the order lost its CSR")
                .await;
            return None;
        };
        let eab_label = match store.account(order.account_id).await {
            Ok(a) => a.eab_label,
            Err(e) => {
                tracing::error!(order = %job.order_id, error = %e, "reading the order's account failed");
                return None;
            }
        };
        let profile_name = order
            .profile
            .clone()
            .unwrap_or_else(|| self.inner.policy.default_profile.clone());
        let lifetime_secs = self
            .inner
            .policy
            .profiles
            .get(&profile_name)
            .map(|p| self.policy().cap_lifetime(p).lifetime_secs)
            .unwrap_or(90 * 86400);
        Some(BackendRequest {
            request_id: job.request_id.clone(),
            csr_der,
            identifiers: order.identifiers.clone(),
            profile: order.profile.clone(),
            eab_label,
            account_id: order.account_id.0,
            lifetime_secs,
            state: job.state.clone(),
        })
    }

    /// Converts and checks what the backend returned, then stores it and completes the
    /// order; a mismatch fails the order and is audited. Returns the attempt's outcome
    /// for the metrics (`delivered` or `mismatch`).
    async fn deliver(
        &self,
        job: &BackendJob,
        entry: &BackendEntry,
        request: &BackendRequest,
        bytes: &[u8],
    ) -> &'static str {
        let id = job.order_id;
        let now = self.now();
        let checked = convert::certificates(bytes).and_then(|chain| {
            check::check(
                &chain,
                &request.csr_der,
                &request.identifiers,
                now,
                &entry.settings.trust_anchors,
            )
            .map_err(|m| m.0)
        });
        let delivered = match checked {
            Ok(d) => d,
            Err(why) => {
                tracing::error!(order = %id, backend = %entry.name, %why, "the backend CA's certificate does not match the order; nothing is delivered");
                self.fail_job(job, MISMATCH, "backend.mismatch", &why).await;
                return "mismatch";
            }
        };
        let key_type = parse_csr(&request.csr_der, &self.policy().key_policy)
            .map(|c| c.key.describe())
            .unwrap_or_else(|_| "unknown".into());
        let record = NewCertificate {
            serial: delivered.serial_hex,
            account_id: crate::store::AccountId(request.account_id),
            der: delivered.der,
            chain_pem: delivered.chain_pem,
            names: request.identifiers.clone(),
            not_before: delivered.not_before,
            not_after: delivered.not_after,
            created_at: now,
            profile: request.profile.clone(),
            key_type,
            issuer: entry.name.clone(),
        };
        match self.inner.store.complete_forwarded_order(id, &record).await {
            Ok(()) => {
                tracing::info!(order = %id, backend = %entry.name, serial = %record.serial, "certificate issued by a backend CA");
                crate::metrics::issuance(
                    record
                        .profile
                        .as_deref()
                        .unwrap_or(&self.inner.policy.default_profile),
                );
                self.note_issuance(&record.names).await;
                "delivered"
            }
            Err(crate::store::StoreError::Conflict) => {
                let why = format!(
                    "serial {} is already the serial of a certificate in this CA's store",
                    record.serial
                );
                self.fail_job(job, MISMATCH, "backend.mismatch", &why).await;
                "mismatch"
            }
            Err(e) => {
                tracing::error!(order = %id, error = %e, "storing a backend's certificate failed; the sweeper resumes the job");
                "delivered"
            }
        }
    }

    /// Fails `job`'s order with the fixed sentence `public` (a `serverInternal`
    /// problem), auditing `action` with `why`.
    async fn fail_job(&self, job: &BackendJob, public: &str, action: &'static str, why: &str) {
        self.fail_with(job, &Problem::server_internal(public), action, why)
            .await;
    }

    async fn fail_with(
        &self,
        job: &BackendJob,
        problem: &Problem,
        action: &'static str,
        why: &str,
    ) {
        crate::metrics::issuance_failure();
        let details = serde_json::json!({
            "backend": job.backend,
            "request_id": job.request_id,
            "attempts": job.attempts,
            "cause": why,
        });
        match self
            .inner
            .store
            .fail_forwarded_order(job.order_id, problem, action, details)
            .await
        {
            Ok(true) => {
                tracing::warn!(order = %job.order_id, backend = %job.backend, %why, "forwarded order failed")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(order = %job.order_id, error = %e, "recording a failed forwarded order failed; the sweeper resumes it")
            }
        }
    }

    /// Forwards the revocation of a certificate a backend issued (`issuer` names it);
    /// certificates of the CA's own issuers pass. Nothing is recorded here when the
    /// backend fails.
    pub(super) async fn forward_revocation(
        &self,
        cert: &crate::store::CertificateRecord,
        reason: u8,
    ) -> Result<(), Error> {
        let Some(entry) = self.inner.backends.get(&cert.issuer) else {
            return Ok(());
        };
        let request = RevokeRequest {
            der: cert.der.clone(),
            serial_hex: cert.serial.clone(),
            reason,
        };
        let outcome =
            tokio::time::timeout(SIDE_REQUEST_TIMEOUT, entry.backend.revoke(&request)).await;
        let cause = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}s", SIDE_REQUEST_TIMEOUT.as_secs()),
        };
        Err(Error::Internal {
            public: REVOKE_FAILED,
            cause: format!(
                "revoking serial {} at backend {}: {cause}",
                cert.serial, entry.name
            ),
        })
    }

    /// Whether `issuer` (a certificate's) is a backend rather than one of the CA's own
    /// issuers.
    pub(super) fn is_backend(&self, issuer: &str) -> bool {
        self.inner.backends.get(issuer).is_some()
    }

    /// The window the backend suggests for a certificate it issued, if any.
    pub(super) async fn backend_window(
        &self,
        cert: &crate::store::CertificateRecord,
    ) -> Option<(i64, i64)> {
        let entry = self.inner.backends.get(&cert.issuer)?;
        tokio::time::timeout(
            SIDE_REQUEST_TIMEOUT,
            entry.backend.renewal_window(&cert.der),
        )
        .await
        .ok()
        .flatten()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_up_to_five_minutes() {
        let got: Vec<u64> = (1..=10).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 2);
        assert_eq!(backoff(i64::MAX).as_secs(), 300);
    }
}

#[cfg(test)]
mod pipeline_tests {
    //! The pipeline over the RA's test fixture (a real store, a fake VA) and a fake
    //! backend that answers what each test scripts, signing with a CA of its own.

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use certwright_proto::b64;
    use certwright_proto::types::OrderStatus;
    use futures_util::future::BoxFuture;

    use super::super::tests::{csr, fixture, fixture_on, Fixture, LEASE_SECS};
    use super::*;
    use crate::backend::{Backend, BackendSettings, Backends, Router};
    use crate::config::{RouteRuleSection, RoutingSection};

    /// What the fake answers to one `issue`.
    enum Answer {
        /// A certificate for the CSR, signed by the fake's CA.
        Sign,
        /// A certificate for another key.
        OtherKey,
        Fail(BackendError),
    }

    struct Fake {
        answers: Mutex<VecDeque<Answer>>,
        resumable: bool,
        seen_states: Mutex<Vec<Option<String>>>,
        revokes: Mutex<Vec<String>>,
        revoke_fails: Mutex<bool>,
        ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl Fake {
        fn new(answers: Vec<Answer>, resumable: bool) -> Arc<Self> {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "Fake backend CA");
            Arc::new(Self {
                answers: Mutex::new(answers.into()),
                resumable,
                seen_states: Mutex::default(),
                revokes: Mutex::default(),
                revoke_fails: Mutex::new(false),
                ca: rcgen::Issuer::new(p, key),
            })
        }

        fn sign(&self, csr_der: &[u8], other_key: bool) -> Vec<u8> {
            let der = rustls::pki_types::CertificateSigningRequestDer::from(csr_der.to_vec());
            let mut request = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
            request.params.not_before =
                time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
            request.params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
            let cert = if other_key {
                let key = rcgen::KeyPair::generate().unwrap();
                request.params.signed_by(&key, &self.ca).unwrap()
            } else {
                request.signed_by(&self.ca).unwrap()
            };
            cert.pem().into_bytes()
        }
    }

    /// The fake as the backend named "fake".
    struct Handle(Arc<Fake>);

    impl Backend for Handle {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn resumable(&self) -> bool {
            self.0.resumable
        }
        fn issue<'a>(
            &'a self,
            request: &'a BackendRequest,
            checkpoint: &'a dyn Checkpoint,
        ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
            Box::pin(async move {
                self.0
                    .seen_states
                    .lock()
                    .unwrap()
                    .push(request.state.clone());
                checkpoint.save("upstream-order-1").await.unwrap();
                let answer = self
                    .0
                    .answers
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(Answer::Sign);
                match answer {
                    Answer::Sign => Ok(self.0.sign(&request.csr_der, false)),
                    Answer::OtherKey => Ok(self.0.sign(&request.csr_der, true)),
                    Answer::Fail(e) => Err(e),
                }
            })
        }
        fn revoke<'a>(
            &'a self,
            request: &'a RevokeRequest,
        ) -> BoxFuture<'a, Result<(), BackendError>> {
            Box::pin(async move {
                if *self.0.revoke_fails.lock().unwrap() {
                    return Err(BackendError::Transient("backend down".into()));
                }
                self.0
                    .revokes
                    .lock()
                    .unwrap()
                    .push(request.serial_hex.clone());
                Ok(())
            })
        }
    }

    /// The fixture routing every order to `fake` (deadline `deadline` seconds).
    async fn forwarding(fake: &Arc<Fake>, deadline: u64) -> Fixture {
        fixture().await.with_backends(backends(fake, deadline))
    }

    /// Every order but those for `local.example` goes to `fake`.
    fn backends(fake: &Arc<Fake>, deadline: u64) -> Backends {
        let entry = BackendEntry {
            name: "fake".into(),
            backend: Arc::new(Handle(fake.clone())),
            settings: BackendSettings {
                timeout: Duration::from_secs(1),
                deadline: Duration::from_secs(deadline),
                trust_anchors: Vec::new(),
            },
        };
        let router = Router::from_config(&RoutingSection {
            default: "fake".into(),
            rules: vec![RouteRuleSection {
                backend: "local".into(),
                eab_label: None,
                profile: None,
                suffix: Some("local.example".into()),
            }],
        });
        Backends::new(vec![entry], router)
    }

    /// Waits (bounded) until the order leaves `processing`.
    async fn settled(f: &Fixture, account: &AccountRecord, id: OrderId) -> crate::ra::OrderView {
        for _ in 0..400 {
            let order = f.ra.order(account, id).await.unwrap();
            if order.status != OrderStatus::Processing {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("order {id} still processing after 10 s");
    }

    async fn actions(f: &Fixture) -> Vec<String> {
        f.store
            .audit_entries(0, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    #[tokio::test]
    async fn a_forwarded_order_is_processing_then_valid_after_a_transient_failure() {
        let fake = Fake::new(
            vec![Answer::Fail(BackendError::Transient("503".into()))],
            true,
        );
        let f = forwarding(&fake, 600).await;
        let (account, order) = f.ready_order(&["up.example"]).await;
        let id = order.record.id;
        let view =
            f.ra.finalize(&account, id, &csr(&["up.example"]))
                .await
                .unwrap();
        assert_eq!(view.status, OrderStatus::Processing);
        let done = settled(&f, &account, id).await;
        assert_eq!(done.status, OrderStatus::Valid, "{:?}", done.record.error);
        let serial = done.record.certificate_serial.clone().unwrap();
        let cert = f.store.certificate(&serial).await.unwrap();
        assert_eq!(cert.issuer, "fake");
        assert!(cert.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        // Two attempts; the second saw the first's checkpoint. The job is gone.
        assert_eq!(
            *fake.seen_states.lock().unwrap(),
            vec![None, Some("upstream-order-1".to_owned())]
        );
        assert!(f.store.backend_job(id).await.unwrap().is_none());
        assert_eq!(f.certificates().await, 1);
        let actions = actions(&f).await;
        assert!(actions.contains(&"order.forward".to_owned()), "{actions:?}");
        assert!(
            actions.contains(&"certificate.issue".to_owned()),
            "{actions:?}"
        );
    }

    #[tokio::test]
    async fn an_order_the_rules_keep_local_is_signed_here() {
        let fake = Fake::new(vec![], true);
        let f = forwarding(&fake, 600).await;
        let (account, order) = f.ready_order(&["www.local.example"]).await;
        let view =
            f.ra.finalize(&account, order.record.id, &csr(&["www.local.example"]))
                .await
                .unwrap();
        assert_eq!(view.status, OrderStatus::Valid);
        let cert = f
            .store
            .certificate(view.record.certificate_serial.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(cert.issuer, "intermediate");
        assert!(fake.seen_states.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_certificate_for_another_key_fails_the_order_and_nothing_is_stored() {
        let fake = Fake::new(vec![Answer::OtherKey], true);
        let f = forwarding(&fake, 600).await;
        let (account, order) = f.ready_order(&["mismatch.example"]).await;
        let id = order.record.id;
        f.ra.finalize(&account, id, &csr(&["mismatch.example"]))
            .await
            .unwrap();
        let done = settled(&f, &account, id).await;
        assert_eq!(done.status, OrderStatus::Invalid);
        let error = done.record.error.unwrap();
        assert_eq!(error.kind, certwright_proto::ProblemType::ServerInternal);
        assert_eq!(error.detail, MISMATCH);
        assert_eq!(f.certificates().await, 0);
        assert!(f.store.backend_job(id).await.unwrap().is_none());
        assert!(actions(&f).await.contains(&"backend.mismatch".to_owned()));
    }

    #[tokio::test]
    async fn a_refusal_fails_the_order_with_its_problem_type_and_no_backend_text() {
        let fake = Fake::new(
            vec![Answer::Fail(BackendError::Refused {
                refusal: Refusal::BadCsr,
                cause: "openssl: secret internal path /etc/ca/private".into(),
            })],
            true,
        );
        let f = forwarding(&fake, 600).await;
        let (account, order) = f.ready_order(&["refused.example"]).await;
        let id = order.record.id;
        f.ra.finalize(&account, id, &csr(&["refused.example"]))
            .await
            .unwrap();
        let done = settled(&f, &account, id).await;
        assert_eq!(done.status, OrderStatus::Invalid);
        let error = done.record.error.unwrap();
        assert_eq!(error.kind, certwright_proto::ProblemType::BadCsr);
        assert_eq!(error.detail, REFUSED_CSR);
        assert_eq!(f.certificates().await, 0);
    }

    #[tokio::test]
    async fn transient_failures_past_the_deadline_fail_the_order_cleanly() {
        // The retry would come 2 s after the failure, past the 1 s deadline.
        let fake = Fake::new(
            vec![Answer::Fail(BackendError::Transient("timed out".into()))],
            true,
        );
        let f = forwarding(&fake, 1).await;
        let (account, order) = f.ready_order(&["late.example"]).await;
        let id = order.record.id;
        f.ra.finalize(&account, id, &csr(&["late.example"]))
            .await
            .unwrap();
        let done = settled(&f, &account, id).await;
        assert_eq!(done.status, OrderStatus::Invalid);
        assert_eq!(done.record.error.unwrap().detail, EXPIRED);
        assert!(f.store.backend_job(id).await.unwrap().is_none());
    }

    /// A run that died mid-attempt: the order `processing`, its job in flight, the
    /// lease run out.
    async fn interrupted(f: &Fixture, name: &str) -> (AccountRecord, OrderId) {
        let (account, order) = f.ready_order(&[name]).await;
        let id = order.record.id;
        let der = b64::decode(&csr(&[name])).unwrap();
        let now = f.clock.now();
        let job = NewBackendJob {
            backend: "fake".into(),
            request_id: "cw-test".into(),
            deadline: now + 3600,
            created_at: now,
        };
        assert!(f
            .store
            .begin_forward(id, &der, now + LEASE_SECS, &job)
            .await
            .unwrap());
        assert!(f
            .store
            .start_backend_attempt(id, now + LEASE_SECS)
            .await
            .unwrap());
        // While the lease holds nobody takes it over.
        assert_eq!(f.ra.recover(false).await.unwrap(), (0, 0));
        f.clock.advance(LEASE_SECS + 1);
        (account, id)
    }

    #[tokio::test]
    async fn an_interrupted_attempt_is_resumed_at_a_resumable_backend() {
        let fake = Fake::new(vec![], true);
        let f = forwarding(&fake, 3600).await;
        let (account, id) = interrupted(&f, "resume.example").await;
        assert_eq!(f.ra.recover(false).await.unwrap(), (0, 1));
        let done = settled(&f, &account, id).await;
        assert_eq!(done.status, OrderStatus::Valid, "{:?}", done.record.error);
        assert_eq!(f.certificates().await, 1);
        assert_eq!(fake.seen_states.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_interrupted_attempt_is_never_resent_to_a_backend_that_is_not_resumable() {
        let fake = Fake::new(vec![], false);
        let f = forwarding(&fake, 3600).await;
        let (account, id) = interrupted(&f, "once.example").await;
        assert_eq!(f.ra.recover(false).await.unwrap(), (0, 1));
        let done = settled(&f, &account, id).await;
        assert_eq!(done.status, OrderStatus::Invalid);
        assert_eq!(done.record.error.unwrap().detail, INTERRUPTED);
        assert!(
            fake.seen_states.lock().unwrap().is_empty(),
            "the request was sent again"
        );
        assert!(actions(&f)
            .await
            .contains(&"backend.interrupted".to_owned()));
    }

    #[tokio::test]
    async fn a_revocation_the_backend_cannot_take_changes_nothing_here() {
        let fake = Fake::new(vec![], true);
        let f = forwarding(&fake, 600).await;
        let (account, order) = f.ready_order(&["revoke.example"]).await;
        let id = order.record.id;
        f.ra.finalize(&account, id, &csr(&["revoke.example"]))
            .await
            .unwrap();
        let serial = settled(&f, &account, id)
            .await
            .record
            .certificate_serial
            .unwrap();
        *fake.revoke_fails.lock().unwrap() = true;
        let before = f.store.snapshot().await.unwrap();
        let err = f.ra.revoke_by_operator(&serial, 1).await.unwrap_err();
        let Error::Internal { public, .. } = &err else {
            panic!("not internal: {err:?}");
        };
        assert_eq!(*public, REVOKE_FAILED);
        assert_eq!(f.store.snapshot().await.unwrap(), before);
        assert!(f
            .store
            .certificate(&serial)
            .await
            .unwrap()
            .revoked_at
            .is_none());
        *fake.revoke_fails.lock().unwrap() = false;
        let revoked = f.ra.revoke_by_operator(&serial, 1).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(*fake.revokes.lock().unwrap(), vec![serial]);
    }

    /// On a shared PostgreSQL database, an attempt interrupted on one instance is taken
    /// over by another once its lease runs out, and completes once.
    #[tokio::test]
    async fn another_instance_takes_an_interrupted_job_over_on_postgres() {
        let url = certwright_testkit::peers::postgres::create_database().await;
        let fake = Fake::new(vec![], true);
        let f = fixture_on(&url).await.with_backends(backends(&fake, 3600));
        let (account, id) = interrupted(&f, "shared.example").await;
        let other = f.second_instance(backends(&fake, 3600)).await;
        assert_eq!(other.recover(false).await.unwrap(), (0, 1));
        let done = settled(&f, &account, id).await;
        assert_eq!(done.status, OrderStatus::Valid, "{:?}", done.record.error);
        assert_eq!(f.certificates().await, 1);
        assert_eq!(fake.seen_states.lock().unwrap().len(), 1);
        assert!(f.store.backend_job(id).await.unwrap().is_none());
        // Nothing left for the first instance to resume.
        assert_eq!(f.ra.recover(true).await.unwrap(), (0, 0));
    }
}
