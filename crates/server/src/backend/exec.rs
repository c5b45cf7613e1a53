//! The `exec` backend: a CA with a command-line (an OpenSSL `ca` directory, Easy-RSA, a
//! vendor CLI), driven by a command that gets the CSR and the order's facts and prints
//! the certificate.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Backend, BackendError, BackendRequest, Checkpoint, RevokeRequest};
use crate::config::ExecSection;

/// A command-line CA.
pub struct ExecBackend {
    name: String,
    section: ExecSection,
    timeout: Duration,
}

impl ExecBackend {
    /// The backend `name` of `[backends.NAME.exec]`; each run may take `timeout`.
    pub fn new(name: &str, section: &ExecSection, timeout: Duration) -> Result<Self, String> {
        if section.command.is_empty() {
            return Err(format!("backends.{name}.exec.command is empty"));
        }
        Ok(Self {
            name: name.into(),
            section: section.clone(),
            timeout,
        })
    }
}

impl Backend for ExecBackend {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn resumable(&self) -> bool {
        self.section.idempotent
    }

    fn issue<'a>(
        &'a self,
        _request: &'a BackendRequest,
        _checkpoint: &'a dyn Checkpoint,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        let _ = (&self.name, self.timeout);
        Box::pin(async { Err(BackendError::Transient("exec: not built yet".into())) })
    }

    fn revoke<'a>(
        &'a self,
        _request: &'a RevokeRequest,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Err(BackendError::Transient("exec: not built yet".into())) })
    }
}
