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

pub(crate) mod console;
pub(crate) mod relying_party;

/// This package's `certwright-ca` binary, as cargo built it for the integration tests.
pub(crate) fn ca_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certwright-ca"))
}

/// The CA's CRL entries as (serial hex, reason code).
pub(crate) fn crl_entries(ca: &CaProcess) -> Vec<(String, Option<u8>)> {
    let base = ca.directory_url.trim_end_matches("/directory");
    let root = std::fs::read(ca.root_path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let der = rt.block_on(async {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&root).unwrap()])
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
            .get(format!("{base}/crl/intermediate.crl"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    });
    use x509_parser::prelude::{CertificateRevocationList, FromDer};
    let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| {
            (
                r.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
                r.reason_code().map(|c| c.1 .0),
            )
        })
        .collect()
}

/// The `certwright` client binary (another package's): `CERTWRIGHT_CLIENT_BIN`, else
/// `certwright` beside this test's directory (target/debug/certwright, which
/// `cargo build -p certwright-client` or a workspace test run builds).
pub(crate) fn client_bin() -> std::path::PathBuf {
    let path = std::env::var_os("CERTWRIGHT_CLIENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("certwright")
        });
    assert!(
        path.is_file(),
        "no certwright client at {}: build it with `cargo build -p certwright-client` or set CERTWRIGHT_CLIENT_BIN",
        path.display()
    );
    path
}
