//! Name resolution for the VA: hickory-resolver against the configured (or system)
//! resolver, or a fixed table (for tests and closed networks).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::denylist::DenyList;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::CAA;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolveErrorKind, TokioResolver};

/// A failed address lookup: `Display` is the operator's detail (the resolver's own
/// words included); [`LookupError::client_detail`] the fixed sentence a client may see.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .failure.operator_detail("A/AAAA", .name))]
pub struct LookupError {
    /// The name looked up.
    pub name: String,
    /// Why the lookup failed.
    pub failure: DnsFailure,
}

impl LookupError {
    /// The sentence for a `dns` problem document.
    pub fn client_detail(&self) -> String {
        self.failure.describe("A or AAAA", &self.name)
    }
}

/// The system's resolver configuration could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read the system resolver configuration: {0}")]
pub struct ResolverSetupError(String);

/// Resolves names to addresses.
#[derive(Clone)]
pub enum NameResolver {
    /// Real DNS through hickory-resolver.
    Dns(Arc<TokioResolver>),
    /// A fixed table; names not in it resolve to `default` (if set).
    Static {
        /// Names and their addresses.
        table: Arc<HashMap<String, Vec<IpAddr>>>,
        /// The address of names not in `table`.
        default: Option<IpAddr>,
    },
}

impl NameResolver {
    /// DNS through `server` (`ADDR:PORT`), or the system's resolvers when `None`.
    pub fn dns(server: Option<SocketAddr>) -> Result<Self, ResolverSetupError> {
        Self::dns_with_timeout(server, std::time::Duration::from_secs(5))
    }

    /// As [`NameResolver::dns`], waiting at most `query_timeout` for each answer (two
    /// attempts per query).
    pub fn dns_with_timeout(
        server: Option<SocketAddr>,
        query_timeout: std::time::Duration,
    ) -> Result<Self, ResolverSetupError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = query_timeout;
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
            None => {
                TokioResolver::builder_tokio().map_err(|e| ResolverSetupError(e.to_string()))?
            }
        };
        Ok(Self::Dns(Arc::new(builder.with_options(opts).build())))
    }

    /// Resolves `name` to its addresses (A and AAAA).
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let failed = |failure| LookupError {
            name: name.to_owned(),
            failure,
        };
        match self {
            Self::Static { table, default } => table
                .get(name)
                .cloned()
                .or_else(|| default.map(|d| vec![d]))
                .ok_or_else(|| failed(DnsFailure::NotFound { nxdomain: true })),
            Self::Dns(resolver) => match resolver.lookup_ip(format!("{name}.")).await {
                Ok(lookup) => {
                    let ips: Vec<IpAddr> = lookup.iter().collect();
                    if ips.is_empty() {
                        Err(failed(DnsFailure::NotFound { nxdomain: false }))
                    } else {
                        Ok(ips)
                    }
                }
                Err(e) => Err(failed(DnsFailure::from_resolve(&e))),
            },
        }
    }

    /// The TXT records at `name` (after any CNAMEs), each as one string (its
    /// character-strings joined, RFC 7208 style).
    pub async fn lookup_txt(&self, name: &str) -> Result<DnsAnswer<String>, DnsFailure> {
        match self {
            Self::Static { .. } => Err(DnsFailure::NotFound { nxdomain: true }),
            Self::Dns(resolver) => {
                let lookup = resolver
                    .lookup(format!("{name}."), RecordType::TXT)
                    .await
                    .map_err(|e| DnsFailure::from_resolve(&e))?;
                let mut answer = DnsAnswer::default();
                for record in lookup.record_iter() {
                    match record.data() {
                        RData::TXT(txt) => answer.records.push(
                            txt.txt_data()
                                .iter()
                                .map(|part| String::from_utf8_lossy(part))
                                .collect::<String>(),
                        ),
                        RData::CNAME(target) => answer.cnames.push(trim_dot(&target.0.to_ascii())),
                        _ => {}
                    }
                }
                if answer.records.is_empty() {
                    return Err(DnsFailure::NotFound { nxdomain: false });
                }
                Ok(answer)
            }
        }
    }

    /// The CAA records at `name` (after any CNAMEs). `NotFound` means an empty set.
    pub async fn lookup_caa(&self, name: &str) -> Result<DnsAnswer<CAA>, DnsFailure> {
        match self {
            // A fixed table has no CAA records: every name's set is empty.
            Self::Static { .. } => Err(DnsFailure::NotFound { nxdomain: false }),
            Self::Dns(resolver) => {
                let lookup = resolver
                    .lookup(format!("{name}."), RecordType::CAA)
                    .await
                    .map_err(|e| DnsFailure::from_resolve(&e))?;
                let mut answer = DnsAnswer::default();
                for record in lookup.record_iter() {
                    match record.data() {
                        RData::CAA(caa) => answer.records.push(caa.clone()),
                        RData::CNAME(target) => answer.cnames.push(trim_dot(&target.0.to_ascii())),
                        _ => {}
                    }
                }
                if answer.records.is_empty() {
                    return Err(DnsFailure::NotFound { nxdomain: false });
                }
                Ok(answer)
            }
        }
    }
}

