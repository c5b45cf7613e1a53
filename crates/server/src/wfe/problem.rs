//! Problem documents as HTTP responses, and the one mapping from the RA's errors to
//! problem types and statuses (as Boulder's `web/probs.go`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use certwright_proto::jwk::VerifyError;
use certwright_proto::jws::JwsError;
use certwright_proto::{Problem, ProblemType, CONTENT_TYPE_PROBLEM};

use crate::ra::{self, IdentifierRefusal, RefusalKind};

/// A problem on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(p)
    }
}

impl From<ra::Error> for ApiError {
    fn from(e: ra::Error) -> Self {
        Self(problem(e))
    }
}

/// The problem a client reads for an RA error. An internal error is logged here in full
/// (inside the request's span, so with its request id) and answered with its fixed
/// sentence only.
pub fn problem(e: ra::Error) -> Problem {
    use ra::Error as E;
    match e {
        E::Malformed(d) => Problem::malformed(d),
        E::Unauthorized(d) => Problem::unauthorized(d),
        E::NotFound(d) => Problem::malformed(d).with_status(404),
        E::AccountDoesNotExist(d) => Problem::account_does_not_exist(d),
        E::TermsNotAgreed(d) => Problem::new(ProblemType::UserActionRequired, d).with_status(403),
        E::ExternalAccountRequired(d) => Problem::new(ProblemType::ExternalAccountRequired, d),
        E::InvalidProfile(d) => Problem::new(ProblemType::InvalidProfile, d),
        E::InvalidContact(d) => Problem::invalid_contact(d),
        E::UnsupportedContact(d) => Problem::unsupported_contact(d),
        E::RateLimited {
            detail,
            retry_after,
        } => Problem::new(ProblemType::RateLimited, detail).with_retry_after(retry_after),
        E::RejectedOrder(d) => Problem::rejected_identifier(d),
        E::RejectedIdentifiers { detail, refusals } => rejected_identifiers(detail, refusals),
        E::BadCsr(d) => Problem::bad_csr(d),
        E::OrderNotReady(d) => Problem::order_not_ready(d),
        E::Recheck {
            identifier,
            problem,
        } => {
            // A CAA refusal forbids issuance (403); a lookup failure keeps its own status.
            let status = if problem.kind == ProblemType::Caa {
                403
            } else {
                problem.http_status()
            };
            (*problem).for_identifier(identifier).with_status(status)
        }
        E::AlreadyRevoked(d) => Problem::new(ProblemType::AlreadyRevoked, d),
        E::AlreadyReplaced(d) => Problem::new(ProblemType::AlreadyReplaced, d),
        E::BadRevocationReason(d) => Problem::new(ProblemType::BadRevocationReason, d),
        E::BadSignatureAlgorithm(d) => Problem::bad_signature_algorithm(d),
        E::Jws { context, error } => jws_problem(Some(context), &error),
        E::Internal { public, cause } => {
            tracing::error!(%cause, answered = public, "internal error");
            Problem::server_internal(public)
        }
    }
}

/// A rejected order: one subproblem per identifier; the top-level type is the one they
/// share, else `rejectedIdentifier`.
fn rejected_identifiers(detail: String, refusals: Vec<IdentifierRefusal>) -> Problem {
    let kind_of = |r: &IdentifierRefusal| match r.kind {
        RefusalKind::Malformed => ProblemType::Malformed,
        RefusalKind::Rejected => ProblemType::RejectedIdentifier,
    };
    let kind = match refusals.first() {
        Some(first) if refusals.iter().all(|r| r.kind == first.kind) => kind_of(first),
        _ => ProblemType::RejectedIdentifier,
    };
    let subproblems = refusals
        .into_iter()
        .map(|r| Problem::new(kind_of(&r), r.detail).for_identifier(r.identifier))
        .collect();
    Problem::new(kind, detail).with_subproblems(subproblems)
}

