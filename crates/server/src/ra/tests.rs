//! The RA alone, in the style of Boulder's `ra_test.go`: a real store (SQLite in memory),
//! a real CA (keys in a temporary directory), a fake VA whose verdict the test sets, and
//! an injected clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certwright_proto::types::{ChallengeStatus, ChallengeType, NewAccount, NewOrder};
use certwright_proto::{AccountKey, KeyType, ProblemType};
use serde_json::json;

use super::*;
use crate::ca::{CaKeyType, Hierarchy, IssuancePolicy};
use crate::secrets::Kek;
use crate::va::{BoxFuture, Outcome, VaConfig};

/// A validator that contacts nothing: every validation and CAA check answers the verdict
/// the test set (success by default), and counts itself.
#[derive(Clone)]
struct FakeVa {
    config: Arc<VaConfig>,
    verdict: Arc<Mutex<Option<Problem>>>,
    validations: Arc<Mutex<usize>>,
    /// How long each CAA check takes.
    caa_delay: Arc<Mutex<Duration>>,
    /// CAA checks running now, and the most that ever ran at once.
    caa_running: Arc<(AtomicUsize, AtomicUsize)>,
}

impl FakeVa {
    fn new() -> Self {
        Self {
            config: Arc::new(VaConfig::new("http://ca.test/acme/account/")),
            verdict: Arc::default(),
            validations: Arc::default(),
            caa_delay: Arc::default(),
            caa_running: Arc::default(),
        }
    }

    fn outcome(&self) -> Outcome {
        let error = self.verdict.lock().unwrap().clone();
        Outcome::plain(error, json!({"fake": true}))
    }
}

impl Validator for FakeVa {
    fn validate_for_issuance<'a>(
        &'a self,
        _kind: &'a ChallengeType,
        _identifier: &'a Identifier,
        _wildcard: bool,
        _token: &'a str,
        _key_authorization: &'a str,
        _applicant: &'a crate::va::Applicant,
    ) -> BoxFuture<'a, Outcome> {
        *self.validations.lock().unwrap() += 1;
        Box::pin(async move { self.outcome() })
    }

    fn check_caa<'a>(
        &'a self,
        _identifier: &'a Identifier,
        _wildcard: bool,
        _applicant: &'a crate::va::Applicant,
        _method: &'a ChallengeType,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let (running, peak) = &*self.caa_running;
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let delay = *self.caa_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            running.fetch_sub(1, Ordering::SeqCst);
            self.outcome()
        })
    }

    fn refuses(
        &self,
        ip: std::net::IpAddr,
        _applicant: &Applicant,
    ) -> Option<crate::va::denylist::DeniedAddress> {
        self.config.deny.check(ip).err()
    }

    fn config(&self) -> &VaConfig {
        &self.config
    }
}

/// The key-encryption key of EAB keys in these tests.
fn test_kek() -> Arc<Kek> {
    Arc::new(Kek::from_bytes(&[7; crate::secrets::KEK_LEN], "test").unwrap())
}

/// The RA under test and what it was built over.
pub(super) struct Fixture {
    pub(super) ra: Ra,
    pub(super) store: Store,
    va: FakeVa,
    pub(super) clock: Clock,
    ca: Arc<CertificateAuthority>,
    policy: RaPolicy,
    url: String,
    _dir: tempfile::TempDir,
}

pub(super) const LEASE_SECS: i64 = 60;
/// Finalize's CAA re-check budget in these tests.
const RECHECK_BUDGET: Duration = Duration::from_secs(2);

pub(super) async fn fixture() -> Fixture {
    fixture_on("sqlite::memory:").await
}

