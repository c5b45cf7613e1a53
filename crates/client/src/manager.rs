//! Certificates as the CLI and the agent manage them: accounts per CA loaded or created
//! in the store, issuance over several CAs in turn, renewal when due (ARI-aware), revocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certwright_proto::{AccountKey, KeyType};
use time::OffsetDateTime;

use crate::certinfo::{CertInfo, CertKey};
use crate::client::{Account, AcmeClient, ClientOptions, Eab, NewAccountOptions, PollPolicy};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::issue::{issue, IssueRequest, Issued, KeySource};
use crate::renewal::{self, rfc3339};
use crate::solver::SolverSpec;
use crate::store::{AccountRecord, CertFiles, CertMeta, DeployFailure, Store};

/// What a certificate should look like and how to get it.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// DNS names / IP addresses.
    pub names: Vec<String>,
    /// CA directory URLs, tried in order.
    pub servers: Vec<String>,
    /// Key type of the certificate key.
    pub key_type: KeyType,
    /// Keep the current key on renewal.
    pub reuse_key: bool,
    /// The solver.
    pub solver: SolverSpec,
    /// A user CSR (DER) instead of a generated key.
    pub csr: Option<Vec<u8>>,
    /// Profile name.
    pub profile: Option<String>,
    /// Preferred chain by issuer CN.
    pub preferred_chain: Option<String>,
    /// Contacts for new accounts.
    pub email: Vec<String>,
    /// EAB for new accounts.
    pub eab: Option<Eab>,
    /// Deploy hook.
    pub deploy_hook: Option<String>,
    /// Endpoints (`host:port`) that must serve the new certificate after the deploy hook.
    pub verify: Vec<String>,
    /// Run before the certificate is requested (e.g. to stop a server holding port 80).
    pub pre_hook: Option<String>,
    /// Run after the CA work, whatever its outcome (e.g. to start that server again).
    pub post_hook: Option<String>,
}

impl CertSpec {
    /// The spec stored with a certificate (for renewal).
    pub fn from_meta(meta: &CertMeta) -> Result<Self> {
        Ok(Self {
            names: meta.names.clone(),
            servers: meta.servers.clone(),
            key_type: KeyType::parse(&meta.key_type)
                .ok_or_else(|| Error::Config(format!("unknown key type {}", meta.key_type)))?,
            reuse_key: meta.reuse_key,
            solver: meta.solver.clone(),
            csr: None,
            profile: meta.profile.clone(),
            preferred_chain: meta.preferred_chain.clone(),
            email: meta.email.clone(),
            eab: None,
            deploy_hook: meta.deploy_hook.clone(),
            verify: meta.verify.clone(),
            pre_hook: meta.pre_hook.clone(),
            post_hook: meta.post_hook.clone(),
        })
    }
}

/// The result of a successful issuance.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// Certificate name.
    pub name: String,
    /// The CA that issued it.
    pub server: String,
    /// Parsed leaf.
    pub info: CertInfo,
    /// The metadata written.
    pub meta: CertMeta,
    /// CAs that failed before this one, with the reason.
    pub fallbacks: Vec<(String, String)>,
    /// Why the deploy hook failed, if it did (the certificate is in place all the same;
    /// the hook is retried with backoff).
    pub deploy_error: Option<String>,
}

/// How [`Manager::maintain`] treats one certificate.
#[derive(Debug, Clone, Copy)]
pub struct MaintainOptions<'a> {
    /// How the certificate should look; `None`: as in its `meta.json`.
    pub spec: Option<&'a CertSpec>,
    /// Renew even when not due.
    pub force: bool,
    /// Use these CAs from now on (`renew --server`).
    pub servers: Option<&'a [String]>,
    /// Whether issuing is allowed now (the agent's guard against renewal loops); when
    /// not, a due certificate gives [`Outcome::Held`].
    pub may_issue: bool,
}

impl Default for MaintainOptions<'_> {
    fn default() -> Self {
        Self {
            spec: None,
            force: false,
            servers: None,
            may_issue: true,
        }
    }
}

