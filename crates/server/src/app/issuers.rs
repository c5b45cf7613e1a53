//! Keeping the CA's issuers in step with the data directory and the store: issuers added
//! under `issuers/NAME/` (`certwright-ca issuer add`) are loaded, and each issuer's state
//! (`issuer retire` on any instance) is applied, at startup and then every few seconds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::ca::files::{IssuerFiles, FIRST_ISSUER};
use crate::ca::{CertificateAuthority, IssuerState};
use crate::clock::Clock;
use crate::store::Store;

/// How often running instances look for new issuers and state changes.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// Loads every issuer under `issuers/` that is not loaded yet. At startup an issuer that
/// cannot be loaded stops the CA (`strict`); later it is logged and tried again.
pub fn load_added(
    ca: &CertificateAuthority,
    data_dir: &Path,
    now: i64,
    strict: bool,
) -> anyhow::Result<usize> {
    let mut added = 0;
    for files in IssuerFiles::all(data_dir)? {
        if files.name == FIRST_ISSUER || ca.issuer_named(&files.name).is_some() {
            continue;
        }
        // A directory being written by `issuer add` has no certificate yet.
        if !files.cert.exists() {
            continue;
        }
        let name = files.name.clone();
        match ca.load_issuer(files, now) {
            Ok(issuer) => {
                tracing::info!(issuer = %name, key = issuer.key_kind().name(), "issuer loaded");
                added += 1;
            }
            Err(e) if strict => {
                return Err(e).with_context(|| format!("loading issuer {name}"));
            }
            Err(e) => tracing::error!(issuer = %name, error = %e, "loading an issuer failed"),
        }
    }
    Ok(added)
}

/// Applies the states recorded in the store to the loaded issuers.
pub async fn sync_states(ca: &CertificateAuthority, store: &Store) -> anyhow::Result<()> {
    let states = store
        .issuer_states()
        .await
        .context("reading the issuers' states")?;
    for issuer in ca.issuers().iter() {
        let state = match states.iter().find(|s| s.name == issuer.name()) {
            Some(s) if s.retired => IssuerState::Retired {
                by: s.retire_by.unwrap_or(s.changed_at),
            },
            _ => IssuerState::Active,
        };
        issuer.set_state(state);
    }
    if !ca.issuers().iter().any(|i| i.is_active()) {
        tracing::error!("every issuer is retired: no certificate can be issued until one is added (certwright-ca issuer add)");
    }
    Ok(())
}

/// Every [`SYNC_INTERVAL`]: new issuers, then states.
pub fn spawn_sync(
    ca: Arc<CertificateAuthority>,
    store: Store,
    data_dir: std::path::PathBuf,
    clock: Clock,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (ca2, dir, now) = (ca.clone(), data_dir.clone(), clock.now());
            // Loading reads files and may open a token: off the async threads.
            let loaded =
                tokio::task::spawn_blocking(move || load_added(&ca2, &dir, now, false)).await;
            if let Ok(Err(e)) = loaded {
                tracing::error!(error = %e, "looking for new issuers failed");
            }
            if let Err(e) = sync_states(&ca, &store).await {
                tracing::warn!(error = %e, "syncing the issuers' states failed");
            }
        }
    });
}
