//! certwright-bench: a load generator that drives full ACME (RFC 8555) issuance flows —
//! newNonce, newAccount (or a pool of accounts), newOrder, http-01 through an in-process
//! responder, polling, finalize, certificate download — against any ACME directory, and
//! reports throughput, latency per step and errors by problem type.
//!
//! It speaks ACME directly over certwright-proto (JWS) and reqwest: lean on purpose, so
//! that the client side costs as little CPU as possible next to the server under test.

pub mod acme;
pub mod balance;
pub mod cpu;
pub mod report;
pub mod responder;
pub mod run;
pub mod stats;

pub use acme::Trust;
pub use report::{compare, compare_many, Report};
pub use responder::Responder;
pub use run::{run, run_with_responder, Options};
