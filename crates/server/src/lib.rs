//! certwright-ca: an ACME (RFC 8555) certificate authority.
//!
//! The parts follow Boulder's split inside one process: [`wfe`] (HTTP and JWS), [`ra`]
//! (business rules and state machines), [`va`] (validation), [`ca`] (signing) and
//! [`store`] (all durable state). [`app`] wires them together from a [`config::Config`]:
//! `config` is a leaf (the file's schema), each component takes settings types of its own,
//! and `app::settings` converts one into the other. [`metrics`] names and records every
//! metric; [`admin`] serves them (with the health checks) on the admin listener.

pub mod admin;
pub mod agents;
pub mod app;
pub mod audit_check;
pub mod backend;
pub mod ca;
pub mod clock;
pub mod config;
pub mod console;
pub mod encoding;
pub mod fsutil;
pub mod linger;
pub mod metrics;
pub mod ra;
pub mod secrets;
pub mod status;
pub mod store;
/// The validation authority lives in its own crate (the remote agent runs it too).
pub use certwright_va as va;
pub mod webhooks;
pub mod wfe;
