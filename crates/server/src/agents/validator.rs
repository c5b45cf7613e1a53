//! The RA's validator when `[[validation.routes]]` are configured: an identifier a route
//! matches is validated by the route's perspectives (the CA's own VA and agents of named
//! segments) at once, and passes when at least `quorum` of them saw the challenge pass;
//! anything else is validated by the CA's own VA as without routes.
//!
//! What comes back from an agent is checked before it reaches a client: the problem
//! type must be one a validation can produce, the detail is cut short and stripped of
//! control characters, and the record is kept only if it is a JSON object of bounded size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certwright_proto::types::{ChallengeType, Identifier};
use certwright_proto::{Problem, ProblemType};
use serde_json::{json, Value};

use super::route::{Perspective, Plan, Routes};
use super::{Dispatch, DispatchError};
use crate::va::remote::{Job, JobKind};
use crate::va::{denylist, Applicant, BoxFuture, Outcome, Va, VaConfig, Validator};

/// The longest problem detail taken from an agent.
const MAX_AGENT_DETAIL: usize = 300;
/// The largest validation record (serialized) taken from an agent.
const MAX_AGENT_RECORD: usize = 16 * 1024;

/// Validates locally or through agents, per route.
pub struct RoutedValidator {
    local: Va,
    routes: Routes,
    dispatch: Arc<dyn Dispatch>,
}

/// One perspective's view.
struct View {
    perspective: String,
    agent: Option<String>,
    outcome: Outcome,
}

impl RoutedValidator {
    /// A validator that sends what `routes` match to `dispatch` (and to `local` for the
    /// `local` perspective), and everything else to `local`.
    pub fn new(local: Va, routes: Routes, dispatch: Arc<dyn Dispatch>) -> Self {
        Self {
            local,
            routes,
            dispatch,
        }
    }

    /// The job for a perspective of `plan` (the dispatcher sets its id).
    fn job(&self, kind: JobKind, request: &Request<'_>) -> Job {
        let c = self.local.config();
        Job {
            id: String::new(),
            kind,
            challenge: request.challenge.clone(),
            identifier: request.identifier.clone(),
            wildcard: request.wildcard,
            token: request.token.to_string(),
            key_authorization: request.key_authorization.to_string(),
            account_uri: format!("{}{}", c.account_uri_prefix, request.applicant.account_id),
            caa_identities: c.caa_identities.clone(),
            check_caa: c.check_caa,
            http01_port: c.http01_port,
            tlsalpn01_port: c.tlsalpn01_port,
            timeout_ms: c.timeout.as_millis() as u64,
        }
    }

    /// Runs one perspective.
    async fn view(&self, perspective: &Perspective, kind: JobKind, request: &Request<'_>) -> View {
        match perspective {
            Perspective::Local => {
                let outcome = match kind {
                    JobKind::Validate => {
                        self.local
                            .validate_for_issuance(
                                request.challenge,
                                request.identifier,
                                request.wildcard,
                                request.token,
                                request.key_authorization,
                                request.applicant.account_id,
                            )
                            .await
                    }
                    JobKind::Caa => {
                        self.local
                            .check_caa(
                                request.identifier,
                                request.wildcard,
                                request.applicant.account_id,
                                request.challenge,
                            )
                            .await
                    }
                };
                View {
                    perspective: perspective.name().to_string(),
                    agent: None,
                    outcome,
                }
            }
            Perspective::Segment(segment) => {
                let started = Instant::now();
                match self.dispatch.run(segment, self.job(kind, request)).await {
                    Ok(answered) => View {
                        perspective: segment.clone(),
                        agent: Some(answered.agent),
                        outcome: checked(answered.result.into(), request.challenge),
                    },
                    Err(e) => View {
                        perspective: segment.clone(),
                        agent: None,
                        outcome: unanswered(&e, request.identifier, started.elapsed()),
                    },
                }
            }
        }
    }

    /// Runs the plan's perspectives at once and combines them.
    async fn run_plan(&self, plan: Plan<'_>, kind: JobKind, request: &Request<'_>) -> Outcome {
        let views = futures_util::future::join_all(
            plan.perspectives
                .iter()
                .map(|p| self.view(p, kind, request)),
        )
        .await;
        combine(plan, views)
    }

    async fn routed(&self, kind: JobKind, request: Request<'_>) -> Outcome {
        match self
            .routes
            .plan(request.identifier, request.applicant, self.local.resolver())
            .await
        {
            Some(plan) => self.run_plan(plan, kind, &request).await,
            None => self.view(&Perspective::Local, kind, &request).await.outcome,
        }
    }
}

