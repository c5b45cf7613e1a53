//! Challenge solvers: publish a key authorization where the CA looks, remove it afterwards.
//!
//! | solver | challenge |
//! | --- | --- |
//! | [`http01::Http01Standalone`] | http-01 on its own listener |
//! | [`webroot::Webroot`] | http-01 by files under a web server's root |
//! | [`tlsalpn01::TlsAlpn01Standalone`] | tls-alpn-01 on its own listener (RFC 8737) |
//! | [`dns01_exec::Dns01Exec`] | dns-01 through a script (`present`/`cleanup`) |
//! | [`rfc2136::Rfc2136`] | dns-01 through RFC 2136 dynamic updates with TSIG |

pub mod dns01_exec;
pub mod http01;
pub mod preflight;
pub mod propagation;
pub mod rfc2136;
pub mod tlsalpn01;
pub mod webroot;

use certwright_proto::types::ChallengeType;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A boxed, sendable future (keeps [`Solver`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One challenge to answer.
#[derive(Debug, Clone)]
pub struct ChallengeData {
    /// The authorization's identifier value (the base name for a wildcard).
    pub identifier: String,
    /// The challenge token.
    pub token: String,
    /// The key authorization (`token.thumbprint`).
    pub key_authorization: String,
}

impl ChallengeData {
    /// The dns-01 record name, with a trailing dot: `_acme-challenge.<identifier>.`.
    pub fn dns01_fqdn(&self) -> String {
        format!(
            "{}.",
            certwright_proto::challenge::dns01_name(&self.identifier)
        )
    }

    /// The dns-01 TXT value.
    pub fn dns01_value(&self) -> String {
        certwright_proto::keyauth::dns01_txt_value(&self.key_authorization)
    }
}

/// Publishes and removes challenge responses of one type.
pub trait Solver: Send + Sync {
    /// The challenge type this solver answers (`http-01`, `dns-01`, `tls-alpn-01`).
    fn challenge_type(&self) -> ChallengeType;
    /// Publishes the response to one challenge.
    fn present<'a>(&'a self, challenge: &'a ChallengeData) -> BoxFuture<'a, Result<()>>;
    /// Removes it again (called even when validation failed).
    fn cleanup<'a>(&'a self, challenge: &'a ChallengeData) -> BoxFuture<'a, Result<()>>;
    /// Waits until everything presented is visible to the CA (dns-01 propagation).
    fn wait_ready<'a>(&'a self, _challenges: &'a [ChallengeData]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// A solver as configured (command line, agent file, certificate metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverSpec {
    /// http-01 on an own listener at this address.
    Http01Listen(SocketAddr),
    /// http-01 through files under this web root.
    Webroot(PathBuf),
    /// tls-alpn-01 on an own listener at this address.
    TlsAlpn01Listen(SocketAddr),
    /// dns-01 through this script.
    Dns01Exec {
        /// The hook script that adds and removes the TXT record.
        script: PathBuf,
        /// How to check that the record has propagated.
        #[serde(default, flatten)]
        check: PropagationSpec,
    },
    /// dns-01 through RFC 2136 updates described by this TOML file.
    Dns01Rfc2136 {
        /// The TOML file: server, zone, TSIG key.
        config: PathBuf,
        /// How to check that the record has propagated.
        #[serde(default, flatten)]
        check: PropagationSpec,
    },
}

/// How the dns-01 propagation check runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationSpec {
    /// Ask these servers instead of the zone's authoritative servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<SocketAddr>,
    /// Give up after this many seconds (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl PropagationSpec {
    fn checker(&self) -> propagation::Propagation {
        propagation::Propagation {
            nameservers: self.dns_servers.clone(),
            timeout: Duration::from_secs(self.timeout_secs.unwrap_or(120)),
        }
    }
}

/// The solver options as the CLI and the agent file spell them; exactly one is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolverOptions {
    /// `ADDR:PORT` (or `:PORT`) for a standalone http-01 listener.
    #[serde(default, deserialize_with = "deserialize_listen")]
    pub http01_listen: Option<SocketAddr>,
    /// Web root directory.
    #[serde(default)]
    pub webroot: Option<PathBuf>,
    /// `ADDR:PORT` (or `:PORT`) for a standalone tls-alpn-01 listener.
    #[serde(default, deserialize_with = "deserialize_listen")]
    pub tlsalpn01_listen: Option<SocketAddr>,
    /// dns-01 hook script.
    #[serde(default)]
    pub dns01_exec: Option<PathBuf>,
    /// RFC 2136 configuration file.
    #[serde(default)]
    pub dns01_rfc2136: Option<PathBuf>,
    /// Servers for the propagation check (default: the zone's authoritative servers).
    #[serde(default)]
    pub dns01_resolvers: Vec<SocketAddr>,
    /// Propagation check timeout in seconds.
    #[serde(default)]
    pub dns01_timeout: Option<u64>,
}

