//! Notifications from the agent: a `notify` hook and a webhook (JSON, HMAC-SHA256 signed)
//! on a failure, on repeated failure, on recovery, and when a certificate gets close to
//! expiry without a successful renewal.
//!
//! The webhook POSTs one JSON object per event with two headers:
//! `X-Certwright-Timestamp` (Unix seconds) and `X-Certwright-Signature: v1=<hex>`, the
//! HMAC-SHA256 under the shared secret of `<timestamp>.<body>`. The secret is read from
//! a file only its owner can read (mode 0600 or stricter) or from the environment
//! variable [`WEBHOOK_SECRET_ENV`] — never from the command line.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::store::CertMeta;

/// The environment variable that may hold the webhook secret.
pub const WEBHOOK_SECRET_ENV: &str = "CERTWRIGHT_WEBHOOK_SECRET";
/// After this many consecutive failures a `failing_repeatedly` event is sent (once).
pub const REPEATED_FAILURES: u32 = 3;
/// How long a notify hook or webhook request may take.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// What happened, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Issuance, renewal or deploy failed (the first failure in a row).
    Failed,
    /// The failures reached [`REPEATED_FAILURES`] in a row.
    FailingRepeatedly,
    /// It works again after failures.
    Recovered,
    /// Less than a sixth of the lifetime left and no successful renewal.
    ExpiringSoon,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// What happened.
    pub event: EventKind,
    /// The certificate's name.
    pub name: String,
    /// Consecutive failures (issuance/renewal plus deploy).
    pub failures: u32,
    /// The last error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The current certificate's expiry (RFC 3339), if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

/// The notifications one step of a certificate calls for, from its metadata before and
/// after the step. `warned` says whether `expiring_soon` was already sent for this
/// certificate (it is sent once per certificate version).
pub fn events(
    name: &str,
    before: Option<&CertMeta>,
    after: Option<&CertMeta>,
    now: OffsetDateTime,
    warned: bool,
) -> Vec<Notification> {
    let count = |m: Option<&CertMeta>| {
        m.map_or(0, |m| {
            m.failures + m.deploy_failure.as_ref().map_or(0, |d| d.failures)
        })
    };
    let (was, is) = (count(before), count(after));
    let error = after.and_then(|m| {
        m.deploy_failure
            .as_ref()
            .map(|d| d.error.clone())
            .or_else(|| m.last_error.clone())
    });
    let note = |event| Notification {
        event,
        name: name.to_owned(),
        failures: is,
        error: error.clone(),
        not_after: after.filter(|m| m.is_issued()).map(|m| m.not_after.clone()),
    };
    let mut out = Vec::new();
    if is > was {
        if was == 0 {
            out.push(note(EventKind::Failed));
        }
        if was < REPEATED_FAILURES && is >= REPEATED_FAILURES {
            out.push(note(EventKind::FailingRepeatedly));
        }
    }
    if was > 0 && is == 0 {
        out.push(note(EventKind::Recovered));
    }
    if !warned {
        if let Some((nb, na)) = after.and_then(CertMeta::validity) {
            if now >= na - (na - nb) / 6 && now < na + time::Duration::days(1) {
                out.push(note(EventKind::ExpiringSoon));
            }
        }
    }
    out
}

/// A webhook: where to POST and the HMAC key.
#[derive(Clone)]
pub struct Webhook {
    /// The URL.
    pub url: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook whose secret comes from `secret_file` (which must not be readable by
    /// group or others) or, when `None`, from [`WEBHOOK_SECRET_ENV`].
    pub fn new(url: String, secret_file: Option<&Path>) -> Result<Self> {
        let key = match secret_file {
            Some(path) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(path)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(Error::Config(format!(
                        "{}: the webhook secret must not be readable by others (chmod 600)",
                        path.display()
                    )));
                }
                std::fs::read(path)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => std::env::var(WEBHOOK_SECRET_ENV)
                .map_err(|_| {
                    Error::Config(format!(
                        "webhook_url needs webhook_secret_file or {WEBHOOK_SECRET_ENV}"
                    ))
                })?
                .into_bytes(),
        };
        let key: Vec<u8> = String::from_utf8_lossy(&key).trim().as_bytes().to_vec();
        if key.len() < 16 {
            return Err(Error::Config(
                "the webhook secret is shorter than 16 bytes".into(),
            ));
        }
        Ok(Self { url, key })
    }

    /// The signature header value for `body` sent at `timestamp`.
    pub fn signature(&self, timestamp: i64, body: &[u8]) -> String {
        signature(&self.key, timestamp, body)
    }
}

/// `v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!("v1={}", hmac_sha256_hex(key, &[ts.as_bytes(), b".", body]))
}

