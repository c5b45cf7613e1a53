//! The validation authority: checks that an applicant controls an identifier.
//! One file per method; this module bounds their time and concurrency.

pub mod caa;
pub mod denylist;
pub mod dns01;
pub mod http01;
pub mod remote;
pub mod resolver;
pub mod tlsalpn01;

use std::sync::Arc;
use std::time::Duration;

use certwright_proto::types::{ChallengeType, Identifier, IdentifierType};
use certwright_proto::Problem;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

pub use denylist::DenyList;
pub use resolver::NameResolver;

/// VA settings.
#[derive(Debug, Clone)]
pub struct VaConfig {
    /// Port http-01 connects to (80 in production).
    pub http01_port: u16,
    /// Port tls-alpn-01 connects to (443 in production).
    pub tlsalpn01_port: u16,
    /// How long one validation may take in all.
    pub timeout: Duration,
    /// Validations run at once; more wait their turn.
    pub max_concurrent: usize,
    /// Addresses never contacted: the reserved kinds (loopback only unless allowed by
    /// the test switch) and `deny_ranges`.
    pub deny: DenyList,
    /// Check CAA before a validation counts (off only for closed test setups).
    pub check_caa: bool,
    /// This CA's CAA issuer domains (`[directory] caa_identities`).
    pub caa_identities: Vec<String>,
    /// Account URLs are this prefix and the account id (for CAA `accounturi`).
    pub account_uri_prefix: String,
    /// Accept IP address identifiers (RFC 8738).
    pub allow_ip_identifiers: bool,
    /// Finalize re-checks CAA for validations older than this.
    pub caa_recheck_after: Duration,
}

impl VaConfig {
    /// Defaults: ports 80/443, 10 s, 64 at once, only the reserved addresses refused
    /// (loopback included), CAA on.
    pub fn new(account_uri_prefix: impl Into<String>) -> Self {
        Self {
            http01_port: 80,
            tlsalpn01_port: 443,
            timeout: Duration::from_secs(10),
            max_concurrent: 64,
            deny: DenyList::default(),
            check_caa: true,
            caa_identities: Vec::new(),
            account_uri_prefix: account_uri_prefix.into(),
            allow_ip_identifiers: true,
            caa_recheck_after: Duration::from_secs(8 * 3600),
        }
    }
}

/// What a validation found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The problem a client sees (fixed sentences), `None` on success.
    pub error: Option<Problem>,
    /// The `validationRecord` a client sees: what was contacted (URLs, host names, ports,
    /// addresses resolved and used, HTTP statuses, the CAA decision), never what was read.
    pub record: Value,
    /// What operators see, in the log and the audit record: the record with everything
    /// the VA read and every error in its own words.
    pub diagnostic: Value,
}

impl Outcome {
    /// An outcome whose record and diagnostic are the same (nothing read to hide).
    pub fn plain(error: Option<Problem>, record: Value) -> Self {
        Self {
            error,
            diagnostic: record.clone(),
            record,
        }
    }
}

/// Who a validation is for: what routing to remote agents may look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applicant {
    /// The account's id (its URL is the account URL prefix and this).
    pub account_id: i64,
    /// The account's EAB label, if it was bound with one.
    pub eab_label: Option<String>,
    /// The profile of the order the validation is for (filled only when the validator
    /// asks for it: [`Validator::routes_by_profile`]).
    pub profile: Option<String>,
}

