//! The dns-01 propagation check: before the CA is told to validate, ask the zone's
//! authoritative servers (or configured servers) until each returns the TXT value.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::Resolver;

use crate::error::{Error, Result};

/// How to check that a TXT record is visible.
#[derive(Debug, Clone)]
pub struct Propagation {
    /// Servers to ask; empty = the zone's authoritative servers, found through the system
    /// resolver.
    pub nameservers: Vec<SocketAddr>,
    /// Give up after this long.
    pub timeout: Duration,
}

pub(crate) fn resolver_for(
    servers: &[SocketAddr],
    recursion: bool,
) -> Resolver<TokioConnectionProvider> {
    let mut group = NameServerConfigGroup::new();
    for s in servers {
        group.merge(NameServerConfigGroup::from_ips_clear(
            &[s.ip()],
            s.port(),
            true,
        ));
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = Duration::from_secs(3);
    opts.recursion_desired = recursion;
    opts.num_concurrent_reqs = 1;
    Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], group),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build()
}

/// TXT values at `fqdn` as `server` answers.
async fn txt_values(server: SocketAddr, fqdn: &str, recursion: bool) -> Vec<String> {
    let resolver = resolver_for(&[server], recursion);
    match resolver.txt_lookup(fqdn).await {
        Ok(lookup) => lookup
            .iter()
            .map(|txt| {
                txt.txt_data()
                    .iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect::<String>()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Finds the authoritative servers of the zone holding `fqdn` with the system resolver.
pub async fn authoritative_servers(fqdn: &str) -> Result<Vec<SocketAddr>> {
    let system = Resolver::builder_tokio()
        .map_err(|e| Error::Config(format!("system resolver: {e}")))?
        .build();
    let labels: Vec<&str> = fqdn.trim_end_matches('.').split('.').collect();
    for i in 0..labels.len().saturating_sub(1) {
        let zone = format!("{}.", labels[i..].join("."));
        let Ok(ns) = system.ns_lookup(zone.as_str()).await else {
            continue;
        };
        let mut servers = Vec::new();
        for name in ns.iter() {
            if let Ok(ips) = system.lookup_ip(name.0.to_ascii()).await {
                servers.extend(ips.iter().map(|ip: IpAddr| SocketAddr::new(ip, 53)));
            }
        }
        if !servers.is_empty() {
            return Ok(servers);
        }
    }
    Err(Error::Solver {
        solver: "dns-01",
        detail: format!("found no authoritative name server for {fqdn}"),
    })
}

impl Propagation {
    /// Waits until every server returns `value` at `fqdn`, bounded by the timeout.
    pub async fn wait_for_txt(&self, fqdn: &str, value: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let (servers, recursion) = if self.nameservers.is_empty() {
            (authoritative_servers(fqdn).await?, false)
        } else {
            (self.nameservers.clone(), true)
        };
        let mut wait = Duration::from_millis(100);
        loop {
            let mut missing = Vec::new();
            for s in &servers {
                if !txt_values(*s, fqdn, recursion)
                    .await
                    .iter()
                    .any(|v| v == value)
                {
                    missing.push(*s);
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() + wait > deadline {
                return Err(Error::Timeout {
                    what: format!("TXT {fqdn} at {missing:?}"),
                    seconds: self.timeout.as_secs(),
                });
            }
            tracing::debug!(fqdn, ?missing, "TXT record not visible yet");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }
}

/// Whether `data` is a TXT record (used by tests and the RFC 2136 solver).
pub fn is_txt(data: &RData) -> bool {
    matches!(data, RData::TXT(_))
}