/// What a validation is about.
struct Request<'a> {
    challenge: &'a ChallengeType,
    identifier: &'a Identifier,
    wildcard: bool,
    token: &'a str,
    key_authorization: &'a str,
    applicant: &'a Applicant,
}

/// The outcome of a perspective whose job no agent answered.
fn unanswered(e: &DispatchError, identifier: &Identifier, waited: Duration) -> Outcome {
    let detail = match e {
        DispatchError::NoAgent { segment, .. } => format!(
            "the validation of {} is routed to network segment \"{segment}\", and no validation agent of that segment took it within {}s (is an agent of segment \"{segment}\" running and connected?)",
            identifier.value,
            waited.as_secs().max(1)
        ),
        DispatchError::Unanswered { segment, agents } => format!(
            "the validation of {} is routed to network segment \"{segment}\", and the agents that took it ({}) did not answer in time",
            identifier.value,
            agents.join(", ")
        ),
    };
    let record = json!({"error": e.to_string()});
    Outcome::plain(Some(Problem::connection(detail)), record)
}

/// An agent's outcome made safe to show a client.
fn checked(mut outcome: Outcome, challenge: &ChallengeType) -> Outcome {
    if let Some(problem) = outcome.error.take() {
        let kind = match problem.kind {
            ProblemType::Connection
            | ProblemType::Dns
            | ProblemType::IncorrectResponse
            | ProblemType::Tls
            | ProblemType::Caa
            | ProblemType::Unauthorized
            | ProblemType::RejectedIdentifier
            | ProblemType::Malformed => problem.kind,
            _ => ProblemType::ServerInternal,
        };
        let mut detail: String = problem
            .detail
            .chars()
            .filter(|c| !c.is_control() && !is_format(*c))
            .take(MAX_AGENT_DETAIL)
            .collect();
        if detail.is_empty() {
            detail = "the validation agent reported a failure without a detail".into();
        }
        outcome.error = Some(Problem::new(kind, detail));
    }
    let bounded = |v: &Value| {
        v.is_object() && serde_json::to_string(v).map_or(0, |s| s.len()) <= MAX_AGENT_RECORD
    };
    if !bounded(&outcome.record) {
        outcome.record = json!({"method": challenge.as_str()});
    }
    if !bounded(&outcome.diagnostic) {
        outcome.diagnostic =
            json!({"note": "the agent's diagnostic was not a JSON object or was too large"});
    }
    outcome
}

