//! The `acme` backend: an upstream RFC 8555 CA. This CA holds its own account there
//! (the key in `DATA_DIR/backends/NAME/`, 0600) and obtains each certificate for the
//! client's CSR, answering the upstream's challenges with a `certwright-client` solver.
//!
//! One attempt ([`Backend::issue`]) walks the upstream order from wherever it is:
//!
//! | upstream order | what the attempt does |
//! | --- | --- |
//! | none saved, or unknown upstream | `newOrder` for exactly the request's identifiers, then saves its URL ([`Checkpoint::save`]) before anything else |
//! | `pending` | answers the authorizations with the configured solver |
//! | `ready` | finalizes with the client's CSR |
//! | `processing` | polls |
//! | `valid` | downloads the chain (PEM) |
//! | `invalid` | it provably failed: a new order |
//!
//! So an attempt cut short (a time-out, the upstream down, this process killed) is
//! resumed from the saved order URL, and the upstream never issues twice for one order.
//! Errors are sorted into [`BackendError::Transient`] (network, time-outs, 5xx,
//! `rateLimited`, `badNonce`, a failed validation) and [`BackendError::Refused`]
//! (`badCSR`; `rejectedIdentifier`, `caa`, `unauthorized`; other refusals). The
//! upstream's words go into the cause, for the log only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use certwright_client::certinfo::CertInfo;
use certwright_client::client::{
    parse_rfc3339, Account, AccountCredentials, AcmeClient, ClientOptions, Eab, NewAccountOptions,
    OrderHandle, PollPolicy,
};
use certwright_client::solver::dns01_exec::Dns01Exec;
use certwright_client::solver::http01::Http01Standalone;
use certwright_client::solver::propagation::Propagation;
use certwright_client::solver::rfc2136::{Rfc2136, Rfc2136Config};
use certwright_client::solver::webroot::Webroot;
use certwright_client::solver::{ChallengeData, Solver};
use certwright_client::Error as ClientError;
use certwright_proto::keyauth::key_authorization;
use certwright_proto::types::{AuthorizationStatus, ChallengeStatus, ChallengeType, OrderStatus};
use certwright_proto::{AccountKey, KeyType, Problem, ProblemType};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OnceCell};

use super::{Backend, BackendError, BackendRequest, Checkpoint, Refusal, RevokeRequest};
use crate::config::AcmeSection;
use crate::fsutil;

/// The account key in the state directory (PKCS#8 PEM, 0600).
pub const ACCOUNT_KEY_FILE: &str = "account-key.pem";
/// The account's URL at the upstream, with the directory it belongs to (JSON, 0600).
pub const ACCOUNT_FILE: &str = "account.json";

/// Longest wait for the upstream's renewal information.
const ARI_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an upstream window is reused: the upstream's `Retry-After`, within these
/// bounds (10 minutes when it gives none).
const ARI_CACHE_MIN: Duration = Duration::from_secs(60);
const ARI_CACHE_MAX: Duration = Duration::from_secs(3600);
const ARI_CACHE_DEFAULT: Duration = Duration::from_secs(600);
/// Most windows kept.
const ARI_CACHE_ENTRIES: usize = 4096;
/// Longest one HTTP request to the upstream may take (less when the attempt is shorter).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dns-01 records are looked for before the upstream is told to validate.
const DNS_CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// An upstream ACME CA.
pub struct AcmeBackend {
    name: String,
    section: AcmeSection,
    timeout: Duration,
    state_dir: PathBuf,
    /// The account key, PKCS#8 DER (an [`AccountKey`] is made from it when needed).
    key_pkcs8: Vec<u8>,
    eab: Option<Eab>,
    trust_pem: Option<Vec<u8>>,
    solver: SolverSetup,
    client: Mutex<Option<Arc<AcmeClient>>>,
    account: Mutex<Option<Arc<Account>>>,
    ari: std::sync::Mutex<AriCache>,
}

/// The upstream's ARI windows by certificate id, each kept as long as the upstream
/// asked (`Retry-After`, bounded), so clients polling renewalInfo do not each reach the
/// upstream.
#[derive(Debug, Default)]
struct AriCache {
    windows: std::collections::HashMap<String, (std::time::Instant, (i64, i64))>,
}

impl AriCache {
    fn get(&self, id: &str, now: std::time::Instant) -> Option<(i64, i64)> {
        self.windows
            .get(id)
            .filter(|(until, _)| *until > now)
            .map(|(_, w)| *w)
    }

    fn put(
        &mut self,
        id: String,
        window: (i64, i64),
        retry_after: Option<Duration>,
        now: std::time::Instant,
    ) {
        let keep = retry_after
            .unwrap_or(ARI_CACHE_DEFAULT)
            .clamp(ARI_CACHE_MIN, ARI_CACHE_MAX);
        if self.windows.len() >= ARI_CACHE_ENTRIES {
            self.windows.retain(|_, (until, _)| *until > now);
            if self.windows.len() >= ARI_CACHE_ENTRIES {
                self.windows.clear();
            }
        }
        self.windows.insert(id, (now + keep, window));
    }
}

impl std::fmt::Debug for AcmeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the EAB MAC key.
        f.debug_struct("AcmeBackend")
            .field("name", &self.name)
            .field("directory", &self.section.directory)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// How the upstream's challenges are answered.
enum SolverSetup {
    /// Built from the configuration (an exec hook, RFC 2136, a webroot).
    Ready(Arc<dyn Solver>),
    /// http-01 from a listener of this process, bound on first use.
    Listen(SocketAddr, OnceCell<Arc<dyn Solver>>),
}

/// What [`ACCOUNT_FILE`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    url: String,
}

