//! `[webhooks.NAME]`: endpoints that receive the CA's events, signed with HMAC-SHA256
//! (`docs/console.md`, "Webhooks"). The secret file is read, and its mode checked, when
//! the CA starts (`app::webhooks`).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, ConfigError};

/// Event types an endpoint may subscribe to (the store's `webhooks::EVENT_TYPES`).
pub const WEBHOOK_EVENT_TYPES: &[&str] = &[
    "certificate.issued",
    "certificate.revoked",
    "validation.failed",
    "certificate.at_risk",
    "audit.verification_failed",
];

/// `[webhooks.NAME]`: one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The HMAC-SHA256 key: a file of mode 0600 (or stricter); its bytes, without a
    /// trailing newline, are the key.
    pub secret_file: PathBuf,
    /// Event types sent to this endpoint; default (empty): every type.
    #[serde(default)]
    pub events: Vec<String>,
    /// Seconds one POST may take, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Attempts before a delivery is marked failed (visible in the console, retried by
    /// an admin).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// PEM certificates to trust for an `https://` URL instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds before the first retry; each retry waits twice as long as the one before.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: u64,
    /// The longest wait between two attempts, in seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
}

fn default_timeout() -> u64 {
    10
}
fn default_max_attempts() -> u32 {
    15
}
fn default_retry_initial() -> u64 {
    5
}
fn default_retry_max() -> u64 {
    600
}

impl WebhookSection {
    /// An endpoint at `url` with the key in `secret_file` and every default.
    pub fn new(url: impl Into<String>, secret_file: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            secret_file: secret_file.into(),
            events: Vec::new(),
            timeout_secs: default_timeout(),
            max_attempts: default_max_attempts(),
            ca_file: None,
            retry_initial_secs: default_retry_initial(),
            retry_max_secs: default_retry_max(),
        }
    }
}

impl Config {
    /// `[webhooks.*]`: names, URLs, event types, and positive limits.
    pub(super) fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError::Invalid(why));
        for (name, w) in &self.webhooks {
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name {
                return bad(format!(
                    "webhooks.{name:?}: a name is 1-64 letters, digits, '-' or '_'"
                ));
            }
            let url = match url::Url::parse(&w.url) {
                Ok(u) => u,
                Err(e) => return bad(format!("webhooks.{name}.url {:?}: {e}", w.url)),
            };
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return bad(format!(
                    "webhooks.{name}.url {:?} must be an http:// or https:// URL with a host",
                    w.url
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return bad(format!(
                    "webhooks.{name}.url must not carry credentials (the signature authenticates the CA)"
                ));
            }
            if w.ca_file.is_some() && url.scheme() != "https" {
                return bad(format!(
                    "webhooks.{name}.ca_file is only for an https:// URL"
                ));
            }
            if let Some(unknown) = w
                .events
                .iter()
                .find(|e| !WEBHOOK_EVENT_TYPES.contains(&e.as_str()))
            {
                return bad(format!(
                    "webhooks.{name}.events: unknown event type {unknown:?} (known: {})",
                    WEBHOOK_EVENT_TYPES.join(", ")
                ));
            }
            if !(1..=300).contains(&w.timeout_secs) {
                return bad(format!("webhooks.{name}.timeout_secs must be 1..=300"));
            }
            if w.max_attempts == 0 {
                return bad(format!("webhooks.{name}.max_attempts must be at least 1"));
            }
            if w.retry_initial_secs == 0 || w.retry_max_secs < w.retry_initial_secs {
                return bad(format!(
                    "webhooks.{name}: retry_initial_secs must be at least 1 and at most retry_max_secs"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, w: WebhookSection) -> Result<(), ConfigError> {
        let mut c = Config::default();
        c.webhooks.insert(name.into(), w);
        c.validate()
    }

    #[test]
    fn webhooks_parse_with_defaults_and_are_checked() {
        let c: Config = toml::from_str(
            r#"
            [webhooks.ops]
            url = "https://hooks.example.net/ca"
            secret_file = "/etc/certwright/ops.secret"
            events = ["certificate.revoked"]
            "#,
        )
        .unwrap();
        let w = &c.webhooks["ops"];
        assert_eq!((w.timeout_secs, w.max_attempts), (10, 15));
        assert_eq!(w.events, ["certificate.revoked"]);
        c.validate().unwrap();

        let ok = WebhookSection::new("http://127.0.0.1:9/", "/s");
        with("ok", ok.clone()).unwrap();
        for (name, w, says) in [
            ("bad name", ok.clone(), "a name is"),
            (
                "ftp",
                WebhookSection::new("ftp://x.example/", "/s"),
                "http:// or https://",
            ),
            (
                "creds",
                WebhookSection::new("https://u:p@x.example/", "/s"),
                "credentials",
            ),
            (
                "ca",
                WebhookSection {
                    ca_file: Some("/ca.pem".into()),
                    ..ok.clone()
                },
                "only for an https",
            ),
            (
                "events",
                WebhookSection {
                    events: vec!["certificate.exploded".into()],
                    ..ok.clone()
                },
                "unknown event type",
            ),
            (
                "zero",
                WebhookSection {
                    max_attempts: 0,
                    ..ok.clone()
                },
                "max_attempts",
            ),
            (
                "retry",
                WebhookSection {
                    retry_max_secs: 1,
                    ..ok.clone()
                },
                "retry_initial_secs",
            ),
        ] {
            let e = with(name, w).unwrap_err().to_string();
            assert!(e.contains(says), "{name}: {e}");
        }
        assert!(toml::from_str::<Config>("[webhooks.x]\nurl = \"http://a/\"\n").is_err());
    }
}
