//! The load: N workers, each running full issuance flows one after another, for a count of
//! flows or a duration, after an optional warm-up whose samples are discarded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certwright_proto::jws::Signer;
use certwright_proto::keyauth::key_authorization;
use certwright_proto::{AccountKey, KeyType};

use serde_json::{json, Value};

use crate::acme::{Account, FlowError, Session, Target, Trust};
use crate::cpu::{CpuSample, CpuTargets};
use crate::report::Report;
use crate::responder::Responder;
use crate::stats::{Stats, Step};

/// How much load, of what shape.
#[derive(Debug, Clone)]
pub struct Options {
    /// The ACME directory URL.
    pub directory: String,
    /// How to trust the server's TLS certificate.
    pub trust: Trust,
    /// Offer HTTP/2 (ALPN); default HTTP/1.1 with a pool of connections, like many clients.
    pub http2: bool,
    /// Where the http-01 responder listens (the port the CA validates against).
    pub http01_listen: SocketAddr,
    /// Flows in flight at once.
    pub concurrency: usize,
    /// Stop after this many measured flows…
    pub count: Option<u64>,
    /// …or after this long (flows in flight then still finish and count).
    pub duration: Option<Duration>,
    /// Flows run first and not measured.
    pub warmup: u64,
    /// Accounts created before the run and shared by the flows; 0: a new account per flow.
    pub accounts: usize,
    /// Account key type.
    pub account_key: KeyType,
    /// Certificate key type.
    pub cert_key: KeyType,
    /// A new certificate key per flow (else one per worker, reused).
    pub fresh_cert_keys: bool,
    /// DNS names per order.
    pub names: usize,
    /// Parent domain of the generated names.
    pub domain: String,
    /// First wait before polling an authorization or order; doubles up to `poll_max`.
    pub poll_initial: Duration,
    /// Longest wait between two polls.
    pub poll_max: Duration,
    /// How long an authorization or order may take to settle.
    pub poll_timeout: Duration,
    /// Label in reports (e.g. `pebble`, `certwright-ca`).
    pub label: String,
    /// Sample this process's resident memory at the end (the server under load).
    pub server_pid: Option<u32>,
    /// Database processes whose CPU is counted with the server's (`--db-pid`,
    /// `--db-user`); the server's CPU is counted when `server_pid` is set.
    pub db_pids: Vec<u32>,
    /// Every process of this user is a database process (e.g. `postgres`).
    pub db_user: Option<String>,
    /// With `db_user`: only its processes whose command line contains one of these.
    pub db_match: Vec<String>,
}

impl Options {
    /// Defaults for `directory`: 8 flows in flight, 100 flows, EC P-256, one name.
    pub fn new(directory: impl Into<String>) -> Self {
        Self {
            directory: directory.into(),
            trust: Trust::System,
            http2: false,
            http01_listen: SocketAddr::from(([127, 0, 0, 1], 5002)),
            concurrency: 8,
            count: Some(100),
            duration: None,
            warmup: 0,
            accounts: 8,
            account_key: KeyType::EcP256,
            cert_key: KeyType::EcP256,
            fresh_cert_keys: false,
            names: 1,
            domain: "bench.example.test".into(),
            poll_initial: Duration::from_millis(5),
            poll_max: Duration::from_millis(250),
            poll_timeout: Duration::from_secs(60),
            label: String::new(),
            server_pid: None,
            db_pids: Vec::new(),
            db_user: None,
            db_match: Vec::new(),
        }
    }
}