impl AcmeBackend {
    /// The backend `name` of `[backends.NAME.acme]`, keeping its account in `state_dir`.
    /// Touches only local files: the upstream is first contacted when an order comes, so
    /// the CA starts while the upstream is down. Creates `state_dir` (0700) and the
    /// account key (0600) on first use; checks the solver settings and reads the EAB key,
    /// the CA bundle and the TSIG key, so that a mistake stops the CA at start.
    pub fn new(
        name: &str,
        section: &AcmeSection,
        timeout: Duration,
        state_dir: &Path,
    ) -> Result<Self, String> {
        let prefix = format!("backends.{name}.acme");
        if !(section.directory.starts_with("https://") || section.directory.starts_with("http://"))
            || url::Url::parse(&section.directory).is_err()
        {
            return Err(format!(
                "{prefix}.directory {:?} is not an http(s) URL",
                section.directory
            ));
        }
        let solver = SolverSetup::from_section(&prefix, section)?;
        let eab = match (&section.eab_kid, &section.eab_hmac_key_file) {
            (Some(kid), Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("{prefix}.eab_hmac_key_file {}: {e}", file.display()))?;
                Some(
                    Eab::from_b64(kid.clone(), &text)
                        .map_err(|e| format!("{prefix}.eab_hmac_key_file: {e}"))?,
                )
            }
            (None, None) => None,
            _ => {
                return Err(format!(
                    "{prefix}: eab_kid and eab_hmac_key_file go together"
                ))
            }
        };
        let trust_pem = match &section.ca_bundle {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("{prefix}.ca_bundle {}: {e}", path.display()))?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(format!(
                        "{prefix}.ca_bundle {}: no PEM certificate in it",
                        path.display()
                    ));
                }
                Some(pem)
            }
            None => None,
        };
        fsutil::create_private_dir(state_dir)
            .map_err(|e| format!("{prefix}: state directory {}: {e}", state_dir.display()))?;
        let key_pkcs8 = load_or_create_key(state_dir)
            .map_err(|e| format!("{prefix}: account key in {}: {e}", state_dir.display()))?;
        Ok(Self {
            name: name.into(),
            section: section.clone(),
            timeout,
            state_dir: state_dir.to_owned(),
            key_pkcs8,
            eab,
            trust_pem,
            solver,
            client: Mutex::new(None),
            account: Mutex::new(None),
            ari: std::sync::Mutex::new(AriCache::default()),
        })
    }

    /// The upstream account's URL as last registered (for operators and tests); `None`
    /// before the first registration, or when it was made for another directory.
    pub fn account_url(&self) -> Option<String> {
        self.stored_account().map(|a| a.url)
    }

    fn stored_account(&self) -> Option<StoredAccount> {
        let text = std::fs::read(self.state_dir.join(ACCOUNT_FILE)).ok()?;
        let stored: StoredAccount = serde_json::from_slice(&text).ok()?;
        (stored.directory == self.section.directory).then_some(stored)
    }

    /// The client of the upstream, fetching its directory on first use.
    async fn client(&self) -> Result<Arc<AcmeClient>, ClientError> {
        let mut cached = self.client.lock().await;
        if let Some(client) = &*cached {
            return Ok(client.clone());
        }
        let mut options = ClientOptions::new(self.section.directory.clone());
        options.request_timeout = REQUEST_TIMEOUT.min(self.timeout);
        // Short first polls (doubling): an upstream like Pebble or certwright-ca settles
        // an authorization or a finalize in tens of milliseconds; 100 ms steps added
        // ~250 ms per issuance (scripts/bench-upstream-acme).
        options.poll = PollPolicy {
            first_interval: Duration::from_millis(25),
            max_interval: Duration::from_secs(5),
            timeout: self.timeout,
        };
        if let Some(pem) = &self.trust_pem {
            options = options.trust_pem(pem.clone());
        }
        let client = AcmeClient::new(options).await?;
        *cached = Some(client.clone());
        Ok(client)
    }

    /// The upstream account: the stored one, else registered now (with EAB when
    /// configured). A stored account the upstream no longer knows is registered again
    /// with the same key.
    async fn account(&self) -> Result<Arc<Account>, ClientError> {
        let mut cached = self.account.lock().await;
        if let Some(account) = &*cached {
            return Ok(account.clone());
        }
        let client = self.client().await?;
        let account = match self.stored_account() {
            Some(stored) => {
                let creds = AccountCredentials {
                    url: stored.url,
                    key_pkcs8: self.key_pkcs8.clone(),
                };
                match Account::load(client.clone(), &creds).await {
                    Ok(account) => account,
                    Err(e) if e.is_problem(ProblemType::AccountDoesNotExist) => {
                        tracing::warn!(backend = %self.name, error = %e,
                            "the upstream no longer knows this CA's account; registering again");
                        self.register(client).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.register(client).await?,
        };
        let account = Arc::new(account);
        *cached = Some(account.clone());
        Ok(account)
    }

    async fn register(&self, client: Arc<AcmeClient>) -> Result<Account, ClientError> {
        let key = AccountKey::from_pkcs8(&self.key_pkcs8)?;
        let options = NewAccountOptions {
            contact: self.section.contact.clone(),
            // Configuring an upstream is agreeing to its terms.
            terms_of_service_agreed: true,
            eab: self.eab.clone(),
        };
        let account = Account::create(client, key, &options).await?;
        let stored = StoredAccount {
            directory: self.section.directory.clone(),
            url: account.url().to_owned(),
        };
        let path = self.state_dir.join(ACCOUNT_FILE);
        fsutil::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&stored).expect("serializes"),
            0o600,
        )
        .map_err(|e| ClientError::io(&path, e))?;
        tracing::info!(backend = %self.name, account = %account.url(), "upstream account registered");
        Ok(account)
    }

    /// Forgets the cached account (and client), so that the next use loads or registers
    /// it again.
    async fn forget_account(&self) {
        *self.account.lock().await = None;
        *self.client.lock().await = None;
    }

    async fn solver(&self) -> Result<Arc<dyn Solver>, ClientError> {
        match &self.solver {
            SolverSetup::Ready(s) => Ok(s.clone()),
            SolverSetup::Listen(addr, cell) => cell
                .get_or_try_init(|| async {
                    let s = Http01Standalone::bind(*addr).await?;
                    tracing::info!(backend = %self.name, listen = %s.local_addr(),
                        "http-01 listener for the upstream's validation");
                    Ok::<_, ClientError>(Arc::new(s) as Arc<dyn Solver>)
                })
                .await
                .cloned(),
        }
    }

    /// One attempt, retried once when the upstream turns out not to know the account.
    async fn attempt(
        &self,
        request: &BackendRequest,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Vec<u8>, BackendError> {
        match self.walk_order(request, checkpoint).await {
            Err(Failure::Client(e)) if e.is_problem(ProblemType::AccountDoesNotExist) => {
                tracing::warn!(backend = %self.name, error = %e,
                    "the upstream no longer knows this CA's account; registering again");
                self.forget_account().await;
                self.walk_order(request, checkpoint)
                    .await
                    .map_err(Failure::into_backend_error)
            }
            other => other.map_err(Failure::into_backend_error),
        }
    }

    /// Takes the upstream order from wherever it is to a downloaded chain.
    async fn walk_order(
        &self,
        request: &BackendRequest,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Vec<u8>, Failure> {
        let account = self.account().await.map_err(Failure::Account)?;
        let resumed = match &request.state {
            Some(url) => self.resume(&account, url, request).await?,
            None => None,
        };
        let mut handle = match resumed {
            Some(h) => h,
            None => {
                let h = account
                    .new_order(
                        request.identifiers.clone(),
                        self.section.profile.clone(),
                        None,
                    )
                    .await?;
                checkpoint.save(&h.url).await.map_err(|e| {
                    Failure::Backend(BackendError::Transient(format!(
                        "saving the upstream order URL {}: {e}",
                        h.url
                    )))
                })?;
                tracing::info!(backend = %self.name, request = %request.request_id,
                    upstream_order = %h.url, "upstream order created");
                h
            }
        };
        if handle.order.status == OrderStatus::Pending {
            self.solve(&account, &handle).await?;
            account
                .poll_order(&mut handle, &[OrderStatus::Ready, OrderStatus::Valid])
                .await?;
        }
        match handle.order.status {
            OrderStatus::Ready => account.finalize(&mut handle, &request.csr_der).await?,
            OrderStatus::Valid => {}
            _ => {
                account
                    .poll_order(&mut handle, &[OrderStatus::Valid])
                    .await?
            }
        }
        let url = handle.order.certificate.clone().ok_or_else(|| {
            Failure::Client(ClientError::Protocol {
                url: handle.url.clone(),
                detail: "valid order without a certificate URL".into(),
            })
        })?;
        // The default chain only (alternates are not offered for backend certificates).
        let resp = account.post(&url, None).await?;
        if !String::from_utf8_lossy(&resp.body).contains("-----BEGIN CERTIFICATE-----") {
            return Err(Failure::Client(ClientError::Protocol {
                url,
                detail: "the certificate URL answered without a PEM certificate".into(),
            }));
        }
        tracing::info!(backend = %self.name, request = %request.request_id,
            upstream_order = %handle.url, "upstream certificate downloaded");
        Ok(resp.body)
    }

    /// The saved upstream order, when it can still deliver: `None` when it is `invalid`,
    /// unknown to the upstream, or for other names (then a new order is made).
    async fn resume(
        &self,
        account: &Account,
        url: &str,
        request: &BackendRequest,
    ) -> Result<Option<OrderHandle>, Failure> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            tracing::warn!(backend = %self.name, state = %url, "saved state is no order URL; ordering afresh");
            return Ok(None);
        }
        match fetch_order(account, url).await {
            Ok(None) => {
                tracing::info!(backend = %self.name, upstream_order = %url,
                    "the previous upstream order failed; ordering afresh");
                Ok(None)
            }
            Ok(Some(h)) if h.order.status == OrderStatus::Invalid => {
                tracing::info!(backend = %self.name, upstream_order = %url,
                    error = ?h.order.error, "the previous upstream order failed; ordering afresh");
                Ok(None)
            }
            Ok(Some(h)) if !same_identifiers(&h.order.identifiers, &request.identifiers) => {
                tracing::warn!(backend = %self.name, upstream_order = %url,
                    "the saved upstream order is for other names; ordering afresh");
                Ok(None)
            }
            Ok(Some(h)) => {
                tracing::info!(backend = %self.name, upstream_order = %url,
                    status = %h.order.status, "resuming the upstream order");
                Ok(Some(h))
            }
            // The upstream does not know it (any more: Pebble forgets everything when it
            // restarts), or not for this account: it can deliver nothing for it. The
            // account was just used, so this is no wrong URL.
            Err(e)
                if e.http_status() == Some(404)
                    || (e.http_status() == Some(403)
                        && e.is_problem(ProblemType::Unauthorized)) =>
            {
                tracing::warn!(backend = %self.name, upstream_order = %url, error = %e,
                    "the upstream does not know the saved order; ordering afresh");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Answers every authorization of a pending order, then cleans up what it presented.
    async fn solve(&self, account: &Account, handle: &OrderHandle) -> Result<(), Failure> {
        let solver = self.solver().await?;
        let kind = solver.challenge_type();
        let jwk = account.key().jwk();
        // (authorization URL, challenge URL to respond to if still pending, data)
        let mut work: Vec<(String, Option<String>, ChallengeData)> = Vec::new();
        for url in &handle.order.authorizations {
            let authz = account.authorization(url).await?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(ClientError::Authorization {
                        identifier: authz.identifier.value.clone(),
                        status: other.to_string(),
                        problem: authz
                            .challenges
                            .iter()
                            .find_map(|c| c.error.clone())
                            .map(Box::new),
                    }
                    .into())
                }
            }
            let challenge = authz
                .challenges
                .iter()
                .find(|c| c.kind == kind)
                .ok_or_else(|| ClientError::NoSuitableChallenge {
                    kind: kind.to_string(),
                    identifier: authz.identifier.value.clone(),
                })?;
            let token = challenge
                .token
                .clone()
                .ok_or_else(|| ClientError::Protocol {
                    url: challenge.url.clone(),
                    detail: "challenge without a token".into(),
                })?;
            // A challenge already `processing` (an interrupted attempt responded) is
            // presented again, since that attempt may have cleaned up, but not responded to.
            let respond =
                (challenge.status == ChallengeStatus::Pending).then(|| challenge.url.clone());
            work.push((
                url.clone(),
                respond,
                ChallengeData {
                    identifier: authz.identifier.value.clone(),
                    key_authorization: key_authorization(&token, &jwk),
                    token,
                },
            ));
        }
        let result = answer(account, solver.as_ref(), &work).await;
        for (_, _, data) in &work {
            if let Err(e) = solver.cleanup(data).await {
                tracing::warn!(backend = %self.name, identifier = %data.identifier, error = %e,
                    "removing the upstream challenge response failed");
            }
        }
        result.map_err(Failure::Client)
    }
}

/// Fetches an upstream order; `None` when it ended in a status outside RFC 8555 that
/// still says it failed for good (Pebble 2.4 answers `deactivated` once an authorization
/// was deactivated; `expired` and `revoked` are older drafts' words).
async fn fetch_order(account: &Account, url: &str) -> Result<Option<OrderHandle>, ClientError> {
    let resp = account.post(url, None).await?;
    let value: serde_json::Value = resp.json()?;
    if matches!(
        value.get("status").and_then(|s| s.as_str()),
        Some("deactivated" | "expired" | "revoked")
    ) {
        return Ok(None);
    }
    Ok(Some(OrderHandle {
        url: url.to_owned(),
        order: resp.json()?,
    }))
}

async fn answer(
    account: &Account,
    solver: &dyn Solver,
    work: &[(String, Option<String>, ChallengeData)],
) -> Result<(), ClientError> {
    for (_, _, data) in work {
        solver.present(data).await?;
    }
    let all: Vec<ChallengeData> = work.iter().map(|w| w.2.clone()).collect();
    solver.wait_ready(&all).await?;
    for (_, respond, _) in work {
        if let Some(url) = respond {
            account.respond_to_challenge(url).await?;
        }
    }
    for (authz, _, _) in work {
        account.poll_authorization(authz).await?;
    }
    Ok(())
}

fn same_identifiers(
    a: &[certwright_proto::types::Identifier],
    b: &[certwright_proto::types::Identifier],
) -> bool {
    let norm = |ids: &[certwright_proto::types::Identifier]| {
        let mut v: Vec<(String, String)> = ids
            .iter()
            .map(|i| (format!("{:?}", i.kind), i.value.to_ascii_lowercase()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    norm(a) == norm(b)
}

/// Why a step failed, before it is sorted into a [`BackendError`].
#[derive(Debug)]
enum Failure {
    /// Loading or registering the upstream account.
    Account(ClientError),
    /// Any other exchange with the upstream, or the solver.
    Client(ClientError),
    /// Already sorted.
    Backend(BackendError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

impl Failure {
    fn into_backend_error(self) -> BackendError {
        match self {
            Self::Account(e) => classify_account(e),
            Self::Client(e) => classify(e),
            Self::Backend(e) => e,
        }
    }
}

fn transient(e: &ClientError) -> BackendError {
    BackendError::Transient(e.to_string())
}

fn refused(refusal: Refusal, e: &ClientError) -> BackendError {
    BackendError::Refused {
        refusal,
        cause: e.to_string(),
    }
}

/// The problem types that say "later", whatever the status.
fn is_temporary(kind: &ProblemType) -> bool {
    matches!(
        kind,
        ProblemType::RateLimited
            | ProblemType::BadNonce
            | ProblemType::ServerInternal
            | ProblemType::OrderNotReady
            | ProblemType::AccountDoesNotExist
    )
}

/// The refusal a problem names (looking into a compound problem's subproblems), if any.
fn refusal_of(problem: &Problem) -> Option<Refusal> {
    let one = |kind: &ProblemType| match kind {
        ProblemType::BadCsr => Some(Refusal::BadCsr),
        ProblemType::RejectedIdentifier | ProblemType::Caa | ProblemType::Unauthorized => {
            Some(Refusal::RejectedIdentifier)
        }
        _ => None,
    };
    one(&problem.kind).or_else(|| problem.subproblems.iter().find_map(|p| one(&p.kind)))
}

/// Sorts an error of the order flow: network trouble, time-outs, 5xx, `rateLimited`,
/// `badNonce` and failed validations are [`BackendError::Transient`]; `badCSR`,
/// `rejectedIdentifier`, `caa` and `unauthorized` are refusals of their kind; other
/// 4xx problems refuse as [`Refusal::Other`].
pub(crate) fn classify(e: ClientError) -> BackendError {
    match &e {
        ClientError::Acme {
            status, problem, ..
        } => {
            if *status >= 500 || is_temporary(&problem.kind) {
                transient(&e)
            } else {
                refused(refusal_of(problem).unwrap_or(Refusal::Other), &e)
            }
        }
        // A validation that failed: names the upstream will not sign for are refused;
        // anything else (the record not visible, a listener not reached) is ours to
        // fix, and the next attempt makes a new order.
        ClientError::Authorization { problem, .. } => match problem.as_deref() {
            Some(p)
                if matches!(p.kind, ProblemType::Caa | ProblemType::RejectedIdentifier)
                    || p.subproblems.iter().any(|s| {
                        matches!(s.kind, ProblemType::Caa | ProblemType::RejectedIdentifier)
                    }) =>
            {
                refused(Refusal::RejectedIdentifier, &e)
            }
            _ => transient(&e),
        },
        // The order failed after finalize: the CSR or a name was refused, else the next
        // attempt makes a new order.
        ClientError::OrderInvalid { problem, .. } => {
            match problem.as_deref().and_then(refusal_of) {
                Some(r) => refused(r, &e),
                None => transient(&e),
            }
        }
        ClientError::NoSuitableChallenge { .. }
        | ClientError::Key(_)
        | ClientError::Certificate(_)
        | ClientError::Config(_) => refused(Refusal::Other, &e),
        _ => transient(&e),
    }
}

/// Sorts an error of loading or registering the account: a refusal there (EAB wrong or
/// required, terms) is no fault of the order, but no retry mends it either.
fn classify_account(e: ClientError) -> BackendError {
    match &e {
        ClientError::Acme {
            status, problem, ..
        } if *status < 500 && !is_temporary(&problem.kind) => refused(Refusal::Other, &e),
        _ => classify(e),
    }
}

impl Backend for AcmeBackend {
    fn kind(&self) -> &'static str {
        "acme"
    }

    fn resumable(&self) -> bool {
        true
    }

    fn issue<'a>(
        &'a self,
        request: &'a BackendRequest,
        checkpoint: &'a dyn Checkpoint,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.attempt(request, checkpoint)).await {
                Ok(result) => result,
                Err(_) => Err(BackendError::Transient(format!(
                    "the upstream ACME flow took longer than {}s",
                    self.timeout.as_secs()
                ))),
            }
        })
    }

    fn revoke<'a>(&'a self, request: &'a RevokeRequest) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let work = async {
                let account = self.account().await.map_err(classify_account)?;
                // Reason 0 (unspecified) is the same as none; some CAs refuse it spelled out.
                let reason = (request.reason != 0).then_some(request.reason);
                match account.revoke(&request.der, reason).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_problem(ProblemType::AlreadyRevoked) => {
                        tracing::info!(backend = %self.name, serial = %request.serial_hex,
                            "already revoked upstream");
                        Ok(())
                    }
                    Err(e) => {
                        if e.is_problem(ProblemType::AccountDoesNotExist) {
                            self.forget_account().await;
                        }
                        Err(classify(e))
                    }
                }
            };
            match tokio::time::timeout(self.timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(BackendError::Transient(format!(
                    "the upstream revocation took longer than {}s",
                    self.timeout.as_secs()
                ))),
            }
        })
    }

    fn renewal_window<'a>(&'a self, cert_der: &'a [u8]) -> BoxFuture<'a, Option<(i64, i64)>> {
        Box::pin(async move {
            if !self.section.ari_passthrough {
                return None;
            }
            let id = CertInfo::from_der(cert_der).ok()?.ari_id?;
            if let Some(window) = self
                .ari
                .lock()
                .expect("ari cache")
                .get(&id, std::time::Instant::now())
            {
                return Some(window);
            }
            let ask = async {
                let client = self.client().await.ok()?;
                match client.renewal_info(&id).await {
                    Ok(Some((info, retry_after))) => Some((
                        (
                            parse_rfc3339(&info.suggested_window.start)?.unix_timestamp(),
                            parse_rfc3339(&info.suggested_window.end)?.unix_timestamp(),
                        ),
                        retry_after,
                    )),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::info!(backend = %self.name, error = %e,
                            "upstream renewalInfo failed; the default window applies");
                        None
                    }
                }
            };
            let ((start, end), retry_after) =
                tokio::time::timeout(ARI_TIMEOUT.min(self.timeout), ask)
                    .await
                    .ok()??;
            if start >= end {
                return None;
            }
            self.ari.lock().expect("ari cache").put(
                id,
                (start, end),
                retry_after,
                std::time::Instant::now(),
            );
            Some((start, end))
        })
    }
}

