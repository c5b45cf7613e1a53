//! The CA's policy: which identifiers an account may order (allowed and denied name
//! patterns, wildcards, IP ranges, rules per EAB label, names per order), which CSR keys
//! are accepted and how long certificates may live.
//!
//! [`Policy`] is pure: built from the configuration, it evaluates identifiers and returns
//! one [`Refusal`] per refused identifier naming the rule that refused it. The RA holds the
//! policy in force in a [`PolicyHandle`], which a SIGHUP replaces without dropping requests
//! (each request reads the policy once, so it sees the old or the new one whole).
//! Operators' reference: `docs/policy.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use certwright_proto::identifier::NormalizedIdentifier;
use certwright_proto::types::{Identifier, IdentifierType};
use ipnet::IpNet;

use super::{Error, IdentifierRefusal, Ra, RefusalKind};
use crate::ca::{KeyPolicy, Profile};
use crate::config::Config;
use crate::store::AccountRecord;
use crate::telemetry;

/// A configuration value the policy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(String);

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

fn parse_patterns(list: &[String]) -> Result<Vec<NamePattern>, PolicyError> {
    list.iter().map(|p| NamePattern::parse(p)).collect()
}

fn parse_ranges(list: &[String]) -> Result<Vec<IpNet>, PolicyError> {
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
    pub allowed_names: Vec<NamePattern>,
    pub allowed_ip_ranges: Vec<IpNet>,
}

/// One refused identifier and the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
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
    pub allowed_names: Vec<NamePattern>,
    pub denied_names: Vec<NamePattern>,
    pub allow_wildcards: bool,
    /// None: any address.
    pub allowed_ip_ranges: Option<Vec<IpNet>>,
    pub eab: BTreeMap<String, EabRule>,
    /// Identifiers allowed in one order.
    pub max_names: usize,
    /// CSR keys accepted at finalize.
    pub key_policy: KeyPolicy,
    /// Longest certificate lifetime, whatever the profile says.
    pub max_lifetime_secs: Option<i64>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::from_config(&Config::default()).expect("the default configuration is valid")
    }
}

impl Policy {
    /// The policy a configuration describes (`[policy]`, `[orders].max_identifiers`,
    /// `[issuance].rsa_max_bits` and `allow_ed25519`).
    pub fn from_config(config: &Config) -> Result<Self, PolicyError> {
        let p = &config.policy;
        let mut key_policy = KeyPolicy {
            rsa_min_bits: p.rsa_min_bits,
            rsa_max_bits: config.issuance.rsa_max_bits,
            allow_ed25519: config.issuance.allow_ed25519,
            ..KeyPolicy::default()
        };
        if let Some(types) = &p.key_types {
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
        if !(2048..=8192).contains(&p.rsa_min_bits) || p.rsa_min_bits > key_policy.rsa_max_bits {
            return Err(PolicyError(format!(
                "rsa_min_bits {} must be 2048..=8192 and at most [issuance].rsa_max_bits {}",
                p.rsa_min_bits, key_policy.rsa_max_bits
            )));
        }
        if config.orders.max_identifiers == 0 {
            return Err(PolicyError(
                "orders.max_identifiers must be positive".into(),
            ));
        }
        if p.max_lifetime_days == Some(0) {
            return Err(PolicyError("max_lifetime_days must be at least 1".into()));
        }
        let eab = p
            .eab
            .iter()
            .map(|(label, rule)| {
                Ok((
                    label.clone(),
                    EabRule {
                        allowed_names: parse_patterns(&rule.allowed_names)?,
                        allowed_ip_ranges: parse_ranges(&rule.allowed_ip_ranges)?,
                    },
                ))
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(Self {
            allowed_names: parse_patterns(&p.allowed_names)?,
            denied_names: parse_patterns(&p.denied_names)?,
            allow_wildcards: p.allow_wildcards,
            allowed_ip_ranges: p
                .allowed_ip_ranges
                .as_deref()
                .map(parse_ranges)
                .transpose()?,
            eab,
            max_names: config.orders.max_identifiers,
            key_policy,
            max_lifetime_secs: p.max_lifetime_days.map(|d| i64::from(d) * 86400),
        })
    }

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

    /// Re-reads the configuration file and puts its policy in force. On any error the
    /// policy in force stays and the error is returned (and logged).
    pub fn reload_from(&self, path: &Path) -> Result<(), String> {
        let result = Config::from_file(path)
            .map_err(|e| e.to_string())
            .and_then(|c| Policy::from_config(&c).map_err(|e| e.to_string()));
        match result {
            Ok(policy) => {
                self.replace(policy);
                telemetry::policy_reload(true);
                tracing::info!(path = %path.display(), "policy reloaded");
                Ok(())
            }
            Err(e) => {
                telemetry::policy_reload(false);
                tracing::error!(path = %path.display(), error = %e, "policy reload failed; the previous policy stays in force");
                Err(e)
            }
        }
    }

    /// Reloads from `path` on every SIGHUP, for the life of the process (without a file,
    /// a SIGHUP is logged and ignored rather than ending the process).
    pub fn reload_on_sighup(&self, path: Option<std::path::PathBuf>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let handle = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match &path {
                    Some(path) => {
                        tracing::info!(path = %path.display(), "SIGHUP: reloading the policy");
                        let _ = handle.reload_from(path);
                    }
                    None => tracing::warn!(
                        "SIGHUP ignored: started without --config, nothing to reload"
                    ),
                }
            }
        });
        Ok(())
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
            telemetry::policy_refusal(r.kind);
        }
        tracing::info!(account = %account.id, refused = refusals.len(), "order refused by policy");
        Err(refusal_error(&refusals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EabRuleSection, PolicySection};
    use certwright_proto::identifier::normalize;

    fn policy(section: PolicySection) -> Policy {
        let config = Config {
            policy: section,
            ..Config::default()
        };
        Policy::from_config(&config).unwrap()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
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
            EabRuleSection {
                allowed_names: strings(&["*.pay.internal"]),
                allowed_ip_ranges: strings(&["10.20.0.0/16"]),
            },
        );
        let p = policy(PolicySection {
            allowed_names: strings(&["*.internal", "public.example.com"]),
            denied_names: strings(&[
                "*.prod.internal",
                "ca.internal",
                "ca.corp.internal",
                "secret.pay.internal",
            ]),
            allow_wildcards: true,
            allowed_ip_ranges: Some(strings(&["10.0.0.0/8", "fd00::/8", "192.0.2.7"])),
            eab,
            ..PolicySection::default()
        });
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
        let p = policy(PolicySection {
            allow_wildcards: false,
            ..PolicySection::default()
        });
        assert_eq!(verdict(&p, None, "*.example.com"), Some("allow_wildcards"));
        assert_eq!(verdict(&p, None, "www.example.com"), None);
    }

