//! Hooks: shell commands run around issuance with the stable paths in the environment —
//! `pre` before a certificate is requested (to free port 80), `post` after the CA work
//! (whatever its outcome), `deploy` after a new certificate is in place.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::CertPaths;

/// How long a hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `command` with `sh -c`, setting `CERTWRIGHT_CERT_NAME`, `CERTWRIGHT_DOMAINS`
/// (space separated), `CERTWRIGHT_CERT_DIR`, `CERTWRIGHT_CERT_PATH`, `CERTWRIGHT_CHAIN_PATH`,
/// `CERTWRIGHT_FULLCHAIN_PATH` and `CERTWRIGHT_KEY_PATH`.
pub async fn run_deploy_hook(
    command: &str,
    name: &str,
    domains: &[String],
    paths: &CertPaths,
) -> Result<()> {
    run_hook("deploy", command, name, domains, paths).await
}

/// Runs the `kind` hook (`pre`, `post`, `deploy`) `command` as [`run_deploy_hook`] does;
/// `CERTWRIGHT_HOOK` holds the kind.
pub async fn run_hook(
    kind: &str,
    command: &str,
    name: &str,
    domains: &[String],
    paths: &CertPaths,
) -> Result<()> {
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("CERTWRIGHT_HOOK", kind)
        .env("CERTWRIGHT_CERT_NAME", name)
        .env("CERTWRIGHT_DOMAINS", domains.join(" "))
        .env("CERTWRIGHT_CERT_DIR", &paths.dir)
        .env("CERTWRIGHT_CERT_PATH", &paths.cert)
        .env("CERTWRIGHT_CHAIN_PATH", &paths.chain)
        .env("CERTWRIGHT_FULLCHAIN_PATH", &paths.fullchain)
        .env("CERTWRIGHT_KEY_PATH", &paths.privkey)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(HOOK_TIMEOUT, child)
        .await
        .map_err(|_| {
            Error::Hook(format!(
                "{kind} hook for {name} timed out after {}s",
                HOOK_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Error::Hook(format!("{kind} hook for {name}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(Error::Hook(format!(
            "{kind} hook for {name} exited with {}{}",
            out.status,
            last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
        )));
    }
    Ok(())
}
