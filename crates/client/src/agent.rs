//! The renewal agent: a TOML file lists certificates; the agent issues the missing ones,
//! renews the due ones, runs deploy hooks, then sleeps until the next one is due (one
//! timer, whatever the number of certificates) or until told to stop.
//!
//! ```toml
//! server = ["https://ca.example/directory"]   # default CAs, tried in order
//! email = ["ops@example.org"]
//! ca_cert = ["/etc/certwright/private-root.pem"]
//!
//! [[certificate]]
//! name = "www"                                # default: the first domain
//! domains = ["www.example.org", "example.org"]
//! key_type = "ec256"
//! http01_listen = "0.0.0.0:80"                # or webroot, tlsalpn01_listen, dns01_exec, dns01_rfc2136
//! deploy_hook = "systemctl reload nginx"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use certwright_proto::KeyType;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::client::Eab;
use crate::error::{Error, Result};
use crate::manager::{CertSpec, MaintainOptions, Manager, Outcome};
use crate::solver::SolverOptions;

/// The agent's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Default CA directory URLs for certificates that name none.
    #[serde(default, deserialize_with = "one_or_many")]
    pub server: Vec<String>,
    /// Extra trusted roots (PEM files).
    #[serde(default, deserialize_with = "one_or_many")]
    pub ca_cert: Vec<PathBuf>,
    /// State directory (the command line's --state-dir wins).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Default contacts.
    #[serde(default, deserialize_with = "one_or_many")]
    pub email: Vec<String>,
    /// Default EAB key id.
    #[serde(default)]
    pub eab_kid: Option<String>,
    /// Default EAB MAC key (base64url).
    #[serde(default)]
    pub eab_hmac_key: Option<String>,
    /// Command run (`sh -c`) for each notification (failure, repeated failure,
    /// recovery, close to expiry).
    #[serde(default)]
    pub notify_hook: Option<String>,
    /// URL the notifications are POSTed to (JSON, HMAC-SHA256 signed).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// File holding the webhook's HMAC secret (mode 0600); without it, the
    /// `CERTWRIGHT_WEBHOOK_SECRET` environment variable.
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    /// The certificates.
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<AgentCert>,
}

/// One certificate in the agent file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCert {
    /// Certificate name (directory under certs/); default: the first domain.
    #[serde(default)]
    pub name: Option<String>,
    /// Names in the certificate.
    pub domains: Vec<String>,
    /// CA directory URLs, tried in order (default: the file's `server`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub server: Vec<String>,
    /// Key type (default ec256).
    #[serde(default)]
    pub key_type: Option<String>,
    /// Keep the key across renewals.
    #[serde(default)]
    pub reuse_key: bool,
    /// Profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Preferred chain (issuer CN).
    #[serde(default)]
    pub preferred_chain: Option<String>,
    /// Deploy hook command (`sh -c`).
    #[serde(default)]
    pub deploy_hook: Option<String>,
    /// Endpoints (`host:port`) that must serve the new certificate after the deploy hook.
    #[serde(default, deserialize_with = "one_or_many")]
    pub verify: Vec<String>,
    /// Hook run before each issuance (`sh -c`).
    #[serde(default)]
    pub pre_hook: Option<String>,
    /// Hook run after the CA work of each issuance (`sh -c`).
    #[serde(default)]
    pub post_hook: Option<String>,
    /// Standalone http-01 listener `ADDR:PORT` (or `:PORT`).
    #[serde(default, deserialize_with = "crate::solver::deserialize_listen")]
    pub http01_listen: Option<std::net::SocketAddr>,
    /// http-01 web root.
    #[serde(default)]
    pub webroot: Option<PathBuf>,
    /// Standalone tls-alpn-01 listener `ADDR:PORT` (or `:PORT`).
    #[serde(default, deserialize_with = "crate::solver::deserialize_listen")]
    pub tlsalpn01_listen: Option<std::net::SocketAddr>,
    /// dns-01 hook script.
    #[serde(default)]
    pub dns01_exec: Option<PathBuf>,
    /// dns-01 RFC 2136 configuration file.
    #[serde(default)]
    pub dns01_rfc2136: Option<PathBuf>,
    /// Servers for the dns-01 propagation check.
    #[serde(default)]
    pub dns01_resolvers: Vec<std::net::SocketAddr>,
    /// dns-01 propagation timeout (seconds).
    #[serde(default)]
    pub dns01_timeout: Option<u64>,
}