    #[test]
    fn an_empty_ip_range_list_refuses_every_address() {
        let p = policy(PolicySection {
            allowed_ip_ranges: Some(vec![]),
            ..PolicySection::default()
        });
        assert_eq!(verdict(&p, None, "127.0.0.1"), Some("allowed_ip_ranges"));
        assert_eq!(verdict(&p, None, "www.example.com"), None);
    }

    #[test]
    fn every_refused_identifier_is_a_subproblem_naming_its_rule() {
        let p = policy(PolicySection {
            denied_names: strings(&["*.corp.example"]),
            allowed_ip_ranges: Some(strings(&["10.0.0.0/8"])),
            ..PolicySection::default()
        });
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
        let p = policy(PolicySection {
            key_types: Some(strings(&["p384", "ed25519"])),
            max_lifetime_days: Some(10),
            ..PolicySection::default()
        });
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

    #[test]
    fn bad_values_are_errors() {
        let bad = [
            PolicySection {
                denied_names: strings(&["not a name"]),
                ..PolicySection::default()
            },
            PolicySection {
                allowed_ip_ranges: Some(strings(&["10.0.0.0/33"])),
                ..PolicySection::default()
            },
            PolicySection {
                key_types: Some(strings(&["dsa"])),
                ..PolicySection::default()
            },
            PolicySection {
                rsa_min_bits: 1024,
                ..PolicySection::default()
            },
            PolicySection {
                max_lifetime_days: Some(0),
                ..PolicySection::default()
            },
        ];
        for section in bad {
            let config = Config {
                policy: section.clone(),
                ..Config::default()
            };
            assert!(Policy::from_config(&config).is_err(), "{section:?}");
        }
    }

    #[test]
    fn reload_replaces_the_policy_and_a_bad_file_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        let handle = PolicyHandle::new(Policy::default());
        std::fs::write(&path, "[policy]\ndenied_names = [\"*.example.com\"]\n").unwrap();
        handle.reload_from(&path).unwrap();
        assert_eq!(
            verdict(&handle.current(), None, "a.example.com"),
            Some("denied_names")
        );
        for broken in [
            "[policy]\ndenied_names = [\"bad name\"]\n",
            "[policy\n",
            "nonsense = 1\n",
        ] {
            std::fs::write(&path, broken).unwrap();
            assert!(handle.reload_from(&path).is_err(), "{broken}");
            assert_eq!(
                verdict(&handle.current(), None, "a.example.com"),
                Some("denied_names")
            );
        }
        std::fs::remove_file(&path).unwrap();
        assert!(handle.reload_from(&path).is_err());
    }
}
