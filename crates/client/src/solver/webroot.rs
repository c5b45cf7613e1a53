//! http-01 through a web server's document root: writes
//! `<root>/.well-known/acme-challenge/<token>` and removes it afterwards.

use certwright_proto::types::ChallengeType;
use std::path::PathBuf;

use super::{BoxFuture, ChallengeData, Solver};
use crate::error::{Error, Result};

/// The webroot solver.
#[derive(Debug, Clone)]
pub struct Webroot {
    root: PathBuf,
}

impl Webroot {
    /// A solver writing under `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, token: &str) -> Result<PathBuf> {
        if !certwright_proto::keyauth::is_valid_token(token) {
            return Err(Error::Solver {
                solver: "webroot",
                detail: format!("refusing a token that is not base64url: {token:?}"),
            });
        }
        let dir = certwright_proto::challenge::HTTP01_PATH_PREFIX.trim_matches('/');
        Ok(self.root.join(dir).join(token))
    }
}

impl Solver for Webroot {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.path(&c.token)?;
            let dir = path.parent().expect("has a parent");
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| Error::io(dir, e))?;
            crate::store::write_atomic(&path, c.key_authorization.as_bytes(), 0o644)
        })
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.path(&c.token)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(&path, e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_then_removes_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = Webroot::new(dir.path().to_owned());
        let c = ChallengeData {
            identifier: "a.test".into(),
            token: "A".repeat(22) + "_-x",
            key_authorization: "ka".into(),
        };
        w.present(&c).await.unwrap();
        let p = dir.path().join(".well-known/acme-challenge").join(&c.token);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "ka");
        w.cleanup(&c).await.unwrap();
        assert!(!p.exists());
        let evil = ChallengeData {
            token: "../../../../etc/passwd-xxxxxxxxxxxx".into(),
            ..c
        };
        assert!(w.present(&evil).await.is_err());
    }
}
