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
use crate::store::{AccountRecord, CertFiles, CertMeta, Store};

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
}

/// Accounts, clients and certificates in one state directory.
#[derive(Debug)]
pub struct Manager {
    store: Store,
    clock: Arc<dyn Clock>,
    trust_pem: Vec<Vec<u8>>,
    poll: PollPolicy,
    clients: Mutex<HashMap<String, Arc<AcmeClient>>>,
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
        let mut failures: Vec<(String, Error)> = Vec::new();
        for server in &spec.servers {
            match self.obtain_from(name, server, spec, previous).await {
                Ok(mut obtained) => {
                    obtained.fallbacks = failures
                        .iter()
                        .map(|(s, e)| (s.clone(), e.to_string()))
                        .collect();
                    if let Some(hook) = &spec.deploy_hook {
                        let paths = self.store.cert_paths(name)?;
                        crate::hooks::run_deploy_hook(hook, name, &spec.names, &paths).await?;
                    }
                    return Ok(obtained);
                }
                Err(e) => {
                    tracing::warn!(ca = %server, error = %e, "issuance failed at this CA");
                    failures.push((server.clone(), e));
                }
            }
        }
        if failures.len() == 1 {
            return Err(failures.pop().expect("one").1);
        }
        Err(Error::AllCasFailed(failures))
    }

    async fn obtain_from(
        &self,
        name: &str,
        server: &str,
        spec: &CertSpec,
        previous: Option<&CertMeta>,
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
        let solver = spec.solver.build().await?;
        let issued = issue(&account, &request, solver.as_ref()).await?;
        drop(solver);
        let renew_at = self
            .renewal_time(account.client(), &issued.info)
            .await
            .unwrap_or_else(|| renewal::default_renew_at(&issued.info, renewal::random_unit()));
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
            failures: 0,
            retry_at: None,
            last_error: None,
            revoked: false,
            external_csr: spec.csr.is_some(),
            deploy_hook: spec.deploy_hook.clone(),
        };
        self.store.save_certificate(name, &files(&issued), &meta)?;
        Ok(Obtained {
            name: name.to_owned(),
            server: server.to_owned(),
            info: issued.info,
            meta,
            fallbacks: Vec::new(),
        })
    }

    /// A renewal time from the CA's ARI window, when it offers one.
    async fn renewal_time(&self, client: &AcmeClient, info: &CertInfo) -> Option<OffsetDateTime> {
        let id = info.ari_id.as_deref()?;
        match client.renewal_info(id).await {
            Ok(Some((ri, _))) => {
                let start = renewal::parse_rfc3339(&ri.suggested_window.start)?;
                let end = renewal::parse_rfc3339(&ri.suggested_window.end)?;
                Some(renewal::ari_renew_at(start, end, renewal::random_unit()))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "renewalInfo failed; using 2/3 of the lifetime");
                None
            }
        }
    }

    /// Asks the issuing CA's ARI endpoint again and moves `renew_at` into its window.
    pub async fn refresh_ari(&self, name: &str) -> Result<Option<CertMeta>> {
        let Some(mut meta) = self.store.load_meta(name)? else {
            return Ok(None);
        };
        let Some(fullchain) = self.store.load_fullchain(name)? else {
            return Ok(Some(meta));
        };
        let info = CertInfo::from_chain_pem(&fullchain)?;
        let client = self.client(&meta.issued_by).await?;
        if let Some(at) = self.renewal_time(&client, &info).await {
            let current = renewal::parse_rfc3339(&meta.renew_at);
            // Keep an earlier choice inside the same window; move when the window moved.
            if current.is_none_or(|c| c > at || c < at - time::Duration::days(30)) {
                meta.renew_at = rfc3339(at);
                let _lock = self.store.lock_cert(name)?;
                self.store.save_meta(name, &meta)?;
            }
        }
        Ok(Some(meta))
    }

    /// When a certificate is next due: its renewal time, or the retry time after failures.
    pub fn due_at(meta: &CertMeta) -> OffsetDateTime {
        let renew = renewal::parse_rfc3339(&meta.renew_at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        match meta.retry_at.as_deref().and_then(renewal::parse_rfc3339) {
            Some(retry) if meta.failures > 0 => retry.max(renew),
            _ => renew,
        }
    }

    /// Renews `name` when due (or when `force`); `None` when not due yet. A failure is
    /// recorded in the metadata with the next retry time (backoff) and returned.
    pub async fn renew(&self, name: &str, force: bool) -> Result<Option<Obtained>> {
        let meta = self
            .store
            .load_meta(name)?
            .ok_or_else(|| Error::Config(format!("no certificate named {name}")))?;
        if meta.revoked && !force {
            return Ok(None);
        }
        // A CA offering ARI may have moved the window (e.g. ahead of a mass revocation).
        let meta = if !force && meta.ari_id.is_some() {
            match self.refresh_ari(name).await {
                Ok(Some(m)) => m,
                Ok(None) => meta,
                Err(e) => {
                    tracing::warn!(name, error = %e, "could not refresh the ARI window");
                    meta
                }
            }
        } else {
            meta
        };
        if !force && Self::due_at(&meta) > self.now() {
            return Ok(None);
        }
        if meta.external_csr {
            return Err(Error::Config(format!(
                "{name} was issued from a user CSR; issue it again with --csr"
            )));
        }
        let spec = CertSpec::from_meta(&meta)?;
        match self.obtain(name, &spec, Some(&meta)).await {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                let mut failed = meta.clone();
                failed.failures += 1;
                let delay = renewal::retry_delay(failed.failures);
                failed.retry_at = Some(rfc3339(
                    self.now() + time::Duration::try_from(delay).unwrap_or_default(),
                ));
                failed.last_error = Some(e.to_string());
                if let Ok(_lock) = self.store.lock_cert(name) {
                    self.store.save_meta(name, &failed)?;
                }
                Err(e)
            }
        }
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
