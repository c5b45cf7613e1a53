//! `certwright-va-agent run`: long polls for jobs on every CA instance, validates, posts
//! results, renews the agent's certificate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use certwright_va::remote::{self, Job, PollRequest, RenewRequest, MAX_WAIT_MS};
use certwright_va::{DenyList, NameResolver, Va, VaConfig};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{self, CallError};
use crate::backoff::Backoff;
use crate::files::{write_atomic, AgentDir, State, CA_FILE, CERT_FILE, KEY_FILE, NEXT_CERT_FILE};
use crate::metrics::{JobOutcome, Metrics};
use crate::tls::{self, CertInfo, Identity};

/// Requests other than polls give up after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The renewal task looks at the clock at least this often (suspends, clock changes).
const RENEWAL_RECHECK: Duration = Duration::from_secs(3600);

/// What `run` is given.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The agent directory.
    pub dir: AgentDir,
    /// The CA instances to poll; empty: the ones in the state file.
    pub servers: Vec<String>,
    /// The DNS server the agent's VA asks; `None`: the system's resolvers.
    pub dns: Option<SocketAddr>,
    /// Address ranges never contacted, on top of the reserved ones.
    pub deny: Vec<String>,
    /// Long polls kept open per server (and so jobs run at once per server).
    pub max_concurrent: usize,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// The agent's key and certificate as read from its directory.
#[derive(Debug, Clone)]
pub struct StoredIdentity {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The key (PEM).
    pub key_pem: String,
    /// What the certificate says.
    pub info: CertInfo,
}

/// Reads the key and certificate, finishing a renewal a crash interrupted (a renewed
/// certificate whose key was already written).
pub fn load_identity(dir: &AgentDir) -> anyhow::Result<StoredIdentity> {
    let key_pem = dir.read_text(KEY_FILE)?;
    let cert_pem = dir.read_text(CERT_FILE)?;
    let info = CertInfo::from_pem(&cert_pem)
        .with_context(|| format!("{}", dir.path(CERT_FILE).display()))?;
    if tls::key_fits(&key_pem, &info) {
        let _ = std::fs::remove_file(dir.path(NEXT_CERT_FILE));
        return Ok(StoredIdentity {
            cert_pem,
            key_pem,
            info,
        });
    }
    let next = dir.path(NEXT_CERT_FILE);
    if let Ok(next_pem) = std::fs::read_to_string(&next) {
        if let Ok(next_info) = CertInfo::from_pem(&next_pem) {
            if tls::key_fits(&key_pem, &next_info) {
                std::fs::rename(&next, dir.path(CERT_FILE))
                    .with_context(|| format!("finishing a renewal: {}", next.display()))?;
                return Ok(StoredIdentity {
                    cert_pem: next_pem,
                    key_pem,
                    info: next_info,
                });
            }
        }
    }
    bail!(
        "{} does not fit {}: enrol again",
        dir.path(KEY_FILE).display(),
        dir.path(CERT_FILE).display()
    )
}

/// Stores a renewed key and certificate so that a crash at any point leaves a key and a
/// certificate that fit: the certificate goes to a side file first, then the key is
/// replaced, then the certificate (see [`load_identity`]).
pub fn store_renewal(dir: &AgentDir, key_pem: &str, cert_pem: &str) -> std::io::Result<()> {
    write_atomic(&dir.path(NEXT_CERT_FILE), cert_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.path(KEY_FILE), key_pem.as_bytes(), 0o600)?;
    std::fs::rename(dir.path(NEXT_CERT_FILE), dir.path(CERT_FILE))?;
    std::fs::File::open(&dir.dir)?.sync_all()
}

struct Agent {
    dir: AgentDir,
    state: State,
    ca: CertificateDer<'static>,
    /// The client and its generation (one more at each renewal).
    client: RwLock<(u64, reqwest::Client)>,
    /// A renewal is in flight: the CA may already refuse the old certificate.
    renewing: AtomicBool,
    cert: RwLock<CertInfo>,
    va: Va,
    metrics: Metrics,
}

impl Agent {
    fn client(&self) -> (u64, reqwest::Client) {
        self.client.read().expect("not poisoned").clone()
    }

    /// Whether a 401 to a request made with client generation `generation` may come from
    /// a renewal (the CA accepts only the newest certificate) rather than a removal.
    fn renewed_since(&self, generation: u64) -> bool {
        self.renewing.load(Ordering::SeqCst)
            || self.client.read().expect("not poisoned").0 != generation
    }
}

