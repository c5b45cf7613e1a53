//! The CA's policy: which identifiers an account may order (allowed and denied name
//! patterns, wildcards, IP ranges, rules per EAB label, names per order), which CSR keys
//! are accepted and how long certificates may live.
//!
//! [`Policy`] is pure: built by `app::settings` from the configuration (with
//! [`NamePattern::parse`], [`parse_ranges`] and [`key_policy`]), it evaluates identifiers
//! and returns one [`Refusal`] per refused identifier naming the rule that refused it. The
//! RA holds the policy in force in a [`PolicyHandle`]; on SIGHUP `app` re-reads the file
//! and swaps in the new policy without dropping requests (each request reads the policy
//! once, so it sees the old or the new one whole). The RA itself reads no file.
//! Operators' reference: `docs/policy.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use certwright_proto::identifier::NormalizedIdentifier;
use certwright_proto::types::{Identifier, IdentifierType};
use ipnet::IpNet;

use super::{Error, IdentifierRefusal, Ra, RefusalKind};
use crate::ca::{KeyPolicy, Profile};
use crate::store::AccountRecord;

/// A configuration value the policy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(pub String);

/// A name pattern: one exact name, or every name below a domain (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Exactly this name.
    Exact(String),
    /// Every name strictly below this domain (written `*.domain`).
    Below(String),
}

impl NamePattern {
    /// Parses `name` or `*.domain`: ASCII (IDNs as A-labels), letters, digits, hyphens.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let lower = text.trim().to_ascii_lowercase();
        let (below, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(PolicyError(format!(
                "name pattern {text:?} must be a DNS name (A-labels) or *.domain"
            )));
        }
        let name = name.to_owned();
        Ok(if below {
            Self::Below(name)
        } else {
            Self::Exact(name)
        })
    }

    /// Whether every name `identifier` covers is matched (for allow rules).
    fn covers_all(&self, identifier: &DnsName) -> bool {
        match (self, identifier) {
            (Self::Exact(p), DnsName::Plain(n)) => p == n,
            (Self::Exact(_), DnsName::Wildcard(_)) => false,
            (Self::Below(p), DnsName::Plain(n)) => is_below(n, p),
            (Self::Below(p), DnsName::Wildcard(base)) => base == p || is_below(base, p),
        }
    }

    /// Whether some name `identifier` covers is matched (for deny rules): a wildcard
    /// touches an exact name one label below its base, and a domain at or below its base.
    fn covers_any(&self, identifier: &DnsName) -> bool {
        match (self, identifier) {
            (Self::Exact(p), DnsName::Plain(n)) => p == n,
            (Self::Exact(p), DnsName::Wildcard(base)) => parent(p) == Some(base.as_str()),
            (Self::Below(p), DnsName::Plain(n)) => is_below(n, p),
            (Self::Below(p), DnsName::Wildcard(base)) => base == p || is_below(base, p),
        }
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(n) => write!(f, "{n}"),
            Self::Below(n) => write!(f, "*.{n}"),
        }
    }
}

/// A normalized DNS identifier: a name, or a wildcard by its base name.
enum DnsName {
    Plain(String),
    Wildcard(String),
}

/// `name` is strictly below `domain`.
fn is_below(name: &str, domain: &str) -> bool {
    name.len() > domain.len() + 1
        && name.ends_with(domain)
        && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
}

fn parent(name: &str) -> Option<&str> {
    name.split_once('.').map(|(_, p)| p)
}

/// Parses every pattern of `list` (see [`NamePattern::parse`]).
pub fn parse_patterns(list: &[String]) -> Result<Vec<NamePattern>, PolicyError> {
    list.iter().map(|p| NamePattern::parse(p)).collect()
}

/// Parses CIDR ranges, a single address standing for its own /32 or /128.
pub fn parse_ranges(list: &[String]) -> Result<Vec<IpNet>, PolicyError> {
    list.iter()
        .map(|r| {
            r.parse::<IpNet>()
                .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| PolicyError(format!("{r:?} is not a CIDR range or an IP address")))
        })
        .collect()
}