impl SolverSetup {
    /// The solver `section` describes: exactly one for its challenge type.
    fn from_section(prefix: &str, s: &AcmeSection) -> Result<Self, String> {
        let dns_set = [
            ("dns_hook", s.dns_hook.is_some()),
            ("rfc2136_server", s.rfc2136_server.is_some()),
        ];
        let http_set = [
            ("http_webroot", s.http_webroot.is_some()),
            ("http_listen", s.http_listen.is_some()),
        ];
        let given = |set: &[(&'static str, bool)]| -> Vec<&'static str> {
            set.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect()
        };
        let (mine, others, kind) = match s.challenge.as_str() {
            "dns-01" => (given(&dns_set), given(&http_set), ChallengeType::Dns01),
            "http-01" => (given(&http_set), given(&dns_set), ChallengeType::Http01),
            other => {
                return Err(format!(
                    "{prefix}.challenge {other:?}: use \"dns-01\" or \"http-01\""
                ))
            }
        };
        if let Some(o) = others.first() {
            return Err(format!(
                "{prefix}.{o} does not answer {} challenges (challenge = {:?})",
                s.challenge, s.challenge
            ));
        }
        if mine.len() != 1 {
            let choices = if kind == ChallengeType::Dns01 {
                "dns_hook or rfc2136_server"
            } else {
                "http_webroot or http_listen"
            };
            return Err(format!(
                "{prefix}: {} challenges need exactly one of {choices}",
                s.challenge
            ));
        }
        if s.rfc2136_tsig_file.is_some() && s.rfc2136_server.is_none() {
            return Err(format!("{prefix}.rfc2136_tsig_file needs rfc2136_server"));
        }
        if kind == ChallengeType::Http01 && !s.dns_check_servers.is_empty() {
            return Err(format!("{prefix}.dns_check_servers is for dns-01 only"));
        }
        let check = Propagation {
            nameservers: s.dns_check_servers.clone(),
            timeout: DNS_CHECK_TIMEOUT,
        };
        let solver: Arc<dyn Solver> = if let Some(hook) = &s.dns_hook {
            let Some((program, args)) = hook.split_first() else {
                return Err(format!("{prefix}.dns_hook is empty"));
            };
            Arc::new(Dns01Exec::with_args(program.into(), args.to_vec(), check))
        } else if let Some(server) = &s.rfc2136_server {
            let server: SocketAddr = server
                .parse()
                .map_err(|_| format!("{prefix}.rfc2136_server {server:?} is not ip:port"))?;
            let Some(file) = &s.rfc2136_tsig_file else {
                return Err(format!(
                    "{prefix}.rfc2136_server needs rfc2136_tsig_file (the TSIG key)"
                ));
            };
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("{prefix}.rfc2136_tsig_file {}: {e}", file.display()))?;
            let tsig = parse_tsig_key(&text)
                .map_err(|e| format!("{prefix}.rfc2136_tsig_file {}: {e}", file.display()))?;
            let config = Rfc2136Config {
                server,
                zone: None,
                tsig_key_name: tsig.name,
                tsig_algorithm: tsig.algorithm,
                tsig_secret: tsig.secret,
                ttl: 60,
            };
            Arc::new(Rfc2136::new(config, check).map_err(|e| format!("{prefix}: RFC 2136: {e}"))?)
        } else if let Some(root) = &s.http_webroot {
            if !root.is_dir() {
                return Err(format!(
                    "{prefix}.http_webroot {} is not a directory",
                    root.display()
                ));
            }
            Arc::new(Webroot::new(root.clone()))
        } else if let Some(addr) = s.http_listen {
            return Ok(Self::Listen(addr, OnceCell::new()));
        } else {
            return Err(format!("{prefix}: no solver configured"));
        };
        Ok(Self::Ready(solver))
    }
}

/// A TSIG key: its name, algorithm and base64 secret.
#[derive(Debug, PartialEq, Eq)]
struct TsigKey {
    name: String,
    algorithm: String,
    secret: String,
}

/// Reads a TSIG key file: TOML (`name`, `algorithm` (default `hmac-sha256`), `secret`)
/// or BIND's `key "NAME" { algorithm ALG; secret "BASE64"; };` as `tsig-keygen` prints it.
fn parse_tsig_key(text: &str) -> Result<TsigKey, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Toml {
        name: String,
        #[serde(default)]
        algorithm: Option<String>,
        secret: String,
    }
    if let Ok(t) = toml::from_str::<Toml>(text) {
        return Ok(TsigKey {
            name: t.name,
            algorithm: t.algorithm.unwrap_or_else(|| "hmac-sha256".into()),
            secret: t.secret,
        });
    }
    let bad = || {
        "neither TOML (name, algorithm, secret) nor a BIND key statement (key \"NAME\" { algorithm ALG; secret \"BASE64\"; };)".to_string()
    };
    let rest = text.trim_start().strip_prefix("key").ok_or_else(bad)?;
    let (name, body) = rest.trim_start().split_once('{').ok_or_else(bad)?;
    let name = name
        .trim()
        .trim_matches('"')
        .trim_end_matches('.')
        .to_owned();
    let mut algorithm = None;
    let mut secret = None;
    for stmt in body.split(';') {
        let stmt = stmt.trim().trim_start_matches('}').trim();
        if let Some(v) = stmt.strip_prefix("algorithm") {
            algorithm = Some(v.trim().trim_matches('"').to_owned());
        } else if let Some(v) = stmt.strip_prefix("secret") {
            secret = Some(v.trim().trim_matches('"').to_owned());
        }
    }
    match (name.is_empty(), algorithm, secret) {
        (false, Some(algorithm), Some(secret)) => Ok(TsigKey {
            name,
            algorithm,
            secret,
        }),
        _ => Err(bad()),
    }
}

