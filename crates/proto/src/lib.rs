//! certwright-proto: the ACME (RFC 8555) protocol shared by the certwright CA and client.
//!
//! Wire types, JWS/JWK (flattened JSON serialization over aws-lc-rs), RFC 7638 thumbprints,
//! key authorizations, identifier syntax and problem documents. No I/O lives here.

pub mod ari;
pub mod b64;
pub mod challenge;
pub mod identifier;
pub mod jwk;
pub mod jws;
pub mod keyauth;
pub mod keys;
pub mod problem;
pub mod types;

pub use jwk::{Jwk, VerifyingKey};
pub use jws::{FlattenedJws, JwsAlgorithm, ParsedJws, Signer};
pub use keys::{AccountKey, KeyType};
pub use problem::{Problem, ProblemType};

/// Media type of a JWS request body (RFC 8555 §6.2).
pub const CONTENT_TYPE_JOSE: &str = "application/jose+json";
/// Media type of a problem document.
pub const CONTENT_TYPE_PROBLEM: &str = "application/problem+json";
/// Media type of a certificate chain download (§7.4.2).
pub const CONTENT_TYPE_PEM_CHAIN: &str = "application/pem-certificate-chain";