/// Unicode format characters (category Cf: bidirectional overrides, zero-width
/// characters) that could make an agent's text read differently from what it is.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Combines the perspectives' views: the result of the first that passed when at least
/// `quorum` passed (the record lists every perspective), else a problem naming those that
/// disagreed.
fn combine(plan: Plan<'_>, views: Vec<View>) -> Outcome {
    let summary: Vec<Value> = views
        .iter()
        .map(|v| {
            let mut s = json!({
                "perspective": v.perspective,
                "passed": v.outcome.error.is_none(),
            });
            if let Some(agent) = &v.agent {
                s["agent"] = json!(agent);
            }
            if let Some(p) = &v.outcome.error {
                s["problem"] = json!(p.kind);
            }
            s
        })
        .collect();
    let passed = views.iter().filter(|v| v.outcome.error.is_none()).count();
    let annotate = |mut outcome: Outcome, view_of: &View| {
        for part in [&mut outcome.record, &mut outcome.diagnostic] {
            if !part.is_object() {
                *part = json!({});
            }
            part["route"] = json!(plan.route);
            part["perspective"] = json!(view_of.perspective);
            if let Some(agent) = &view_of.agent {
                part["agent"] = json!(agent);
            }
            if views.len() > 1 {
                part["perspectives"] = json!(summary);
                part["quorum"] = json!(plan.quorum);
            }
        }
        outcome
    };
    if views.len() == 1 {
        let view = &views[0];
        return annotate(view.outcome.clone(), view);
    }
    if passed >= plan.quorum {
        let first = views
            .iter()
            .find(|v| v.outcome.error.is_none())
            .expect("quorum >= 1 and met");
        let mut outcome = annotate(first.outcome.clone(), first);
        // What the other perspectives saw, for operators.
        outcome.diagnostic["views"] = json!(views
            .iter()
            .map(|v| json!({"perspective": v.perspective, "diagnostic": v.outcome.diagnostic}))
            .collect::<Vec<_>>());
        return outcome;
    }
    let failed: Vec<&View> = views.iter().filter(|v| v.outcome.error.is_some()).collect();
    let first_failed = failed[0];
    let problem = first_failed.outcome.error.as_ref().expect("failed");
    let names = |vs: &[&View]| {
        vs.iter()
            .map(|v| match &v.agent {
                Some(a) => format!("\"{}\" (agent {a})", v.perspective),
                None => format!("\"{}\"", v.perspective),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let passing: Vec<&View> = views.iter().filter(|v| v.outcome.error.is_none()).collect();
    let detail = if passing.is_empty() {
        format!(
            "no perspective saw the challenge pass ({} of {} needed); {}: {}",
            plan.quorum,
            views.len(),
            names(&failed[..1]),
            problem.detail
        )
    } else {
        format!(
            "the perspectives disagree: {} of {} must see the challenge pass and only {passed} did ({}); {} disagreed: {}",
            plan.quorum,
            views.len(),
            names(&passing),
            names(&failed),
            problem.detail
        )
    };
    let mut outcome = annotate(first_failed.outcome.clone(), first_failed);
    outcome.error = Some(Problem::new(problem.kind.clone(), detail));
    outcome.diagnostic["views"] = json!(views
        .iter()
        .map(|v| json!({"perspective": v.perspective, "diagnostic": v.outcome.diagnostic}))
        .collect::<Vec<_>>());
    outcome
}

impl Validator for RoutedValidator {
    fn validate_for_issuance<'a>(
        &'a self,
        kind: &'a ChallengeType,
        identifier: &'a Identifier,
        wildcard: bool,
        token: &'a str,
        key_authorization: &'a str,
        applicant: &'a Applicant,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.routed(
            JobKind::Validate,
            Request {
                challenge: kind,
                identifier,
                wildcard,
                token,
                key_authorization,
                applicant,
            },
        ))
    }

    fn check_caa<'a>(
        &'a self,
        identifier: &'a Identifier,
        wildcard: bool,
        applicant: &'a Applicant,
        method: &'a ChallengeType,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.routed(
            JobKind::Caa,
            Request {
                challenge: method,
                identifier,
                wildcard,
                token: "",
                key_authorization: "",
                applicant,
            },
        ))
    }

    fn routes_by_profile(&self) -> bool {
        self.routes.routes_by_profile()
    }

    /// The local deny list applies unless the address is routed to agents alone: they
    /// refuse by their own (`--deny`, and the reserved ranges always).
    fn refuses(
        &self,
        ip: std::net::IpAddr,
        applicant: &Applicant,
    ) -> Option<denylist::DeniedAddress> {
        match self.routes.plan_for_ip(ip, applicant) {
            Some(plan) if !plan.perspectives.contains(&Perspective::Local) => None,
            _ => self.local.refuses(ip),
        }
    }

    fn config(&self) -> &VaConfig {
        self.local.config()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::agents::Answered;
    use crate::config::ValidationRouteSection;
    use crate::va::remote::JobResult;
    use certwright_testkit::testdns::TestDns;

    /// A dispatcher whose agents answer from a table (segment -> result), recording jobs.
    #[derive(Default)]
    struct FakeAgents {
        answers: Mutex<Vec<(String, Result<JobResult, DispatchError>)>>,
        jobs: Mutex<Vec<(String, Job)>>,
    }

    impl Dispatch for FakeAgents {
        fn run<'a>(
            &'a self,
            segment: &'a str,
            job: Job,
        ) -> BoxFuture<'a, Result<Answered, DispatchError>> {
            Box::pin(async move {
                self.jobs.lock().unwrap().push((segment.to_string(), job));
                let answers = self.answers.lock().unwrap();
                let (_, answer) = answers
                    .iter()
                    .find(|(s, _)| s == segment)
                    .expect("an answer for the segment");
                answer.clone().map(|result| Answered {
                    agent: format!("{segment}-a"),
                    result,
                    attempts: 1,
                })
            })
        }
    }

    const KEY_AUTH: &str = "token.thumbprint";

    fn passed() -> JobResult {
        JobResult {
            error: None,
            record: json!({"method": "dns-01"}),
            diagnostic: json!({}),
        }
    }

    struct Fixture {
        _dns: TestDns,
        agents: Arc<FakeAgents>,
        validator: RoutedValidator,
    }

    async fn fixture(routes_toml: &str) -> Fixture {
        #[derive(serde::Deserialize)]
        struct F {
            routes: Vec<ValidationRouteSection>,
        }
        let dns = TestDns::start().await.unwrap();
        let mut config = VaConfig::new("https://ca.test/acme/acct/");
        config.timeout = Duration::from_secs(3);
        config.caa_identities = vec!["ca.test".into()];
        let resolver =
            crate::va::NameResolver::dns_with_timeout(Some(dns.addr), Duration::from_millis(700))
                .unwrap();
        let va = Va::new(config, resolver).unwrap();
        let f: F = toml::from_str(routes_toml).unwrap();
        let agents = Arc::new(FakeAgents::default());
        let validator = RoutedValidator::new(va, Routes::from_config(&f.routes), agents.clone());
        Fixture {
            _dns: dns,
            agents,
            validator,
        }
    }

    async fn validate(v: &RoutedValidator, name: &str) -> Outcome {
        v.validate_for_issuance(
            &ChallengeType::Dns01,
            &Identifier::dns(name),
            false,
            "token",
            KEY_AUTH,
            &Applicant {
                account_id: 7,
                ..Applicant::default()
            },
        )
        .await
    }

    /// An address routed to agents alone is theirs to refuse: the CA's deny list (which
    /// may well hold the segment's private range) does not refuse it at newOrder.
    #[tokio::test]
    async fn the_local_deny_list_applies_to_addresses_a_local_perspective_validates() {
        #[derive(serde::Deserialize)]
        struct F {
            routes: Vec<ValidationRouteSection>,
        }
        let mut config = VaConfig::new("https://ca.test/acme/acct/");
        config.deny = denylist::DenyList::parse(&["10.0.0.0/8"]).unwrap();
        // Never asked: IP identifiers need no lookup.
        let unused = crate::va::NameResolver::dns(Some("127.0.0.1:9".parse().unwrap())).unwrap();
        let va = Va::new(config, unused).unwrap();
        let f: F = toml::from_str(
            r#"
            [[routes]]
            name = "hr"
            ip_ranges = ["10.20.0.0/16"]
            eab_labels = ["hr-team"]
            perspectives = ["hr"]
            [[routes]]
            name = "lab"
            ip_ranges = ["10.30.0.0/16"]
            perspectives = ["lab", "local"]
            "#,
        )
        .unwrap();
        let v = RoutedValidator::new(
            va,
            Routes::from_config(&f.routes),
            Arc::new(FakeAgents::default()),
        );
        let hr = Applicant {
            eab_label: Some("hr-team".into()),
            ..Applicant::default()
        };
        let other = Applicant::default();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(v.refuses(ip("10.20.0.5"), &hr).is_none());
        // The route's other conditions must hold too.
        assert!(v.refuses(ip("10.20.0.5"), &other).is_some());
        // The local VA is one of the lab's perspectives; the rest is not routed.
        assert!(v.refuses(ip("10.30.0.5"), &hr).is_some());
        assert!(v.refuses(ip("10.40.0.5"), &hr).is_some());
        assert!(v.refuses(ip("127.0.0.1"), &hr).is_some());
        assert!(v.refuses(ip("192.0.2.1"), &hr).is_none());
    }

    #[tokio::test]
    async fn routed_names_go_to_their_segment_and_others_stay_local() {
        let f = fixture(
            r#"
            [[routes]]
            name = "lab-route"
            suffixes = ["lab.test"]
            perspectives = ["lab"]
            "#,
        )
        .await;
        f.agents
            .answers
            .lock()
            .unwrap()
            .push(("lab".into(), Ok(passed())));
        let outcome = validate(&f.validator, "web.lab.test").await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.record["agent"], "lab-a", "{}", outcome.record);
        assert_eq!(outcome.record["perspective"], "lab");
        assert_eq!(outcome.record["route"], "lab-route");
        let jobs = f.agents.jobs.lock().unwrap().clone();
        assert_eq!(jobs.len(), 1);
        let (segment, job) = &jobs[0];
        assert_eq!(segment, "lab");
        assert_eq!(job.account_uri, "https://ca.test/acme/acct/7");
        assert_eq!(job.key_authorization, KEY_AUTH);
        assert_eq!(job.kind, JobKind::Validate);

        // Not routed: the local VA (whose DNS has no TXT record) answers, no job is made.
        let outcome = validate(&f.validator, "web.other.test").await;
        let problem = outcome.error.expect("no TXT record locally");
        assert_eq!(problem.kind, ProblemType::Dns, "{problem:?}");
        assert_eq!(f.agents.jobs.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unanswered_job_is_a_connection_problem_naming_the_segment() {
        let f = fixture("[[routes]]\nsuffixes = [\"lab.test\"]\nperspectives = [\"lab\"]\n").await;
        f.agents.answers.lock().unwrap().push((
            "lab".into(),
            Err(DispatchError::NoAgent {
                segment: "lab".into(),
                waited: Duration::from_secs(10),
            }),
        ));
        let problem = validate(&f.validator, "web.lab.test")
            .await
            .error
            .expect("no agent");
        assert_eq!(problem.kind, ProblemType::Connection);
        assert!(
            problem.detail.contains("segment \"lab\""),
            "{}",
            problem.detail
        );
    }

    #[tokio::test]
    async fn an_agents_answer_is_made_safe_for_clients() {
        let f = fixture("[[routes]]\nsuffixes = [\"lab.test\"]\nperspectives = [\"lab\"]\n").await;
        let mut hostile = Problem::new(ProblemType::ServerInternal, "x".repeat(5000));
        hostile.kind = ProblemType::Other("urn:evil".into());
        hostile.detail = format!("bad\u{1b}[31m\u{202e}{}", "y".repeat(1000));
        f.agents.answers.lock().unwrap().push((
            "lab".into(),
            Ok(JobResult {
                error: Some(hostile),
                record: json!("not an object"),
                diagnostic: json!({"big": "z".repeat(40_000)}),
            }),
        ));
        let outcome = validate(&f.validator, "web.lab.test").await;
        let problem = outcome.error.expect("failed");
        assert_eq!(problem.kind, ProblemType::ServerInternal);
        assert!(
            problem.detail.len() <= MAX_AGENT_DETAIL,
            "{}",
            problem.detail.len()
        );
        assert!(!problem.detail.contains('\u{1b}'));
        assert!(
            !problem.detail.contains('\u{202e}'),
            "bidirectional override dropped"
        );
        assert!(outcome.record.is_object(), "{}", outcome.record);
        assert!(
            outcome.diagnostic["big"].is_null(),
            "oversized diagnostic dropped"
        );
    }

    #[tokio::test]
    async fn perspectives_must_agree_up_to_the_quorum() {
        let f = fixture(
            r#"
            [[routes]]
            name = "mpic"
            suffixes = ["both.test"]
            perspectives = ["local", "east"]
            [[routes]]
            name = "two-of-three"
            suffixes = ["many.test"]
            perspectives = ["east", "west", "north"]
            quorum = 2
            "#,
        )
        .await;
        let wrong = JobResult {
            error: Some(Problem::incorrect_response(
                "the TXT record is not the expected value",
            )),
            record: json!({}),
            diagnostic: json!({}),
        };
        {
            let mut a = f.agents.answers.lock().unwrap();
            a.push(("east".into(), Ok(passed())));
            a.push(("west".into(), Ok(wrong.clone())));
            a.push((
                "north".into(),
                Err(DispatchError::Unanswered {
                    segment: "north".into(),
                    agents: vec!["north-a".into()],
                }),
            ));
        }
        // Local (no TXT record in its DNS) and east (passed) disagree: 2 of 2 needed.
        let outcome = validate(&f.validator, "web.both.test").await;
        let problem = outcome.error.expect("disagreement");
        assert!(
            problem.detail.contains("disagree") && problem.detail.contains("\"local\""),
            "{}",
            problem.detail
        );
        assert!(
            problem.detail.contains("\"east\" (agent east-a)"),
            "{}",
            problem.detail
        );
        assert_eq!(outcome.record["perspectives"].as_array().unwrap().len(), 2);

        // East passed, west saw a wrong answer, north did not answer: 1 of 2 needed.
        let outcome = validate(&f.validator, "web.many.test").await;
        let problem = outcome.error.expect("only one passed");
        assert_eq!(problem.kind, ProblemType::IncorrectResponse);
        assert!(
            problem.detail.contains("\"west\" (agent west-a)"),
            "{}",
            problem.detail
        );
        assert!(problem.detail.contains("\"north\""), "{}", problem.detail);

        // With west agreeing, 2 of 3 pass and the validation passes.
        f.agents.answers.lock().unwrap()[1].1 = Ok(passed());
        let outcome = validate(&f.validator, "web.many.test").await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.record["quorum"], 2);
        let views = outcome.record["perspectives"].as_array().unwrap();
        assert_eq!(views.iter().filter(|v| v["passed"] == true).count(), 2);
    }
}