impl AgentCert {
    /// The solver options of this certificate.
    pub fn solver_options(&self) -> SolverOptions {
        SolverOptions {
            http01_listen: self.http01_listen,
            webroot: self.webroot.clone(),
            tlsalpn01_listen: self.tlsalpn01_listen,
            dns01_exec: self.dns01_exec.clone(),
            dns01_rfc2136: self.dns01_rfc2136.clone(),
            dns01_resolvers: self.dns01_resolvers.clone(),
            dns01_timeout: self.dns01_timeout,
        }
    }
}

fn one_or_many<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

impl AgentConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let config: Self =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        for (name, spec) in config.specs()? {
            crate::solver::preflight::check_static(&spec.solver, &spec.names)
                .map_err(|e| Error::Config(format!("certificate {name}: {e}")))?;
        }
        config.notifier()?;
        Ok(config)
    }

    /// Where notifications go, as configured (reads the webhook secret).
    pub fn notifier(&self) -> Result<crate::notify::Notifier> {
        let webhook = match &self.webhook_url {
            Some(url) => Some(crate::notify::Webhook::new(
                url.clone(),
                self.webhook_secret_file.as_deref(),
            )?),
            None => None,
        };
        Ok(crate::notify::Notifier {
            hook: self.notify_hook.clone(),
            webhook,
        })
    }

    /// Each certificate's name and spec, with the file's defaults applied.
    pub fn specs(&self) -> Result<Vec<(String, CertSpec)>> {
        let eab = match (&self.eab_kid, &self.eab_hmac_key) {
            (Some(kid), Some(key)) => Some(Eab::from_b64(kid.clone(), key)?),
            (None, None) => None,
            _ => return Err(Error::Config("eab_kid and eab_hmac_key go together".into())),
        };
        let mut out: Vec<(String, CertSpec)> = Vec::new();
        for c in &self.certificates {
            let first = c
                .domains
                .first()
                .ok_or_else(|| Error::Config("a certificate lists no domains".into()))?;
            let name = c.name.clone().unwrap_or_else(|| first.clone());
            crate::store::cert_dir_name(&name)?;
            if out.iter().any(|(n, _)| *n == name) {
                return Err(Error::Config(format!("certificate {name} is listed twice")));
            }
            let key_type = match &c.key_type {
                Some(k) => KeyType::parse(k)
                    .ok_or_else(|| Error::Config(format!("{name}: unknown key_type {k}")))?,
                None => KeyType::EcP256,
            };
            let solver = c
                .solver_options()
                .to_spec()?
                .ok_or_else(|| Error::Config(format!("{name}: no solver configured")))?;
            let servers = if c.server.is_empty() {
                self.server.clone()
            } else {
                c.server.clone()
            };
            if servers.is_empty() {
                return Err(Error::Config(format!("{name}: no CA (server)")));
            }
            out.push((
                name,
                CertSpec {
                    names: c.domains.clone(),
                    servers,
                    key_type,
                    reuse_key: c.reuse_key,
                    solver,
                    csr: None,
                    profile: c.profile.clone(),
                    preferred_chain: c.preferred_chain.clone(),
                    email: self.email.clone(),
                    eab: eab.clone(),
                    deploy_hook: c.deploy_hook.clone(),
                    verify: c.verify.clone(),
                    pre_hook: c.pre_hook.clone(),
                    post_hook: c.post_hook.clone(),
                },
            ));
        }
        Ok(out)
    }
}

/// What happened to one certificate in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// Issued for the first time.
    Issued {
        /// The certificate's name.
        name: String,
        /// Directory URL of the CA that issued it.
        ca: String,
    },
    /// Renewed.
    Renewed {
        /// The certificate's name.
        name: String,
        /// Directory URL of the CA that issued it.
        ca: String,
    },
    /// A deploy hook that had failed succeeded on a retry.
    Deployed {
        /// The certificate's name.
        name: String,
    },
    /// Failed (issuance, renewal or deploy hook); retried later with backoff.
    Failed {
        /// The certificate's name.
        name: String,
        /// What went wrong.
        error: String,
    },
}

/// The shortest time between two issuances of one certificate by one agent: a guard
/// against renewal loops (a CA handing out certificates that are due at once, a clock
/// jump).
pub const MIN_REISSUE_INTERVAL: Duration = Duration::from_secs(600);

/// What the agent remembers between passes (failures and retry times live in each
/// certificate's `meta.json`).
#[derive(Debug, Default)]
pub struct AgentState {
    /// When this agent last issued each certificate (monotonic).
    issued_at: std::collections::HashMap<String, std::time::Instant>,
    /// Where notifications go.
    notifier: crate::notify::Notifier,
    /// Certificates (name, serial) already reported as close to expiry.
    warned: std::collections::HashSet<(String, String)>,
    /// The status file and metrics, updated after each pass.
    monitor: Option<crate::monitor::Monitor>,
}