/// Hex HMAC-SHA256 of the concatenated `parts`.
fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where notifications go.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// `sh -c` command run per event, with `CERTWRIGHT_EVENT`, `CERTWRIGHT_CERT_NAME`,
    /// `CERTWRIGHT_FAILURES`, `CERTWRIGHT_ERROR` and the JSON on stdin.
    pub hook: Option<String>,
    /// The webhook.
    pub webhook: Option<Webhook>,
}

impl Notifier {
    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.hook.is_none() && self.webhook.is_none()
    }

    /// Sends one notification everywhere configured. Failures to notify are logged,
    /// never fatal.
    pub async fn send(&self, n: &Notification) {
        let body = serde_json::to_vec(n).expect("serializes");
        if let Some(hook) = &self.hook {
            if let Err(e) = run_notify_hook(hook, n, &body).await {
                tracing::warn!(name = %n.name, error = %e, "notify hook failed");
            }
        }
        if let Some(webhook) = &self.webhook {
            if let Err(e) = post(webhook, &body).await {
                tracing::warn!(name = %n.name, error = %e, "webhook failed");
            }
        }
    }
}

async fn run_notify_hook(hook: &str, n: &Notification, body: &[u8]) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let event = serde_json::to_value(&n.event).expect("serializes");
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(hook)
        .env("CERTWRIGHT_EVENT", event.as_str().unwrap_or_default())
        .env("CERTWRIGHT_CERT_NAME", &n.name)
        .env("CERTWRIGHT_FAILURES", n.failures.to_string())
        .env("CERTWRIGHT_ERROR", n.error.as_deref().unwrap_or(""))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Hook(format!("notify hook: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body).await;
    }
    let out = tokio::time::timeout(NOTIFY_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Hook("notify hook timed out".into()))?
        .map_err(|e| Error::Hook(format!("notify hook: {e}")))?;
    if !out.status.success() {
        return Err(Error::Hook(format!(
            "notify hook exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

async fn post(webhook: &Webhook, body: &[u8]) -> Result<()> {
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let client = reqwest::Client::builder()
        .timeout(NOTIFY_TIMEOUT)
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
    let resp = client
        .post(&webhook.url)
        .header("content-type", "application/json")
        .header("x-certwright-timestamp", timestamp.to_string())
        .header("x-certwright-signature", webhook.signature(timestamp, body))
        .body(body.to_vec())
        .send()
        .await
        .map_err(|error| Error::Http {
            url: webhook.url.clone(),
            error,
        })?;
    if !resp.status().is_success() {
        return Err(Error::Protocol {
            url: webhook.url.clone(),
            detail: format!("webhook answered HTTP {}", resp.status()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn meta(failures: u32) -> CertMeta {
        let mut m = CertMeta::never_issued(
            vec!["a.test".into()],
            vec![],
            "ec256",
            crate::solver::SolverSpec::Webroot("/w".into()),
        );
        m.serial = "01".into();
        m.not_before = "2030-01-01T00:00:00Z".into();
        m.not_after = "2030-04-01T00:00:00Z".into();
        m.failures = failures;
        m.last_error = (failures > 0).then(|| "connection refused".into());
        m
    }

    fn kinds(v: Vec<Notification>) -> Vec<EventKind> {
        v.into_iter().map(|n| n.event).collect()
    }

    #[test]
    fn failure_repetition_recovery_and_expiry() {
        let now = datetime!(2030-02-01 0:00 UTC);
        let e = |a: u32, b: u32| kinds(events("a", Some(&meta(a)), Some(&meta(b)), now, false));
        assert_eq!(e(0, 1), [EventKind::Failed]);
        assert_eq!(e(1, 2), []);
        assert_eq!(e(2, 3), [EventKind::FailingRepeatedly]);
        assert_eq!(e(3, 4), []);
        assert_eq!(e(4, 0), [EventKind::Recovered]);
        assert_eq!(e(0, 0), []);
        // 15 of 90 days left: close to expiry, once.
        let late = datetime!(2030-03-18 0:00 UTC);
        let got = kinds(events("a", Some(&meta(2)), Some(&meta(2)), late, false));
        assert_eq!(got, [EventKind::ExpiringSoon]);
        assert_eq!(
            kinds(events("a", Some(&meta(2)), Some(&meta(2)), late, true)),
            []
        );
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            signature(b"Jefe", 12, b"x"),
            format!("v1={}", hmac_sha256_hex(b"Jefe", &[b"12.x"]))
        );
        assert_ne!(signature(b"k", 1, b"x"), signature(b"k", 2, b"x"));
    }

    #[test]
    fn a_secret_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Webhook::new("http://127.0.0.1:1/".into(), Some(&p)).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        Webhook::new("http://127.0.0.1:1/".into(), Some(&p)).unwrap();
    }
}
