//! Deploy hooks: a shell command run after a certificate was issued or renewed, with the
//! stable paths in the environment.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::CertPaths;

/// How long a deploy hook may run.
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
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
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
        .map_err(|_| Error::Config(format!("deploy hook for {name} timed out")))?
        .map_err(|e| Error::Config(format!("deploy hook for {name}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "deploy hook for {name} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
