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
use crate::manager::{CertSpec, Manager};
use crate::solver::SolverOptions;

/// The longest the agent sleeps before looking again (ARI windows may move).
pub const MAX_SLEEP: Duration = Duration::from_secs(6 * 3600);

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
    /// Standalone http-01 listener `ADDR:PORT`.
    #[serde(default)]
    pub http01_listen: Option<std::net::SocketAddr>,
    /// http-01 web root.
    #[serde(default)]
    pub webroot: Option<PathBuf>,
    /// Standalone tls-alpn-01 listener `ADDR:PORT`.
    #[serde(default)]
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        config.specs()?;
        Ok(config)
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
    /// Failed; retried later.
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

/// What the agent remembers between passes.
#[derive(Debug, Default)]
pub struct AgentState {
    /// Certificates whose first issuance failed: attempts and the next try.
    failed_new: std::collections::HashMap<String, (u32, OffsetDateTime)>,
    /// When this agent last issued each certificate (monotonic).
    issued_at: std::collections::HashMap<String, std::time::Instant>,
}

/// One pass over every certificate: issue missing ones, renew due ones. Returns what
/// happened and when the next certificate is due.
pub async fn pass(
    manager: &Manager,
    certs: &[(String, CertSpec)],
    stop: &tokio::sync::watch::Receiver<bool>,
    state: &mut AgentState,
) -> (Vec<AgentEvent>, OffsetDateTime) {
    let failed_new = &mut state.failed_new;
    let issued_at = &mut state.issued_at;
    let mut events = Vec::new();
    let mut next = manager.now() + MAX_SLEEP;
    for (name, spec) in certs {
        if *stop.borrow() {
            break;
        }
        let now = manager.now();
        let meta = match manager.store().load_meta(name) {
            Ok(m) => m,
            Err(e) => {
                events.push(AgentEvent::Failed {
                    name: name.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let changed = meta.as_ref().is_some_and(|m| {
            let mut a = m.names.clone();
            let mut b = spec.names.clone();
            a.sort();
            b.sort();
            a != b
        });
        match meta {
            Some(meta) if !changed && !meta.revoked => {
                let meta = if meta.ari_id.is_some() && Manager::due_at(&meta) > now {
                    manager
                        .refresh_ari(name)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(meta)
                } else {
                    meta
                };
                let due = Manager::due_at(&meta);
                if due > now {
                    next = next.min(due);
                    continue;
                }
                if let Some(at) = issued_at.get(name) {
                    let since = at.elapsed();
                    if since < MIN_REISSUE_INTERVAL {
                        let wait = MIN_REISSUE_INTERVAL - since;
                        tracing::warn!(
                            name,
                            "due again right after being issued; waiting {}s before renewing",
                            wait.as_secs()
                        );
                        next = next.min(now + wait);
                        continue;
                    }
                }
                match manager.obtain(name, spec, Some(&meta)).await {
                    Ok(o) => {
                        issued_at.insert(name.clone(), std::time::Instant::now());
                        next = next.min(Manager::due_at(&o.meta));
                        events.push(AgentEvent::Renewed {
                            name: name.clone(),
                            ca: o.server,
                        });
                    }
                    Err(e) => {
                        let mut failed = meta.clone();
                        failed.failures += 1;
                        let retry = now
                            + time::Duration::try_from(crate::renewal::retry_delay(
                                failed.failures,
                            ))
                            .unwrap_or_default();
                        failed.retry_at = Some(crate::renewal::rfc3339(retry));
                        failed.last_error = Some(e.to_string());
                        if let Ok(_lock) = manager.store().lock_cert(name) {
                            if let Err(e) = manager.store().save_meta(name, &failed) {
                                tracing::warn!(name, error = %e, "could not record the failure");
                            }
                        }
                        next = next.min(retry);
                        events.push(AgentEvent::Failed {
                            name: name.clone(),
                            error: e.to_string(),
                        });
                    }
                }
            }
            _ => {
                if let Some((_, retry)) = failed_new.get(name) {
                    if *retry > now {
                        next = next.min(*retry);
                        continue;
                    }
                }
                match manager.obtain(name, spec, None).await {
                    Ok(o) => {
                        failed_new.remove(name);
                        issued_at.insert(name.clone(), std::time::Instant::now());
                        next = next.min(Manager::due_at(&o.meta));
                        events.push(AgentEvent::Issued {
                            name: name.clone(),
                            ca: o.server,
                        });
                    }
                    Err(e) => {
                        let n = failed_new.get(name).map_or(1, |f| f.0 + 1);
                        let retry = now
                            + time::Duration::try_from(crate::renewal::retry_delay(n))
                                .unwrap_or_default();
                        failed_new.insert(name.clone(), (n, retry));
                        next = next.min(retry);
                        events.push(AgentEvent::Failed {
                            name: name.clone(),
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
    }
    (events, next)
}

/// Runs until `stop` turns true: a pass, then sleep until the next certificate is due.
/// `report` sees every event as it happens.
pub async fn run(
    manager: &Manager,
    certs: &[(String, CertSpec)],
    mut stop: tokio::sync::watch::Receiver<bool>,
    report: &(dyn Fn(&AgentEvent) + Send + Sync),
) -> Result<()> {
    let mut state = AgentState::default();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let (events, next) = pass(manager, certs, &stop, &mut state).await;
        for e in &events {
            report(e);
        }
        let wait = (next - manager.now()).clamp(
            time::Duration::seconds(1),
            time::Duration::try_from(MAX_SLEEP).expect("fits"),
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
