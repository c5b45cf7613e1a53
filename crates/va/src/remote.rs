//! The remote validation protocol between certwright-ca and `certwright-va-agent`.
//!
//! An agent runs inside a network segment the CA cannot reach. It opens every connection
//! itself (no inbound port in the segment), over TLS to the CA's agent listener:
//!
//! | request | authentication | answer |
//! | --- | --- | --- |
//! | `GET` [`CA_PATH`] | none | the agent CA certificate (PEM), checked by the agent against the SHA-256 in its enrolment token |
//! | `POST` [`ENROLL_PATH`] [`EnrollRequest`] | the one-time token | [`EnrollResponse`]: the agent's client certificate |
//! | `POST` [`POLL_PATH`] [`PollRequest`] | client certificate | `200` with a [`Job`], or `204` when none came within the wait |
//! | `POST` [`RESULT_PATH`]`{job id}` [`JobResult`] | client certificate of the agent that took the job | `204` |
//! | `POST` [`RENEW_PATH`] [`RenewRequest`] | client certificate | [`EnrollResponse`] with a new certificate |
//!
//! Refusals are RFC 7807 problem documents (`application/problem+json`).
//!
//! The agent validates with this crate's [`Va`] ([`run_job`]): the same code and the same
//! fixed client-facing sentences as the CA's own VA.

use std::fmt;
use std::time::Duration;

use certwright_proto::types::{ChallengeType, Identifier};
use certwright_proto::Problem;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Outcome, Va, VaConfig};

/// The agent CA certificate (PEM), unauthenticated.
pub const CA_PATH: &str = "/agent/v1/ca";
/// Enrolment: a one-time token and a CSR for a client certificate.
pub const ENROLL_PATH: &str = "/agent/v1/enroll";
/// Long poll for the next job of the agent's segment.
pub const POLL_PATH: &str = "/agent/v1/poll";
/// A job's result is posted to this prefix followed by the job id.
pub const RESULT_PATH: &str = "/agent/v1/jobs/";
/// A new client certificate for an enrolled agent (before its certificate expires).
pub const RENEW_PATH: &str = "/agent/v1/renew";
/// The longest a poll waits for a job; longer waits are cut to this.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Enrolment tokens start with this (and name the protocol version).
pub const TOKEN_PREFIX: &str = "cwva1";

/// `POST /agent/v1/enroll`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The whole token `certwright-ca agent enroll` printed.
    pub token: String,
    /// A PKCS#10 CSR (DER, base64url without padding) for the agent's own key.
    pub csr: String,
}

/// `POST /agent/v1/renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A PKCS#10 CSR (DER, base64url without padding) for the agent's (new) key.
    pub csr: String,
}

/// The answer to an enrolment or renewal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The agent's name (from the token).
    pub name: String,
    /// The segment the agent serves (from the token).
    pub segment: String,
    /// The agent's client certificate (PEM).
    pub certificate: String,
    /// The agent CA certificate (PEM): the agent trusts only it for the CA's listener.
    pub ca: String,
    /// When the certificate expires (Unix seconds).
    pub not_after: i64,
}

/// `POST /agent/v1/poll`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// The segment the agent asks jobs for; when given it must be the agent's own (an
    /// agent never receives another segment's jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// How long to wait for a job, in milliseconds (at most [`MAX_WAIT_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// What a job asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Check the challenge and, when it passed, CAA.
    Validate,
    /// Check CAA alone (the re-check at finalize).
    Caa,
}

/// One validation job the CA hands an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Random, unguessable; the result must come back under this id from the agent that
    /// took the job, once.
    pub id: String,
    /// What to do.
    pub kind: JobKind,
    /// The challenge type (for CAA alone: the method the identifier was validated with,
    /// for RFC 8657 `validationmethods`).
    pub challenge: ChallengeType,
    /// The identifier, without a wildcard's `*.`.
    pub identifier: Identifier,
    /// Whether the order asked for `*.` plus `identifier`.
    pub wildcard: bool,
    /// The challenge token.
    pub token: String,
    /// The expected key authorization.
    pub key_authorization: String,
    /// The account URL (for CAA `accounturi`).
    pub account_uri: String,
    /// The CA's CAA issuer domains.
    pub caa_identities: Vec<String>,
    /// Whether CAA is checked.
    pub check_caa: bool,
    /// The port http-01 connects to.
    pub http01_port: u16,
    /// The port tls-alpn-01 connects to.
    pub tlsalpn01_port: u16,
    /// How long the agent's validation may take, in milliseconds.
    pub timeout_ms: u64,
}

/// What the agent saw: the [`Outcome`] of its VA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The problem, `None` on success.
    #[serde(default)]
    pub error: Option<Problem>,
    /// The client-facing validation record.
    #[serde(default)]
    pub record: Value,
    /// What operators see (everything the agent read).
    #[serde(default)]
    pub diagnostic: Value,
}

impl From<Outcome> for JobResult {
    fn from(o: Outcome) -> Self {
        Self {
            error: o.error,
            record: o.record,
            diagnostic: o.diagnostic,
        }
    }
}

impl From<JobResult> for Outcome {
    fn from(r: JobResult) -> Self {
        Self {
            error: r.error,
            record: r.record,
            diagnostic: r.diagnostic,
        }
    }
}