impl AgentState {
    /// A fresh state sending notifications through `notifier`.
    pub fn new(notifier: crate::notify::Notifier) -> Self {
        Self {
            notifier,
            ..Self::default()
        }
    }

    /// Also keeps `monitor` (status file, metrics) up to date.
    pub fn with_monitor(mut self, monitor: crate::monitor::Monitor) -> Self {
        self.monitor = Some(monitor);
        self
    }
}

/// How many certificates one agent pass works on at once. Certificates answering
/// challenges on the same listener address still take turns.
pub const CONCURRENT_RENEWALS: usize = 4;

/// What one certificate's step in a pass gave: its index, its metadata before, when it
/// was last issued by this agent, and the outcome.
type Step = (
    usize,
    Option<crate::store::CertMeta>,
    Option<Duration>,
    Result<Outcome>,
);

/// One pass over every certificate: issue missing ones, renew due ones, retry failed
/// deploy hooks — up to [`CONCURRENT_RENEWALS`] at once. Returns what happened and when
/// the agent should look again: the next due time, but at least every
/// [`crate::renewal::wake_interval`] of the shortest lifetime it manages (a 6-day
/// certificate: every 86 minutes).
pub async fn pass(
    manager: &std::sync::Arc<Manager>,
    certs: &[(String, CertSpec)],
    stop: &tokio::sync::watch::Receiver<bool>,
    state: &mut AgentState,
) -> (Vec<AgentEvent>, OffsetDateTime) {
    use std::sync::Arc;
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_RENEWALS));
    let mut listeners: std::collections::HashMap<
        std::net::SocketAddr,
        Arc<tokio::sync::Mutex<()>>,
    > = Default::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (name, spec)) in certs.iter().enumerate() {
        if *stop.borrow() {
            break;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let since = state.issued_at.get(name).map(std::time::Instant::elapsed);
        let listener = match spec.solver {
            crate::solver::SolverSpec::Http01Listen(a)
            | crate::solver::SolverSpec::TlsAlpn01Listen(a) => {
                Some(listeners.entry(a).or_default().clone())
            }
            _ => None,
        };
        let (manager, name, spec) = (manager.clone(), name.clone(), spec.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let _turn = match &listener {
                Some(l) => Some(l.lock().await),
                None => None,
            };
            let before = manager.store().load_meta(&name).ok().flatten();
            let opts = MaintainOptions {
                spec: Some(&spec),
                may_issue: since.is_none_or(|s| s >= MIN_REISSUE_INTERVAL),
                ..MaintainOptions::default()
            };
            let outcome = manager.maintain(&name, &opts).await;
            (index, before, since, outcome)
        });
    }
    let mut steps: Vec<Step> = Vec::with_capacity(certs.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(step) => steps.push(step),
            Err(e) => tracing::error!(error = %e, "a certificate's task failed"),
        }
    }
    steps.sort_by_key(|s| s.0);

    let mut events = Vec::new();
    let mut shortest: Option<time::Duration> = None;
    let mut next: Option<OffsetDateTime> = None;
    let mut soonest = |t: OffsetDateTime| next = Some(next.map_or(t, |n: OffsetDateTime| n.min(t)));
    for (index, before, since, outcome) in steps {
        let name = &certs[index].0;
        match outcome {
            Ok(Outcome::NotDue { at }) => soonest(at),
            Ok(Outcome::Held) => {
                let wait = MIN_REISSUE_INTERVAL.saturating_sub(since.unwrap_or_default());
                tracing::warn!(
                    name,
                    "due again right after being issued; waiting {}s before renewing",
                    wait.as_secs()
                );
                soonest(crate::renewal::after(manager.now(), wait));
            }
            Ok(Outcome::Issued(o)) => {
                state
                    .issued_at
                    .insert(name.clone(), std::time::Instant::now());
                events.extend(issued_events(name, o, true));
            }
            Ok(Outcome::Renewed(o)) => {
                state
                    .issued_at
                    .insert(name.clone(), std::time::Instant::now());
                events.extend(issued_events(name, o, false));
            }
            Ok(Outcome::Deployed) => events.push(AgentEvent::Deployed { name: name.clone() }),
            Err(e) => events.push(AgentEvent::Failed {
                name: name.clone(),
                error: e.to_string(),
            }),
        }
        let after = manager.store().load_meta(name);
        if !state.notifier.is_empty() {
            let after = after.as_ref().ok().and_then(Option::as_ref);
            let key = (
                name.clone(),
                after.map(|m| m.serial.clone()).unwrap_or_default(),
            );
            let warned = state.warned.contains(&key);
            for n in crate::notify::events(name, before.as_ref(), after, manager.now(), warned) {
                if n.event == crate::notify::EventKind::ExpiringSoon {
                    state.warned.insert(key.clone());
                }
                state.notifier.send(&n).await;
            }
        }
        match after {
            Ok(Some(meta)) => {
                soonest(Manager::next_action_at(&meta));
                if let Some(l) = meta.lifetime() {
                    shortest = Some(shortest.map_or(l, |s| s.min(l)));
                }
            }
            Ok(None) => {}
            Err(e) => events.push(AgentEvent::Failed {
                name: name.clone(),
                error: e.to_string(),
            }),
        }
    }
    let look_again = crate::renewal::after(manager.now(), crate::renewal::wake_interval(shortest));
    (events, next.map_or(look_again, |n| n.min(look_again)))
}
/// The events of one issuance or renewal: itself, and a failed deploy hook.
fn issued_events(name: &str, o: crate::manager::Obtained, first: bool) -> Vec<AgentEvent> {
    let (name, ca) = (name.to_owned(), o.server);
    let mut events = vec![if first {
        AgentEvent::Issued {
            name: name.clone(),
            ca,
        }
    } else {
        AgentEvent::Renewed {
            name: name.clone(),
            ca,
        }
    }];
    if let Some(error) = o.deploy_error {
        events.push(AgentEvent::Failed { name, error });
    }
    events
}