/// What every worker shares.
struct Shared {
    target: Arc<Target>,
    responder: Responder,
    options: Options,
    accounts: Vec<Arc<Account>>,
    run_id: String,
    /// Flow tickets handed out in the current phase.
    started: AtomicU64,
    /// Flows started over the whole run: makes every order's names unique.
    sequence: AtomicU64,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A certificate key of `kind` for rcgen.
pub fn cert_key(kind: KeyType) -> anyhow::Result<rcgen::KeyPair> {
    let pkcs8 = AccountKey::generate(kind)
        .and_then(|k| k.to_pkcs8())
        .map_err(|e| anyhow::anyhow!("certificate key: {e}"))?;
    Ok(rcgen::KeyPair::try_from(pkcs8.as_slice())?)
}

/// A CSR (DER) for `names` with an empty subject.
pub fn csr(names: &[String], key: &rcgen::KeyPair) -> Result<Vec<u8>, FlowError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| FlowError::Protocol(format!("CSR names: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .serialize_request(key)
        .map(|r| r.der().to_vec())
        .map_err(|e| FlowError::Protocol(format!("CSR: {e}")))
}

/// Polls `url` (POST-as-GET) until its status leaves `pending`/`processing`.
async fn poll(
    session: &mut Session<'_>,
    account: &Account,
    url: &str,
    what: &'static str,
    options: &Options,
) -> Result<Value, FlowError> {
    let deadline = Instant::now() + options.poll_timeout;
    let mut wait = options.poll_initial;
    loop {
        tokio::time::sleep(wait).await;
        let v = session
            .post(&account.key, &Signer::Kid(account.kid.clone()), url, None)
            .await?
            .json()?;
        let status = v["status"].as_str().unwrap_or_default();
        if status != "pending" && status != "processing" {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(FlowError::Timeout(what));
        }
        wait = (wait * 2).min(options.poll_max);
    }
}

fn invalid(what: &'static str, v: &Value) -> FlowError {
    let kind = v["error"]["type"]
        .as_str()
        .or_else(|| {
            v["challenges"]
                .as_array()
                .and_then(|cs| cs.iter().find_map(|c| c["error"]["type"].as_str()))
        })
        .unwrap_or("unknown");
    let kind = kind
        .strip_prefix("urn:ietf:params:acme:error:")
        .unwrap_or(kind)
        .to_owned();
    FlowError::Invalid { what, kind }
}

/// One full issuance: newNonce, (newAccount), newOrder, http-01 per authorization,
/// finalize, certificate download.
async fn issuance(
    shared: &Shared,
    stats: &mut Stats,
    flow: u64,
    account: Option<&Arc<Account>>,
    cert_key: &rcgen::KeyPair,
) -> Result<(), FlowError> {
    let options = &shared.options;
    let mut session = Session::new(&shared.target, stats);
    let flow_started = Instant::now();
    session.new_nonce().await?;
    let account = match account {
        Some(a) => a.clone(),
        None => session.new_account(options.account_key).await?,
    };
    let kid = Signer::Kid(account.kid.clone());
    let names: Vec<String> = (0..options.names)
        .map(|i| format!("n{i}-f{flow}.{}.{}", shared.run_id, options.domain))
        .collect();

    let started = Instant::now();
    let identifiers: Vec<Value> = names
        .iter()
        .map(|n| json!({"type": "dns", "value": n}))
        .collect();
    let new_order = shared.target.directory.new_order.clone();
    let reply = session
        .post(
            &account.key,
            &kid,
            &new_order,
            Some(&json!({ "identifiers": identifiers })),
        )
        .await?;
    let order_url = reply.location()?;
    let order = reply.json()?;
    session.stats.record(Step::NewOrder, started.elapsed());

    let authz_urls: Vec<String> = order["authorizations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if authz_urls.is_empty() {
        return Err(FlowError::Protocol("order has no authorizations".into()));
    }
    for authz_url in &authz_urls {
        let started = Instant::now();
        let authz = session
            .post(&account.key, &kid, authz_url, None)
            .await?
            .json()?;
        if authz["status"] == "valid" {
            session.stats.record(Step::Challenge, started.elapsed());
            continue;
        }
        let chall = authz["challenges"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "http-01"))
            .cloned()
            .ok_or_else(|| FlowError::Protocol("no http-01 challenge offered".into()))?;
        let token = chall["token"].as_str().unwrap_or_default().to_owned();
        let chall_url = chall["url"].as_str().unwrap_or_default().to_owned();
        shared
            .responder
            .publish(&token, key_authorization(&token, &account.key.jwk()));
        let result = async {
            session
                .post(&account.key, &kid, &chall_url, Some(&json!({})))
                .await?;
            poll(&mut session, &account, authz_url, "authorization", options).await
        }
        .await;
        shared.responder.withdraw(&token);
        let settled = result?;
        if settled["status"] != "valid" {
            return Err(invalid("authorization", &settled));
        }
        session.stats.record(Step::Challenge, started.elapsed());
    }

    let started = Instant::now();
    let csr_der = match options.fresh_cert_keys {
        true => csr(&names, &cert_key_or_protocol(options.cert_key)?)?,
        false => csr(&names, cert_key)?,
    };
    let finalize_url = order["finalize"]
        .as_str()
        .ok_or_else(|| FlowError::Protocol("order has no finalize URL".into()))?
        .to_owned();
    let mut order = session
        .post(
            &account.key,
            &kid,
            &finalize_url,
            Some(&json!({"csr": certwright_proto::b64::encode(&csr_der)})),
        )
        .await?
        .json()?;
    if order["status"] != "valid" {
        order = poll(&mut session, &account, &order_url, "order", options).await?;
    }
    if order["status"] != "valid" {
        return Err(invalid("order", &order));
    }
    session.stats.record(Step::Finalize, started.elapsed());

    let started = Instant::now();
    let cert_url = order["certificate"]
        .as_str()
        .ok_or_else(|| FlowError::Protocol("valid order without certificate URL".into()))?
        .to_owned();
    let chain = session.post(&account.key, &kid, &cert_url, None).await?;
    if !chain.body.starts_with(b"-----BEGIN CERTIFICATE-----") {
        return Err(FlowError::Protocol(
            "certificate download is not a PEM chain".into(),
        ));
    }
    session.stats.record(Step::Certificate, started.elapsed());
    session.stats.record(Step::Flow, flow_started.elapsed());
    Ok(())
}

fn cert_key_or_protocol(kind: KeyType) -> Result<rcgen::KeyPair, FlowError> {
    cert_key(kind).map_err(|e| FlowError::Protocol(e.to_string()))
}

/// Runs flows on one worker until the phase's budget is spent.
async fn worker(shared: Arc<Shared>, worker: usize, budget: Budget, verbose_errors: bool) -> Stats {
    let mut stats = Stats::new();
    let cert_key = match cert_key(shared.options.cert_key) {
        Ok(k) => k,
        Err(e) => {
            stats.error(format!("cert-key: {e}"));
            return stats;
        }
    };
    let account = if shared.accounts.is_empty() {
        None
    } else {
        Some(&shared.accounts[worker % shared.accounts.len()])
    };
    loop {
        let ticket = shared.started.fetch_add(1, Ordering::Relaxed);
        match budget {
            Budget::Count(n) if ticket >= n => break,
            Budget::Until(t) if Instant::now() >= t => break,
            _ => {}
        }
        let flow = shared.sequence.fetch_add(1, Ordering::Relaxed);
        match issuance(&shared, &mut stats, flow, account, &cert_key).await {
            Ok(()) => stats.flows_ok += 1,
            Err(e) => {
                if verbose_errors && stats.flows_failed < 3 {
                    eprintln!("flow {flow} failed: {e}");
                }
                stats.error(e.cause());
            }
        }
    }
    stats
}

#[derive(Debug, Clone, Copy)]
enum Budget {
    Count(u64),
    Until(Instant),
}

async fn phase(shared: &Arc<Shared>, budget: Budget) -> (Stats, Duration) {
    shared.started.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..shared.options.concurrency {
        tasks.spawn(worker(shared.clone(), w, budget, true));
    }
    let mut stats = Stats::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(s) => stats.merge(&s),
            Err(e) => stats.error(format!("worker-panic: {e}")),
        }
    }
    (stats, started.elapsed())
}

