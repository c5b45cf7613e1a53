//! Which perspectives validate an identifier: `[[validation.routes]]`, tried in order;
//! the first whose conditions all hold wins, and an identifier no route matches is
//! validated by the CA's own VA alone.

use std::net::IpAddr;

use certwright_proto::types::{Identifier, IdentifierType};

use crate::config::{ValidationRouteSection, LOCAL_PERSPECTIVE};
use crate::va::denylist::IpRange;
use crate::va::{Applicant, NameResolver};

/// Who validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Perspective {
    /// The CA's own VA.
    Local,
    /// The agents of this segment.
    Segment(String),
}

impl Perspective {
    /// The name routes and problems use (`local` or the segment's).
    pub fn name(&self) -> &str {
        match self {
            Self::Local => LOCAL_PERSPECTIVE,
            Self::Segment(s) => s,
        }
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    name: String,
    /// Lower case, without a leading dot.
    suffixes: Vec<String>,
    ranges: Vec<IpRange>,
    eab_labels: Vec<String>,
    profiles: Vec<String>,
    perspectives: Vec<Perspective>,
    quorum: usize,
}

/// Where a matched identifier is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan<'a> {
    /// The route's name.
    pub route: &'a str,
    /// Who validates, in the configured order.
    pub perspectives: &'a [Perspective],
    /// How many must see the challenge pass.
    pub quorum: usize,
}

/// The routes of `[[validation.routes]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
    default_profile: Option<String>,
}

impl Routes {
    /// The routes the (validated) configuration describes.
    pub fn from_config(sections: &[ValidationRouteSection]) -> Self {
        let routes = sections
            .iter()
            .enumerate()
            .map(|(i, r)| Route {
                name: r.display_name(i),
                suffixes: r
                    .suffixes
                    .iter()
                    .map(|s| s.trim_matches('.').to_ascii_lowercase())
                    .collect(),
                ranges: r
                    .ip_ranges
                    .iter()
                    .filter_map(|s| IpRange::parse(s).ok())
                    .collect(),
                eab_labels: r.eab_labels.clone(),
                profiles: r.profiles.clone(),
                perspectives: r
                    .perspectives
                    .iter()
                    .map(|p| match p.as_str() {
                        LOCAL_PERSPECTIVE => Perspective::Local,
                        s => Perspective::Segment(s.to_string()),
                    })
                    .collect(),
                quorum: r.quorum(),
            })
            .collect();
        Self {
            routes,
            default_profile: None,
        }
    }

    /// Orders that name no profile count as `profile` for the `profiles` condition.
    pub fn with_default_profile(mut self, profile: impl Into<String>) -> Self {
        self.default_profile = Some(profile.into());
        self
    }

    /// Whether there is no route (everything is validated locally).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether some route looks at the order's profile.
    pub fn routes_by_profile(&self) -> bool {
        self.routes.iter().any(|r| !r.profiles.is_empty())
    }

    /// The segments the routes name.
    pub fn segments(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .routes
            .iter()
            .flat_map(|r| r.perspectives.iter())
            .filter_map(|p| match p {
                Perspective::Segment(s) => Some(s.as_str()),
                Perspective::Local => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Where `identifier` is validated for `applicant`; `None`: locally, as without
    /// routes. A DNS name is looked up with `resolver` (the CA's DNS) only when a route
    /// that could match has `ip_ranges`, and only once; a name that does not resolve
    /// matches no range.
    pub async fn plan(
        &self,
        identifier: &Identifier,
        applicant: &Applicant,
        resolver: &NameResolver,
    ) -> Option<Plan<'_>> {
        if identifier.kind == IdentifierType::Ip {
            return self.plan_for_ip(identifier.value.parse().ok()?, applicant);
        }
        let mut resolved: Option<Vec<IpAddr>> = None;
        for route in &self.routes {
            if !route.matches_without_ranges(identifier, applicant, self.default_profile.as_deref())
            {
                continue;
            }
            if !route.ranges.is_empty() {
                if resolved.is_none() {
                    let name = identifier.value.trim_start_matches("*.");
                    resolved = Some(resolver.lookup_ip(name).await.unwrap_or_default());
                }
                if !route.covers_any(resolved.as_deref().unwrap_or_default()) {
                    continue;
                }
            }
            return Some(route.plan());
        }
        None
    }

    /// Where the IP identifier `ip` is validated for `applicant` (no lookup needed);
    /// `None`: locally.
    pub fn plan_for_ip(&self, ip: IpAddr, applicant: &Applicant) -> Option<Plan<'_>> {
        let identifier = Identifier::ip(ip.to_string());
        self.routes
            .iter()
            .find(|route| {
                route.matches_without_ranges(
                    &identifier,
                    applicant,
                    self.default_profile.as_deref(),
                ) && (route.ranges.is_empty() || route.covers_any(&[ip]))
            })
            .map(Route::plan)
    }
}

impl Route {
    fn plan(&self) -> Plan<'_> {
        Plan {
            route: &self.name,
            perspectives: &self.perspectives,
            quorum: self.quorum,
        }
    }

