-- Certificate lifecycle: revocation, ARI, profiles, External Account Binding, CRL state.

ALTER TABLE certificates ADD COLUMN revoked_at BIGINT;
ALTER TABLE certificates ADD COLUMN revocation_reason BIGINT;
ALTER TABLE certificates ADD COLUMN renew_early BIGINT NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN replaced_by_order BIGINT REFERENCES orders(id);
ALTER TABLE certificates ADD COLUMN profile TEXT;
CREATE INDEX certificates_revoked ON certificates(revoked_at) WHERE revoked_at IS NOT NULL;

ALTER TABLE orders ADD COLUMN profile TEXT;
ALTER TABLE orders ADD COLUMN replaces TEXT;

ALTER TABLE accounts ADD COLUMN eab_kid TEXT;
ALTER TABLE accounts ADD COLUMN eab_label TEXT;

CREATE TABLE eab_keys (
    kid         TEXT    PRIMARY KEY,
    label       TEXT    NOT NULL,
    hmac_key    BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT,
    account_id  BIGINT  UNIQUE REFERENCES accounts(id)
);

CREATE TABLE crl_state (
    issuer      TEXT    PRIMARY KEY,
    number      BIGINT  NOT NULL,
    der         BYTEA   NOT NULL,
    this_update BIGINT  NOT NULL,
    next_update BIGINT  NOT NULL
);
