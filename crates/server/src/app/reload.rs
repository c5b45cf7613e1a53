//! The policy reload: on SIGHUP, `app` re-reads the configuration file, parses its
//! policy (`settings::policy`) and hands it to the RA through its [`PolicyHandle`]. The RA
//! reads no file.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::ra::policy::PolicyHandle;

/// Reloads the RA's policy from a configuration file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PolicyReloader {
    handle: PolicyHandle,
}

impl PolicyReloader {
    /// Reloads into `handle` (the RA's, `Ra::policy_handle`).
    pub fn new(handle: PolicyHandle) -> Self {
        Self { handle }
    }

    /// The handle the reloaded policy goes to.
    pub fn handle(&self) -> &PolicyHandle {
        &self.handle
    }

    /// Re-reads the configuration file and puts its policy in force. On any error the
    /// policy in force stays and the error is returned (and logged).
    pub fn reload_from(&self, path: &Path) -> Result<(), String> {
        let result = Config::from_file(path)
            .map_err(|e| e.to_string())
            .and_then(|c| super::settings::policy(&c).map_err(|e| e.to_string()));
        match result {
            Ok(policy) => {
                self.handle.replace(policy);
                crate::metrics::policy_reload(true);
                tracing::info!(path = %path.display(), "policy reloaded");
                Ok(())
            }
            Err(e) => {
                crate::metrics::policy_reload(false);
                tracing::error!(path = %path.display(), error = %e, "policy reload failed; the previous policy stays in force");
                Err(e)
            }
        }
    }

    /// Reloads from `path` on every SIGHUP, for the life of the process (without a file,
    /// a SIGHUP is logged and ignored rather than ending the process).
    pub fn reload_on_sighup(&self, path: Option<PathBuf>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let reloader = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match &path {
                    Some(path) => {
                        tracing::info!(path = %path.display(), "SIGHUP: reloading the policy");
                        let _ = reloader.reload_from(path);
                    }
                    None => tracing::warn!(
                        "SIGHUP ignored: started without --config, nothing to reload"
                    ),
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ra::policy::Policy;
    use certwright_proto::identifier::normalize;
    use certwright_proto::types::Identifier;

    /// The rule kind refusing `name` (None: allowed).
    fn verdict(p: &Policy, name: &str) -> Option<&'static str> {
        let id = normalize(&Identifier::dns(name)).unwrap();
        p.check(None, &[id]).first().map(|r| r.kind)
    }

    #[test]
    fn reload_replaces_the_policy_and_a_bad_file_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        let reloader = PolicyReloader::new(PolicyHandle::new(Policy::default()));
        let handle = reloader.handle();
        std::fs::write(&path, "[policy]\ndenied_names = [\"*.example.com\"]\n").unwrap();
        reloader.reload_from(&path).unwrap();
        assert_eq!(
            verdict(&handle.current(), "a.example.com"),
            Some("denied_names")
        );
        for broken in [
            "[policy]\ndenied_names = [\"bad name\"]\n",
            "[policy\n",
            "nonsense = 1\n",
        ] {
            std::fs::write(&path, broken).unwrap();
            assert!(reloader.reload_from(&path).is_err(), "{broken}");
            assert_eq!(
                verdict(&handle.current(), "a.example.com"),
                Some("denied_names")
            );
        }
        std::fs::remove_file(&path).unwrap();
        assert!(reloader.reload_from(&path).is_err());
    }
}
