-- EAB HMAC keys are stored sealed with a key-encryption key (crates/server/src/secrets.rs):
-- hmac_key holds `v1:` + base64url(nonce || AES-256-GCM ciphertext || tag) and kek_id the
-- fingerprint of the KEK that sealed it. A row without kek_id is a plaintext key an older
-- version wrote; a migration has no key to seal it with, so certwright-ca seals such rows
-- at start-up and in `certwright-ca migrate`.
ALTER TABLE eab_keys ADD COLUMN kek_id TEXT;