/// How long a request refused during a renewal waits before it is made again.
const AFTER_RENEWAL: Duration = Duration::from_secs(1);

/// Marks a renewal in flight while it lives.
struct Renewing<'a>(&'a AtomicBool);

impl Drop for Renewing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Runs the agent until `shutdown` turns true (then finishes the jobs in hand) or the CA
/// refuses it (401: an error).
pub async fn run(opts: RunOptions, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let state = opts.dir.read_state()?;
    let servers = if opts.servers.is_empty() {
        state.servers.clone()
    } else {
        opts.servers
            .iter()
            .map(|s| api::normalize_server(s))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if servers.is_empty() {
        bail!("no server to poll: give --server");
    }
    let n = opts.max_concurrent.max(1);
    let ca_pem = opts.dir.read_text(CA_FILE)?;
    let ca = tls::certs_from_pem(&ca_pem)
        .context("the agent CA file")?
        .remove(0);
    let id = load_identity(&opts.dir)?;
    let client = tls::pinned_client(
        &ca,
        Some(Identity::from_pem(&id.cert_pem, &id.key_pem)?),
        REQUEST_TIMEOUT,
    )?;
    let deny = DenyList::parse(&opts.deny).map_err(|e| anyhow!("--deny: {e}"))?;
    let resolver = NameResolver::dns(opts.dns).map_err(|e| anyhow!("{e}"))?;
    let mut config = VaConfig::new(String::new());
    config.deny = deny;
    config.max_concurrent = n * servers.len();
    let va = Va::new(config, resolver).context("building the validator")?;
    let agent = Arc::new(Agent {
        dir: opts.dir.clone(),
        state,
        ca,
        client: RwLock::new((0, client)),
        renewing: AtomicBool::new(false),
        cert: RwLock::new(id.info.clone()),
        va,
        metrics: Metrics::default(),
    });
    let (stop_tx, stop) = watch::channel(false);
    if let Some(addr) = opts.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-listen {addr}"))?;
        tracing::info!(%addr, "serving metrics");
        tokio::spawn(crate::metrics::serve(
            listener,
            agent.metrics.clone(),
            stop.clone(),
        ));
    }
    tracing::info!(
        name = %agent.state.name,
        segment = %agent.state.segment,
        servers = ?servers,
        polls_per_server = n,
        certificate_expires = %tls::rfc3339(id.info.not_after),
        "agent starting"
    );
    let mut tasks = JoinSet::new();
    for server in &servers {
        for slot in 0..n {
            tasks.spawn(poll_loop(agent.clone(), server.clone(), slot, stop.clone()));
        }
    }
    tasks.spawn(renew_loop(agent.clone(), servers.clone(), stop.clone()));
    let mut fatal: Option<anyhow::Error> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown), if !stopping => {
                tracing::info!("shutting down: no new jobs; finishing the jobs in hand");
                stopping = true;
                let _ = stop_tx.send(true);
            }
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    if fatal.is_none() {
                        tracing::error!(error = %format!("{e:#}"), "stopping the agent");
                        fatal = Some(e);
                    }
                    stopping = true;
                    let _ = stop_tx.send(true);
                }
                Some(Err(e)) => {
                    if fatal.is_none() {
                        fatal = Some(anyhow!("an agent task failed: {e}"));
                    }
                    stopping = true;
                    let _ = stop_tx.send(true);
                }
            }
        }
    }
    match fatal {
        Some(e) => Err(e),
        None => {
            tracing::info!("agent stopped");
            Ok(())
        }
    }
}

/// Resolves when `rx` turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The CA refused the agent with 401: it was removed or its certificate is no longer
/// accepted. `run` ends with this error (the binary exits with [`EXIT_REMOVED`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}. The agent was removed (certwright-ca agent remove) or its certificate is no longer accepted: enrol it again with a new token")]
pub struct Removed(pub CallError);

/// The exit status of `run` when the CA refused the agent (401), so that a service
/// manager can tell it from other failures (systemd: `RestartPreventExitStatus=3`).
pub const EXIT_REMOVED: u8 = 3;

fn removed(e: CallError) -> anyhow::Error {
    Removed(e).into()
}