/// What accounts bound with one EAB label may request.
#[derive(Debug, Clone, PartialEq)]
pub struct EabRule {
    /// Name patterns; names must match one of these too.
    pub allowed_names: Vec<NamePattern>,
    /// Ranges IP identifiers must fall in (empty: no IP identifiers).
    pub allowed_ip_ranges: Vec<IpNet>,
}

/// One refused identifier and the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refused identifier.
    pub identifier: Identifier,
    /// The rule, as the configuration names it (e.g. `denied_names "*.prod.internal"`).
    pub rule: String,
    /// Which metric label the rule counts under (`denied_names`, `eab.allowed_names`, …).
    pub kind: &'static str,
}

impl Refusal {
    /// The refusal as one identifier's entry of a rejected order.
    pub fn identifier_refusal(&self) -> IdentifierRefusal {
        IdentifierRefusal {
            identifier: self.identifier.clone(),
            kind: RefusalKind::Rejected,
            detail: format!(
                "{:?} is refused by policy rule {}",
                self.identifier.value, self.rule
            ),
        }
    }
}

/// The rules in force. Built by [`Policy::from_config`]; evaluation never fails.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Name patterns an identifier must match (empty: any name not denied).
    pub allowed_names: Vec<NamePattern>,
    /// Name patterns no identifier may touch; checked first.
    pub denied_names: Vec<NamePattern>,
    /// Accept wildcard names (`*.example.com`).
    pub allow_wildcards: bool,
    /// None: any address.
    pub allowed_ip_ranges: Option<Vec<IpNet>>,
    /// Per EAB label: what accounts bound with that label may request.
    pub eab: BTreeMap<String, EabRule>,
    /// Identifiers allowed in one order.
    pub max_names: usize,
    /// CSR keys accepted at finalize.
    pub key_policy: KeyPolicy,
    /// Longest certificate lifetime, whatever the profile says.
    pub max_lifetime_secs: Option<i64>,
}

impl Default for Policy {
    /// What an empty `[policy]` means: every valid identifier, wildcards and any
    /// address, 100 identifiers an order, the default CSR keys, the profile's lifetime.
    fn default() -> Self {
        Self {
            allowed_names: Vec::new(),
            denied_names: Vec::new(),
            allow_wildcards: true,
            allowed_ip_ranges: None,
            eab: BTreeMap::new(),
            max_names: 100,
            key_policy: KeyPolicy::default(),
            max_lifetime_secs: None,
        }
    }
}

/// The CSR keys accepted: `key_types` (any of `rsa`, `p256`, `p384`, `ed25519`; None:
/// RSA, P-256, P-384, and Ed25519 when `allow_ed25519`), RSA sizes from `rsa_min_bits`
/// to `rsa_max_bits`.
pub fn key_policy(
    key_types: Option<&[String]>,
    rsa_min_bits: usize,
    rsa_max_bits: usize,
    allow_ed25519: bool,
) -> Result<KeyPolicy, PolicyError> {
    let mut key_policy = KeyPolicy {
        rsa_min_bits,
        rsa_max_bits,
        allow_ed25519,
        ..KeyPolicy::default()
    };
    if let Some(types) = key_types {
        key_policy.allow_p256 = false;
        key_policy.allow_p384 = false;
        key_policy.allow_ed25519 = false;
        let mut rsa = false;
        for t in types {
            match t.as_str() {
                "rsa" => rsa = true,
                "p256" => key_policy.allow_p256 = true,
                "p384" => key_policy.allow_p384 = true,
                "ed25519" => key_policy.allow_ed25519 = true,
                other => {
                    return Err(PolicyError(format!(
                        "key type {other:?} is not one of \"rsa\", \"p256\", \"p384\", \"ed25519\""
                    )))
                }
            }
        }
        if !rsa {
            // No RSA size fits: the CSR check refuses every RSA key.
            key_policy.rsa_min_bits = usize::MAX;
        }
    }
    if !(2048..=8192).contains(&rsa_min_bits) || rsa_min_bits > rsa_max_bits {
        return Err(PolicyError(format!(
            "rsa_min_bits {rsa_min_bits} must be 2048..=8192 and at most [issuance].rsa_max_bits {rsa_max_bits}"
        )));
    }
    Ok(key_policy)
}

