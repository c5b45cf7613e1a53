//! tls-alpn-01 (RFC 8737; RFC 8738 §6 for IP addresses): a TLS handshake with the
//! applicant on port 443 (or the configured test port), SNI set to the name (for an IP
//! address its reverse-DNS name, `4.3.2.1.in-addr.arpa` / `….ip6.arpa`) and ALPN
//! `acme-tls/1` offered.
//!
//! Passes only when the server negotiates `acme-tls/1` and presents a self-signed
//! certificate with exactly one subjectAltName — the identifier — and a critical
//! acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the SHA-256 of the key
//! authorization. Nothing else about the certificate (validity, issuer) is judged.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::hex;
use certwright_proto::keyauth::key_authorization_digest;
use certwright_proto::types::{Identifier, IdentifierType};
use certwright_proto::Problem;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::Oid;

use super::{Outcome, Va};

pub use certwright_proto::challenge::{ACME_IDENTIFIER_OID, ACME_TLS_ALPN};
/// Addresses tried per validation (the first that accepts a connection is used).
const MAX_ADDRESSES: usize = 2;

/// The name sent as SNI: the name itself, or the reverse-DNS name of an IP address.
pub fn sni_name(identifier: &Identifier) -> Result<String, Problem> {
    match identifier.kind {
        IdentifierType::Dns => Ok(identifier.value.clone()),
        IdentifierType::Ip => {
            let ip: IpAddr = identifier
                .value
                .parse()
                .map_err(|_| Problem::malformed("the IP identifier does not parse"))?;
            Ok(certwright_proto::identifier::reverse_dns_name(ip))
        }
    }
}

/// A client TLS configuration offering only `acme-tls/1`, accepting any certificate
/// (the check below judges it) but still verifying the handshake signature.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A verifier that accepts any server certificate; the handshake signature is still
/// checked with the certificate's key. tls-alpn-01 judges the certificate itself, and
/// the remote agent uses it for its one pinned fetch of the agent CA.
#[derive(Debug)]
pub struct AnyCertificate(Arc<CryptoProvider>);

impl AnyCertificate {
    /// The verifier, checking signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self(provider)
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_certificate_key(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_certificate_key(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the handshake signature with the certificate's public key. rustls's own
/// helpers parse the certificate with webpki, which refuses the critical acmeIdentifier
/// extension it does not know; x509-parser takes it as it is.
fn verify_with_certificate_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    provider: &CryptoProvider,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let public_key = parsed.public_key().subject_public_key.data.as_ref();
    let candidates = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .unwrap_or(&[]);
    if candidates.iter().any(|alg| {
        alg.verify_signature(public_key, message, dss.signature())
            .is_ok()
    }) {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ))
    }
}

