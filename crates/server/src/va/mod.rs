//! The validation authority: checks that an applicant controls an identifier.
//! One file per method; this module bounds their time and concurrency.

pub mod http01;
pub mod resolver;

use std::sync::Arc;
use std::time::Duration;

use certwright_proto::types::{ChallengeType, Identifier};
use certwright_proto::Problem;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

pub use resolver::NameResolver;

/// VA settings.
#[derive(Debug, Clone)]
pub struct VaConfig {
    pub http01_port: u16,
    pub tlsalpn01_port: u16,
    pub timeout: Duration,
    pub max_concurrent: usize,
}

/// What a validation found: `error` is `None` on success; `record` is what the VA saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub error: Option<Problem>,
    pub record: Value,
}

/// The validation authority. Cheap to clone.
#[derive(Clone)]
pub struct Va {
    pub(crate) config: Arc<VaConfig>,
    pub(crate) http: reqwest::Client,
    permits: Arc<Semaphore>,
}

impl Va {
    /// A VA resolving names with `resolver`.
    pub fn new(config: VaConfig, resolver: NameResolver) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver::ReqwestResolver(resolver)))
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
        })
    }

    /// Validates one challenge, bounded in time; waits for a free slot first.
    pub async fn validate(
        &self,
        kind: ChallengeType,
        identifier: &Identifier,
        token: &str,
        key_authorization: &str,
    ) -> Outcome {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let check = async {
            match kind {
                ChallengeType::Http01 => {
                    http01::validate_http01(self, identifier, token, key_authorization).await
                }
                other => (
                    Some(Problem::malformed(format!(
                        "{other} validation is not available on this CA"
                    ))),
                    Value::Null,
                ),
            }
        };
        let started = std::time::Instant::now();
        let (error, mut record) = match tokio::time::timeout(self.config.timeout, check).await {
            Ok(result) => result,
            Err(_) => (
                Some(Problem::connection(format!(
                    "validation of {} did not finish within {:?}",
                    identifier.value, self.config.timeout
                ))),
                Value::Null,
            ),
        };
        if !record.is_object() {
            record = json!({});
        }
        record["method"] = json!(kind.as_str());
        record["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
        Outcome { error, record }
    }
}
