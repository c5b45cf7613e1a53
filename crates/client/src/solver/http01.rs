//! http-01 on an own listener: answers `GET /.well-known/acme-challenge/<token>` with the
//! key authorization of tokens currently presented, 404 for anything else.

use certwright_proto::types::ChallengeType;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::{BoxFuture, ChallengeData, Solver};
use crate::error::{Error, Result};

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A standalone http-01 responder; the listener stops when this is dropped.
#[derive(Debug)]
pub struct Http01Standalone {
    local_addr: SocketAddr,
    tokens: Tokens,
    task: tokio::task::JoinHandle<()>,
}

impl Http01Standalone {
    /// Binds `addr` and starts serving.
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Solver {
                solver: "http-01",
                detail: format!("cannot listen on {addr}: {e}"),
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("listener", e))?;
        let tokens: Tokens = Arc::default();
        let app = Router::new()
            .route(
                &certwright_proto::challenge::http01_path("{token}"),
                get(answer),
            )
            .with_state(tokens.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "http-01 listener stopped");
            }
        });
        Ok(Self {
            local_addr,
            tokens,
            task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn answer(State(tokens): State<Tokens>, Path(token): Path<String>) -> impl IntoResponse {
    match tokens.lock().expect("tokens").get(&token) {
        Some(ka) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            ka.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl Drop for Http01Standalone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Solver for Http01Standalone {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        self.tokens
            .lock()
            .expect("tokens")
            .insert(c.token.clone(), c.key_authorization.clone());
        Box::pin(async { Ok(()) })
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        self.tokens.lock().expect("tokens").remove(&c.token);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_presented_tokens_only() {
        let s = Http01Standalone::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let c = ChallengeData {
            identifier: "a.test".into(),
            token: "tok_123".into(),
            key_authorization: "tok_123.thumb".into(),
        };
        s.present(&c).await.unwrap();
        let url = format!(
            "http://{}/.well-known/acme-challenge/tok_123",
            s.local_addr()
        );
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "tok_123.thumb");
        s.cleanup(&c).await.unwrap();
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
    }
}