/// Runs the check. The client's record names the SNI, port and addresses resolved and
/// used, and the protocol negotiated; socket and TLS error text and anything taken from
/// the presented certificate go to the operators' diagnostic only.
pub async fn validate_tlsalpn01(
    va: &Va,
    identifier: &Identifier,
    key_authorization: &str,
) -> Outcome {
    let sni = match sni_name(identifier) {
        Ok(s) => s,
        Err(p) => return Outcome::plain(Some(p), Value::Null),
    };
    let port = va.config.tlsalpn01_port;
    let mut record = json!({"hostname": identifier.value, "sni": sni, "port": port});
    let addresses = match identifier.kind {
        IdentifierType::Ip => match identifier.value.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                return Outcome::plain(
                    Some(Problem::malformed("the IP identifier does not parse")),
                    record,
                )
            }
        },
        IdentifierType::Dns => match va.resolver.lookup_ip(&identifier.value).await {
            Ok(ips) => ips,
            Err(e) => {
                let mut diagnostic = record.clone();
                diagnostic["error"] = json!(e.to_string());
                return Outcome {
                    error: Some(Problem::dns(e.client_detail())),
                    record,
                    diagnostic,
                };
            }
        },
    };
    record["addressesResolved"] = json!(addresses);
    let addresses = match va.deny.allowed(&identifier.value, addresses) {
        Ok(a) => a,
        Err(denied) => {
            let mut diagnostic = record.clone();
            diagnostic["refused"] = json!(denied.to_string());
            return Outcome {
                error: Some(Problem::connection(denied.client_detail())),
                record,
                diagnostic,
            };
        }
    };
    let step = va.config.timeout / 2;
    let mut tried = Vec::new();
    let mut attempts = Vec::new();
    let mut connected = None;
    for ip in addresses.iter().take(MAX_ADDRESSES) {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(step, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                connected = Some((addr, stream));
                break;
            }
            Ok(Err(e)) => {
                tried.push(format!("{addr}: {}", connect_failure(e.kind())));
                attempts.push(json!({"address": addr.to_string(), "error": e.to_string()}));
            }
            Err(_) => {
                tried.push(format!("{addr}: timed out"));
                attempts.push(json!({"address": addr.to_string(), "error": "timed out"}));
            }
        }
    }
    let mut diagnostic = record.clone();
    diagnostic["attempts"] = json!(attempts);
    let fail = |problem: Problem, record: Value, diagnostic: Value| Outcome {
        error: Some(problem),
        record,
        diagnostic,
    };
    let Some((addr, stream)) = connected else {
        return fail(
            Problem::connection(format!(
                "could not connect to {} on port {port} for tls-alpn-01 ({})",
                identifier.value,
                tried.join(", ")
            )),
            record,
            diagnostic,
        );
    };
    record["addressUsed"] = json!(addr.ip());
    diagnostic["addressUsed"] = json!(addr.ip());
    let server_name = match ServerName::try_from(sni.clone()) {
        Ok(n) => n,
        Err(_) => {
            return fail(
                Problem::malformed(format!("{sni:?} cannot be sent as SNI")),
                record,
                diagnostic,
            )
        }
    };
    let connector = tokio_rustls::TlsConnector::from(va.tls_alpn.clone());
    let tls = match tokio::time::timeout(step, connector.connect(server_name, stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            diagnostic["error"] = json!(e.to_string());
            let alert = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(|tls| match tls {
                    rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
                    _ => None,
                });
            let why = match alert {
                Some(alert) => format!(": the server sent the TLS alert {alert}"),
                None => String::new(),
            };
            return fail(
                Problem::new(
                    certwright_proto::ProblemType::Tls,
                    format!(
                        "the TLS handshake with {addr} (SNI {sni}, ALPN acme-tls/1) failed{why}"
                    ),
                ),
                record,
                diagnostic,
            );
        }
        Err(_) => {
            return fail(
                Problem::connection(format!(
                    "the TLS handshake with {addr} did not finish within {step:?}"
                )),
                record,
                diagnostic,
            )
        }
    };
    let (_, session) = tls.get_ref();
    let negotiated_alpn = session.alpn_protocol() == Some(ACME_TLS_ALPN);
    record["alpn"] = json!(negotiated_alpn.then_some("acme-tls/1"));
    diagnostic["alpn"] = json!(session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned()));
    if !negotiated_alpn {
        return fail(
            Problem::new(
                certwright_proto::ProblemType::Tls,
                format!("{addr} did not negotiate the acme-tls/1 protocol"),
            ),
            record,
            diagnostic,
        );
    }
    let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
        return fail(
            Problem::new(
                certwright_proto::ProblemType::Tls,
                format!("{addr} presented no certificate"),
            ),
            record,
            diagnostic,
        );
    };
    let digest = key_authorization_digest(key_authorization);
    match check_certificate(leaf.as_ref(), identifier, &digest) {
        Ok(()) => Outcome {
            error: None,
            record,
            diagnostic,
        },
        Err(fault) => {
            diagnostic["certificate"] = json!(fault.detail);
            fail(
                Problem::incorrect_response(format!(
                    "the tls-alpn-01 certificate from {addr} (SNI {sni}) is not acceptable: {}",
                    fault.reason
                )),
                record,
                diagnostic,
            )
        }
    }
}