/// Runs until `stop` turns true: a pass, then sleep until the next certificate is due.
/// A new certificate list arriving on `reload` (SIGHUP) replaces the old one and starts a
/// pass at once: added certificates are issued, changed ones follow their new settings,
/// removed ones are no longer looked after (their files stay). `report` sees every event
/// as it happens.
pub async fn run(
    manager: &std::sync::Arc<Manager>,
    mut certs: Vec<(String, CertSpec)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut reload: tokio::sync::mpsc::Receiver<Vec<(String, CertSpec)>>,
    mut state: AgentState,
    report: &(dyn Fn(&AgentEvent) + Send + Sync),
) -> Result<()> {
    let mut reload_open = true;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let (events, next) = pass(manager, &certs, &stop, &mut state).await;
        for e in &events {
            report(e);
        }
        if let Some(monitor) = &mut state.monitor {
            monitor.count(&events);
            let names: Vec<String> = certs.iter().map(|(n, _)| n.clone()).collect();
            if let Err(e) = monitor.update(manager, &names) {
                tracing::warn!(error = %e, "could not write the status file");
            }
        }
        let wait = (next - manager.now()).clamp(
            time::Duration::seconds(1),
            time::Duration::try_from(crate::renewal::MAX_INTERVAL).expect("fits"),
        );
        let wait = Duration::try_from(wait).unwrap_or(Duration::from_secs(1));
        tracing::info!(
            seconds = wait.as_secs(),
            "sleeping until the next certificate is due"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    return Ok(());
                }
            }
            new = reload.recv(), if reload_open => match new {
                Some(new) => certs = new,
                None => reload_open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_checks() {
        let c: AgentConfig = toml::from_str(
            r#"
            server = "https://ca.test/dir"
            email = "ops@a.test"
            [[certificate]]
            domains = ["a.test", "b.test"]
            webroot = "/srv/www"
            deploy_hook = "true"
            [[certificate]]
            name = "other"
            domains = ["c.test"]
            server = ["https://one/dir", "https://two/dir"]
            key_type = "rsa2048"
            http01_listen = "127.0.0.1:8080"
            "#,
        )
        .unwrap();
        let specs = c.specs().unwrap();
        assert_eq!(specs[0].0, "a.test");
        assert_eq!(specs[0].1.servers, ["https://ca.test/dir"]);
        assert_eq!(specs[0].1.email, ["ops@a.test"]);
        assert_eq!(specs[1].1.servers.len(), 2);
        assert_eq!(specs[1].1.key_type, KeyType::Rsa2048);
        let dup: AgentConfig = toml::from_str(
            r#"
            server = "https://ca.test/dir"
            [[certificate]]
            domains = ["a.test"]
            webroot = "/w"
            [[certificate]]
            domains = ["a.test"]
            webroot = "/w"
            "#,
        )
        .unwrap();
        assert!(dup.specs().is_err());
        assert!(
            toml::from_str::<AgentConfig>("[[certificate]]\ndomains=[\"a.test\"]\nbogus=1\n")
                .is_err()
        );
    }
}
