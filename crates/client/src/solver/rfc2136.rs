//! dns-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945).

use std::net::SocketAddr;

use serde::Deserialize;

use super::propagation::Propagation;
use super::{BoxFuture, ChallengeData, Solver};
use crate::error::{Error, Result};

/// The RFC 2136 solver's configuration file (TOML).
#[derive(Debug, Clone, Deserialize)]
pub struct Rfc2136Config {
    /// The primary server that accepts updates, `ip:port`.
    pub server: SocketAddr,
    /// The zone to update (e.g. `example.test.`); by default the server is asked for the
    /// SOA of the record's parents.
    #[serde(default)]
    pub zone: Option<String>,
    /// TSIG key name.
    pub tsig_key_name: String,
    /// TSIG algorithm: `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_alg")]
    pub tsig_algorithm: String,
    /// TSIG secret, base64 (as in BIND's key files).
    pub tsig_secret: String,
    /// TTL of the TXT record (default 60).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_alg() -> String {
    "hmac-sha256".into()
}

fn default_ttl() -> u32 {
    60
}

/// The RFC 2136 dns-01 solver.
#[derive(Debug, Clone)]
pub struct Rfc2136 {
    config: Rfc2136Config,
    propagation: Propagation,
}

impl Rfc2136 {
    /// A solver for `config`.
    pub fn new(config: Rfc2136Config, mut propagation: Propagation) -> Result<Self> {
        if propagation.nameservers.is_empty() {
            propagation.nameservers = vec![config.server];
        }
        Ok(Self {
            config,
            propagation,
        })
    }

    async fn update(&self, _add: bool, _c: &ChallengeData) -> Result<()> {
        Err(Error::Solver {
            solver: "rfc2136",
            detail: format!(
                "RFC 2136 updates to {} are not implemented in this build",
                self.config.server
            ),
        })
    }
}

impl Solver for Rfc2136 {
    fn challenge_type(&self) -> &'static str {
        "dns-01"
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.update(true, c))
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.update(false, c))
    }

    fn wait_ready<'a>(&'a self, all: &'a [ChallengeData]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for c in all {
                self.propagation
                    .wait_for_txt(&c.dns01_fqdn(), &c.dns01_value())
                    .await?;
            }
            Ok(())
        })
    }
}
