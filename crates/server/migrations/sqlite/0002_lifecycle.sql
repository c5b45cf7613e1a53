-- Certificate lifecycle: revocation, ARI, profiles, External Account Binding, CRL state.

ALTER TABLE certificates ADD COLUMN revoked_at INTEGER;
ALTER TABLE certificates ADD COLUMN revocation_reason INTEGER;
ALTER TABLE certificates ADD COLUMN renew_early INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN replaced_by_order INTEGER REFERENCES orders(id);
ALTER TABLE certificates ADD COLUMN profile TEXT;
CREATE INDEX certificates_revoked ON certificates(revoked_at) WHERE revoked_at IS NOT NULL;

ALTER TABLE orders ADD COLUMN profile TEXT;
ALTER TABLE orders ADD COLUMN replaces TEXT;              -- serial (hex) of the replaced certificate

ALTER TABLE accounts ADD COLUMN eab_kid TEXT;
ALTER TABLE accounts ADD COLUMN eab_label TEXT;

CREATE TABLE eab_keys (
    kid         TEXT    PRIMARY KEY,
    label       TEXT    NOT NULL,
    hmac_key    BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    account_id  INTEGER UNIQUE REFERENCES accounts(id)    -- set once, when bound
);

CREATE TABLE crl_state (
    issuer      TEXT    PRIMARY KEY,                       -- 'intermediate'
    number      INTEGER NOT NULL,                          -- last CRL number published
    der         BLOB    NOT NULL,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL
);
