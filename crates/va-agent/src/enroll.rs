//! `certwright-va-agent enroll`: exchange a one-time token for a client certificate.

use std::time::Duration;

use anyhow::{bail, Context};
use certwright_va::remote::{EnrollRequest, EnrolmentToken};
use rustls::pki_types::CertificateDer;

use crate::api;
use crate::files::{write_atomic, AgentDir, State, CA_FILE, CERT_FILE, KEY_FILE, NEXT_CERT_FILE};
use crate::tls::{self, CertInfo};

/// What `enroll` stored.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The state written.
    pub state: State,
    /// When the new certificate expires (Unix seconds).
    pub not_after: i64,
}

/// Fetches the agent CA from `server` and checks it against the token's pin. Nothing is
/// written.
pub async fn fetch_pinned_ca(
    server: &str,
    token: &EnrolmentToken,
) -> anyhow::Result<(String, CertificateDer<'static>)> {
    // The only request made without verifying the server: what it returns is accepted
    // only if its hash is the one in the token.
    let client = tls::unverified_client()?;
    let pem = api::get_ca(&client, server)
        .await
        .context("fetching the agent CA")?;
    let der = tls::check_pin(&pem, &token.ca_sha256)?;
    Ok((pem, der))
}

/// Enrols: checks the server's agent CA against the token, generates a key, exchanges
/// the token and a CSR for a certificate over TLS trusting only that CA, and stores key,
/// certificate, CA and state in `dir`. Refuses an enrolled `dir` unless `force`.
pub async fn enroll(
    server: &str,
    token: &str,
    dir: &AgentDir,
    force: bool,
) -> anyhow::Result<Enrolled> {
    let server = api::normalize_server(server)?;
    let Some(token) = EnrolmentToken::parse(token) else {
        bail!("the token is not an enrolment token (cwva1.…); copy it whole from `certwright-ca agent enroll`");
    };
    if dir.is_enrolled() && !force {
        bail!(
            "{} already holds an enrolment; give --force to replace it",
            dir.dir.display()
        );
    }
    let (ca_pem, ca_der) = fetch_pinned_ca(&server, &token).await?;
    let client = tls::pinned_client(&ca_der, None, Duration::from_secs(30))?;
    let (key, csr) = tls::new_key_and_csr()?;
    let resp = api::enroll(
        &client,
        &server,
        &EnrollRequest {
            token: token.to_string(),
            csr,
        },
    )
    .await
    .context("enrolling")?;
    let info = CertInfo::from_pem(&resp.certificate).context("the certificate the CA sent")?;
    let key_pem = key.serialize_pem();
    if !tls::key_fits(&key_pem, &info) {
        bail!("the CA sent a certificate for another key");
    }
    if let Ok(sent) = tls::certs_from_pem(&resp.ca) {
        if sent.first().map(|c| c.as_ref()) != Some(ca_der.as_ref()) {
            tracing::warn!(
                "the CA's enrolment answer names another agent CA than the pinned one; keeping the pinned one"
            );
        }
    }
    dir.create()
        .with_context(|| format!("creating {}", dir.dir.display()))?;
    let _ = std::fs::remove_file(dir.path(NEXT_CERT_FILE));
    write_atomic(&dir.path(KEY_FILE), key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.path(CERT_FILE), resp.certificate.as_bytes(), 0o600)?;
    write_atomic(&dir.path(CA_FILE), ca_pem.as_bytes(), 0o600)?;
    let state = State {
        servers: vec![server],
        name: resp.name,
        segment: resp.segment,
    };
    dir.write_state(&state)?;
    Ok(Enrolled {
        state,
        not_after: info.not_after,
    })
}