/// The CA refused the agent's poll with 403: the segment in the agent's state is not the
/// one its certificate was issued for (an edited state file, or another enrolment's).
/// Retrying cannot help; `run` ends with this error (exit status [`EXIT_REMOVED`] too).
#[derive(Debug, thiserror::Error)]
#[error("{error}. The agent's state names segment {segment:?}, which the CA does not give it: enrol it again with a new token")]
pub struct Refused {
    /// The refusal.
    pub error: CallError,
    /// The segment the agent asked for.
    pub segment: String,
}

async fn poll_loop(
    agent: Arc<Agent>,
    server: String,
    slot: usize,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let req = PollRequest {
        segment: Some(agent.state.segment.clone()),
        wait_ms: Some(MAX_WAIT_MS),
    };
    let mut backoff = Backoff::default();
    let mut connected = false;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let (generation, client) = agent.client();
        let polled = tokio::select! {
            r = api::poll(&client, &server, &req) => r,
            _ = stopped(&mut stop) => return Ok(()),
        };
        match polled {
            Ok(job) => {
                if !connected && slot == 0 {
                    tracing::info!(%server, segment = %agent.state.segment, "connected; polling for jobs");
                }
                connected = true;
                backoff.reset();
                if let Some(job) = job {
                    run_one(&agent, &server, job).await?;
                }
            }
            Err(e) if e.is_unauthorized() && agent.renewed_since(generation) => {
                tokio::select! {
                    _ = tokio::time::sleep(AFTER_RENEWAL) => {}
                    _ = stopped(&mut stop) => return Ok(()),
                }
            }
            Err(e) if e.is_unauthorized() => return Err(removed(e)),
            Err(e @ CallError::Refused { status: 403, .. }) => {
                return Err(Refused {
                    error: e,
                    segment: agent.state.segment.clone(),
                }
                .into())
            }
            Err(e) => {
                let wait = backoff.next_wait();
                if connected || slot == 0 {
                    tracing::warn!(%server, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot poll the CA");
                }
                connected = false;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped(&mut stop) => return Ok(()),
                }
            }
        }
    }
}

async fn run_one(agent: &Agent, server: &str, job: Job) -> anyhow::Result<()> {
    let identifier = job.identifier.value.as_str();
    let method = job.challenge.as_str();
    let kind = match job.kind {
        remote::JobKind::Validate => "validate",
        remote::JobKind::Caa => "caa",
    };
    if !api::valid_job_id(&job.id) {
        tracing::warn!(%server, job = %job.id, "ignoring a job with an id that cannot be answered");
        return Ok(());
    }
    let started = Instant::now();
    tracing::info!(%server, job = %job.id, identifier, method, kind, "job taken");
    let result = remote::run_job(&agent.va, &job).await;
    let mut outcome = match &result.error {
        None => JobOutcome::Valid,
        Some(_) => JobOutcome::Invalid,
    };
    tracing::debug!(%server, job = %job.id, diagnostic = %result.diagnostic, "what the agent saw");
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The newest client: the certificate may have been renewed while the job ran.
        let (generation, client) = agent.client();
        match api::post_result(&client, server, &job.id, &result).await {
            Ok(()) => break,
            Err(e) if e.is_unauthorized() && attempt < 3 && agent.renewed_since(generation) => {
                tokio::time::sleep(AFTER_RENEWAL).await;
            }
            Err(e) if e.is_unauthorized() => return Err(removed(e)),
            Err(e @ CallError::Transport { .. }) if attempt < 3 => {
                tracing::warn!(%server, job = %job.id, error = %e, "posting the result failed; retrying");
                tokio::time::sleep(backoff.next_wait()).await;
            }
            Err(e) => {
                tracing::warn!(%server, job = %job.id, error = %e, "the result was not accepted");
                outcome = JobOutcome::Unreported;
                break;
            }
        }
    }
    let took = started.elapsed();
    agent.metrics.record(outcome, took);
    let problem = result
        .error
        .as_ref()
        .map(|p| format!("{}: {}", p.kind.name(), p.detail));
    tracing::info!(
        %server,
        job = %job.id,
        identifier,
        method,
        kind,
        outcome = outcome.as_str(),
        problem = problem.as_deref().unwrap_or(""),
        took_ms = took.as_millis() as u64,
        "job done"
    );
    Ok(())
}

