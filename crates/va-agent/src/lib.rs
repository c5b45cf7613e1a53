//! `certwright-va-agent`: a remote validation agent for certwright-ca.
//!
//! It runs inside a network segment the CA cannot reach, opens every connection itself
//! (mutual TLS to the CA's agent listener), takes validation jobs for its segment by long
//! polling, checks them with the same VA code as the CA (`certwright_va`) and posts what
//! it saw. See `docs/remote-validation.md`.

pub mod api;
pub mod backoff;
pub mod enroll;
pub mod files;
pub mod metrics;
pub mod run;
pub mod tls;
