//! The `acme` backend: an upstream RFC 8555 CA. This CA holds its own account there
//! (the key in `DATA_DIR/backends/NAME/`, 0600) and obtains each certificate for the
//! client's CSR, answering the upstream's challenges with a `certwright-client` solver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Backend, BackendError, BackendRequest, Checkpoint, RevokeRequest};
use crate::config::AcmeSection;

/// An upstream ACME CA.
pub struct AcmeBackend {
    name: String,
    section: AcmeSection,
    timeout: Duration,
    state_dir: PathBuf,
}

impl AcmeBackend {
    /// The backend `name` of `[backends.NAME.acme]`, keeping its account in `state_dir`.
    /// Touches only local files: the upstream is first contacted when an order comes, so
    /// the CA starts while the upstream is down.
    pub fn new(
        name: &str,
        section: &AcmeSection,
        timeout: Duration,
        state_dir: &Path,
    ) -> Result<Self, String> {
        Ok(Self {
            name: name.into(),
            section: section.clone(),
            timeout,
            state_dir: state_dir.to_owned(),
        })
    }
}

impl Backend for AcmeBackend {
    fn kind(&self) -> &'static str {
        "acme"
    }

    fn resumable(&self) -> bool {
        true
    }

    fn issue<'a>(
        &'a self,
        _request: &'a BackendRequest,
        _checkpoint: &'a dyn Checkpoint,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        let _ = (&self.name, &self.section, self.timeout, &self.state_dir);
        Box::pin(async { Err(BackendError::Transient("acme: not built yet".into())) })
    }

    fn revoke<'a>(
        &'a self,
        _request: &'a RevokeRequest,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Err(BackendError::Transient("acme: not built yet".into())) })
    }
}
