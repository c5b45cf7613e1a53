//! dns-01 through a script, as lego's exec provider: `SCRIPT present <fqdn> <value>` and
//! `SCRIPT cleanup <fqdn> <value>`, the FQDN with a trailing dot. The same values are in
//! the environment (`CERTWRIGHT_DNS01_ACTION`, `…_FQDN`, `…_VALUE`, `…_DOMAIN`).

use certwright_proto::types::ChallengeType;
use std::path::PathBuf;
use std::time::Duration;

use super::propagation::Propagation;
use super::{BoxFuture, ChallengeData, Solver};
use crate::error::{Error, Result};

/// How long one script run may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The exec-hook dns-01 solver.
#[derive(Debug, Clone)]
pub struct Dns01Exec {
    script: PathBuf,
    args: Vec<String>,
    propagation: Propagation,
}

impl Dns01Exec {
    /// A solver calling `script`, checking propagation with `propagation`.
    pub fn new(script: PathBuf, propagation: Propagation) -> Self {
        Self::with_args(script, Vec::new(), propagation)
    }

    /// A solver calling `script ARGS… present|cleanup <fqdn> <value>`: the fixed
    /// arguments come before the action (a hook shared by several zones, an interpreter
    /// and its script).
    pub fn with_args(script: PathBuf, args: Vec<String>, propagation: Propagation) -> Self {
        Self {
            script,
            args,
            propagation,
        }
    }

    async fn run(&self, action: &str, c: &ChallengeData) -> Result<()> {
        let fqdn = c.dns01_fqdn();
        let value = c.dns01_value();
        let child = tokio::process::Command::new(&self.script)
            .args(&self.args)
            .arg(action)
            .arg(&fqdn)
            .arg(&value)
            .env("CERTWRIGHT_DNS01_ACTION", action)
            .env("CERTWRIGHT_DNS01_FQDN", &fqdn)
            .env("CERTWRIGHT_DNS01_VALUE", &value)
            .env("CERTWRIGHT_DNS01_DOMAIN", &c.identifier)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let fail = |detail: String| Error::Solver {
            solver: "dns-01 exec",
            detail,
        };
        let out = tokio::time::timeout(SCRIPT_TIMEOUT, child)
            .await
            .map_err(|_| fail(format!("{} {action} timed out", self.script.display())))?
            .map_err(|e| fail(format!("cannot run {}: {e}", self.script.display())))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(fail(format!(
                "{} {action} {fqdn} exited with {}: {}",
                self.script.display(),
                out.status,
                tail.trim()
            )));
        }
        Ok(())
    }
}

impl Solver for Dns01Exec {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run("present", c))
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run("cleanup", c))
    }

    fn wait_ready<'a>(&'a self, all: &'a [ChallengeData]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for c in all {
                self.propagation
                    .wait_for_txt(&c.dns01_fqdn(), &c.dns01_value())
                    .await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn script_gets_action_fqdn_and_value_and_failures_surface() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3 $CERTWRIGHT_DNS01_DOMAIN\" >> {}\n[ \"$1\" = present ] || {{ echo boom >&2; exit 3; }}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Dns01Exec::new(
            script,
            Propagation {
                nameservers: vec![],
                timeout: Duration::from_secs(1),
            },
        );
        let c = ChallengeData {
            identifier: "a.test".into(),
            token: "t".into(),
            key_authorization: "abc".into(),
        };
        s.present(&c).await.unwrap();
        let err = s.cleanup(&c).await.unwrap_err().to_string();
        assert!(err.contains("boom"), "{err}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            logged.lines().next().unwrap(),
            "present _acme-challenge.a.test. ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0 a.test"
        );
    }

    #[tokio::test]
    async fn fixed_arguments_come_before_the_action() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Dns01Exec::with_args(
            script,
            vec!["--zone".into(), "a.test".into()],
            Propagation {
                nameservers: vec![],
                timeout: Duration::from_secs(1),
            },
        );
        let c = ChallengeData {
            identifier: "a.test".into(),
            token: "t".into(),
            key_authorization: "abc".into(),
        };
        s.present(&c).await.unwrap();
        s.cleanup(&c).await.unwrap();
        let logged = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = logged.lines().collect();
        assert_eq!(
            lines,
            [
                "--zone a.test present _acme-challenge.a.test. ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
                "--zone a.test cleanup _acme-challenge.a.test. ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
            ]
        );
    }
}