/// Resident and peak resident memory of `pid`, in KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Runs the whole benchmark with a responder already listening.
pub async fn run_with_responder(options: Options, responder: Responder) -> anyhow::Result<Report> {
    anyhow::ensure!(options.concurrency > 0, "concurrency must be at least 1");
    anyhow::ensure!(options.names > 0, "an order needs at least one name");
    anyhow::ensure!(
        options.count.is_some() || options.duration.is_some(),
        "give a count of flows or a duration"
    );
    let target =
        Arc::new(Target::connect(&options.directory, &options.trust, options.http2).await?);

    // The account pool, created concurrently (at most `concurrency` at once).
    let mut setup = Stats::new();
    let mut accounts = Vec::with_capacity(options.accounts);
    let mut remaining = options.accounts;
    while remaining > 0 {
        let batch = remaining.min(options.concurrency);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let target = target.clone();
            let kind = options.account_key;
            tasks.spawn(async move {
                let mut stats = Stats::new();
                let mut session = Session::new(&target, &mut stats);
                let account = session.new_account(kind).await;
                (account, stats)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (account, stats) = done?;
            setup.merge(&stats);
            accounts.push(account.map_err(|e| anyhow::anyhow!("creating an account: {e}"))?);
        }
        remaining -= batch;
    }

    let shared = Arc::new(Shared {
        target,
        responder,
        options: options.clone(),
        accounts,
        run_id: random_hex(4),
        started: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
    });
    if options.warmup > 0 {
        let (warm, _) = phase(&shared, Budget::Count(options.warmup)).await;
        if warm.flows_failed > 0 {
            eprintln!(
                "warm-up: {} of {} flows failed: {:?}",
                warm.flows_failed, options.warmup, warm.errors
            );
        }
    }
    let budget = match (options.count, options.duration) {
        (Some(n), _) => Budget::Count(n),
        (None, Some(d)) => Budget::Until(Instant::now() + d),
        (None, None) => unreachable!("checked above"),
    };
    let targets = CpuTargets {
        server_pid: options.server_pid,
        db_pids: options.db_pids.clone(),
        db_user: options.db_user.clone(),
        db_match: options.db_match.clone(),
    };
    let cpu_start = CpuSample::take(&targets);
    let (mut stats, elapsed) = phase(&shared, budget).await;
    let cpu_end = CpuSample::take(&targets);
    stats.merge_step(Step::NewAccount, &setup);
    let rss = options.server_pid.and_then(rss_kib);
    let mut report = Report::new(&options, &stats, elapsed, rss);
    report.set_cpu(cpu_start.per_issuance(&cpu_end, stats.flows_ok));
    Ok(report)
}

/// Starts the http-01 responder on `options.http01_listen`, then runs.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let responder = Responder::start(options.http01_listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for http-01 on {}: {e}",
            options.http01_listen
        )
    })?;
    run_with_responder(options, responder).await
}
