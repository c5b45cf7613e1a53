//! certwright-client: an asynchronous ACME (RFC 8555) client library.
//!
//! - [`client`]: directory discovery, nonces, signed requests, accounts, orders,
//!   challenges, finalization, certificate download, revocation and ARI.
//! - [`solver`]: challenge solvers (http-01 standalone and webroot, tls-alpn-01, dns-01
//!   via an exec hook or RFC 2136) and the dns-01 propagation check.
//! - [`issue`]: the whole issuance flow with one solver, over several CAs in turn.
//! - [`store`]: the on-disk state (accounts per CA, certificates per name, locks).
//! - [`renewal`]: when to renew (safety floor, jitter, the CA's ARI window, backoff).
//! - [`agent`]: the long-running renewal agent and its TOML configuration.
//! - [`monitor`]: the agent's status file and Prometheus metrics.
//! - [`notify`]: the agent's notify hook and signed webhook.
//! - [`verify`]: after deployment, check that servers serve the new certificate.

pub mod agent;
pub mod certinfo;
pub mod client;
pub mod clock;
pub mod error;
pub mod hooks;
pub mod issue;
pub mod manager;
pub mod monitor;
pub mod notify;
pub mod renewal;
pub mod solver;
pub mod store;
pub mod verify;

pub use client::{Account, AcmeClient, ClientOptions};
pub use error::{Error, Result};
