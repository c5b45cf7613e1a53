//! The requests of the remote validation protocol (`certwright_va::remote`), as the agent
//! makes them.

use std::time::Duration;

use certwright_proto::Problem;
use certwright_va::remote::{
    EnrollRequest, EnrollResponse, Job, JobResult, PollRequest, RenewRequest, CA_PATH, ENROLL_PATH,
    POLL_PATH, RENEW_PATH, RESULT_PATH,
};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A request to the CA that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// `401`: the CA does not accept the agent (removed, or its certificate is no longer
    /// valid), or the enrolment token is not (or no longer) good.
    #[error("{server} refused the agent (401 Unauthorized): {detail}")]
    Unauthorized {
        /// The server URL.
        server: String,
        /// The problem's detail.
        detail: String,
    },
    /// Any other refusal (a problem document, or an unexpected status).
    #[error("{server} answered {status}: {detail}")]
    Refused {
        /// The server URL.
        server: String,
        /// The HTTP status.
        status: u16,
        /// The problem's detail, or the start of the body.
        detail: String,
    },
    /// The request did not get through, or the answer was not readable.
    #[error("{server}: {detail}")]
    Transport {
        /// The server URL.
        server: String,
        /// What went wrong, with its causes.
        detail: String,
    },
}

impl CallError {
    /// Whether the CA said 401.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }

    fn transport(server: &str, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut detail = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Self::Transport {
            server: server.to_owned(),
            detail,
        }
    }
}

/// Checks a server URL (`https://HOST:PORT`, optionally with a path prefix) and returns
/// it without a trailing `/`.
pub fn normalize_server(server: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(server.trim())
        .map_err(|e| anyhow::anyhow!("--server {server:?} is not a URL: {e}"))?;
    if url.scheme() != "https" {
        anyhow::bail!("--server {server:?} must be an https:// URL");
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        anyhow::bail!("--server {server:?} must be https://HOST:PORT");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether a job id can be put in a URL path as it is.
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn answer(server: &str, resp: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| CallError::transport(server, &e))?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    let detail = match serde_json::from_slice::<Problem>(&body) {
        Ok(p) if !p.detail.is_empty() => p.detail,
        Ok(p) => p.kind.name().to_owned(),
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        }
    };
    let server = server.to_owned();
    Err(if status == StatusCode::UNAUTHORIZED {
        CallError::Unauthorized { server, detail }
    } else {
        CallError::Refused {
            server,
            status: status.as_u16(),
            detail,
        }
    })
}

fn json<T: DeserializeOwned>(server: &str, body: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(body).map_err(|e| CallError::Transport {
        server: server.to_owned(),
        detail: format!("unreadable answer: {e}"),
    })
}

async fn post<B: Serialize>(
    client: &reqwest::Client,
    server: &str,
    path: &str,
    body: &B,
    timeout: Option<Duration>,
) -> Result<(StatusCode, Vec<u8>), CallError> {
    let mut req = client.post(format!("{server}{path}")).json(body);
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| CallError::transport(server, &e))?;
    let status = resp.status();
    Ok((status, answer(server, resp).await?))
}

/// `GET` the agent CA (PEM).
pub async fn get_ca(client: &reqwest::Client, server: &str) -> Result<String, CallError> {
    let resp = client
        .get(format!("{server}{CA_PATH}"))
        .send()
        .await
        .map_err(|e| CallError::transport(server, &e))?;
    let body = answer(server, resp).await?;
    String::from_utf8(body).map_err(|_| CallError::Transport {
        server: server.to_owned(),
        detail: "the agent CA is not PEM text".into(),
    })
}

/// Exchanges the token and a CSR for a client certificate.
pub async fn enroll(
    client: &reqwest::Client,
    server: &str,
    req: &EnrollRequest,
) -> Result<EnrollResponse, CallError> {
    let (_, body) = post(client, server, ENROLL_PATH, req, None).await?;
    json(server, &body)
}

/// A new client certificate for a new key.
pub async fn renew(
    client: &reqwest::Client,
    server: &str,
    req: &RenewRequest,
) -> Result<EnrollResponse, CallError> {
    let (_, body) = post(client, server, RENEW_PATH, req, None).await?;
    json(server, &body)
}

/// Waits (long poll) for a job; `None` when none came within the wait.
pub async fn poll(
    client: &reqwest::Client,
    server: &str,
    req: &PollRequest,
) -> Result<Option<Job>, CallError> {
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0));
    let (status, body) = post(
        client,
        server,
        POLL_PATH,
        req,
        Some(wait + Duration::from_secs(15)),
    )
    .await?;
    if status == StatusCode::NO_CONTENT || body.is_empty() {
        return Ok(None);
    }
    json(server, &body).map(Some)
}

/// Posts a job's result.
pub async fn post_result(
    client: &reqwest::Client,
    server: &str,
    job_id: &str,
    result: &JobResult,
) -> Result<(), CallError> {
    post(
        client,
        server,
        &format!("{RESULT_PATH}{job_id}"),
        result,
        None,
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked() {
        assert_eq!(
            normalize_server("https://ca.test:9555/").unwrap(),
            "https://ca.test:9555"
        );
        assert_eq!(
            normalize_server("https://10.0.0.1:9555").unwrap(),
            "https://10.0.0.1:9555"
        );
        for bad in [
            "http://ca.test:9555",
            "ca.test:9555",
            "https://ca.test/?a=b",
            "",
        ] {
            assert!(normalize_server(bad).is_err(), "{bad}");
        }
        assert!(valid_job_id("aZ09-_"));
        assert!(!valid_job_id("../x"));
        assert!(!valid_job_id(""));
    }
}