impl Policy {
    /// Every refused identifier of an order by an account with `eab_label`, in order.
    pub fn check(
        &self,
        eab_label: Option<&str>,
        identifiers: &[NormalizedIdentifier],
    ) -> Vec<Refusal> {
        let rule = eab_label.and_then(|l| self.eab.get(l).map(|r| (l, r)));
        identifiers
            .iter()
            .filter_map(|n| {
                let (rule, kind) = self.refusing_rule(rule, n)?;
                Some(Refusal {
                    identifier: n.identifier.clone(),
                    rule,
                    kind,
                })
            })
            .collect()
    }

    /// The first rule refusing `n`, and its metric label.
    fn refusing_rule(
        &self,
        eab: Option<(&str, &EabRule)>,
        n: &NormalizedIdentifier,
    ) -> Option<(String, &'static str)> {
        let value = &n.identifier.value;
        if n.identifier.kind == IdentifierType::Ip {
            let Ok(ip) = value.parse::<IpAddr>() else {
                return Some(("allowed_ip_ranges".into(), "allowed_ip_ranges"));
            };
            if let Some(ranges) = &self.allowed_ip_ranges {
                if !ranges.iter().any(|r| r.contains(&ip)) {
                    return Some((
                        format!("allowed_ip_ranges {}", list(ranges)),
                        "allowed_ip_ranges",
                    ));
                }
            }
            if let Some((label, rule)) = eab {
                if !rule.allowed_ip_ranges.iter().any(|r| r.contains(&ip)) {
                    return Some((
                        format!(
                            "eab.{label:?}.allowed_ip_ranges {}",
                            list(&rule.allowed_ip_ranges)
                        ),
                        "eab.allowed_ip_ranges",
                    ));
                }
            }
            return None;
        }
        let name = match value.strip_prefix("*.") {
            Some(base) if n.wildcard => DnsName::Wildcard(base.to_owned()),
            _ => DnsName::Plain(value.clone()),
        };
        if matches!(name, DnsName::Wildcard(_)) && !self.allow_wildcards {
            return Some(("allow_wildcards = false".into(), "allow_wildcards"));
        }
        if let Some(p) = self.denied_names.iter().find(|p| p.covers_any(&name)) {
            return Some((format!("denied_names \"{p}\""), "denied_names"));
        }
        if !self.allowed_names.is_empty() && !self.allowed_names.iter().any(|p| p.covers_all(&name))
        {
            return Some((
                format!("allowed_names {}", list(&self.allowed_names)),
                "allowed_names",
            ));
        }
        if let Some((label, rule)) = eab {
            if !rule.allowed_names.iter().any(|p| p.covers_all(&name)) {
                return Some((
                    format!("eab.{label:?}.allowed_names {}", list(&rule.allowed_names)),
                    "eab.allowed_names",
                ));
            }
        }
        None
    }

    /// `profile` with its lifetime capped at `max_lifetime_days`.
    pub fn cap_lifetime(&self, profile: &Profile) -> Profile {
        let mut p = profile.clone();
        if let Some(max) = self.max_lifetime_secs {
            p.lifetime_secs = p.lifetime_secs.min(max);
        }
        p
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// The refusals as one rejected order with an entry per identifier.
pub fn refusal_error(refusals: &[Refusal]) -> Error {
    let detail = match refusals {
        [one] => format!(
            "{}: refused by policy rule {}",
            one.identifier.value, one.rule
        ),
        many => format!(
            "{} identifiers are refused by this CA's policy; see subproblems",
            many.len()
        ),
    };
    Error::RejectedIdentifiers {
        detail,
        refusals: refusals.iter().map(Refusal::identifier_refusal).collect(),
    }
}

/// The policy in force, swapped whole on reload. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct PolicyHandle(Arc<RwLock<Arc<Policy>>>);

impl PolicyHandle {
    /// A handle on `policy`.
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The policy in force now. Callers keep the `Arc` for the whole request.
    pub fn current(&self) -> Arc<Policy> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `policy` in force for every request that starts from now on.
    pub fn replace(&self, policy: Policy) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }
}

impl Ra {
    /// The policy in force (read once per request).
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.live.current()
    }

