//! `[webhooks.*]` turned into what the store fans events out to and what the delivery
//! worker sends with (`crate::webhooks`): secrets read once, their files' modes checked,
//! one HTTP client per endpoint.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::store::webhooks::{WebhookRoute, WebhookRoutes};
use crate::webhooks::{Backoff, Endpoint};

/// The routes the store needs: each endpoint's name and the event types it wants.
pub fn routes(config: &Config) -> WebhookRoutes {
    WebhookRoutes::new(
        config
            .webhooks
            .iter()
            .map(|(name, w)| WebhookRoute {
                name: name.clone(),
                url: w.url.clone(),
                events: w.events.clone(),
            })
            .collect(),
    )
}

/// Reads an endpoint's HMAC key: the file's bytes without a trailing newline. Refuses a
/// file that group or others may access, and a key shorter than 16 bytes.
pub fn read_secret(name: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("webhooks.{name}.secret_file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "webhooks.{name}.secret_file {} has mode {mode:04o}: group or others may read the HMAC key; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let mut bytes = std::fs::read(path)
        .with_context(|| format!("cannot read webhooks.{name}.secret_file {}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < 16 {
        bail!(
            "webhooks.{name}.secret_file {} holds {} bytes; use at least 16 (e.g. `openssl rand -hex 32`)",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes)
}

/// Every configured endpoint, ready to send to.
pub fn endpoints(config: &Config) -> anyhow::Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    for (name, w) in &config.webhooks {
        let secret = read_secret(name, &w.secret_file)?;
        let timeout = Duration::from_secs(w.timeout_secs);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!(
                "certwright-ca/",
                env!("CARGO_PKG_VERSION"),
                " webhooks"
            ));
        if let Some(ca_file) = &w.ca_file {
            let pem = std::fs::read(ca_file).with_context(|| {
                format!("cannot read webhooks.{name}.ca_file {}", ca_file.display())
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "webhooks.{name}.ca_file {}: not PEM certificates",
                    ca_file.display()
                )
            })?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .with_context(|| format!("webhooks.{name}: building the HTTP client"))?;
        out.push(Endpoint {
            name: name.clone(),
            url: w.url.clone(),
            secret: secrecy::SecretBox::new(secret.into_boxed_slice()),
            client,
            timeout,
            max_attempts: w.max_attempts,
            backoff: Backoff {
                initial: Duration::from_secs(w.retry_initial_secs),
                max: Duration::from_secs(w.retry_max_secs),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.secret");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret("ops", &path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret("ops", &path).unwrap(), b"0123456789abcdef0123");
        std::fs::write(&path, "short\n").unwrap();
        let e = read_secret("ops", &path).unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
    }
}
