//! Name resolution for the VA: hickory-resolver against the configured (or system)
//! resolver, or a fixed table (for tests and closed networks).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveErrorKind, TokioResolver};

/// A failed lookup, phrased for a `dns` problem document.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Resolves names to addresses.
#[derive(Clone)]
pub enum NameResolver {
    /// Real DNS through hickory-resolver.
    Dns(Arc<TokioResolver>),
    /// A fixed table; names not in it resolve to `default` (if set).
    Static {
        table: Arc<HashMap<String, Vec<IpAddr>>>,
        default: Option<IpAddr>,
    },
}

impl NameResolver {
    /// DNS through `server` (`ADDR:PORT`), or the system's resolvers when `None`.
    pub fn dns(server: Option<SocketAddr>) -> Result<Self, LookupError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = std::time::Duration::from_secs(5);
        opts.attempts = 2;
        // The VA must see the current answer: no cache between validations.
        opts.cache_size = 0;
        let builder = match server {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    TokioConnectionProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| {
                LookupError(format!(
                    "cannot read the system resolver configuration: {e}"
                ))
            })?,
        };
        Ok(Self::Dns(Arc::new(builder.with_options(opts).build())))
    }

    /// Resolves `name` to its addresses (A and AAAA).
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        match self {
            Self::Static { table, default } => table
                .get(name)
                .cloned()
                .or_else(|| default.map(|d| vec![d]))
                .ok_or_else(|| LookupError(format!("no address for {name}"))),
            Self::Dns(resolver) => match resolver.lookup_ip(format!("{name}.")).await {
                Ok(lookup) => {
                    let ips: Vec<IpAddr> = lookup.iter().collect();
                    if ips.is_empty() {
                        Err(LookupError(format!("no A or AAAA record for {name}")))
                    } else {
                        Ok(ips)
                    }
                }
                Err(e) => Err(LookupError(match e.kind() {
                    ResolveErrorKind::Proto(p) if p.is_no_records_found() => {
                        format!("no A or AAAA record for {name} (NXDOMAIN or no data)")
                    }
                    _ => format!("DNS lookup of {name} failed: {e}"),
                })),
            },
        }
    }
}

/// Lets reqwest use the VA's resolver, so the address contacted is the one we looked up.
pub(crate) struct ReqwestResolver(pub NameResolver);

impl reqwest::dns::Resolve for ReqwestResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let ips = resolver.lookup_ip(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