    /// The handle through which the policy is reloaded.
    pub fn policy_handle(&self) -> &PolicyHandle {
        &self.inner.policy.live
    }

    /// Applies the naming policy to an order's (normalized) identifiers.
    pub(crate) fn check_naming_policy(
        &self,
        account: &AccountRecord,
        identifiers: &[NormalizedIdentifier],
    ) -> Result<(), Error> {
        let refusals = self
            .policy()
            .check(account.eab_label.as_deref(), identifiers);
        if refusals.is_empty() {
            return Ok(());
        }
        for r in &refusals {
            crate::metrics::policy_refusal(r.kind);
        }
        tracing::info!(account = %account.id, refused = refusals.len(), "order refused by policy");
        Err(refusal_error(&refusals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certwright_proto::identifier::normalize;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn patterns(list: &[&str]) -> Vec<NamePattern> {
        parse_patterns(&strings(list)).unwrap()
    }

    fn ranges(list: &[&str]) -> Vec<IpNet> {
        parse_ranges(&strings(list)).unwrap()
    }

    fn id(text: &str) -> NormalizedIdentifier {
        let raw = if text.parse::<IpAddr>().is_ok() {
            Identifier::ip(text)
        } else {
            Identifier::dns(text)
        };
        normalize(&raw).unwrap()
    }

    /// The rule kind refusing `name` (None: allowed).
    fn verdict(p: &Policy, label: Option<&str>, name: &str) -> Option<&'static str> {
        p.check(label, &[id(name)]).first().map(|r| r.kind)
    }

    #[test]
    fn pattern_syntax() {
        assert_eq!(
            NamePattern::parse("*.Example.COM").unwrap(),
            NamePattern::Below("example.com".into())
        );
        assert_eq!(
            NamePattern::parse("internal").unwrap(),
            NamePattern::Exact("internal".into())
        );
        for bad in ["", "*.", "a..b", "-a.b", "a.*.b", "ex ample.com", "**.a"] {
            assert!(NamePattern::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_default_policy_allows_every_valid_identifier() {
        let p = Policy::default();
        for name in ["a.example.com", "*.example.com", "10.1.2.3", "::1"] {
            assert_eq!(verdict(&p, None, name), None, "{name}");
        }
        assert_eq!(p.max_names, 100);
        assert!(p.key_policy.allow_p256 && !p.key_policy.allow_ed25519);
    }

    #[test]
    fn table_of_allowed_and_refused_identifiers() {
        let mut eab = BTreeMap::new();
        eab.insert(
            "team-payments".to_owned(),
            EabRule {
                allowed_names: patterns(&["*.pay.internal"]),
                allowed_ip_ranges: ranges(&["10.20.0.0/16"]),
            },
        );
        let p = Policy {
            allowed_names: patterns(&["*.internal", "public.example.com"]),
            denied_names: patterns(&[
                "*.prod.internal",
                "ca.internal",
                "ca.corp.internal",
                "secret.pay.internal",
            ]),
            allow_wildcards: true,
            allowed_ip_ranges: Some(ranges(&["10.0.0.0/8", "fd00::/8", "192.0.2.7"])),
            eab,
            ..Policy::default()
        };
        let pay = Some("team-payments");
        let table: &[(Option<&str>, &str, Option<&str>)] = &[
            // allowed by a suffix rule, at any depth
            (None, "web.internal", None),
            (None, "a.b.c.internal", None),
            (None, "*.web.internal", None),
            (None, "*.corp.internal", Some("denied_names")), // covers ca.corp.internal
            (None, "*.web.corp.internal", None),
            // exact allow rule
            (None, "public.example.com", None),
            (None, "www.public.example.com", Some("allowed_names")),
            (None, "example.com", Some("allowed_names")),
            (None, "internal.example.com", Some("allowed_names")),
            // denied names win over allowed ones
            (None, "ca.internal", Some("denied_names")),
            (None, "db.prod.internal", Some("denied_names")),
            (None, "*.prod.internal", Some("denied_names")),
            (None, "*.x.prod.internal", Some("denied_names")),
            (None, "prod.internal", None), // the suffix rule is strictly below
            // IP ranges
            (None, "10.9.8.7", None),
            (None, "192.0.2.7", None),
            (None, "192.0.2.8", Some("allowed_ip_ranges")),
            (None, "fd12::1", None),
            (None, "2001:db8::1", Some("allowed_ip_ranges")),
            // EAB label rule: only *.pay.internal and 10.20/16, on top of the global rules
            (pay, "api.pay.internal", None),
            (pay, "*.api.pay.internal", None),
            (pay, "*.pay.internal", Some("denied_names")), // covers secret.pay.internal
            (pay, "web.internal", Some("eab.allowed_names")),
            (pay, "secret.pay.internal", Some("denied_names")),
            (pay, "public.example.com", Some("eab.allowed_names")),
            (pay, "10.20.1.1", None),
            (pay, "10.21.1.1", Some("eab.allowed_ip_ranges")),
            (pay, "192.0.2.7", Some("eab.allowed_ip_ranges")),
            // a label without a rule gets the global rules
            (Some("team-other"), "web.internal", None),
        ];
        for (label, name, expected) in table {
            assert_eq!(verdict(&p, *label, name), *expected, "{label:?} {name}");
        }
    }

    #[test]
    fn wildcards_off() {
        let p = Policy {
            allow_wildcards: false,
            ..Policy::default()
        };
        assert_eq!(verdict(&p, None, "*.example.com"), Some("allow_wildcards"));
        assert_eq!(verdict(&p, None, "www.example.com"), None);
    }

    #[test]
    fn an_empty_ip_range_list_refuses_every_address() {
        let p = Policy {
            allowed_ip_ranges: Some(vec![]),
            ..Policy::default()
        };
        assert_eq!(verdict(&p, None, "127.0.0.1"), Some("allowed_ip_ranges"));
        assert_eq!(verdict(&p, None, "www.example.com"), None);
    }

    #[test]
    fn every_refused_identifier_is_a_subproblem_naming_its_rule() {
        let p = Policy {
            denied_names: patterns(&["*.corp.example"]),
            allowed_ip_ranges: Some(ranges(&["10.0.0.0/8"])),
            ..Policy::default()
        };
        let ids = [id("ok.example.com"), id("a.corp.example"), id("192.0.2.1")];
        let refusals = p.check(None, &ids);
        let Error::RejectedIdentifiers {
            detail,
            refusals: subs,
        } = refusal_error(&refusals)
        else {
            panic!("policy refusals are rejected identifiers");
        };
        assert!(detail.contains("2 identifiers"), "{detail}");
        assert_eq!(subs.len(), 2);
        assert!(subs.iter().all(|s| s.kind == RefusalKind::Rejected));
        assert_eq!(subs[0].identifier.value, "a.corp.example");
        assert!(
            subs[0].detail.contains("denied_names \"*.corp.example\""),
            "{}",
            subs[0].detail
        );
        assert_eq!(subs[1].identifier.value, "192.0.2.1");
        assert!(
            subs[1]
                .detail
                .contains("allowed_ip_ranges [\"10.0.0.0/8\"]"),
            "{}",
            subs[1].detail
        );
        let one = refusal_error(&refusals[..1]).to_string();
        assert!(one.starts_with("a.corp.example: refused by policy rule denied_names"));
    }

    #[test]
    fn keys_and_lifetime() {
        let p = Policy {
            key_policy: key_policy(Some(&strings(&["p384", "ed25519"])), 2048, 4096, false)
                .unwrap(),
            max_lifetime_secs: Some(10 * 86400),
            ..Policy::default()
        };
        assert!(!p.key_policy.allow_p256 && p.key_policy.allow_p384 && p.key_policy.allow_ed25519);
        assert!(
            p.key_policy.rsa_min_bits > p.key_policy.rsa_max_bits,
            "RSA is off"
        );
        let profile = Profile::tls_server("tls-server", 90 * 86400);
        assert_eq!(p.cap_lifetime(&profile).lifetime_secs, 10 * 86400);
        assert_eq!(
            Policy::default().cap_lifetime(&profile).lifetime_secs,
            90 * 86400
        );
    }
}