/// What [`Manager::maintain`] did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Nothing to do before `at`.
    NotDue {
        /// When something is next due.
        at: OffsetDateTime,
    },
    /// Due, but issuing is not allowed now ([`MaintainOptions::may_issue`]).
    Held,
    /// Issued for the first time (or anew, for changed names).
    Issued(Obtained),
    /// Renewed.
    Renewed(Obtained),
    /// A deploy hook that had failed was run again and succeeded.
    Deployed,
}

/// Errors of local work before any CA is asked (binding a listener) count as
/// configuration errors.
fn local_error(e: Error) -> Error {
    match e {
        Error::Io { path, source } => Error::Config(format!("{path}: {source}")),
        Error::Solver { solver, detail } => Error::Config(format!("{solver} solver: {detail}")),
        other => other,
    }
}

/// Accounts, clients and certificates in one state directory.
#[derive(Debug)]
pub struct Manager {
    store: Store,
    clock: Arc<dyn Clock>,
    trust_pem: Vec<Vec<u8>>,
    poll: PollPolicy,
    clients: Mutex<HashMap<String, Arc<AcmeClient>>>,
    /// One async lock per CA: concurrent issuances in this process load (or register)
    /// the account one at a time; the file lock keeps other processes out.
    account_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Manager {
    /// A manager over `store`, trusting the extra PEM roots.
    pub fn new(store: Store, clock: Arc<dyn Clock>, trust_pem: Vec<Vec<u8>>) -> Self {
        Self {
            store,
            clock,
            trust_pem,
            poll: PollPolicy::default(),
            clients: Mutex::default(),
            account_locks: Mutex::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Now, as the injected clock says.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The client of a CA (directory fetched once per manager).
    pub async fn client(&self, server: &str) -> Result<Arc<AcmeClient>> {
        if let Some(c) = self.clients.lock().expect("clients").get(server) {
            return Ok(c.clone());
        }
        let mut options = ClientOptions::new(server);
        options.extra_roots_pem = self.trust_pem.clone();
        options.poll = self.poll;
        let client = AcmeClient::new(options).await?;
        self.clients
            .lock()
            .expect("clients")
            .insert(server.to_owned(), client.clone());
        Ok(client)
    }

    /// The stored account of a CA.
    pub async fn stored_account(&self, server: &str) -> Result<Option<Account>> {
        let Some((_, creds)) = self.store.load_account(server)? else {
            return Ok(None);
        };
        let client = self.client(server).await?;
        Ok(Some(Account::load(client, &creds).await?))
    }

    /// The stored account of a CA, or a new one registered with `email` and `eab`.
    pub async fn account(
        &self,
        server: &str,
        email: &[String],
        eab: Option<&Eab>,
        key_type: KeyType,
    ) -> Result<Account> {
        let in_process = self
            .account_locks
            .lock()
            .expect("account locks")
            .entry(server.to_owned())
            .or_default()
            .clone();
        let _in_process = in_process.lock().await;
        let _lock = self.store.lock_account(server)?;
        if let Some(account) = self.stored_account(server).await? {
            return Ok(account);
        }
        self.register(server, email, eab, key_type).await
    }

    /// Registers a new account (agreeing to the terms) and stores it.
    pub async fn register(
        &self,
        server: &str,
        email: &[String],
        eab: Option<&Eab>,
        key_type: KeyType,
    ) -> Result<Account> {
        let client = self.client(server).await?;
        let key = AccountKey::generate(key_type)?;
        let options = NewAccountOptions {
            contact: email.to_vec(),
            terms_of_service_agreed: true,
            eab: eab.cloned(),
        };
        let account = Account::create(client, key, &options).await?;
        self.save_account(server, &account)?;
        Ok(account)
    }

    /// Writes an account's record and key.
    pub fn save_account(&self, server: &str, account: &Account) -> Result<()> {
        let record = AccountRecord {
            directory_url: server.to_owned(),
            url: account.url().to_owned(),
            contact: account.object().contact.clone(),
            status: account.object().status.to_string(),
        };
        self.store.save_account(&record, &account.credentials()?)
    }

    /// Issues `name` from the first CA that succeeds, stores it and runs its deploy hook.
    /// `previous` is the metadata of the certificate being renewed.
    ///
    /// Local preconditions (solver, ports, web root) are checked before any CA is
    /// contacted. A failure is recorded in `meta.json` (with the next retry time) before it
    /// is returned; a certificate never issued gets an entry of its own, so `list` shows
    /// it. A deploy hook that fails does not undo the issuance: the new certificate is in
    /// use, the failure is recorded for retry and returned in [`Obtained::deploy_error`].
    pub async fn obtain(
        &self,
        name: &str,
        spec: &CertSpec,
        previous: Option<&CertMeta>,
    ) -> Result<Obtained> {
        if spec.servers.is_empty() {
            return Err(Error::Config("no CA directory URL (--server)".into()));
        }
        let _lock = self.store.lock_cert(name)?;
        let paths = self.store.cert_paths(name)?;
        let result = match &spec.pre_hook {
            Some(hook) => crate::hooks::run_hook("pre", hook, name, &spec.names, &paths).await,
            None => Ok(()),
        };
        let result = match result {
            Ok(()) => self.obtain_locked(name, spec, previous).await,
            Err(e) => Err(e),
        };
        if let Some(hook) = &spec.post_hook {
            // After the CA work, whatever its outcome; a failure is worth a warning, not
            // a different outcome.
            if let Err(e) = crate::hooks::run_hook("post", hook, name, &spec.names, &paths).await {
                tracing::warn!(name, error = %e, "post hook failed");
            }
        }
        match result {
            Ok(mut obtained) => {
                if let Err(e) = self.deploy(name, &mut obtained.meta).await {
                    obtained.deploy_error = Some(e.to_string());
                }
                Ok(obtained)
            }
            Err(e) => {
                if let Err(save) = self.record_failure(name, spec, &e) {
                    tracing::warn!(name, error = %save, "could not record the failure");
                }
                Err(e)
            }
        }
    }

    async fn obtain_locked(
        &self,
        name: &str,
        spec: &CertSpec,
        previous: Option<&CertMeta>,
    ) -> Result<Obtained> {
        spec.solver.check_local(&spec.names)?;
        // Built once, before any CA is asked: a port in use is a local error, not a
        // reason to fall back to the next CA.
        let solver = spec.solver.build().await.map_err(local_error)?;
        let mut failures: Vec<(String, Error)> = Vec::new();
        for server in &spec.servers {
            match self
                .obtain_from(name, server, spec, previous, solver.as_ref())
                .await
            {
                Ok(mut obtained) => {
                    obtained.fallbacks = failures
                        .iter()
                        .map(|(s, e)| (s.clone(), e.to_string()))
                        .collect();
                    return Ok(obtained);
                }
                Err(e) => {
                    tracing::info!(ca = %server, error = %e, "issuance failed at this CA");
                    failures.push((server.clone(), e));
                }
            }
        }
        if failures.len() == 1 {
            return Err(failures.pop().expect("one").1);
        }
        Err(Error::AllCasFailed(failures))
    }

    /// Records a failed issuance or renewal of `name` in its metadata: the count, the next
    /// retry (backoff scaled to the certificate's lifetime) and the error.
    fn record_failure(&self, name: &str, spec: &CertSpec, e: &Error) -> Result<()> {
        let mut meta = match self.store.load_meta(name)? {
            Some(m) => m,
            None => {
                let mut m = CertMeta::never_issued(
                    spec.names.clone(),
                    spec.servers.clone(),
                    spec.key_type.name(),
                    spec.solver.clone(),
                );
                m.profile = spec.profile.clone();
                m.preferred_chain = spec.preferred_chain.clone();
                m.email = spec.email.clone();
                m.reuse_key = spec.reuse_key;
                m.deploy_hook = spec.deploy_hook.clone();
                m.verify = spec.verify.clone();
                m.pre_hook = spec.pre_hook.clone();
                m.post_hook = spec.post_hook.clone();
                m.external_csr = spec.csr.is_some();
                m
            }
        };
        meta.failures += 1;
        let delay = renewal::retry_delay(meta.failures, meta.lifetime());
        meta.retry_at = Some(rfc3339(renewal::after(self.now(), delay)));
        meta.last_error = Some(e.to_string());
        self.store.save_meta(name, &meta)
    }

    /// Runs the deploy hook of `name` (if any) for the current certificate, then checks
    /// that each `verify` endpoint serves it, and records the outcome in `meta` and
    /// `meta.json`: a failure with its backoff, or none. The caller holds the lock.
    async fn deploy(&self, name: &str, meta: &mut CertMeta) -> Result<()> {
        if meta.deploy_hook.is_none() && meta.verify.is_empty() {
            return Ok(());
        }
        let result = self.run_deploy(name, meta).await;
        meta.deploy_failure = match &result {
            Ok(()) => None,
            Err(e) => {
                let failures = meta.deploy_failure.as_ref().map_or(0, |f| f.failures) + 1;
                let delay = renewal::retry_delay(failures, meta.lifetime());
                Some(DeployFailure {
                    failures,
                    retry_at: rfc3339(renewal::after(self.now(), delay)),
                    error: e.to_string(),
                })
            }
        };
        self.store.save_meta(name, meta)?;
        result
    }

    async fn run_deploy(&self, name: &str, meta: &CertMeta) -> Result<()> {
        let paths = self.store.cert_paths(name)?;
        if let Some(hook) = &meta.deploy_hook {
            crate::hooks::run_deploy_hook(hook, name, &meta.names, &paths).await?;
        }
        if !meta.verify.is_empty() {
            let fullchain = self
                .store
                .load_fullchain(name)?
                .ok_or_else(|| Error::Config(format!("{name} has no fullchain.pem")))?;
            let leaf = CertInfo::from_chain_pem(&fullchain)?.der;
            let sni = crate::verify::sni_for(&meta.names);
            crate::verify::verify_served(&meta.verify, &sni, &leaf).await?;
        }
        Ok(())
    }

    async fn obtain_from(
        &self,
        name: &str,
        server: &str,
        spec: &CertSpec,
        previous: Option<&CertMeta>,
        solver: &dyn crate::solver::Solver,
    ) -> Result<Obtained> {
        let account = self
            .account(server, &spec.email, spec.eab.as_ref(), KeyType::EcP256)
            .await?;
        let key = match &spec.csr {
            Some(der) => KeySource::Csr(der.clone()),
            None => match (spec.reuse_key, self.store.load_privkey(name)?) {
                (true, Some(pem)) => KeySource::Key(CertKey::from_pem(&pem)?),
                _ => KeySource::Key(CertKey::generate(spec.key_type)?),
            },
        };
        let has_ari = account.client().directory().renewal_info.is_some();
        let replaces = previous
            .filter(|p| p.issued_by == server && has_ari)
            .and_then(|p| p.ari_id.clone());
        let request = IssueRequest {
            names: spec.names.clone(),
            key,
            profile: spec.profile.clone(),
            replaces,
            preferred_chain: spec.preferred_chain.clone(),
        };
        let issued = issue(&account, &request, solver).await?;
        let (renew_at, ari_window) = match self.ari_window(account.client(), &issued.info).await {
            Some((start, end)) => (
                renewal::ari_renew_at(
                    start,
                    end,
                    renewal::latest_renewal(issued.info.not_before, issued.info.not_after),
                    renewal::random_unit(),
                ),
                Some((rfc3339(start), rfc3339(end))),
            ),
            None => (
                renewal::default_renew_at(&issued.info, renewal::random_unit()),
                None,
            ),
        };
        let meta = CertMeta {
            names: spec.names.clone(),
            servers: spec.servers.clone(),
            issued_by: server.to_owned(),
            key_type: spec.key_type.name().to_owned(),
            reuse_key: spec.reuse_key,
            solver: spec.solver.clone(),
            profile: spec.profile.clone(),
            preferred_chain: spec.preferred_chain.clone(),
            email: spec.email.clone(),
            issuer: issued.info.issuer.clone(),
            not_before: rfc3339(issued.info.not_before),
            not_after: rfc3339(issued.info.not_after),
            serial: issued.info.serial_hex.clone(),
            ari_id: issued.info.ari_id.clone(),
            renew_at: rfc3339(renew_at),
            ari_window,
            failures: 0,
            retry_at: None,
            last_error: None,
            revoked: false,
            external_csr: spec.csr.is_some(),
            deploy_hook: spec.deploy_hook.clone(),
            verify: spec.verify.clone(),
            pre_hook: spec.pre_hook.clone(),
            post_hook: spec.post_hook.clone(),
            last_success: Some(rfc3339(self.now())),
            deploy_failure: None,
        };
        self.store.save_certificate(name, &files(&issued), &meta)?;
        Ok(Obtained {
            name: name.to_owned(),
            server: server.to_owned(),
            info: issued.info,
            meta,
            fallbacks: Vec::new(),
            deploy_error: None,
        })
    }

    /// The CA's ARI window for a certificate, when it offers one.
    async fn ari_window(
        &self,
        client: &AcmeClient,
        info: &CertInfo,
    ) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let id = info.ari_id.as_deref()?;
        match client.renewal_info(id).await {
            Ok(Some((ri, _))) => Some((
                renewal::parse_rfc3339(&ri.suggested_window.start)?,
                renewal::parse_rfc3339(&ri.suggested_window.end)?,
            )),
            Ok(None) => None,
            Err(e) => {
                tracing::info!(error = %e, "renewalInfo failed; using the default renewal time");
                None
            }
        }
    }

    /// Asks the issuing CA's ARI endpoint again. When the window moved (a CA asking for
    /// early renewal, "renew now" for a revoked certificate), a new time is drawn inside
    /// it; an unchanged window keeps the time chosen before, so it is stable between runs.
    pub async fn refresh_ari(&self, name: &str) -> Result<Option<CertMeta>> {
        let Some(mut meta) = self.store.load_meta(name)? else {
            return Ok(None);
        };
        let Some(fullchain) = self.store.load_fullchain(name)? else {
            return Ok(Some(meta));
        };
        let info = CertInfo::from_chain_pem(&fullchain)?;
        let client = self.client(&meta.issued_by).await?;
        if let Some((start, end)) = self.ari_window(&client, &info).await {
            let window = (rfc3339(start), rfc3339(end));
            if meta.ari_window.as_ref() != Some(&window) {
                let floor = renewal::latest_renewal(info.not_before, info.not_after);
                let at = renewal::ari_renew_at(start, end, floor, renewal::random_unit());
                let _lock = self.store.lock_cert(name)?;
                // Re-read under the lock: another run may have renewed meanwhile.
                if let Some(mut fresh) = self.store.load_meta(name)? {
                    if fresh.serial == meta.serial {
                        fresh.renew_at = rfc3339(at);
                        fresh.ari_window = Some(window);
                        self.store.save_meta(name, &fresh)?;
                    }
                    meta = fresh;
                }
            }
        }
        Ok(Some(meta))
    }

    /// When a certificate is next due for issuance or renewal: at once when it was never
    /// issued (after the retry time of a failure) or was revoked; otherwise its renewal
    /// time, never later than the safety floor, and not before the retry time of a
    /// failure.
    pub fn renewal_due_at(meta: &CertMeta) -> OffsetDateTime {
        let retry = meta
            .retry_at
            .as_deref()
            .and_then(renewal::parse_rfc3339)
            .filter(|_| meta.failures > 0);
        let renew = if !meta.is_issued() || meta.revoked {
            OffsetDateTime::UNIX_EPOCH
        } else {
            let chosen =
                renewal::parse_rfc3339(&meta.renew_at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            match meta.validity() {
                Some((nb, na)) => chosen.min(renewal::latest_renewal(nb, na)),
                None => chosen,
            }
        };
        match retry {
            Some(retry) => retry.max(renew),
            None => renew,
        }
    }

    /// When the next deploy retry is due, if a deploy hook failed.
    pub fn deploy_due_at(meta: &CertMeta) -> Option<OffsetDateTime> {
        let f = meta.deploy_failure.as_ref()?;
        Some(renewal::parse_rfc3339(&f.retry_at).unwrap_or(OffsetDateTime::UNIX_EPOCH))
    }

    /// When something is next to be done for a certificate: renewal or a deploy retry.
    pub fn next_action_at(meta: &CertMeta) -> OffsetDateTime {
        let renew = Self::renewal_due_at(meta);
        Self::deploy_due_at(meta).map_or(renew, |d| d.min(renew))
    }

    /// One word (or two) for a certificate's state, as `list` shows it.
    pub fn status(meta: &CertMeta, now: OffsetDateTime) -> &'static str {
        if !meta.is_issued() {
            return "never issued";
        }
        if meta.revoked {
            return "revoked";
        }
        if meta.validity().is_some_and(|(_, na)| na <= now) {
            return "expired";
        }
        if meta.deploy_failure.is_some() {
            return "deploy failed";
        }
        if meta.failures > 0 {
            return "renewal failing";
        }
        if Self::renewal_due_at(meta) <= now {
            return "due";
        }
        "valid"
    }

    /// Does what is due for one certificate: issues it when missing (or when its names
    /// changed), renews it when due (at once when revoked, or when the CA's ARI window says
    /// so), or retries a failed deploy hook. `spec` is how it should look (the agent's
    /// file); `None` takes it from `meta.json`.
    pub async fn maintain(&self, name: &str, opts: &MaintainOptions<'_>) -> Result<Outcome> {
        let meta = self.store.load_meta(name)?;
        let mut spec = match (opts.spec, &meta) {
            (Some(s), _) => s.clone(),
            (None, Some(m)) => CertSpec::from_meta(m)?,
            (None, None) => {
                return Err(Error::Config(format!("no certificate named {name}")));
            }
        };
        if let Some(servers) = opts.servers {
            spec.servers = servers.to_vec();
        }
        let now = self.now();
        let Some(mut meta) = meta else {
            if !opts.may_issue {
                return Ok(Outcome::Held);
            }
            return Ok(Outcome::Issued(self.obtain(name, &spec, None).await?));
        };
        if meta.servers != spec.servers {
            // A new CA list (renew --server, an edited agent file) applies from now on,
            // and is tried without waiting out the backoff earned at the old one.
            let _lock = self.store.lock_cert(name)?;
            meta.servers = spec.servers.clone();
            meta.retry_at = None;
            self.store.save_meta(name, &meta)?;
        }
        let names_changed = {
            let (mut a, mut b) = (meta.names.clone(), spec.names.clone());
            a.sort();
            b.sort();
            a != b
        };
        if !meta.is_issued() || names_changed {
            if !opts.force && !names_changed && Self::renewal_due_at(&meta) > now {
                return Ok(Outcome::NotDue {
                    at: Self::renewal_due_at(&meta),
                });
            }
            if !opts.may_issue {
                return Ok(Outcome::Held);
            }
            return Ok(Outcome::Issued(
                self.obtain(name, &spec, Some(&meta)).await?,
            ));
        }
        // A CA offering ARI may have moved the window (e.g. ahead of a mass revocation).
        if !opts.force && !meta.revoked && meta.ari_id.is_some() {
            match self.refresh_ari(name).await {
                Ok(Some(m)) => meta = m,
                Ok(None) => {}
                Err(e) => tracing::info!(name, error = %e, "could not refresh the ARI window"),
            }
        }
        let due = Self::renewal_due_at(&meta);
        if opts.force || due <= now {
            if meta.external_csr && spec.csr.is_none() {
                return Err(Error::Config(format!(
                    "{name} was issued from a user CSR; issue it again with --csr"
                )));
            }
            if !opts.may_issue {
                return Ok(Outcome::Held);
            }
            return Ok(Outcome::Renewed(
                self.obtain(name, &spec, Some(&meta)).await?,
            ));
        }
        if let Some(deploy_at) = Self::deploy_due_at(&meta) {
            if deploy_at <= now {
                let _lock = self.store.lock_cert(name)?;
                let mut meta = self.store.load_meta(name)?.unwrap_or(meta);
                meta.deploy_hook = spec.deploy_hook.clone();
                meta.verify = spec.verify.clone();
                self.deploy(name, &mut meta).await?;
                return Ok(Outcome::Deployed);
            }
            return Ok(Outcome::NotDue {
                at: deploy_at.min(due),
            });
        }
        Ok(Outcome::NotDue { at: due })
    }

    /// Renews `name` when due (or when `force`); `None` when not due yet. A failure is
    /// recorded in the metadata with the next retry time (backoff) and returned.
    pub async fn renew(&self, name: &str, force: bool) -> Result<Option<Obtained>> {
        let opts = MaintainOptions {
            force,
            ..MaintainOptions::default()
        };
        Ok(match self.maintain(name, &opts).await? {
            Outcome::Issued(o) | Outcome::Renewed(o) => Some(o),
            Outcome::NotDue { .. } | Outcome::Deployed | Outcome::Held => None,
        })
    }

    /// Revokes the current certificate of `name`, by the account key (default) or by the
    /// certificate's own key.
    pub async fn revoke(&self, name: &str, reason: Option<u8>, by_cert_key: bool) -> Result<()> {
        let _lock = self.store.lock_cert(name)?;
        let mut meta = self
            .store
            .load_meta(name)?
            .ok_or_else(|| Error::Config(format!("no certificate named {name}")))?;
        let fullchain = self
            .store
            .load_fullchain(name)?
            .ok_or_else(|| Error::Config(format!("{name} has no fullchain.pem")))?;
        let info = CertInfo::from_chain_pem(&fullchain)?;
        let server = meta.issued_by.clone();
        if by_cert_key {
            let pem = self
                .store
                .load_privkey(name)?
                .ok_or_else(|| Error::Config(format!("{name} has no privkey.pem")))?;
            let key = CertKey::from_pem(&pem)?.to_signing_key()?;
            let client = self.client(&server).await?;
            client
                .revoke_with_certificate_key(&key, &info.der, reason)
                .await?;
        } else {
            let account = self
                .stored_account(&server)
                .await?
                .ok_or_else(|| Error::Config(format!("no account stored for {server}")))?;
            account.revoke(&info.der, reason).await?;
        }
        meta.revoked = true;
        self.store.save_meta(name, &meta)
    }
}

fn files(issued: &Issued) -> CertFiles {
    CertFiles {
        cert: issued.cert_pem(),
        chain: issued.chain_pem(),
        fullchain: issued.fullchain.clone(),
        privkey: issued.key_pem.clone(),
    }
}

/// Parses a CRL reason (RFC 5280 §5.3.1) by name or number.
pub fn parse_reason(text: &str) -> Option<u8> {
    const NAMES: [(&str, u8); 9] = [
        ("unspecified", 0),
        ("keyCompromise", 1),
        ("cACompromise", 2),
        ("affiliationChanged", 3),
        ("superseded", 4),
        ("cessationOfOperation", 5),
        ("certificateHold", 6),
        ("privilegeWithdrawn", 9),
        ("aACompromise", 10),
    ];
    if let Ok(n) = text.parse::<u8>() {
        return matches!(n, 0..=6 | 8..=10).then_some(n);
    }
    NAMES
        .iter()
        .find(|(n, _)| {
            n.eq_ignore_ascii_case(text) || n.eq_ignore_ascii_case(&text.replace(['-', '_'], ""))
        })
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(parse_reason("keyCompromise"), Some(1));
        assert_eq!(parse_reason("key-compromise"), Some(1));
        assert_eq!(parse_reason("superseded"), Some(4));
        assert_eq!(parse_reason("4"), Some(4));
        assert_eq!(parse_reason("7"), None);
        assert_eq!(parse_reason("nonsense"), None);
    }
}
