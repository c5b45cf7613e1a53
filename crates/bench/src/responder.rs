//! The in-process http-01 responder: serves `/.well-known/acme-challenge/{token}` on the
//! port the CA validates against (Pebble: `httpPort`, 5002 by default).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A running responder; stops when dropped.
pub struct Responder {
    /// The address it listens on.
    pub addr: SocketAddr,
    tokens: Tokens,
    task: tokio::task::JoinHandle<()>,
}

async fn answer(State(tokens): State<Tokens>, Path(token): Path<String>) -> Response {
    let body = tokens.lock().expect("token lock").get(&token).cloned();
    match body {
        Some(key_authorization) => key_authorization.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl Responder {
    /// Binds `addr` (port 0: any free port) and serves until dropped.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let tokens: Tokens = Arc::default();
        let app = axum::Router::new()
            .route(
                &certwright_proto::challenge::http01_path("{token}"),
                axum::routing::get(answer),
            )
            .with_state(tokens.clone());
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, tokens, task })
    }

    /// Publishes a key authorization for `token`.
    pub fn publish(&self, token: &str, key_authorization: String) {
        self.tokens
            .lock()
            .expect("token lock")
            .insert(token.to_owned(), key_authorization);
    }

    /// Forgets `token` (its authorization settled).
    pub fn withdraw(&self, token: &str) {
        self.tokens.lock().expect("token lock").remove(token);
    }

    /// Tokens currently published.
    pub fn published(&self) -> usize {
        self.tokens.lock().expect("token lock").len()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