/// A future a [`Validator`] returns (boxed, so that validators can be trait objects).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the RA asks of validation. [`Va`] validates from this host; the RA's tests use a
/// fake, and validation through agents in other networks is another implementation.
pub trait Validator: Send + Sync + 'static {
    /// Validates one challenge and, when it passed, checks CAA for the account (see
    /// [`Va::validate_for_issuance`]).
    fn validate_for_issuance<'a>(
        &'a self,
        kind: &'a ChallengeType,
        identifier: &'a Identifier,
        wildcard: bool,
        token: &'a str,
        key_authorization: &'a str,
        applicant: &'a Applicant,
    ) -> BoxFuture<'a, Outcome>;

    /// Checks CAA alone (finalize's re-check).
    fn check_caa<'a>(
        &'a self,
        identifier: &'a Identifier,
        wildcard: bool,
        applicant: &'a Applicant,
        method: &'a ChallengeType,
    ) -> BoxFuture<'a, Outcome>;

    /// Whether [`Applicant::profile`] matters to this validator (the RA looks the
    /// order's profile up only then).
    fn routes_by_profile(&self) -> bool {
        false
    }

    /// Why the validator would refuse to connect to `ip` for `applicant`, if it would
    /// (a validator that routes may send the address to a perspective with other limits).
    fn refuses(
        &self,
        ip: std::net::IpAddr,
        applicant: &Applicant,
    ) -> Option<denylist::DeniedAddress>;

    /// The settings the RA reads (IP identifiers allowed, the CAA re-check age).
    fn config(&self) -> &VaConfig;
}

impl Validator for Va {
    fn validate_for_issuance<'a>(
        &'a self,
        kind: &'a ChallengeType,
        identifier: &'a Identifier,
        wildcard: bool,
        token: &'a str,
        key_authorization: &'a str,
        applicant: &'a Applicant,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(Va::validate_for_issuance(
            self,
            kind,
            identifier,
            wildcard,
            token,
            key_authorization,
            applicant.account_id,
        ))
    }

    fn check_caa<'a>(
        &'a self,
        identifier: &'a Identifier,
        wildcard: bool,
        applicant: &'a Applicant,
        method: &'a ChallengeType,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(Va::check_caa(
            self,
            identifier,
            wildcard,
            applicant.account_id,
            method,
        ))
    }

    fn refuses(
        &self,
        ip: std::net::IpAddr,
        _applicant: &Applicant,
    ) -> Option<denylist::DeniedAddress> {
        Va::refuses(self, ip)
    }

    fn config(&self) -> &VaConfig {
        &self.config
    }
}

/// The validation authority. Cheap to clone.
#[derive(Clone)]
pub struct Va {
    pub(crate) config: Arc<VaConfig>,
    pub(crate) http: reqwest::Client,
    pub(crate) resolver: NameResolver,
    pub(crate) deny: Arc<DenyList>,
    pub(crate) tls_alpn: Arc<rustls::ClientConfig>,
    permits: Arc<Semaphore>,
}