    /// Whether one of `addresses` is in one of the route's `ip_ranges`.
    fn covers_any(&self, addresses: &[IpAddr]) -> bool {
        addresses
            .iter()
            .any(|ip| self.ranges.iter().any(|r| r.contains(*ip)))
    }

    /// The conditions other than `ip_ranges` (those may need a lookup).
    fn matches_without_ranges(
        &self,
        identifier: &Identifier,
        applicant: &Applicant,
        default_profile: Option<&str>,
    ) -> bool {
        if !self.suffixes.is_empty() {
            if identifier.kind != IdentifierType::Dns {
                return false;
            }
            let name = identifier
                .value
                .trim_start_matches("*.")
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let under = |s: &String| {
                name == *s
                    || name
                        .strip_suffix(s.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            };
            if !self.suffixes.iter().any(under) {
                return false;
            }
        }
        if !self.eab_labels.is_empty()
            && !applicant
                .eab_label
                .as_ref()
                .is_some_and(|l| self.eab_labels.contains(l))
        {
            return false;
        }
        if !self.profiles.is_empty() {
            let profile = applicant.profile.as_deref().or(default_profile);
            if !profile.is_some_and(|p| self.profiles.iter().any(|q| q == p)) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certwright_testkit::testdns::TestDns;

    fn routes(toml_text: &str) -> Routes {
        #[derive(serde::Deserialize)]
        struct F {
            routes: Vec<ValidationRouteSection>,
        }
        let f: F = toml::from_str(toml_text).unwrap();
        Routes::from_config(&f.routes).with_default_profile("default")
    }

    fn applicant(label: Option<&str>, profile: Option<&str>) -> Applicant {
        Applicant {
            account_id: 1,
            eab_label: label.map(str::to_string),
            profile: profile.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn first_matching_route_wins_and_all_conditions_must_hold() {
        let dns = TestDns::start().await.unwrap();
        dns.set_addrs("intranet.corp.test", &["10.30.1.5".parse().unwrap()]);
        let resolver =
            NameResolver::dns_with_timeout(Some(dns.addr), std::time::Duration::from_millis(700))
                .unwrap();
        let r = routes(
            r#"
            [[routes]]
            name = "hr"
            suffixes = ["hr.corp.test"]
            eab_labels = ["hr-team"]
            perspectives = ["hr"]
            [[routes]]
            name = "lab"
            suffixes = [".Lab.Corp.Test."]
            perspectives = ["lab", "local"]
            quorum = 1
            [[routes]]
            name = "by-address"
            ip_ranges = ["10.30.0.0/16"]
            perspectives = ["dc"]
            [[routes]]
            name = "by-profile"
            profiles = ["default"]
            suffixes = ["p.test"]
            perspectives = ["local", "dc"]
            "#,
        );
        assert!(r.routes_by_profile());
        assert_eq!(r.segments(), vec!["dc", "hr", "lab"]);
        let plan = |id: Identifier, a: Applicant| {
            let r = &r;
            let resolver = &resolver;
            async move { r.plan(&id, &a, resolver).await.map(|p| p.route.to_string()) }
        };
        // Suffix and label must both hold.
        assert_eq!(
            plan(
                Identifier::dns("web.hr.corp.test"),
                applicant(Some("hr-team"), None)
            )
            .await,
            Some("hr".into())
        );
        assert_eq!(
            plan(
                Identifier::dns("web.hr.corp.test"),
                applicant(Some("other"), None)
            )
            .await,
            None
        );
        // Suffixes match whole labels, case-insensitively, wildcards by their base.
        assert_eq!(
            plan(Identifier::dns("*.a.lab.corp.test"), applicant(None, None)).await,
            Some("lab".into())
        );
        assert_eq!(
            plan(Identifier::dns("lab.corp.test"), applicant(None, None)).await,
            Some("lab".into())
        );
        assert_eq!(
            plan(Identifier::dns("notlab.corp.test"), applicant(None, None)).await,
            None
        );
        // Ranges: IP identifiers, and names by the addresses the CA's DNS gives them.
        assert_eq!(
            plan(Identifier::ip("10.30.9.9"), applicant(None, None)).await,
            Some("by-address".into())
        );
        assert_eq!(
            plan(Identifier::dns("intranet.corp.test"), applicant(None, None)).await,
            Some("by-address".into())
        );
        assert_eq!(
            plan(Identifier::dns("unknown.corp.test"), applicant(None, None)).await,
            None
        );
        // Profiles: an order without one counts as the default profile.
        assert_eq!(
            plan(Identifier::dns("x.p.test"), applicant(None, None)).await,
            Some("by-profile".into())
        );
        assert_eq!(
            plan(Identifier::dns("x.p.test"), applicant(None, Some("other"))).await,
            None
        );
        let lab = r
            .plan(
                &Identifier::dns("a.lab.corp.test"),
                &applicant(None, None),
                &resolver,
            )
            .await
            .unwrap();
        assert_eq!(
            lab.perspectives,
            &[Perspective::Segment("lab".into()), Perspective::Local]
        );
        assert_eq!(lab.quorum, 1);
    }
}
