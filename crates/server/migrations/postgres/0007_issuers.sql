-- Several issuers (docs/keys.md): which issuer signed each certificate, and the state of
-- each issuer (its certificate and key live in the data directory or a token). An issuer
-- with no row is active.
CREATE TABLE issuers (
    name        TEXT    PRIMARY KEY,
    status      TEXT    NOT NULL,      -- active | retired
    retire_by   BIGINT,                -- retired: holders are asked to renew before this
    changed_at  BIGINT  NOT NULL
);
-- Every certificate before this migration came from the first issuer.
ALTER TABLE certificates ADD COLUMN issuer TEXT NOT NULL DEFAULT 'intermediate';
CREATE INDEX certificates_by_issuer_expiry ON certificates(issuer, not_after);