impl Va {
    /// A VA resolving names with `resolver`.
    pub fn new(config: VaConfig, resolver: NameResolver) -> Result<Self, reqwest::Error> {
        let deny = Arc::new(config.deny.clone());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver::ReqwestResolver(
                resolver.clone(),
                deny.clone(),
            )))
            .timeout(http01::request_timeout(config.timeout))
            .connect_timeout(config.timeout / 2)
            .user_agent(concat!("certwright-va/", env!("CARGO_PKG_VERSION")))
            // The applicant's HTTPS (after a redirect) is not a trust decision here.
            .tls_danger_accept_invalid_certs(true)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            config: Arc::new(config),
            http,
            resolver,
            deny,
            tls_alpn: tlsalpn01::client_config(),
        })
    }

    /// The same VA (resolver, HTTP client, concurrency limit) with other settings; the
    /// deny list stays this VA's.
    pub fn with_config(&self, config: VaConfig) -> Self {
        Self {
            config: Arc::new(config),
            ..self.clone()
        }
    }

    /// The settings.
    pub fn config(&self) -> &VaConfig {
        &self.config
    }

    /// The resolver this VA looks names up with.
    pub fn resolver(&self) -> &NameResolver {
        &self.resolver
    }

    /// Why the VA would refuse to connect to `ip`, if it would (such IP identifiers are
    /// refused at newOrder).
    pub fn refuses(&self, ip: std::net::IpAddr) -> Option<denylist::DeniedAddress> {
        self.deny.check(ip).err()
    }

    /// Validates one challenge, bounded in time; waits for a free slot first.
    pub async fn validate(
        &self,
        kind: &ChallengeType,
        identifier: &Identifier,
        token: &str,
        key_authorization: &str,
    ) -> Outcome {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.run_check(kind, identifier, token, key_authorization)
            .await
    }

    /// Validates one challenge and, when it passed, checks CAA (for DNS identifiers) for
    /// the account `account_id`; the CAA findings go into the record under `"caa"`. The
    /// CAA lookups run while the challenge is checked, so a validation takes the longer of
    /// the two rather than their sum.
    pub async fn validate_for_issuance(
        &self,
        kind: &ChallengeType,
        identifier: &Identifier,
        wildcard: bool,
        token: &str,
        key_authorization: &str,
        account_id: i64,
    ) -> Outcome {
        let account_uri = format!("{}{account_id}", self.config.account_uri_prefix);
        self.validate_for_account_uri(
            kind,
            identifier,
            wildcard,
            token,
            key_authorization,
            &account_uri,
        )
        .await
    }

    /// [`Va::validate_for_issuance`] for the account at `account_uri` (a remote agent
    /// gets the URL in its job).
    pub async fn validate_for_account_uri(
        &self,
        kind: &ChallengeType,
        identifier: &Identifier,
        wildcard: bool,
        token: &str,
        key_authorization: &str,
        account_uri: &str,
    ) -> Outcome {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        // CAA is looked up while the challenge is checked (its answer only counts when the
        // check passes; a failed check drops the lookups still in flight).
        let check = self.run_check(kind, identifier, token, key_authorization);
        let caa = self.run_caa(identifier, wildcard, account_uri, kind);
        tokio::pin!(check, caa);
        let mut caa_done = None;
        let mut outcome = loop {
            tokio::select! {
                outcome = &mut check => break outcome,
                found = &mut caa, if caa_done.is_none() => caa_done = Some(found),
            }
        };
        if outcome.error.is_none() {
            let caa = match caa_done {
                Some(found) => found,
                None => caa.await,
            };
            outcome.error = caa.error;
            outcome.record["caa"] = caa.record;
            outcome.diagnostic["caa"] = caa.diagnostic;
        }
        outcome
    }

    /// Checks CAA alone (the re-check at finalize), bounded in time.
    pub async fn check_caa(
        &self,
        identifier: &Identifier,
        wildcard: bool,
        account_id: i64,
        method: &ChallengeType,
    ) -> Outcome {
        let account_uri = format!("{}{account_id}", self.config.account_uri_prefix);
        self.check_caa_for_account_uri(identifier, wildcard, &account_uri, method)
            .await
    }

    /// [`Va::check_caa`] for the account at `account_uri`.
    pub async fn check_caa_for_account_uri(
        &self,
        identifier: &Identifier,
        wildcard: bool,
        account_uri: &str,
        method: &ChallengeType,
    ) -> Outcome {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.run_caa(identifier, wildcard, account_uri, method)
            .await
    }

    async fn run_caa(
        &self,
        identifier: &Identifier,
        wildcard: bool,
        account_uri: &str,
        method: &ChallengeType,
    ) -> Outcome {
        if identifier.kind != IdentifierType::Dns {
            return Outcome::plain(
                None,
                json!({"decision": "CAA does not apply to IP addresses"}),
            );
        }
        if !self.config.check_caa {
            return Outcome::plain(
                None,
                json!({"decision": "CAA checking is disabled (validation.check_caa = false)"}),
            );
        }
        let request = caa::CaaRequest {
            name: identifier.value.trim_start_matches("*."),
            wildcard,
            account_uri,
            method: method.clone(),
        };
        let check = caa::check_caa(&self.resolver, &self.config.caa_identities, &request);
        match tokio::time::timeout(self.config.timeout, check).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::plain(
                Some(Problem::dns(format!(
                    "the CAA lookups for {} did not finish within {:?}; issuance is refused until CAA can be checked",
                    identifier.value, self.config.timeout
                ))),
                json!({"error": "timed out"}),
            ),
        }
    }

    async fn run_check(
        &self,
        kind: &ChallengeType,
        identifier: &Identifier,
        token: &str,
        key_authorization: &str,
    ) -> Outcome {
        let check = async {
            match kind {
                ChallengeType::Http01 => {
                    http01::validate_http01(self, identifier, token, key_authorization).await
                }
                ChallengeType::Dns01 => {
                    dns01::validate_dns01(self, identifier, key_authorization).await
                }
                ChallengeType::TlsAlpn01 => {
                    tlsalpn01::validate_tlsalpn01(self, identifier, key_authorization).await
                }
                // The RA offers only the types above; a stored challenge of another type
                // is refused, not attempted.
                ChallengeType::Unknown(name) => Outcome::plain(
                    Some(Problem::malformed(format!(
                        "this CA does not validate {name:?} challenges"
                    ))),
                    json!({}),
                ),
            }
        };
        let started = std::time::Instant::now();
        let mut outcome = match tokio::time::timeout(self.config.timeout, check).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let detail = format!(
                    "validation of {} timed out (it did not finish within {:?})",
                    identifier.value, self.config.timeout
                );
                let problem = match kind {
                    ChallengeType::Dns01 => Problem::dns(detail),
                    _ => Problem::connection(detail),
                };
                Outcome::plain(Some(problem), json!({}))
            }
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        for part in [&mut outcome.record, &mut outcome.diagnostic] {
            if !part.is_object() {
                *part = json!({});
            }
            part["method"] = json!(kind.as_str());
            part["elapsed_ms"] = json!(elapsed_ms);
        }
        outcome
    }
}

