//! A tls-alpn-01 responder on loopback, for tests: serves, per SNI name, a challenge
//! certificate made by [`challenge_cert`] — correct, or with one chosen flaw.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use certwright_proto::keyauth::key_authorization_digest;
use certwright_proto::types::{Identifier, IdentifierType};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, Issuer, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use certwright_proto::challenge::ACME_TLS_ALPN;

/// What is wrong with a challenge certificate (or its server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// A correct challenge certificate.
    None,
    /// The acmeIdentifier extension holds another digest.
    WrongDigest,
    /// The acmeIdentifier extension is not marked critical.
    NotCritical,
    /// No acmeIdentifier extension at all.
    NoExtension,
    /// A second subjectAltName next to the identifier.
    ExtraSan,
    /// A subjectAltName for another name instead of the identifier.
    OtherName,
    /// Signed by another key.
    NotSelfSigned,
    /// The server does not negotiate acme-tls/1.
    NoAlpn,
    /// Otherwise correct, with a 100 KB extension: larger than a TLS handshake message
    /// may be.
    Huge,
}

/// A certificate and key to serve, and whether to negotiate acme-tls/1.
#[derive(Debug, Clone)]
pub struct ChallengeCert {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
    /// Whether the server offers acme-tls/1 in ALPN (false: it negotiates none).
    pub alpn: bool,
}

/// The RFC 8737 certificate for `identifier` and `key_authorization`, with `flaw`.
pub fn challenge_cert(
    identifier: &Identifier,
    key_authorization: &str,
    flaw: Flaw,
) -> ChallengeCert {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key generation");
    let san = |value: &str, kind: IdentifierType| match kind {
        IdentifierType::Dns => SanType::DnsName(value.to_owned().try_into().expect("IA5 name")),
        IdentifierType::Ip => SanType::IpAddress(value.parse::<IpAddr>().expect("an IP")),
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "acme tls-alpn-01 challenge");
    params.distinguished_name = dn;
    params.subject_alt_names = match flaw {
        Flaw::OtherName => vec![san("other.invalid", IdentifierType::Dns)],
        Flaw::ExtraSan => vec![
            san(&identifier.value, identifier.kind),
            san("extra.invalid", IdentifierType::Dns),
        ],
        _ => vec![san(&identifier.value, identifier.kind)],
    };
    let digest = if flaw == Flaw::WrongDigest {
        key_authorization_digest("some.other-key-authorization")
    } else {
        key_authorization_digest(key_authorization)
    };
    let mut ext = CustomExtension::new_acme_identifier(&digest);
    if flaw == Flaw::NotCritical {
        ext.set_criticality(false);
    }
    if flaw != Flaw::NoExtension {
        params.custom_extensions = vec![ext];
    }
    if flaw == Flaw::Huge {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 55555, 3],
                vec![0x5a; 100 * 1024],
            ));
    }
    let cert = if flaw == Flaw::NotSelfSigned {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key generation");
        let mut ca_params = CertificateParams::default();
        let mut ca_dn = DistinguishedName::new();
        ca_dn.push(DnType::CommonName, "some other issuer");
        ca_params.distinguished_name = ca_dn;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        params.signed_by(&key, &issuer).expect("signing")
    } else {
        params.self_signed(&key).expect("signing")
    };
    ChallengeCert {
        cert_der: cert.der().to_vec(),
        key_pkcs8: key.serialize_der(),
        alpn: flaw != Flaw::NoAlpn,
    }
}

#[derive(Debug)]
struct Always(Arc<CertifiedKey>);

impl ResolvesServerCert for Always {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The running responder; stops when dropped.
pub struct TlsAlpnResponder {
    /// The port it listens on (the CA's `validation.tlsalpn01_port`).
    pub port: u16,
    certs: Arc<Mutex<HashMap<String, ChallengeCert>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsAlpnResponder {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener)
    }

    /// Serves on `listener`.
    pub fn serve(listener: TcpListener) -> Self {
        let port = listener.local_addr().expect("local addr").port();
        let certs: Arc<Mutex<HashMap<String, ChallengeCert>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (c, n) = (certs.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                n.fetch_add(1, Ordering::SeqCst);
                let certs = c.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::LazyConfigAcceptor::new(
                        rustls::server::Acceptor::default(),
                        stream,
                    );
                    let Ok(Ok(start)) =
                        tokio::time::timeout(std::time::Duration::from_secs(10), acceptor).await
                    else {
                        return;
                    };
                    let sni = start
                        .client_hello()
                        .server_name()
                        .map(|s| s.to_ascii_lowercase());
                    let Some(entry) = sni.and_then(|s| certs.lock().unwrap().get(&s).cloned())
                    else {
                        return; // unknown name: hang up
                    };
                    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                    // Built by hand: `with_single_cert` parses the certificate and refuses
                    // the critical acmeIdentifier extension it does not know.
                    let Ok(key) = provider.key_provider.load_private_key(PrivateKeyDer::Pkcs8(
                        PrivatePkcs8KeyDer::from(entry.key_pkcs8),
                    )) else {
                        return;
                    };
                    let certified = Arc::new(CertifiedKey::new(
                        vec![CertificateDer::from(entry.cert_der)],
                        key,
                    ));
                    let mut config = rustls::ServerConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .expect("default versions")
                        .with_no_client_auth()
                        .with_cert_resolver(Arc::new(Always(certified)));
                    if entry.alpn {
                        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
                    }
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        start.into_stream(Arc::new(config)),
                    )
                    .await;
                });
            }
        });
        Self {
            port,
            certs,
            connections,
            task,
        }
    }

    /// Serves `cert` for SNI `name`.
    pub fn set(&self, name: &str, cert: ChallengeCert) {
        self.certs
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), cert);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TlsAlpnResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
