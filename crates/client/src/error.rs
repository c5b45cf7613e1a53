//! The library's one error type; a CA refusal carries the server's problem document.

use certwright_proto::{Problem, ProblemType};

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CA answered with a problem document.
    #[error("the CA refused {url} (HTTP {status}): {problem}")]
    Acme {
        /// The request's URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The problem document.
        problem: Box<Problem>,
    },
    /// The request did not get an answer (connection, TLS, timeout).
    #[error("request to {url} failed: {source}")]
    Http {
        /// The request's URL.
        url: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The CA answered with something RFC 8555 does not allow.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The request's URL.
        url: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A poll or check did not finish in time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long, in seconds.
        seconds: u64,
    },
    /// An authorization ended `invalid` (or another final non-valid status).
    #[error("authorization for {identifier} is {status}{}", problem_suffix(.problem))]
    Authorization {
        /// The identifier's value.
        identifier: String,
        /// The final status, by its wire name.
        status: String,
        /// The first error among its challenges, if any.
        problem: Option<Box<Problem>>,
    },
    /// The order ended `invalid`.
    #[error("order {url} is invalid{}", problem_suffix(.problem))]
    OrderInvalid {
        /// The order's URL.
        url: String,
        /// The order's `error`, if any.
        problem: Option<Box<Problem>>,
    },
    /// A challenge solver could not publish or remove its response.
    #[error("{solver} solver: {detail}")]
    Solver {
        /// Which solver (e.g. `webroot`, `rfc2136`).
        solver: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// No challenge this solver can answer was offered for an identifier.
    #[error("the CA offers no {kind} challenge for {identifier}")]
    NoSuitableChallenge {
        /// The challenge type the solver answers.
        kind: String,
        /// The identifier.
        identifier: String,
    },
    /// Key generation, loading or signing failed.
    #[error("key: {0}")]
    Key(#[from] certwright_proto::keys::KeyError),
    /// A certificate, CSR or PEM file could not be made or parsed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// File system work in the state directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the lock of this certificate or account.
    #[error("{0} is locked by another certwright process")]
    Locked(String),
    /// Bad configuration or arguments.
    #[error("{0}")]
    Config(String),
    /// Every CA configured for a certificate failed; one reason per CA.
    #[error("every CA failed: {}", .0.iter().map(|(ca, e)| format!("{ca}: {e}")).collect::<Vec<_>>().join("; "))]
    AllCasFailed(Vec<(String, Error)>),
}

fn problem_suffix(p: &Option<Box<Problem>>) -> String {
    p.as_ref().map(|p| format!(": {p}")).unwrap_or_default()
}

impl Error {
    /// The CA's problem document, when the error came from one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Acme { problem, .. } => Some(problem),
            Self::Authorization { problem, .. } | Self::OrderInvalid { problem, .. } => {
                problem.as_deref()
            }
            _ => None,
        }
    }

    /// Whether the CA's problem has this type.
    pub fn is_problem(&self, kind: ProblemType) -> bool {
        self.problem().is_some_and(|p| p.kind == kind)
    }

    /// An I/O error about `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_is_reachable_and_displayed() {
        let e = Error::Acme {
            url: "https://ca/x".into(),
            status: 403,
            problem: Box::new(Problem::unauthorized("no")),
        };
        assert!(e.is_problem(ProblemType::Unauthorized));
        assert!(!e.is_problem(ProblemType::BadNonce));
        assert!(e.to_string().contains("unauthorized: no"), "{e}");
        let e = Error::Authorization {
            identifier: "a.test".into(),
            status: "invalid".into(),
            problem: None,
        };
        assert_eq!(e.to_string(), "authorization for a.test is invalid");
    }
}
