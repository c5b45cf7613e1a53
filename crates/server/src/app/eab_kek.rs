//! Attaching the EAB key-encryption key to the store at start (and for `migrate`): the
//! wiring between `secrets` (the KEK) and `store` (the keys it seals), so that neither
//! imports the other for it.

use std::sync::Arc;

use crate::secrets::{KekSource, PrivateFiles, SecretsError, KEK_ENV, KEK_FILE};
use crate::store::{Backend, Store, StoreError};

/// Loads the KEK for `files`, attaches it to `store`, encrypts the plaintext EAB keys an
/// older version left (one transaction, audited), and checks that the keys which can
/// still bind an account were sealed with this KEK: an error when `strict` (the server
/// refuses to start), a warning otherwise (admin commands, so that such keys can still be
/// listed and revoked). Keys sealed with another KEK that can no longer bind are warned
/// about only.
pub async fn attach_eab_kek(
    files: &PrivateFiles,
    store: Store,
    strict: bool,
) -> Result<Store, StoreError> {
    let source = KekSource::from_environment(files);
    let keys = store.eab_keys().await?;
    // A missing data-directory KEK is created only when no key needs the old one.
    let sealed_with = keys.iter().find_map(|k| k.kek_id.clone());
    let kek = match source.load(sealed_with.is_none()) {
        Err(SecretsError::Io { error, path, .. })
            if error.kind() == std::io::ErrorKind::NotFound
                && matches!(source, KekSource::DataDir(_)) =>
        {
            return Err(SecretsError::MissingKek {
                path,
                count: keys.iter().filter(|k| k.kek_id.is_some()).count(),
                sealed_with: sealed_with.unwrap_or_default(),
            }
            .into());
        }
        other => other?,
    };
    tracing::info!(
        kek_id = kek.id(),
        source = kek.source(),
        "EAB keys are encrypted at rest with this key-encryption key"
    );
    if store.backend() == Backend::Postgres && matches!(source, KekSource::DataDir(_)) {
        tracing::info!(
            "on PostgreSQL every instance needs this same KEK (copy {KEK_FILE} or set {KEK_ENV} / eab_kek_file); see docs/scale-out.md"
        );
    }
    let foreign: Vec<_> = keys
        .iter()
        .filter(|k| k.kek_id.as_deref().is_some_and(|id| id != kek.id()))
        .collect();
    let (usable, spent): (Vec<_>, Vec<_>) = foreign
        .into_iter()
        .partition(|k| k.revoked_at.is_none() && k.account_id.is_none());
    if !spent.is_empty() {
        tracing::warn!(
            count = spent.len(),
            kek_id = kek.id(),
            "EAB keys already bound or revoked were encrypted with another key-encryption key; they are never needed again"
        );
    }
    if let Some(first) = usable.first() {
        let error = SecretsError::ForeignKek {
            count: usable.len(),
            kids: usable
                .iter()
                .map(|k| k.kid.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            sealed_with: first.kek_id.clone().unwrap_or_default(),
            have: kek.id().to_owned(),
            source_desc: kek.source().to_owned(),
        };
        if strict {
            return Err(error.into());
        }
        tracing::warn!("{error}");
    }
    let store = store.with_eab_kek(Arc::new(kek));
    let sealed = store.seal_legacy_eab_keys().await?;
    if sealed > 0 {
        tracing::info!(
            count = sealed,
            "encrypted EAB keys an older version stored in plaintext"
        );
    }
    Ok(store)
}
