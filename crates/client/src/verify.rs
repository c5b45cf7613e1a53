//! Post-deploy verification: after the deploy hook, connect to each configured endpoint
//! (`host:port`) with the certificate's name as SNI and check that the certificate served
//! is the new one. A server that was not reloaded keeps serving the old certificate; that
//! is reported as a deploy failure (and retried like one) instead of a success.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// How many times an endpoint is asked before the verification fails.
pub const VERIFY_ATTEMPTS: u32 = 5;
/// The wait before the second attempt; it doubles after each (0.5 + 1 + 2 + 4 s in all).
pub const VERIFY_FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest one connection and handshake may take.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks that every endpoint serves `leaf_der`, asking each up to [`VERIFY_ATTEMPTS`]
/// times (a server may take a moment to reload). `sni` is the name sent (none for an
/// IP address).
pub async fn verify_served(endpoints: &[String], sni: &str, leaf_der: &[u8]) -> Result<()> {
    for endpoint in endpoints {
        let mut delay = VERIFY_FIRST_DELAY;
        let mut attempt = 1;
        loop {
            let outcome = match served_leaf(endpoint, sni).await {
                Ok(served) if served == leaf_der => Ok(()),
                Ok(served) => Err(format!(
                    "serves {}, not the new certificate {} (was the server reloaded?)",
                    describe(&served),
                    describe(leaf_der)
                )),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => break,
                Err(why) if attempt >= VERIFY_ATTEMPTS => {
                    return Err(Error::Hook(format!(
                        "verify {endpoint} (SNI {sni}): {why}; {attempt} attempts"
                    )));
                }
                Err(why) => {
                    tracing::info!(endpoint, attempt, why, "verification failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }
    Ok(())
}

/// "serial 0a1b…" of a certificate, or a note that it does not parse.
fn describe(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    match x509_parser::certificate::X509Certificate::from_der(der) {
        Ok((_, c)) => format!("serial {}", c.raw_serial_as_string().replace(':', "")),
        Err(_) => "a certificate that does not parse".into(),
    }
}

/// The leaf certificate `endpoint` serves for `sni`.
pub async fn served_leaf(endpoint: &str, sni: &str) -> std::result::Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| format!("SNI {sni}: {e}"))?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(endpoint)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => e.to_string(),
            })?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| "no certificate served".to_owned())
    };
    tokio::time::timeout(VERIFY_TIMEOUT, work)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// Accepts any certificate: the check is that the served one is ours, byte for byte,
/// not that it chains to a root this machine trusts. Handshake signatures are still
/// verified, so the server holds the key of what it serves.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The name to send as SNI for a certificate's names: the first that is not a wildcard
/// (`www` for `*.example.org`).
pub fn sni_for(names: &[String]) -> String {
    names
        .iter()
        .find(|n| !n.starts_with("*."))
        .cloned()
        .or_else(|| names.first().map(|n| format!("www.{}", &n[2..])))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_skips_wildcards() {
        assert_eq!(sni_for(&["*.a.test".into(), "a.test".into()]), "a.test");
        assert_eq!(sni_for(&["*.a.test".into()]), "www.a.test");
    }

    #[tokio::test]
    async fn nobody_listening_is_reported_per_endpoint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = served_leaf(&format!("127.0.0.1:{port}"), "a.test")
            .await
            .unwrap_err();
        assert_eq!(e, "connection refused");
    }
}