fn trim_dot(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_owned()
}

/// Records of one type found at a name, and the CNAMEs followed to reach them.
#[derive(Debug, Clone)]
pub struct DnsAnswer<T> {
    /// The records found.
    pub records: Vec<T>,
    /// The CNAMEs followed, in order.
    pub cnames: Vec<String>,
}

impl<T> Default for DnsAnswer<T> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            cnames: Vec::new(),
        }
    }
}

/// Why a TXT or CAA query gave no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    /// The name does not exist (NXDOMAIN), or has no records of the type (NOERROR).
    NotFound {
        /// NXDOMAIN (else NOERROR with no records of the type).
        nxdomain: bool,
    },
    /// The server answered with an error code (SERVFAIL, REFUSED, ...).
    Rcode(String),
    /// No answer in time.
    Timeout,
    /// Anything else (no server reachable, a malformed answer, a CNAME chain too long).
    Other(String),
}

impl DnsFailure {
    fn from_resolve(e: &ResolveError) -> Self {
        match e.kind() {
            ResolveErrorKind::Proto(p) => match p.kind() {
                ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
                    ResponseCode::NXDomain => Self::NotFound { nxdomain: true },
                    ResponseCode::NoError => Self::NotFound { nxdomain: false },
                    ResponseCode::ServFail => Self::Rcode("SERVFAIL".into()),
                    ResponseCode::Refused => Self::Rcode("REFUSED".into()),
                    ResponseCode::FormErr => Self::Rcode("FORMERR".into()),
                    ResponseCode::NotImp => Self::Rcode("NOTIMP".into()),
                    other => Self::Rcode(format!("{} ({other})", u16::from(other))),
                },
                ProtoErrorKind::Timeout => Self::Timeout,
                _ => Self::Other(p.to_string()),
            },
            _ => Self::Other(e.to_string()),
        }
    }

    /// Describes the failure of a query for `rtype` records at `name`: a fixed sentence
    /// (the resolver's own error text stays out, see [`DnsFailure::operator_detail`]).
    pub fn describe(&self, rtype: &str, name: &str) -> String {
        match self {
            Self::NotFound { nxdomain: true } => {
                format!("no {rtype} record found at {name} (NXDOMAIN: the name does not exist)")
            }
            Self::NotFound { nxdomain: false } => {
                format!("no {rtype} record found at {name} (the name exists but has no {rtype} records)")
            }
            Self::Rcode(code) => {
                format!("the DNS server answered {code} when asked for {rtype} at {name}")
            }
            Self::Timeout => format!("the DNS query for {rtype} at {name} timed out"),
            Self::Other(_) => format!(
                "the DNS query for {rtype} at {name} failed (no usable answer from the CA's resolver)"
            ),
        }
    }

    /// As [`DnsFailure::describe`], with the resolver's own words: for logs and the audit
    /// record only.
    pub fn operator_detail(&self, rtype: &str, name: &str) -> String {
        match self {
            Self::Other(e) => format!("the DNS query for {rtype} at {name} failed: {e}"),
            _ => self.describe(rtype, name),
        }
    }
}

/// Lets reqwest use the VA's resolver, so the address contacted is the one we looked up;
/// addresses the VA's rules refuse are dropped (on every lookup, so an answer that
/// changes between lookups is judged again).
pub(crate) struct ReqwestResolver(pub NameResolver, pub Arc<DenyList>);

impl reqwest::dns::Resolve for ReqwestResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let deny = self.1.clone();
        Box::pin(async move {
            let ips = resolver.lookup_ip(name.as_str()).await?;
            // The http-01 record shows what the name resolved to (when this runs inside
            // the request's task, as reqwest does).
            let _ = super::http01::RESOLVED
                .try_with(|seen| seen.lock().expect("not poisoned").extend(&ips));
            let ips = deny.allowed(name.as_str(), ips)?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