async fn renew_loop(
    agent: Arc<Agent>,
    servers: Vec<String>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(600));
    loop {
        let info = agent.cert.read().expect("not poisoned").clone();
        let wait = tls::until_renewal(&info, tls::unix_now());
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait.min(RENEWAL_RECHECK)) => continue,
                _ = stopped(&mut stop) => return Ok(()),
            }
        }
        match renew_once(&agent, &servers).await {
            Ok(not_after) => {
                backoff.reset();
                tracing::info!(certificate_expires = %tls::rfc3339(not_after), "certificate renewed");
            }
            Err(e) if e.is_unauthorized() => return Err(removed(e.into())),
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "renewing the certificate failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped(&mut stop) => return Ok(()),
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RenewError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl RenewError {
    fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Call(e) if e.is_unauthorized())
    }
}

impl From<RenewError> for CallError {
    fn from(e: RenewError) -> Self {
        match e {
            RenewError::Call(c) => c,
            RenewError::Other(o) => CallError::Transport {
                server: String::new(),
                detail: o.to_string(),
            },
        }
    }
}

async fn renew_once(agent: &Agent, servers: &[String]) -> Result<i64, RenewError> {
    let (key, csr) = tls::new_key_and_csr()?;
    let (generation, client) = agent.client();
    agent.renewing.store(true, Ordering::SeqCst);
    let _renewing = Renewing(&agent.renewing);
    let mut last = None;
    for server in servers {
        match api::renew(&client, server, &RenewRequest { csr: csr.clone() }).await {
            Ok(resp) => {
                let info =
                    CertInfo::from_pem(&resp.certificate).context("the renewed certificate")?;
                let key_pem = key.serialize_pem();
                if !tls::key_fits(&key_pem, &info) {
                    return Err(anyhow!("{server} sent a certificate for another key").into());
                }
                let new_client = tls::pinned_client(
                    &agent.ca,
                    Some(Identity::from_pem(&resp.certificate, &key_pem)?),
                    REQUEST_TIMEOUT,
                )?;
                store_renewal(&agent.dir, &key_pem, &resp.certificate)
                    .context("storing the renewed certificate")?;
                *agent.client.write().expect("not poisoned") = (generation + 1, new_client);
                let not_after = info.not_after;
                *agent.cert.write().expect("not poisoned") = info;
                return Ok(not_after);
            }
            Err(e) if e.is_unauthorized() => return Err(e.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(RenewError::Call)
        .unwrap_or_else(|| anyhow!("no server").into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(key: &rcgen::KeyPair) -> String {
        rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(key)
            .unwrap()
            .pem()
    }

    #[test]
    fn a_renewal_interrupted_anywhere_leaves_a_matching_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AgentDir::new(tmp.path());
        dir.create().unwrap();
        let (old_key, _) = tls::new_key_and_csr().unwrap();
        let old_cert = cert_for(&old_key);
        write_atomic(
            &dir.path(KEY_FILE),
            old_key.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        write_atomic(&dir.path(CERT_FILE), old_cert.as_bytes(), 0o600).unwrap();
        assert_eq!(load_identity(&dir).unwrap().cert_pem, old_cert);

        let (new_key, _) = tls::new_key_and_csr().unwrap();
        let new_cert = cert_for(&new_key);
        // Crash after the side file: the old pair stays, the side file goes.
        write_atomic(&dir.path(NEXT_CERT_FILE), new_cert.as_bytes(), 0o600).unwrap();
        assert_eq!(load_identity(&dir).unwrap().cert_pem, old_cert);
        assert!(!dir.path(NEXT_CERT_FILE).exists());
        // Crash after the key: the renewal is finished on load.
        write_atomic(&dir.path(NEXT_CERT_FILE), new_cert.as_bytes(), 0o600).unwrap();
        write_atomic(
            &dir.path(KEY_FILE),
            new_key.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        assert_eq!(load_identity(&dir).unwrap().cert_pem, new_cert);
        assert!(!dir.path(NEXT_CERT_FILE).exists());
        // A whole renewal.
        let (third_key, _) = tls::new_key_and_csr().unwrap();
        let third_cert = cert_for(&third_key);
        store_renewal(&dir, &third_key.serialize_pem(), &third_cert).unwrap();
        let id = load_identity(&dir).unwrap();
        assert_eq!(id.cert_pem, third_cert);
        use std::os::unix::fs::PermissionsExt;
        for f in [KEY_FILE, CERT_FILE] {
            let mode = std::fs::metadata(dir.path(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        // A key that fits nothing is refused.
        write_atomic(
            &dir.path(KEY_FILE),
            old_key.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        assert!(load_identity(&dir).is_err());
    }
}