impl SolverOptions {
    /// The one solver these options choose; `None` when none is set.
    pub fn to_spec(&self) -> Result<Option<SolverSpec>> {
        let check = PropagationSpec {
            dns_servers: self.dns01_resolvers.clone(),
            timeout_secs: self.dns01_timeout,
        };
        let mut chosen = Vec::new();
        if let Some(a) = self.http01_listen {
            chosen.push(SolverSpec::Http01Listen(a));
        }
        if let Some(d) = &self.webroot {
            chosen.push(SolverSpec::Webroot(d.clone()));
        }
        if let Some(a) = self.tlsalpn01_listen {
            chosen.push(SolverSpec::TlsAlpn01Listen(a));
        }
        if let Some(s) = &self.dns01_exec {
            chosen.push(SolverSpec::Dns01Exec {
                script: absolute(s),
                check: check.clone(),
            });
        }
        if let Some(c) = &self.dns01_rfc2136 {
            chosen.push(SolverSpec::Dns01Rfc2136 {
                config: absolute(c),
                check,
            });
        }
        match chosen.len() {
            0 => Ok(None),
            1 => Ok(chosen.pop()),
            _ => Err(Error::Config(
                "choose one solver: --http01-listen, --webroot, --tlsalpn01-listen, --dns01-exec or --dns01-rfc2136".into(),
            )),
        }
    }
}

/// Parses a listen address; `:PORT` (no address) means every IPv4 address, `0.0.0.0:PORT`.
pub fn parse_listen(text: &str) -> Result<SocketAddr> {
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    full.parse().map_err(|_| {
        Error::Config(format!(
            "{text:?} is not a listen address (ADDR:PORT, [V6]:PORT or :PORT)"
        ))
    })
}

/// Serde: an optional listen address as [`parse_listen`] reads it.
pub fn deserialize_listen<'de, D>(d: D) -> std::result::Result<Option<SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| parse_listen(&t).map_err(serde::de::Error::custom))
        .transpose()
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

impl SolverSpec {
    /// Starts the solver (binds listeners, reads configuration).
    pub async fn build(&self) -> Result<Box<dyn Solver>> {
        Ok(match self {
            Self::Http01Listen(addr) => Box::new(http01::Http01Standalone::bind(*addr).await?),
            Self::Webroot(dir) => Box::new(webroot::Webroot::new(dir.clone())),
            Self::TlsAlpn01Listen(addr) => {
                Box::new(tlsalpn01::TlsAlpn01Standalone::bind(*addr).await?)
            }
            Self::Dns01Exec { script, check } => {
                Box::new(dns01_exec::Dns01Exec::new(script.clone(), check.checker()))
            }
            Self::Dns01Rfc2136 { config, check } => {
                let text = std::fs::read_to_string(config).map_err(|e| Error::io(config, e))?;
                let cfg: rfc2136::Rfc2136Config = toml::from_str(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", config.display())))?;
                Box::new(rfc2136::Rfc2136::new(cfg, check.checker())?)
            }
        })
    }

    /// Checks the local preconditions for answering challenges for `names`
    /// ([`preflight::check`]): nothing is contacted, nothing is created.
    pub fn check_local(&self, names: &[String]) -> Result<()> {
        preflight::check(self, names)
    }

    /// A short description for humans.
    pub fn describe(&self) -> String {
        match self {
            Self::Http01Listen(a) => format!("http-01 standalone on {a}"),
            Self::Webroot(d) => format!("http-01 webroot {}", d.display()),
            Self::TlsAlpn01Listen(a) => format!("tls-alpn-01 standalone on {a}"),
            Self::Dns01Exec { script, .. } => format!("dns-01 exec {}", script.display()),
            Self::Dns01Rfc2136 { config, .. } => format!("dns-01 RFC 2136 {}", config.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_accept_a_bare_port() {
        assert_eq!(parse_listen(":80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(
            parse_listen("[::1]:8080").unwrap(),
            "[::1]:8080".parse().unwrap()
        );
        assert!(parse_listen("80").is_err());
        let o: SolverOptions = toml::from_str("http01_listen = \":8080\"").unwrap();
        assert_eq!(o.http01_listen, Some("0.0.0.0:8080".parse().unwrap()));
    }

    #[test]
    fn exactly_one_solver() {
        let none = SolverOptions::default();
        assert_eq!(none.to_spec().unwrap(), None);
        let two = SolverOptions {
            webroot: Some("/w".into()),
            http01_listen: Some("127.0.0.1:80".parse().unwrap()),
            ..Default::default()
        };
        assert!(two.to_spec().is_err());
        let one = SolverOptions {
            webroot: Some("/w".into()),
            ..Default::default()
        };
        assert_eq!(
            one.to_spec().unwrap(),
            Some(SolverSpec::Webroot("/w".into()))
        );
    }

    #[test]
    fn dns01_names_and_spec_serde() {
        let c = ChallengeData {
            identifier: "example.test".into(),
            token: "t".into(),
            key_authorization: "abc".into(),
        };
        assert_eq!(c.dns01_fqdn(), "_acme-challenge.example.test.");
        assert_eq!(
            c.dns01_value(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        let spec = SolverSpec::Dns01Exec {
            script: "/x/hook".into(),
            check: PropagationSpec {
                dns_servers: vec!["127.0.0.1:53".parse().unwrap()],
                timeout_secs: None,
            },
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<SolverSpec>(&json).unwrap(), spec);
    }
}