/// The account key of `dir`, created (EC P-256, 0600) when missing.
fn load_or_create_key(dir: &Path) -> Result<Vec<u8>, String> {
    let path = dir.join(ACCOUNT_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(pem) => {
            let der = pem_decode(&pem, "PRIVATE KEY")
                .ok_or_else(|| format!("{} is not a PKCS#8 PEM key", path.display()))?;
            AccountKey::from_pkcs8(&der).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(der)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let der = AccountKey::generate(KeyType::EcP256)
                .and_then(|k| k.to_pkcs8())
                .map_err(|e| e.to_string())?;
            fsutil::write_atomic(&path, pem_encode(&der, "PRIVATE KEY").as_bytes(), 0o600)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(der)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn section(extra: &str) -> AcmeSection {
        toml::from_str(&format!(
            "directory = \"https://upstream.test/dir\"\n{extra}"
        ))
        .unwrap()
    }

    fn problem(kind: ProblemType, status: u16) -> ClientError {
        ClientError::Acme {
            url: "https://upstream.test/x".into(),
            status,
            problem: Box::new(Problem::new(kind, "the upstream's own words")),
        }
    }

    fn kind_of(e: &BackendError) -> String {
        match e {
            BackendError::Transient(_) => "transient".into(),
            BackendError::Refused { refusal, .. } => format!("{refusal:?}"),
        }
    }

    #[test]
    fn upstream_errors_sort_into_transient_and_refusals() {
        let cases = [
            (problem(ProblemType::BadCsr, 400), "BadCsr"),
            (
                problem(ProblemType::RejectedIdentifier, 400),
                "RejectedIdentifier",
            ),
            (problem(ProblemType::Caa, 403), "RejectedIdentifier"),
            (
                problem(ProblemType::Unauthorized, 403),
                "RejectedIdentifier",
            ),
            (problem(ProblemType::Malformed, 400), "Other"),
            (problem(ProblemType::InvalidProfile, 400), "Other"),
            (problem(ProblemType::RateLimited, 429), "transient"),
            (problem(ProblemType::BadNonce, 400), "transient"),
            (problem(ProblemType::ServerInternal, 500), "transient"),
            (problem(ProblemType::Malformed, 503), "transient"),
            (problem(ProblemType::OrderNotReady, 403), "transient"),
            (
                ClientError::Timeout {
                    what: "order".into(),
                    seconds: 3,
                },
                "transient",
            ),
            (
                ClientError::Protocol {
                    url: "u".into(),
                    detail: "HTTP 502 without a problem document".into(),
                },
                "transient",
            ),
            (
                ClientError::Solver {
                    solver: "dns-01 exec",
                    detail: "hook failed".into(),
                },
                "transient",
            ),
            (
                ClientError::Authorization {
                    identifier: "a.test".into(),
                    status: "invalid".into(),
                    problem: Some(Box::new(Problem::new(ProblemType::Dns, "NXDOMAIN"))),
                },
                "transient",
            ),
            (
                ClientError::Authorization {
                    identifier: "a.test".into(),
                    status: "invalid".into(),
                    problem: Some(Box::new(Problem::new(ProblemType::Caa, "CAA forbids"))),
                },
                "RejectedIdentifier",
            ),
            (
                ClientError::OrderInvalid {
                    url: "u".into(),
                    problem: Some(Box::new(Problem::new(ProblemType::BadCsr, "key"))),
                },
                "BadCsr",
            ),
            (
                ClientError::OrderInvalid {
                    url: "u".into(),
                    problem: None,
                },
                "transient",
            ),
            (
                ClientError::NoSuitableChallenge {
                    kind: "dns-01".into(),
                    identifier: "a.test".into(),
                },
                "Other",
            ),
        ];
        for (error, want) in cases {
            let text = error.to_string();
            let got = classify(error);
            assert_eq!(kind_of(&got), want, "{text}");
            // The upstream's words are kept for the log.
            let cause = match &got {
                BackendError::Transient(c) => c,
                BackendError::Refused { cause, .. } => cause,
            };
            assert_eq!(cause, &text);
        }
        let mut compound = Problem::new(ProblemType::Compound, "several");
        compound.subproblems = vec![Problem::new(ProblemType::RejectedIdentifier, "x")];
        let e = ClientError::Acme {
            url: "u".into(),
            status: 400,
            problem: Box::new(compound),
        };
        assert_eq!(kind_of(&classify(e)), "RejectedIdentifier");
        // Account registration: a refusal (EAB) is no name's fault.
        assert_eq!(
            kind_of(&classify_account(problem(ProblemType::Unauthorized, 403))),
            "Other"
        );
        assert_eq!(
            kind_of(&classify_account(problem(ProblemType::RateLimited, 429))),
            "transient"
        );
        assert_eq!(
            kind_of(&classify_account(problem(ProblemType::ServerInternal, 500))),
            "transient"
        );
    }

    #[test]
    fn account_key_is_made_once_private_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("backends/up");
        let s = section("dns_hook = [\"/bin/true\"]");
        let a = AcmeBackend::new("up", &s, Duration::from_secs(5), &dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(ACCOUNT_KEY_FILE)), 0o600);
        let b = AcmeBackend::new("up", &s, Duration::from_secs(5), &dir).unwrap();
        assert_eq!(a.key_pkcs8, b.key_pkcs8);
        assert_eq!(a.account_url(), None);
        // An account stored for another directory is not used.
        std::fs::write(
            dir.join(ACCOUNT_FILE),
            r#"{"directory":"https://other.test/dir","url":"https://other.test/acct/1"}"#,
        )
        .unwrap();
        assert_eq!(b.account_url(), None);
        std::fs::write(
            dir.join(ACCOUNT_FILE),
            r#"{"directory":"https://upstream.test/dir","url":"https://upstream.test/acct/1"}"#,
        )
        .unwrap();
        assert_eq!(
            b.account_url().as_deref(),
            Some("https://upstream.test/acct/1")
        );
        // A damaged key stops the CA at start rather than registering another account.
        std::fs::write(dir.join(ACCOUNT_KEY_FILE), "junk").unwrap();
        let e = AcmeBackend::new("up", &s, Duration::from_secs(5), &dir).unwrap_err();
        assert!(e.contains("not a PKCS#8 PEM key"), "{e}");
        // Debug never shows the key.
        assert!(!format!("{a:?}").contains("key_pkcs8"));
    }

    #[test]
    fn solver_settings_are_checked_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let new = |extra: &str| {
            AcmeBackend::new("up", &section(extra), Duration::from_secs(5), tmp.path()).map(|_| ())
        };
        assert!(new("dns_hook = [\"/bin/true\", \"zone-a\"]").is_ok());
        assert!(new("challenge = \"http-01\"\nhttp_listen = \"127.0.0.1:0\"").is_ok());
        let webroot = tmp.path().join("www");
        std::fs::create_dir(&webroot).unwrap();
        assert!(new(&format!(
            "challenge = \"http-01\"\nhttp_webroot = \"{}\"",
            webroot.display()
        ))
        .is_ok());
        for (extra, says) in [
            ("", "exactly one of dns_hook or rfc2136_server"),
            ("dns_hook = []", "dns_hook is empty"),
            (
                "dns_hook = [\"/bin/true\"]\nhttp_listen = \"127.0.0.1:0\"",
                "http_listen does not answer dns-01",
            ),
            (
                "challenge = \"http-01\"\nhttp_listen = \"127.0.0.1:0\"\nhttp_webroot = \"/\"",
                "exactly one of http_webroot or http_listen",
            ),
            (
                "challenge = \"tls-alpn-01\"",
                "use \"dns-01\" or \"http-01\"",
            ),
            (
                "rfc2136_server = \"ns.test:53\"\nrfc2136_tsig_file = \"/x\"",
                "is not ip:port",
            ),
            (
                "rfc2136_server = \"127.0.0.1:53\"",
                "needs rfc2136_tsig_file",
            ),
            (
                "challenge = \"http-01\"\nhttp_webroot = \"/nonexistent-webroot\"",
                "is not a directory",
            ),
            (
                "dns_hook = [\"/bin/true\"]\neab_kid = \"kid-1\"",
                "eab_kid and eab_hmac_key_file go together",
            ),
            (
                "dns_hook = [\"/bin/true\"]\neab_kid = \"k\"\neab_hmac_key_file = \"/nonexistent\"",
                "eab_hmac_key_file /nonexistent",
            ),
            (
                "dns_hook = [\"/bin/true\"]\nca_bundle = \"/nonexistent\"",
                "ca_bundle /nonexistent",
            ),
        ] {
            let e = new(extra).unwrap_err();
            assert!(e.contains(says), "{extra:?}: {e}");
            assert!(e.starts_with("backends.up.acme"), "{e}");
        }
        let e = AcmeBackend::new(
            "up",
            &toml::from_str("directory = \"upstream.test\"\ndns_hook = [\"/bin/true\"]").unwrap(),
            Duration::from_secs(5),
            tmp.path(),
        )
        .unwrap_err();
        assert!(e.contains("is not an http(s) URL"), "{e}");
    }

    #[test]
    fn eab_and_rfc2136_keys_are_read_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let hmac = tmp.path().join("eab.key");
        std::fs::write(
            &hmac,
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n",
        )
        .unwrap();
        let s = section(&format!(
            "dns_hook = [\"/bin/true\"]\neab_kid = \"kid-1\"\neab_hmac_key_file = \"{}\"",
            hmac.display()
        ));
        let b = AcmeBackend::new("up", &s, Duration::from_secs(5), &tmp.path().join("s")).unwrap();
        assert_eq!(b.eab.as_ref().unwrap().kid, "kid-1");
        assert_eq!(b.eab.as_ref().unwrap().hmac_key.len(), 48);
        std::fs::write(&hmac, "not base64url!").unwrap();
        assert!(
            AcmeBackend::new("up", &s, Duration::from_secs(5), &tmp.path().join("s"))
                .unwrap_err()
                .contains("not base64url")
        );

        let bind = "key \"upstream-key.\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n";
        let want = TsigKey {
            name: "upstream-key".into(),
            algorithm: "hmac-sha256".into(),
            secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0".into(),
        };
        assert_eq!(parse_tsig_key(bind).unwrap(), want);
        let toml_key = "name = \"upstream-key\"\nsecret = \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\"\n";
        assert_eq!(parse_tsig_key(toml_key).unwrap(), want);
        assert!(parse_tsig_key("secret = 1").is_err());
        assert!(parse_tsig_key("key \"k\" { algorithm hmac-sha256; };").is_err());
        let tsig = tmp.path().join("tsig.key");
        std::fs::write(&tsig, bind).unwrap();
        let s = section(&format!(
            "rfc2136_server = \"127.0.0.1:5353\"\nrfc2136_tsig_file = \"{}\"",
            tsig.display()
        ));
        assert!(AcmeBackend::new("up", &s, Duration::from_secs(5), &tmp.path().join("s")).is_ok());
    }

    #[test]
    fn resumed_orders_must_name_the_same_identifiers() {
        use certwright_proto::types::Identifier;
        let a = [Identifier::dns("a.test"), Identifier::dns("B.test")];
        let b = [Identifier::dns("b.test"), Identifier::dns("a.test")];
        assert!(same_identifiers(&a, &b));
        assert!(!same_identifiers(&a, &b[..1]));
        assert!(!same_identifiers(
            &[Identifier::dns("127.0.0.1")],
            &[Identifier::ip("127.0.0.1")]
        ));
    }

    #[test]
    fn ari_windows_are_kept_as_long_as_the_upstream_asked_within_bounds() {
        let t0 = std::time::Instant::now();
        let mut c = AriCache::default();
        c.put("a".into(), (1, 2), Some(Duration::from_secs(300)), t0);
        c.put("short".into(), (3, 4), Some(Duration::from_secs(1)), t0);
        c.put("long".into(), (5, 6), Some(Duration::from_secs(86400)), t0);
        c.put("none".into(), (7, 8), None, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(c.get("a", at(299)), Some((1, 2)));
        assert_eq!(c.get("a", at(300)), None);
        assert_eq!(c.get("short", at(59)), Some((3, 4)), "at least a minute");
        assert_eq!(c.get("short", at(60)), None);
        assert_eq!(c.get("long", at(3599)), Some((5, 6)));
        assert_eq!(c.get("long", at(3600)), None, "at most an hour");
        assert_eq!(c.get("none", at(599)), Some((7, 8)));
        assert_eq!(c.get("none", at(600)), None);
        assert_eq!(c.get("other", t0), None);
        // Bounded: expired entries go first, then everything.
        for i in 0..ARI_CACHE_ENTRIES + 10 {
            c.put(format!("n{i}"), (0, 1), None, at(4000));
        }
        assert!(c.windows.len() <= ARI_CACHE_ENTRIES);
        assert_eq!(c.get("n0", at(4000)), None);
        assert!(c
            .get(&format!("n{}", ARI_CACHE_ENTRIES + 9), at(4000))
            .is_some());
    }

    #[test]
    fn pem_round_trip() {
        let der = vec![1u8, 2, 3, 250, 251];
        let pem = pem_encode(&der, "PRIVATE KEY");
        assert_eq!(pem_decode(&pem, "PRIVATE KEY"), Some(der));
        assert_eq!(pem_decode(&pem, "CERTIFICATE"), None);
    }
}