/// The problem for a JWS that does not parse or verify: the request's own (`context`
/// `None`) or one carried inside it (a key change's, an external account binding's).
pub fn jws_problem(context: Option<&str>, e: &JwsError) -> Problem {
    let detail = match context {
        Some(context) => format!("{context}: {e}"),
        None => e.to_string(),
    };
    match e {
        JwsError::UnsupportedAlgorithm(_)
        | JwsError::Signature(VerifyError::AlgorithmMismatch { .. }) => {
            Problem::bad_signature_algorithm(detail)
        }
        JwsError::BadJwk(_) => Problem::bad_public_key(detail),
        JwsError::Signature(_) if context.is_none() => {
            Problem::malformed(format!("JWS verification failed: {e}"))
        }
        _ => Problem::malformed(detail),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut problem = self.0;
        problem.status = Some(status.as_u16());
        let body = serde_json::to_vec(&problem).expect("problems serialize");
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_PROBLEM),
        );
        if let Some(secs) = problem.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.to_string()).expect("digits are a header value"),
            );
        } else if problem.kind == ProblemType::ServerInternal {
            // Server faults are mostly passing (a database restart): say when to retry.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Handler result.
pub type ApiResult<T = Response> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use certwright_proto::types::Identifier;

    #[test]
    fn internal_errors_answer_only_their_fixed_sentence() {
        let p = problem(ra::Error::internal(
            ra::DATABASE_FAILED,
            "database error: no such table: orders (/var/lib/certwright/ca.db)",
        ));
        assert_eq!(p.kind, ProblemType::ServerInternal);
        assert_eq!(p.detail, ra::DATABASE_FAILED);
        assert_eq!(p.http_status(), 500);
    }

    #[test]
    fn statuses_follow_the_error() {
        let cases = [
            (ra::Error::NotFound("x".into()), ProblemType::Malformed, 404),
            (
                ra::Error::TermsNotAgreed("x".into()),
                ProblemType::UserActionRequired,
                403,
            ),
            (
                ra::Error::RateLimited {
                    detail: "x".into(),
                    retry_after: 7,
                },
                ProblemType::RateLimited,
                429,
            ),
            (ra::Error::BadCsr("x".into()), ProblemType::BadCsr, 400),
            (
                ra::Error::OrderNotReady("x".into()),
                ProblemType::OrderNotReady,
                403,
            ),
            (
                ra::Error::Recheck {
                    identifier: Identifier::dns("a.example"),
                    problem: Box::new(Problem::new(ProblemType::Caa, "x")),
                },
                ProblemType::Caa,
                403,
            ),
            // A re-check that ran out of time keeps its own status.
            (
                ra::Error::Recheck {
                    identifier: Identifier::dns("a.example"),
                    problem: Box::new(Problem::new(ProblemType::Dns, "x").with_status(503)),
                },
                ProblemType::Dns,
                503,
            ),
        ];
        for (error, kind, status) in cases {
            let shown = format!("{error:?}");
            let p = problem(error);
            assert_eq!((p.kind.clone(), p.http_status()), (kind, status), "{shown}");
        }
    }

    #[test]
    fn refused_identifiers_become_subproblems_of_their_shared_type() {
        let refusal = |value: &str, kind| IdentifierRefusal {
            identifier: Identifier::ip(value),
            kind,
            detail: format!("{value} refused"),
        };
        let p = problem(ra::Error::RejectedIdentifiers {
            detail: "two".into(),
            refusals: vec![
                refusal("a", RefusalKind::Malformed),
                refusal("b", RefusalKind::Malformed),
            ],
        });
        assert_eq!(p.kind, ProblemType::Malformed);
        assert_eq!(p.subproblems.len(), 2);
        assert_eq!(p.subproblems[1].identifier, Some(Identifier::ip("b")));
        let mixed = problem(ra::Error::RejectedIdentifiers {
            detail: "two".into(),
            refusals: vec![
                refusal("a", RefusalKind::Malformed),
                refusal("b", RefusalKind::Rejected),
            ],
        });
        assert_eq!(mixed.kind, ProblemType::RejectedIdentifier);
        assert_eq!(mixed.subproblems[0].kind, ProblemType::Malformed);
    }
}
