//! tls-alpn-01 on an own listener (RFC 8737): for each presented name a self-signed
//! certificate with that name and the critical acmeIdentifier extension holding
//! SHA-256(key authorization), offered only with ALPN `acme-tls/1`.

use certwright_proto::types::ChallengeType;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{BoxFuture, ChallengeData, Solver};
use crate::error::{Error, Result};

pub use certwright_proto::challenge::ACME_TLS_ALPN;

#[derive(Debug, Default)]
struct Certs(Mutex<HashMap<String, Arc<CertifiedKey>>>);

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let alpn_ok = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if !alpn_ok {
            return None;
        }
        let name = hello.server_name()?.to_ascii_lowercase();
        self.0.lock().expect("certs").get(&name).cloned()
    }
}

/// A standalone tls-alpn-01 responder; the listener stops when this is dropped.
#[derive(Debug)]
pub struct TlsAlpn01Standalone {
    local_addr: SocketAddr,
    certs: Arc<Certs>,
    task: tokio::task::JoinHandle<()>,
}

/// Builds the RFC 8737 validation certificate for `name`.
pub fn validation_certificate(name: &str, key_authorization: &str) -> Result<CertifiedKey> {
    let digest = certwright_proto::keyauth::key_authorization_digest(key_authorization);
    let key = rcgen::KeyPair::generate()
        .map_err(|e| Error::Certificate(format!("tls-alpn-01 key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
        .map_err(|e| Error::Certificate(format!("tls-alpn-01 name: {e}")))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Certificate(format!("tls-alpn-01 certificate: {e}")))?;
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| Error::Certificate(format!("tls-alpn-01 key: {e}")))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

impl TlsAlpn01Standalone {
    /// Binds `addr` and starts serving.
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Solver {
                solver: "tls-alpn-01",
                detail: format!("cannot listen on {addr}: {e}"),
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("listener", e))?;
        let certs = Arc::new(Certs::default());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    if let Ok(Ok(mut tls)) = handshake.await {
                        use tokio::io::AsyncWriteExt;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Ok(Self {
            local_addr,
            certs,
            task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for TlsAlpn01Standalone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SNI a validating CA sends for `identifier`: the name itself, or for an IP address
/// its reverse-DNS name (RFC 8738 §6).
fn sni_for(identifier: &str) -> String {
    match identifier.parse::<std::net::IpAddr>() {
        Ok(ip) => certwright_proto::identifier::reverse_dns_name(ip),
        Err(_) => identifier.to_ascii_lowercase(),
    }
}

impl Solver for TlsAlpn01Standalone {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::TlsAlpn01
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let cert = validation_certificate(&c.identifier, &c.key_authorization)?;
            self.certs
                .0
                .lock()
                .expect("certs")
                .insert(sni_for(&c.identifier), Arc::new(cert));
            Ok(())
        })
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        self.certs
            .0
            .lock()
            .expect("certs")
            .remove(&sni_for(&c.identifier));
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn certificate_carries_critical_acme_identifier() {
        let ck = validation_certificate("a.test", "tok.thumb").unwrap();
        let (_, cert) = X509Certificate::from_der(ck.cert[0].as_ref()).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| {
                e.oid.to_id_string() == certwright_proto::challenge::ACME_IDENTIFIER_OID_DOTTED
            })
            .expect("acmeIdentifier");
        assert!(ext.critical);
        let digest = certwright_proto::keyauth::key_authorization_digest("tok.thumb");
        // DER OCTET STRING of 32 bytes.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }
}
