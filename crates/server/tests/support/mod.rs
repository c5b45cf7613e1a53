//! Fixtures for interop tests against real ACME clients: the `certwright-ca` binary of
//! this package started as a process ([`CaProcess`]), the shared pebble-challtestsrv DNS
//! server, bounded command runs, and certificate checks with openssl and x509-parser —
//! all from certwright-testkit; this module only knows where cargo put the binary.
//!
//! Every peer binary must be installed (`scripts/test` installs them); a missing one fails
//! the test with a message saying so, it is never skipped.

#![allow(dead_code)]

// Each test binary uses a part of what is re-exported.
#[allow(unused_imports)]
pub(crate) use certwright_testkit::{
    acme::quiet_cut_requests,
    ca_process::CaProcess,
    peers::acme_clients::{certbot_command, lego_command, CLIENT_EMAIL, CLIENT_TIMEOUT},
    peers::challtestsrv::dns,
    peers::openssl::{
        ocsp_query_args, openssl, openssl_san, openssl_verify_server as openssl_verify,
    },
    peers::postgres::create_database_blocking as create_postgres_database,
    port::free_port,
    process::{require_binary, run_bounded, run_ok, ProcessGuard},
    x509::{self, leaf, pem_certs, write_first_cert},
};

use std::path::Path;

pub(crate) mod relying_party;

/// This package's `certwright-ca` binary, as cargo built it for the integration tests.
pub(crate) fn ca_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certwright-ca"))
}