/// The fixture over the database at `url` (a fresh PostgreSQL database, say).
pub(super) async fn fixture_on(url: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hierarchy = Hierarchy::load_or_create(
        dir.path(),
        CaKeyType::Ec256,
        "RA test",
        &[],
        &Default::default(),
    )
    .unwrap();
    let ca = CertificateAuthority::new(
        hierarchy,
        IssuancePolicy {
            backdate_secs: 60,
            pki_base: None,
            ocsp: false,
        },
    )
    .unwrap();
    let store = Store::open(url).await.unwrap().with_eab_kek(test_kek());
    let clock = Clock::system();
    let va = FakeVa::new();
    let profile = Profile::tls_server("default", 90 * 86400);
    let policy = RaPolicy {
        order_lifetime_secs: 7 * 86400,
        pending_authz_lifetime_secs: 7 * 86400,
        valid_authz_lifetime_secs: 30 * 86400,
        live: policy::PolicyHandle::new(policy::Policy::default()),
        terms_of_service: false,
        external_account_required: false,
        profiles: BTreeMap::from([("default".to_owned(), profile)]),
        default_profile: "default".into(),
        crl_validity_secs: 86400,
        lease_secs: LEASE_SECS,
        rate_limits: Default::default(),
        recheck_budget: RECHECK_BUDGET,
    };
    let ca = Arc::new(ca);
    let ra = Ra::new(
        store.clone(),
        ca.clone(),
        va.clone(),
        clock.clone(),
        policy.clone(),
    );
    Fixture {
        ra,
        store,
        va,
        clock,
        ca,
        policy,
        url: url.to_owned(),
        _dir: dir,
    }
}

impl Fixture {
    /// Another instance over the same database (a shared PostgreSQL one), CA, clock
    /// and policy, forwarding to `backends`.
    pub(super) async fn second_instance(&self, backends: crate::backend::Backends) -> Ra {
        let store = Store::open(&self.url)
            .await
            .unwrap()
            .with_eab_kek(test_kek());
        Ra::new(
            store,
            self.ca.clone(),
            self.va.clone(),
            self.clock.clone(),
            self.policy.clone(),
        )
        .with_backends(backends)
    }

    /// The fixture with its RA forwarding to `backends`.
    pub(super) fn with_backends(mut self, backends: crate::backend::Backends) -> Self {
        self.ra = self.ra.with_backends(backends);
        self
    }

    async fn account(&self) -> AccountRecord {
        let key = AccountKey::generate(KeyType::EcP256).unwrap();
        let request = NewAccount {
            contact: None,
            terms_of_service_agreed: Some(true),
            only_return_existing: None,
            external_account_binding: None,
        };
        let (account, created) = self
            .ra
            .new_account(
                &key.jwk(),
                &request,
                "http://ca.test/acme/new-account",
                None,
            )
            .await
            .unwrap();
        assert!(created);
        account
    }

    async fn order(&self, account: &AccountRecord, names: &[&str]) -> OrderView {
        let request = NewOrder {
            identifiers: names.iter().map(|n| Identifier::dns(*n)).collect(),
            not_before: None,
            not_after: None,
            profile: None,
            replaces: None,
        };
        self.ra.new_order(account, &request).await.unwrap()
    }

