//! `[agents]` (the listener remote validation agents connect to) and
//! `[[validation.routes]]` (which identifiers are validated where). See
//! `docs/remote-validation.md`.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Config, ConfigError};

/// The name a route uses for this CA's own VA.
pub const LOCAL_PERSPECTIVE: &str = "local";

/// `[agents]`: the agent listener. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsSection {
    /// Where agents connect (mutual TLS); off when absent.
    pub listen: Option<SocketAddr>,
    /// Host names and IP addresses the listener's certificate carries (what agents put
    /// in `--server`); the listen address is always added when it is not a wildcard.
    pub server_names: Vec<String>,
    /// Seconds an agent has to answer a job it took (a job not answered in time goes to
    /// another agent of the segment); default: `validation.timeout_secs` + 5.
    pub job_timeout_secs: Option<u64>,
    /// How many agents of a segment a job is tried on before the validation fails.
    pub attempts: u32,
    /// Seconds a job waits for an agent of its segment to take it, per attempt.
    pub pickup_timeout_secs: u64,
    /// Hours an enrolment token stays usable.
    pub token_ttl_hours: u32,
    /// Days an agent's client certificate is valid (agents renew at two thirds).
    pub certificate_days: u32,
}

impl Default for AgentsSection {
    fn default() -> Self {
        Self {
            listen: None,
            server_names: Vec::new(),
            job_timeout_secs: None,
            attempts: 2,
            pickup_timeout_secs: 10,
            token_ttl_hours: 24,
            certificate_days: 90,
        }
    }
}

/// `[[validation.routes]]`: where identifiers that match are validated. The conditions
/// given must all hold (within one list, any entry matches); the first route that matches
/// wins; identifiers no route matches are validated by this CA's own VA.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRouteSection {
    /// A name for logs and validation records; default `route-N` (1-based).
    #[serde(default)]
    pub name: Option<String>,
    /// DNS names equal to or under one of these suffixes.
    #[serde(default)]
    pub suffixes: Vec<String>,
    /// IP identifiers inside one of these ranges (CIDR), and DNS names that resolve (in
    /// this CA's DNS) to an address inside one.
    #[serde(default)]
    pub ip_ranges: Vec<String>,
    /// The account's EAB label is one of these.
    #[serde(default)]
    pub eab_labels: Vec<String>,
    /// The order's profile is one of these.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Who validates: segment names (agents enrolled for that segment) and `local`
    /// (this CA's own VA).
    pub perspectives: Vec<String>,
    /// How many perspectives must see the challenge pass (multi-perspective
    /// corroboration); default: all of them.
    #[serde(default)]
    pub quorum: Option<usize>,
}

impl ValidationRouteSection {
    /// The route's name (`route-N` when unnamed; `index` is 0-based).
    pub fn display_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("route-{}", index + 1))
    }

    /// The quorum, defaulted.
    pub fn quorum(&self) -> usize {
        self.quorum.unwrap_or(self.perspectives.len())
    }
}

