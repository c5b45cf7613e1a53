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
    /// The request did not get an answer (connection, TLS, timeout). Shown as one line:
    /// the root cause and a hint ([`http_cause`]), not the HTTP library's chain.
    #[error("request to {url} failed: {}", http_cause(.error))]
    Http {
        /// The request's URL.
        url: String,
        /// What reqwest reported (not a `source`: its chain is summarized in the message).
        error: reqwest::Error,
    },
    /// The CA answered with something RFC 8555 does not allow.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The request's URL.
        url: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// An error status (4xx, 5xx) whose body is no problem document: not the CA refusing
    /// but something else answering (a wrong URL, a proxy's error page, a resource the
    /// server no longer knows).
    #[error("unexpected answer from {url}: HTTP {} without a problem document (is this an ACME URL?): {text}", status_line(*.status))]
    HttpStatus {
        /// The request's URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body, on one line.
        text: String,
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
    /// Bad configuration or arguments, or a local precondition that does not hold (a port
    /// in use, a missing web root): found before any CA is contacted.
    #[error("{0}")]
    Config(String),
    /// A hook (deploy) failed or timed out.
    #[error("{0}")]
    Hook(String),
    /// Every CA configured for a certificate failed; one reason per CA.
    #[error("every CA failed: {}", .0.iter().map(|(ca, e)| format!("{ca}: {e}")).collect::<Vec<_>>().join("; "))]
    AllCasFailed(Vec<(String, Error)>),
}

/// The root cause of a failed HTTP request in a few words, with a hint where one helps:
/// "connection refused", "timed out", "certificate not trusted — try --ca-cert", …
pub fn http_cause(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut deepest = None;
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return tls_cause(tls);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return tls_cause(tls);
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                _ => {}
            }
        }
        deepest = Some(cause);
        source = cause.source();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    let text = deepest
        .map(|c| c.to_string())
        .unwrap_or_else(|| e.to_string());
    // The TLS error may reach us as text only (wrapped by another rustls build).
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        return tls_cause(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
    }
    if text.contains("NotValidForName") {
        return tls_cause(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ));
    }
    if text.contains("lookup address") || text.contains("dns error") {
        return format!("name not resolved ({text})");
    }
    if text.contains("timed out") || text.contains("deadline has elapsed") {
        return "timed out".into();
    }
    text
}

fn tls_cause(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "certificate not trusted — try --ca-cert with the CA's root".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "certificate not valid for this host name".into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "certificate expired".into()
        }
        other => format!("TLS: {other}"),
    }
}

/// `404 Not Found`: the code and its reason phrase, when it has one.
fn status_line(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| status.to_string())
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

    /// The HTTP status of an error answer (a problem document or not).
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Acme { status, .. } | Self::HttpStatus { status, .. } => Some(*status),
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
        assert_eq!(e.http_status(), None);
        let e = Error::HttpStatus {
            url: "https://ca/order/1".into(),
            status: 404,
            text: "Not Found".into(),
        };
        assert_eq!(e.http_status(), Some(404));
        assert!(e.problem().is_none());
        assert_eq!(
            e.to_string(),
            "unexpected answer from https://ca/order/1: HTTP 404 Not Found without a problem document (is this an ACME URL?): Not Found"
        );
    }
}
