//! Problem documents as HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use certwright_proto::{Problem, CONTENT_TYPE_PROBLEM};

/// A problem on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(p)
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
        } else if problem.kind == certwright_proto::ProblemType::ServerInternal {
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
