-- certwright-ca schema, version 1. Times are Unix seconds (UTC).

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key_thumbprint  TEXT    NOT NULL UNIQUE,
    jwk             TEXT    NOT NULL,
    contact         TEXT    NOT NULL,             -- JSON array of URIs
    status          TEXT    NOT NULL,
    tos_agreed      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    status          TEXT    NOT NULL,             -- stored status; pending is refined from authorizations
    identifiers     TEXT    NOT NULL,             -- JSON array of identifiers
    expires         INTEGER NOT NULL,
    not_before      INTEGER,
    not_after       INTEGER,
    error           TEXT,                         -- JSON problem document
    csr             BLOB,                         -- kept from finalize until issuance completes
    certificate_serial TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX orders_by_account ON orders(account_id, id);
CREATE INDEX orders_by_status ON orders(status) WHERE status = 'processing';

CREATE TABLE authorizations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    identifier_type TEXT    NOT NULL,
    identifier_value TEXT   NOT NULL,
    wildcard        INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL,
    expires         INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX authorizations_for_reuse
    ON authorizations(account_id, identifier_type, identifier_value, wildcard, status, expires);

CREATE TABLE order_authorizations (
    order_id         INTEGER NOT NULL REFERENCES orders(id),
    authorization_id INTEGER NOT NULL REFERENCES authorizations(id),
    PRIMARY KEY (order_id, authorization_id)
);
CREATE INDEX order_authorizations_by_authz ON order_authorizations(authorization_id);

CREATE TABLE challenges (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    authorization_id INTEGER NOT NULL REFERENCES authorizations(id),
    type             TEXT    NOT NULL,
    token            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    validated        INTEGER,
    error            TEXT,                        -- JSON problem document
    record           TEXT                         -- JSON: what the VA saw (URL, address, answer)
);
CREATE INDEX challenges_by_authz ON challenges(authorization_id);
CREATE INDEX challenges_processing ON challenges(status) WHERE status = 'processing';

CREATE TABLE certificates (
    serial          TEXT    PRIMARY KEY,          -- lower-case hex
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    order_id        INTEGER NOT NULL REFERENCES orders(id),
    der             BLOB    NOT NULL,
    chain_pem       TEXT    NOT NULL,             -- leaf first, then the issuer chain
    names           TEXT    NOT NULL,             -- JSON array of identifiers
    not_before      INTEGER NOT NULL,
    not_after       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX certificates_by_account ON certificates(account_id);
