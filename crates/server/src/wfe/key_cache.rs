//! Account keys parsed for signature verification, kept per instance.
//!
//! Every `kid`-signed request is verified with the account's key as the store holds it at
//! that moment (read with the request). Parsing that key for aws-lc (decoding the point,
//! checking it is on the curve) is the same work each time, so the parsed form is kept
//! here, keyed by the whole JWK: the account and its status are still read for every
//! request, and a changed key is another entry, so which key verifies a request is exactly
//! what the store says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certwright_proto::{Jwk, VerifyingKey};

/// Most keys kept; when full, the cache starts over (accounts in use come back at once).
pub const CAPACITY: usize = 4096;

/// Parsed account keys, by JWK.
#[derive(Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<Jwk, Arc<VerifyingKey>>>,
}

impl KeyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// `jwk` parsed for verification: from the cache, or parsed now and kept.
    pub fn get(&self, jwk: &Jwk) -> Arc<VerifyingKey> {
        if let Some(key) = self.lock().get(jwk) {
            return key.clone();
        }
        let key = Arc::new(VerifyingKey::new(jwk));
        let mut keys = self.lock();
        if keys.len() >= CAPACITY {
            keys.clear();
        }
        keys.insert(jwk.clone(), key.clone());
        key
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Jwk, Arc<VerifyingKey>>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certwright_proto::jws::{sign, Signer};
    use certwright_proto::{AccountKey, KeyType, ParsedJws};

    fn signed_by(key: &AccountKey) -> ParsedJws {
        let jws = sign(key, &Signer::Kid("k".into()), Some("n"), "u", b"{}").unwrap();
        ParsedJws::from_flattened(&jws).unwrap()
    }

    #[test]
    fn each_key_verifies_only_its_own_signatures() {
        let cache = KeyCache::new();
        let old = AccountKey::generate(KeyType::EcP256).unwrap();
        let new = AccountKey::generate(KeyType::EcP256).unwrap();
        let by_old = signed_by(&old);
        let by_new = signed_by(&new);
        for _ in 0..2 {
            by_old.verify_with(&cache.get(&old.jwk())).unwrap();
            assert!(by_new.verify_with(&cache.get(&old.jwk())).is_err());
        }
        assert_eq!(cache.len(), 1);
        // After a key change the store holds the new key: only its signatures verify.
        by_new.verify_with(&cache.get(&new.jwk())).unwrap();
        assert!(by_old.verify_with(&cache.get(&new.jwk())).is_err());
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&cache.get(&old.jwk()), &cache.get(&old.jwk())));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::new();
        let key = AccountKey::generate(KeyType::Ed25519).unwrap();
        for i in 0..CAPACITY + 10 {
            let mut x = vec![0u8; 32];
            x[..8].copy_from_slice(&(i as u64).to_be_bytes());
            cache.get(&Jwk::Ed25519 { x });
        }
        assert!(cache.len() <= CAPACITY);
        signed_by(&key).verify_with(&cache.get(&key.jwk())).unwrap();
    }
}