/// Runs `job` with `va` (the agent's VA: its resolver and deny list), taking the ports,
/// CAA settings and time-out from the job.
pub async fn run_job(va: &Va, job: &Job) -> JobResult {
    let mut config: VaConfig = (*va.config).clone();
    config.http01_port = job.http01_port;
    config.tlsalpn01_port = job.tlsalpn01_port;
    config.caa_identities = job.caa_identities.clone();
    config.check_caa = job.check_caa;
    config.timeout = Duration::from_millis(job.timeout_ms.clamp(100, 120_000));
    let va = va.with_config(config);
    let outcome = match job.kind {
        JobKind::Validate => {
            va.validate_for_account_uri(
                &job.challenge,
                &job.identifier,
                job.wildcard,
                &job.token,
                &job.key_authorization,
                &job.account_uri,
            )
            .await
        }
        JobKind::Caa => {
            va.check_caa_for_account_uri(
                &job.identifier,
                job.wildcard,
                &job.account_uri,
                &job.challenge,
            )
            .await
        }
    };
    outcome.into()
}

/// An enrolment token: `cwva1.<id>.<secret>.<agent CA SHA-256, base64url>`. The id finds
/// the token in the store, the secret proves it (the store keeps its hash), the hash pins
/// the agent CA before the agent has a trust anchor.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentToken {
    /// Finds the token (not secret).
    pub id: String,
    /// Proves the token (secret; the store keeps only its SHA-256).
    pub secret: String,
    /// SHA-256 of the agent CA certificate's DER.
    pub ca_sha256: [u8; 32],
}

impl EnrolmentToken {
    /// A new token pinning the agent CA whose certificate hashes to `ca_sha256`: a
    /// random 72-bit id and 256-bit secret.
    pub fn generate(ca_sha256: [u8; 32]) -> Self {
        let random = |len: usize| {
            let mut b = vec![0u8; len];
            aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
            certwright_proto::b64::encode(&b)
        };
        Self {
            id: random(9),
            secret: random(32),
            ca_sha256,
        }
    }

    /// What the store keeps of the secret: its SHA-256, in lower-case hex.
    pub fn secret_hash(&self) -> String {
        crate::hex(&sha256(self.secret.as_bytes()))
    }

    /// Parses a token; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        if parts.next()? != TOKEN_PREFIX {
            return None;
        }
        let id = parts.next()?.to_string();
        let secret = parts.next()?.to_string();
        let hash = certwright_proto::b64::decode(parts.next()?).ok()?;
        if parts.next().is_some() || id.is_empty() || secret.is_empty() {
            return None;
        }
        let ok = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !ok(&id) || !ok(&secret) {
            return None;
        }
        Some(Self {
            id,
            secret,
            ca_sha256: hash.try_into().ok()?,
        })
    }
}

impl fmt::Display for EnrolmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}.{}.{}.{}",
            self.id,
            self.secret,
            certwright_proto::b64::encode(self.ca_sha256)
        )
    }
}

impl fmt::Debug for EnrolmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolmentToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// SHA-256 of `der` (the agent CA pin).
pub fn sha256(der: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let token = EnrolmentToken {
            id: "abc123".into(),
            secret: "s3cr3t-_x".into(),
            ca_sha256: sha256(b"ca"),
        };
        let text = token.to_string();
        assert!(text.starts_with("cwva1.abc123.s3cr3t-_x."), "{text}");
        assert_eq!(token.secret_hash(), crate::hex(&sha256(b"s3cr3t-_x")));
        let fresh = EnrolmentToken::generate(token.ca_sha256);
        assert_eq!(
            EnrolmentToken::parse(&fresh.to_string()),
            Some(fresh.clone())
        );
        assert_eq!((fresh.id.len(), fresh.secret.len()), (12, 43));
        assert_ne!(fresh, EnrolmentToken::generate(token.ca_sha256));
        assert_eq!(EnrolmentToken::parse(&text), Some(token.clone()));
        assert!(!format!("{token:?}").contains("s3cr3t"));
        for bad in [
            "",
            "cwva1",
            "cwva2.a.b.c",
            "cwva1.a.b",
            "cwva1..b.AAAA",
            "cwva1.a/b.c.AAAA",
            &format!("{text}.extra"),
            "cwva1.a.b.AAAA",
        ] {
            assert_eq!(EnrolmentToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn jobs_and_results_travel_as_json() {
        let job = Job {
            id: "j1".into(),
            kind: JobKind::Validate,
            challenge: ChallengeType::Http01,
            identifier: Identifier::dns("web.lab.test"),
            wildcard: false,
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
            account_uri: "https://ca.test/acme/acct/1".into(),
            caa_identities: vec!["ca.test".into()],
            check_caa: true,
            http01_port: 80,
            tlsalpn01_port: 443,
            timeout_ms: 5000,
        };
        let text = serde_json::to_string(&job).unwrap();
        assert!(text.contains("\"kind\":\"validate\""), "{text}");
        assert!(text.contains("\"challenge\":\"http-01\""), "{text}");
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
        let result = JobResult {
            error: Some(Problem::connection("could not connect")),
            record: serde_json::json!({"url": "http://web.lab.test/"}),
            diagnostic: serde_json::json!({}),
        };
        let text = serde_json::to_string(&result).unwrap();
        assert_eq!(serde_json::from_str::<JobResult>(&text).unwrap(), result);
    }
}