/// Whether `name` can name a segment or an agent: 1–63 of `a-z 0-9 -`, starting with a
/// letter or digit.
pub fn valid_segment_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Config {
    /// The seconds an agent has to answer a job.
    pub fn agent_job_timeout_secs(&self) -> u64 {
        self.agents
            .job_timeout_secs
            .unwrap_or(self.validation.timeout_secs + 5)
    }

    /// `[agents]` and `[[validation.routes]]`.
    pub(super) fn validate_agents(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError::Invalid(why));
        let a = &self.agents;
        if a.attempts == 0 || a.pickup_timeout_secs == 0 || a.token_ttl_hours == 0 {
            return bad(
                "agents.attempts, agents.pickup_timeout_secs and agents.token_ttl_hours must be positive"
                    .into(),
            );
        }
        if !(1..=825).contains(&a.certificate_days) {
            return bad("agents.certificate_days must be 1..=825".into());
        }
        if self.agent_job_timeout_secs() <= self.validation.timeout_secs {
            return bad(format!(
                "agents.job_timeout_secs ({}) must exceed validation.timeout_secs ({}): the agent's own validation must fit inside it",
                self.agent_job_timeout_secs(),
                self.validation.timeout_secs
            ));
        }
        if let Some(listen) = a.listen {
            if Some(listen) == Some(self.listen) || Some(listen) == self.admin_listen.0 {
                return bad(format!(
                    "agents.listen {listen} must differ from listen and admin_listen"
                ));
            }
        }
        for name in &a.server_names {
            if name.is_empty()
                || name.contains(['/', ' ', ':']) && name.parse::<std::net::IpAddr>().is_err()
            {
                return bad(format!(
                    "agents.server_names: {name:?} is not a host name or IP address"
                ));
            }
        }
        let mut uses_agents = false;
        for (i, r) in self.validation.routes.iter().enumerate() {
            let name = r.display_name(i);
            if r.perspectives.is_empty() {
                return bad(format!("validation.routes {name:?}: perspectives is empty"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for p in &r.perspectives {
                if !seen.insert(p) {
                    return bad(format!(
                        "validation.routes {name:?}: perspective {p:?} is listed twice"
                    ));
                }
                if p != LOCAL_PERSPECTIVE {
                    if !valid_segment_name(p) {
                        return bad(format!(
                            "validation.routes {name:?}: {p:?} is not a segment name (a-z, 0-9, -) or \"{LOCAL_PERSPECTIVE}\""
                        ));
                    }
                    uses_agents = true;
                }
            }
            let q = r.quorum();
            if q == 0 || q > r.perspectives.len() {
                return bad(format!(
                    "validation.routes {name:?}: quorum {q} must be 1..={}",
                    r.perspectives.len()
                ));
            }
            for s in &r.suffixes {
                let s = s.trim_matches('.');
                if s.is_empty() || !s.is_ascii() || s.contains(['*', '/', ' ']) {
                    return bad(format!(
                        "validation.routes {name:?}: suffix {s:?} must be an ASCII domain name (punycode IDNs)"
                    ));
                }
            }
            for range in &r.ip_ranges {
                crate::va::denylist::IpRange::parse(range).map_err(|e| {
                    ConfigError::Invalid(format!("validation.routes {name:?}: ip_ranges: {e}"))
                })?;
            }
            let profiles = self.profiles();
            for p in &r.profiles {
                if !profiles.contains_key(p) {
                    return bad(format!(
                        "validation.routes {name:?}: profile {p:?} is not one of the profiles {:?}",
                        profiles.keys().collect::<Vec<_>>()
                    ));
                }
            }
        }
        if uses_agents && a.listen.is_none() {
            return bad(
                "validation.routes name agent segments but [agents] listen is not set: no agent could connect"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Result<(), ConfigError> {
        let c: Config = toml::from_str(toml_text).expect("parses");
        c.validate()
    }

    #[test]
    fn routes_and_agents_are_checked() {
        let ok = r#"
            [agents]
            listen = "127.0.0.1:9555"
            [[validation.routes]]
            suffixes = ["lab.test"]
            perspectives = ["lab", "local"]
            quorum = 1
        "#;
        config(ok).expect("valid");
        for (text, why) in [
            (
                "[[validation.routes]]\nsuffixes=[\"a.test\"]\nperspectives=[\"lab\"]\n",
                "listen is not set",
            ),
            (
                "[agents]\nlisten=\"127.0.0.1:9555\"\n[[validation.routes]]\nperspectives=[]\n",
                "perspectives is empty",
            ),
            (
                "[agents]\nlisten=\"127.0.0.1:9555\"\n[[validation.routes]]\nperspectives=[\"lab\"]\nquorum=2\n",
                "quorum 2 must be 1..=1",
            ),
            (
                "[agents]\nlisten=\"127.0.0.1:9555\"\n[[validation.routes]]\nperspectives=[\"Lab!\"]\n",
                "is not a segment name",
            ),
            (
                "[agents]\nlisten=\"127.0.0.1:9555\"\n[[validation.routes]]\nperspectives=[\"lab\",\"lab\"]\n",
                "listed twice",
            ),
            (
                "[[validation.routes]]\nip_ranges=[\"10.0.0.0/33\"]\nperspectives=[\"local\"]\n",
                "prefix length",
            ),
            (
                "[[validation.routes]]\nprofiles=[\"nope\"]\nperspectives=[\"local\"]\n",
                "not one of the profiles",
            ),
            (
                "[agents]\nlisten=\"127.0.0.1:9555\"\njob_timeout_secs=5\n",
                "must exceed validation.timeout_secs",
            ),
        ] {
            let err = config(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