/// A short, fixed phrase for a failed connection.
fn connect_failure(kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => "connection refused by the host",
        K::ConnectionReset | K::ConnectionAborted => "the connection was reset",
        K::TimedOut => "timed out",
        K::HostUnreachable | K::NetworkUnreachable => "the host is unreachable",
        _ => "could not connect",
    }
}

/// Why a presented certificate fails RFC 8737 §3: a fixed reason for the client, and the
/// details (names and values taken from the certificate) for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFault {
    /// The reason the client sees.
    pub reason: &'static str,
    /// What the certificate held, for operators.
    pub detail: String,
}

fn fault(reason: &'static str, detail: impl Into<String>) -> CertificateFault {
    CertificateFault {
        reason,
        detail: detail.into(),
    }
}

/// The RFC 8737 §3 checks on the presented certificate.
pub fn check_certificate(
    der: &[u8],
    identifier: &Identifier,
    digest: &[u8; 32],
) -> Result<(), CertificateFault> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        fault(
            "it does not parse as X.509",
            format!("it does not parse as X.509: {e}"),
        )
    })?;
    if cert.issuer().as_raw() != cert.subject().as_raw() || cert.verify_signature(None).is_err() {
        return Err(fault("it is not self-signed", "it is not self-signed"));
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| {
            fault(
                "its subjectAltName is malformed",
                format!("its subjectAltName is malformed: {e}"),
            )
        })?
        .ok_or_else(|| fault("it has no subjectAltName", "it has no subjectAltName"))?;
    let names = &san.value.general_names;
    let matches = match (names.as_slice(), identifier.kind) {
        ([GeneralName::DNSName(n)], IdentifierType::Dns) => {
            n.eq_ignore_ascii_case(&identifier.value)
        }
        ([GeneralName::IPAddress(octets)], IdentifierType::Ip) => {
            let want: Option<IpAddr> = identifier.value.parse().ok();
            let got: Option<IpAddr> = match octets.len() {
                4 => <[u8; 4]>::try_from(*octets).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*octets).ok().map(IpAddr::from),
                _ => None,
            };
            want.is_some() && want == got
        }
        _ => false,
    };
    if !matches {
        return Err(fault(
            "its subjectAltName must hold exactly one entry, the identifier",
            format!(
                "its subjectAltName must hold exactly one entry, {}; it holds {}",
                identifier,
                names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let oid = Oid::from(ACME_IDENTIFIER_OID).expect("a valid OID");
    let no_extension = "it has no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)";
    let ext = cert
        .get_extension_unique(&oid)
        .map_err(|_| {
            let why = "it has more than one acmeIdentifier extension";
            fault(why, why)
        })?
        .ok_or_else(|| fault(no_extension, no_extension))?;
    if !ext.critical {
        let why = "its acmeIdentifier extension is not marked critical";
        return Err(fault(why, why));
    }
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(digest);
    if ext.value != expected.as_slice() {
        return Err(fault(
            "its acmeIdentifier extension does not hold the SHA-256 of the key authorization",
            format!(
                "its acmeIdentifier extension does not hold the SHA-256 of the key authorization (expected OCTET STRING {}, found {})",
                hex(&expected[2..]),
                hex(ext.value)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::va_with;
    use certwright_proto::ProblemType;
    use certwright_testkit::testalpn::{challenge_cert, Flaw, TlsAlpnResponder};
    use certwright_testkit::testdns::TestDns;

    const KEY_AUTH: &str = "token.thumbprint";

    async fn run(responder: &TlsAlpnResponder, dns: &TestDns, id: &Identifier) -> Option<Problem> {
        let va = va_with(dns, &[], |c| c.tlsalpn01_port = responder.port);
        validate_tlsalpn01(&va, id, KEY_AUTH).await.error
    }

    #[tokio::test]
    async fn a_correct_certificate_passes_for_names_and_addresses() {
        let dns = TestDns::start().await.unwrap();
        let responder = TlsAlpnResponder::start().await;
        for id in [Identifier::dns("alpn.test"), Identifier::ip("127.0.0.1")] {
            let sni = sni_name(&id).unwrap();
            responder.set(&sni, challenge_cert(&id, KEY_AUTH, Flaw::None));
            assert_eq!(run(&responder, &dns, &id).await, None, "{id}");
        }
    }

    #[tokio::test]
    async fn each_flaw_is_refused_with_its_problem() {
        let dns = TestDns::start().await.unwrap();
        let responder = TlsAlpnResponder::start().await;
        let id = Identifier::dns("flawed.test");
        for (flaw, kind, words) in [
            (Flaw::WrongDigest, ProblemType::IncorrectResponse, "SHA-256"),
            (
                Flaw::NotCritical,
                ProblemType::IncorrectResponse,
                "critical",
            ),
            (
                Flaw::NoExtension,
                ProblemType::IncorrectResponse,
                "no acmeIdentifier",
            ),
            (
                Flaw::ExtraSan,
                ProblemType::IncorrectResponse,
                "exactly one",
            ),
            (
                Flaw::OtherName,
                ProblemType::IncorrectResponse,
                "exactly one",
            ),
            (
                Flaw::NotSelfSigned,
                ProblemType::IncorrectResponse,
                "self-signed",
            ),
            (Flaw::NoAlpn, ProblemType::Tls, "acme-tls/1"),
            // The VA's TLS stack refuses a handshake message over 64 KiB.
            (Flaw::Huge, ProblemType::Tls, "handshake"),
        ] {
            responder.set("flawed.test", challenge_cert(&id, KEY_AUTH, flaw));
            let p = run(&responder, &dns, &id).await.expect("must fail");
            assert_eq!(p.kind, kind, "{flaw:?}: {p}");
            assert!(p.detail.contains(words), "{flaw:?}: {p}");
        }
        // The TLS stack's own words reach the operators' diagnostic, not the client.
        responder.set("flawed.test", challenge_cert(&id, KEY_AUTH, Flaw::Huge));
        let va = va_with(&dns, &[], |c| c.tlsalpn01_port = responder.port);
        let outcome = validate_tlsalpn01(&va, &id, KEY_AUTH).await;
        let told = outcome.error.unwrap().detail;
        let seen = outcome.diagnostic["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            seen.contains("HandshakePayloadTooLarge"),
            "{}",
            outcome.diagnostic
        );
        assert!(!told.contains("HandshakePayloadTooLarge"), "{told}");
        // Nothing configured for the SNI: the responder aborts the handshake.
        let p = run(&responder, &dns, &Identifier::dns("unknown.test"))
            .await
            .unwrap();
        assert_eq!(p.kind, ProblemType::Tls, "{p}");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connection_problem() {
        let dns = TestDns::start().await.unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let va = va_with(&dns, &[], |c| c.tlsalpn01_port = port);
        let outcome = validate_tlsalpn01(&va, &Identifier::dns("closed.test"), KEY_AUTH).await;
        let p = outcome.error.unwrap();
        assert_eq!(p.kind, ProblemType::Connection);
        // A fixed phrase, not the socket's own words.
        assert!(p.detail.contains("connection refused by the host"), "{p}");
        assert!(!p.detail.contains("os error"), "{p}");
    }

    #[tokio::test]
    async fn denied_addresses_are_never_contacted() {
        let dns = TestDns::start().await.unwrap();
        let responder = TlsAlpnResponder::start().await;
        let id = Identifier::dns("denied.test");
        responder.set("denied.test", challenge_cert(&id, KEY_AUTH, Flaw::None));
        let va = va_with(&dns, &["127.0.0.0/8"], |c| {
            c.tlsalpn01_port = responder.port
        });
        let p = validate_tlsalpn01(&va, &id, KEY_AUTH).await.error.unwrap();
        assert_eq!(p.kind, ProblemType::Connection, "{p}");
        assert!(p.detail.contains("does not validate"), "{p}");
        assert!(!p.detail.contains("127.0.0.0/8"), "{p}");
        assert_eq!(responder.connections(), 0);
    }
}