    /// Answers one challenge of every pending authorization of the order and waits
    /// (bounded) until the fake VA's verdict is recorded.
    async fn authorize(&self, account: &AccountRecord, order: &OrderView) {
        for id in &order.record.authorization_ids {
            let authz = self.ra.authorization(account, *id).await.unwrap();
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let challenge = authz.record.challenges[0].id;
            self.ra
                .respond_to_challenge(account, *id, challenge)
                .await
                .unwrap();
            for _ in 0..200 {
                let c = self.store.challenge(challenge).await.unwrap();
                if c.status != ChallengeStatus::Pending && c.status != ChallengeStatus::Processing {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// A ready order of a new account for `names`.
    pub(super) async fn ready_order(&self, names: &[&str]) -> (AccountRecord, OrderView) {
        let account = self.account().await;
        let order = self.order(&account, names).await;
        self.authorize(&account, &order).await;
        let order = self.ra.order(&account, order.record.id).await.unwrap();
        assert_eq!(order.status, OrderStatus::Ready);
        (account, order)
    }

    /// The number of certificates in the store.
    pub(super) async fn certificates(&self) -> usize {
        let snapshot = self.store.snapshot().await.unwrap();
        let line = snapshot
            .iter()
            .find_map(|l| l.strip_prefix("certificates="))
            .unwrap();
        line.split(',').filter(|s| !s.is_empty()).count()
    }
}

/// A base64url CSR for `names` with a new P-256 key.
pub(super) fn csr(names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    b64::encode(params.serialize_request(&key).unwrap().der())
}

#[tokio::test]
async fn finalize_with_a_csr_for_other_names_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let (account, order) = f.ready_order(&["a.example"]).await;
    let before = f.store.snapshot().await.unwrap();
    let err =
        f.ra.finalize(&account, order.record.id, &csr(&["a.example", "b.example"]))
            .await
            .unwrap_err();
    let Error::BadCsr(detail) = &err else {
        panic!("not badCSR: {err:?}");
    };
    assert!(
        detail.ends_with("not in the order: [\"b.example\"]; missing from the CSR: []"),
        "{detail}"
    );
    let err =
        f.ra.finalize(&account, order.record.id, "not base64!")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    assert_eq!(f.store.snapshot().await.unwrap(), before);
    let order = f.ra.order(&account, order.record.id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Ready);
}

#[tokio::test]
async fn two_finalize_requests_at_once_issue_exactly_one_certificate() {
    let f = fixture().await;
    let (account, order) = f.ready_order(&["race.example"]).await;
    let id = order.record.id;
    let (first, second) = (csr(&["race.example"]), csr(&["race.example"]));
    let (a, b) = tokio::join!(
        f.ra.finalize(&account, id, &first),
        f.ra.finalize(&account, id, &second)
    );
    let (won, lost) = match (a, b) {
        (Ok(v), Err(e)) | (Err(e), Ok(v)) => (v, e),
        other => panic!("exactly one finalize must win: {other:?}"),
    };
    assert_eq!(won.status, OrderStatus::Valid);
    assert!(matches!(lost, Error::OrderNotReady(_)), "{lost:?}");
    assert_eq!(f.certificates().await, 1);
}

#[tokio::test]
async fn finalize_rechecks_caa_of_every_old_validation_at_once() {
    let f = fixture().await;
    let names = ["r1.example", "r2.example", "r3.example"];
    let (account, order) = f.ready_order(&names).await;
    // Older than the re-check age: every name is looked at again, all at once.
    f.clock
        .advance(f.va.config.caa_recheck_after.as_secs() as i64 + 60);
    *f.va.caa_delay.lock().unwrap() = Duration::from_millis(100);
    let done = f.ra.finalize(&account, order.record.id, &csr(&names)).await;
    assert_eq!(done.unwrap().status, OrderStatus::Valid);
    assert_eq!(f.va.caa_running.1.load(Ordering::SeqCst), names.len());
}

#[tokio::test]
async fn a_caa_recheck_that_outlasts_its_budget_answers_dns_and_changes_nothing() {
    let f = fixture().await;
    let (account, order) = f.ready_order(&["slow.example", "quick.example"]).await;
    f.clock
        .advance(f.va.config.caa_recheck_after.as_secs() as i64 + 60);
    let before = f.store.snapshot().await.unwrap();
    *f.va.caa_delay.lock().unwrap() = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let err =
        f.ra.finalize(
            &account,
            order.record.id,
            &csr(&["slow.example", "quick.example"]),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "not bounded");
    let Error::Recheck { problem, .. } = &err else {
        panic!("not a re-check failure: {err:?}");
    };
    assert_eq!(problem.kind, ProblemType::Dns, "{problem:?}");
    assert_eq!(problem.http_status(), 503);
    assert!(problem.detail.contains("finalize it again"), "{problem:?}");
    assert_eq!(f.store.snapshot().await.unwrap(), before);
    // Once the checks answer in time, the same order finalizes.
    *f.va.caa_delay.lock().unwrap() = Duration::ZERO;
    let done =
        f.ra.finalize(
            &account,
            order.record.id,
            &csr(&["slow.example", "quick.example"]),
        )
        .await
        .unwrap();
    assert_eq!(done.status, OrderStatus::Valid);
}

#[tokio::test]
async fn a_valid_authorization_is_reused_by_its_account_only() {
    let f = fixture().await;
    let (account, first) = f.ready_order(&["reuse.example"]).await;
    let validations = *f.va.validations.lock().unwrap();
    let second = f.order(&account, &["reuse.example"]).await;
    assert_eq!(
        second.record.authorization_ids,
        first.record.authorization_ids
    );
    assert_eq!(second.status, OrderStatus::Ready);
    assert_eq!(*f.va.validations.lock().unwrap(), validations);

    let other = f.account().await;
    let theirs = f.order(&other, &["reuse.example"]).await;
    assert_ne!(
        theirs.record.authorization_ids,
        first.record.authorization_ids
    );
    assert_eq!(theirs.status, OrderStatus::Pending);
    // Nor may another account read the first account's order.
    let err = f.ra.order(&other, first.record.id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_failed_validation_invalidates_the_order() {
    let f = fixture().await;
    *f.va.verdict.lock().unwrap() = Some(Problem::incorrect_response("wrong answer"));
    let account = f.account().await;
    let order = f.order(&account, &["fails.example"]).await;
    f.authorize(&account, &order).await;
    let order = f.ra.order(&account, order.record.id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Invalid);
    let err =
        f.ra.finalize(&account, order.record.id, &csr(&["fails.example"]))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::OrderNotReady(_)), "{err:?}");
}

#[tokio::test]
async fn an_issuance_whose_lease_ran_out_is_resumed_and_completed() {
    let f = fixture().await;
    let (account, order) = f.ready_order(&["resume.example"]).await;
    let id = order.record.id;
    // An instance claimed the issuance and died before signing.
    let der = b64::decode(&csr(&["resume.example"])).unwrap();
    assert!(f
        .store
        .begin_finalize(id, &der, f.clock.now() + LEASE_SECS)
        .await
        .unwrap());
    // While its lease holds, nobody takes the work over.
    assert_eq!(f.ra.recover(false).await.unwrap(), (0, 0));
    assert_eq!(
        f.ra.order(&account, id).await.unwrap().status,
        OrderStatus::Processing
    );
    f.clock.advance(LEASE_SECS + 1);
    assert_eq!(f.ra.recover(false).await.unwrap(), (0, 1));
    let order = f.ra.order(&account, id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Valid);
    assert!(order.record.certificate_serial.is_some());
    assert_eq!(f.certificates().await, 1);
}

#[tokio::test]
async fn a_late_failure_or_completion_does_not_undo_a_resumed_issuance() {
    let f = fixture().await;
    let (account, order) = f.ready_order(&["late.example"]).await;
    let id = order.record.id;
    let text = csr(&["late.example"]);
    let der = b64::decode(&text).unwrap();
    // The first run claims the issuance; its lease runs out mid-issuance and another run
    // (the sweeper) completes it.
    assert!(f
        .store
        .begin_finalize(id, &der, f.clock.now() + LEASE_SECS)
        .await
        .unwrap());
    f.clock.advance(LEASE_SECS + 1);
    assert_eq!(f.ra.recover(false).await.unwrap(), (0, 1));
    let done = f.ra.order(&account, id).await.unwrap();
    assert_eq!(done.status, OrderStatus::Valid);
    let serial = done.record.certificate_serial.clone();

    // The first run now fails late: the order stays valid.
    f.ra.fail_issuance(id, "the first run's signing timed out".into())
        .await;
    // Or it completes late: its certificate is not stored, the order keeps the first.
    let checked = parse_csr(&der, &crate::ca::KeyPolicy::default()).unwrap();
    let stale = OrderRecord {
        status: OrderStatus::Processing,
        ..done.record.clone()
    };
    f.ra.issue(&stale, &checked).await;

    let order = f.ra.order(&account, id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Valid);
    assert!(order.record.error.is_none(), "{:?}", order.record.error);
    assert_eq!(order.record.certificate_serial, serial);
    assert_eq!(f.certificates().await, 1);
}
