//! Builds the backend CAs and the routing rules from `[backends.*]` and `[routing]`
//! (`docs/upstream.md`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::backend::acme::AcmeBackend;
use crate::backend::exec::ExecBackend;
use crate::backend::{Backend, BackendEntry, BackendSettings, Backends, Router};
use crate::ca::CertificateAuthority;
use crate::config::{BackendType, Config};

/// Every configured backend, ready to use (nothing is contacted yet), with the routing
/// rules. A backend named like one of `ca`'s issuers is refused: certificates name
/// their issuer or backend in one column.
pub fn build(config: &Config, ca: &CertificateAuthority) -> anyhow::Result<Backends> {
    let mut entries = Vec::new();
    for (name, section) in &config.backends {
        if ca.issuer_named(name).is_some() {
            bail!("backends.{name}: an issuer of this CA has that name; rename the backend");
        }
        let settings = BackendSettings {
            timeout: Duration::from_secs(section.timeout_secs),
            deadline: Duration::from_secs(section.deadline_secs),
            trust_anchors: match &section.trust_anchor {
                Some(path) => {
                    trust_anchors(path).with_context(|| format!("backends.{name}.trust_anchor"))?
                }
                None => Vec::new(),
            },
        };
        let backend: Arc<dyn Backend> = match section.r#type {
            BackendType::Exec => {
                let exec = section.exec.as_ref().context("checked by the config")?;
                Arc::new(
                    ExecBackend::new(name, exec, settings.timeout).map_err(anyhow::Error::msg)?,
                )
            }
            BackendType::Acme => {
                let acme = section.acme.as_ref().context("checked by the config")?;
                let dir = config.data_dir.join("backends").join(name);
                Arc::new(
                    AcmeBackend::new(name, acme, settings.timeout, &dir)
                        .map_err(anyhow::Error::msg)?,
                )
            }
        };
        tracing::info!(backend = %name, kind = backend.kind(), "backend CA configured");
        entries.push(BackendEntry {
            name: name.clone(),
            backend,
            settings,
        });
    }
    Ok(Backends::new(entries, Router::from_config(&config.routing)))
}

/// The certificates of a PEM file.
fn trust_anchors(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}
