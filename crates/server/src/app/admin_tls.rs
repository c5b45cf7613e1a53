//! The admin listener's TLS (`admin_tls_cert`, `admin_tls_key`): the PEM files are read at
//! start, and again on SIGHUP so that a renewed certificate takes effect without a
//! restart. A pair that does not load (unreadable, unparsable, key and certificate not
//! matching) fails the start, and on a reload leaves the previous pair in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The admin listener's certificate and key, as last read from their files.
#[derive(Debug)]
pub struct AdminTls {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl AdminTls {
    /// Reads the pair (`admin_tls_cert`: the leaf, then its chain; `admin_tls_key`).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = read_pair(cert, key, &provider)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads the files again; on error the pair in service stays (and the error is
    /// returned).
    pub fn reload(&self) -> anyhow::Result<()> {
        let pair = read_pair(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// The listener's rustls configuration (h2 and HTTP/1.1), which presents the pair in
    /// service at each handshake.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reloads the pair on every SIGHUP, for the life of the process.
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let tls = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert.display(), "SIGHUP: admin TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "SIGHUP: the admin TLS certificate did not reload; the previous one stays in service")
                    }
                }
            }
        });
        Ok(())
    }
}

impl ResolvesServerCert for AdminTls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .with_context(|| format!("admin_tls_cert {}: no PEM certificates", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("admin_tls_cert {}: no certificate in it", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("admin_tls_key {}: no PEM private key", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!(
            "admin_tls_key {} does not go with admin_tls_cert {}",
            key.display(),
            cert.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![format!("{name}.test")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.pem())
    }

    fn serving(tls: &AdminTls) -> Vec<u8> {
        tls.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_pair_when_the_new_one_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = pair(dir.path(), "a");
        let (other_cert, other_key, _) = pair(dir.path(), "b");
        let tls = AdminTls::load(&cert, &key).unwrap();
        let first = serving(&tls);
        tls.server_config().unwrap();

        // A key that is not the certificate's: refused at start and on reload.
        let err = AdminTls::load(&cert, &other_key).unwrap_err();
        assert!(format!("{err:#}").contains("does not go with"), "{err:#}");
        assert!(AdminTls::load(&cert, &dir.path().join("missing.key")).is_err());
        std::fs::copy(&other_cert, &cert).unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(serving(&tls), first, "the old pair stays in service");

        // The new pair, both files replaced: in service.
        std::fs::copy(&other_key, &key).unwrap();
        tls.reload().unwrap();
        assert_ne!(serving(&tls), first);
    }
}