/// `bytes` as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use certwright_testkit::testdns::TestDns;

    /// A VA asking `dns`, with `deny` ranges and a config tweak.
    pub(crate) fn va_with(dns: &TestDns, deny: &[&str], tweak: impl FnOnce(&mut VaConfig)) -> Va {
        let mut config = VaConfig::new("https://ca.test/acme/acct/");
        config.timeout = Duration::from_secs(5);
        // The test servers listen on loopback.
        config.deny = DenyList::parse(deny).unwrap().allowing_loopback(true);
        config.caa_identities = vec!["ca.test".into()];
        tweak(&mut config);
        let resolver =
            NameResolver::dns_with_timeout(Some(dns.addr), Duration::from_millis(700)).unwrap();
        Va::new(config, resolver).unwrap()
    }

    pub(crate) fn va_with_dns(dns: &TestDns, deny: &[&str]) -> Va {
        va_with(dns, deny, |_| {})
    }

    /// CAA (looked up alongside the check) decides only when the check passed: a failed
    /// check reports its own problem, with no CAA findings, even where CAA would refuse.
    #[tokio::test]
    async fn caa_counts_only_after_a_passed_check() {
        use certwright_proto::ProblemType;
        use certwright_testkit::testdns::Behaviour;
        const KEY_AUTH: &str = "token.thumbprint";
        let dns = TestDns::start().await.unwrap();
        let va = va_with_dns(&dns, &[]);
        let good = certwright_proto::keyauth::dns01_txt_value(KEY_AUTH);
        let validate = |name: &'static str| {
            let va = va.clone();
            async move {
                va.validate_for_issuance(
                    &ChallengeType::Dns01,
                    &Identifier::dns(name),
                    false,
                    "token",
                    KEY_AUTH,
                    7,
                )
                .await
            }
        };

        dns.set_txt("_acme-challenge.allowed.test", &[&good]);
        let outcome = validate("allowed.test").await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(
            outcome.record["caa"]["decision"], "no CAA records: allowed",
            "{}",
            outcome.record
        );

        dns.set_txt("_acme-challenge.forbidden.test", &[&good]);
        dns.add_caa("forbidden.test", 0, "issue", "other-ca.test");
        let outcome = validate("forbidden.test").await;
        let problem = outcome.error.expect("CAA forbids this CA");
        assert_eq!(problem.kind, ProblemType::Caa, "{problem:?}");

        dns.set_txt("_acme-challenge.wrong.test", &["not-it"]);
        dns.set_behaviour("wrong.test", Behaviour::ServFail);
        let outcome = validate("wrong.test").await;
        let problem = outcome.error.expect("the TXT value is wrong");
        assert_eq!(problem.kind, ProblemType::IncorrectResponse, "{problem:?}");
        assert!(outcome.record.get("caa").is_none(), "{}", outcome.record);
    }
}
