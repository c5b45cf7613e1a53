//! Routing: which backend signs an order. Rules are tried in order and the first whose
//! conditions all hold wins; an order no rule matches goes to the default.

use certwright_proto::types::Identifier;

use crate::config::{RoutingSection, LOCAL_BACKEND};

/// What routing looks at in an order.
#[derive(Debug, Clone, Copy)]
pub struct OrderFacts<'a> {
    /// The order's identifiers.
    pub identifiers: &'a [Identifier],
    /// The profile the order asked for (none: the default profile).
    pub profile: Option<&'a str>,
    /// The account's EAB label.
    pub eab_label: Option<&'a str>,
}

/// Where an order goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// The CA's own issuers.
    Local,
    /// The backend of this name.
    Backend(&'a str),
}

/// One rule: every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    backend: String,
    eab_label: Option<String>,
    profile: Option<String>,
    /// Lowercase, without a leading dot.
    suffix: Option<String>,
}

/// The routing rules and the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    rules: Vec<Rule>,
    default: String,
}

impl Default for Router {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: LOCAL_BACKEND.into(),
        }
    }
}

impl Router {
    /// The router `[routing]` describes (its backend names checked by `Config::validate`).
    pub fn from_config(section: &RoutingSection) -> Self {
        Self {
            rules: section
                .rules
                .iter()
                .map(|r| Rule {
                    backend: r.backend.clone(),
                    eab_label: r.eab_label.clone(),
                    profile: r.profile.clone(),
                    suffix: r
                        .suffix
                        .as_ref()
                        .map(|s| s.trim_start_matches('.').to_ascii_lowercase()),
                })
                .collect(),
            default: section.default.clone(),
        }
    }

    /// The backend of an order with `facts`.
    pub fn route(&self, facts: &OrderFacts<'_>) -> Route<'_> {
        let name = self
            .rules
            .iter()
            .find(|r| r.matches(facts))
            .map_or(self.default.as_str(), |r| r.backend.as_str());
        if name == LOCAL_BACKEND {
            Route::Local
        } else {
            Route::Backend(name)
        }
    }
}

impl Rule {
    fn matches(&self, facts: &OrderFacts<'_>) -> bool {
        let label = self
            .eab_label
            .as_deref()
            .is_none_or(|l| facts.eab_label == Some(l));
        let profile = self
            .profile
            .as_deref()
            .is_none_or(|p| facts.profile == Some(p));
        let suffix = self.suffix.as_deref().is_none_or(|s| {
            !facts.identifiers.is_empty() && facts.identifiers.iter().all(|i| under(&i.value, s))
        });
        label && profile && suffix
    }
}

/// `name` is `suffix` or a name below it (a wildcard's base counts).
fn under(name: &str, suffix: &str) -> bool {
    let name = name.trim_start_matches("*.").to_ascii_lowercase();
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteRuleSection;

    fn rule(
        backend: &str,
        label: Option<&str>,
        profile: Option<&str>,
        suffix: Option<&str>,
    ) -> RouteRuleSection {
        RouteRuleSection {
            backend: backend.into(),
            eab_label: label.map(Into::into),
            profile: profile.map(Into::into),
            suffix: suffix.map(Into::into),
        }
    }

    fn dns(names: &[&str]) -> Vec<Identifier> {
        names.iter().map(|n| Identifier::dns(*n)).collect()
    }

    fn router() -> Router {
        Router::from_config(&RoutingSection {
            default: "openssl".into(),
            rules: vec![
                rule("upstream", Some("team-a"), None, None),
                rule("local", Some("team-b"), Some("short"), None),
                rule("easyrsa", None, None, Some(".lab.example")),
            ],
        })
    }

    #[test]
    fn the_first_matching_rule_wins_else_the_default() {
        let r = router();
        let names = dns(&["a.lab.example"]);
        let facts = |label, profile| OrderFacts {
            identifiers: &names,
            profile,
            eab_label: label,
        };
        assert_eq!(
            r.route(&facts(Some("team-a"), None)),
            Route::Backend("upstream")
        );
        assert_eq!(r.route(&facts(Some("team-b"), Some("short"))), Route::Local);
        // team-b without the profile falls through to the suffix rule.
        assert_eq!(
            r.route(&facts(Some("team-b"), None)),
            Route::Backend("easyrsa")
        );
        let other = dns(&["www.example.com"]);
        let unmatched = OrderFacts {
            identifiers: &other,
            profile: None,
            eab_label: Some("team-c"),
        };
        assert_eq!(r.route(&unmatched), Route::Backend("openssl"));
    }

    #[test]
    fn a_suffix_holds_only_when_every_name_is_below_it_on_a_label_boundary() {
        assert!(under("lab.example", "lab.example"));
        assert!(under("A.Lab.Example", "lab.example"));
        assert!(under("*.lab.example", "lab.example"));
        assert!(!under("badlab.example", "lab.example"));
        assert!(!under("lab.example.com", "lab.example"));
        let r = router();
        let mixed = dns(&["a.lab.example", "www.example.com"]);
        let facts = OrderFacts {
            identifiers: &mixed,
            profile: None,
            eab_label: None,
        };
        assert_eq!(r.route(&facts), Route::Backend("openssl"));
    }

    #[test]
    fn without_routing_everything_is_local() {
        let names = dns(&["x.example"]);
        let facts = OrderFacts {
            identifiers: &names,
            profile: None,
            eab_label: Some("team-a"),
        };
        assert_eq!(Router::default().route(&facts), Route::Local);
    }
}
