-- The audit trail: append-only, hash-chained (see docs/audit.md).

CREATE TABLE audit_log (
    seq          BIGINT  PRIMARY KEY,                -- 1, 2, 3 … without gaps
    at           BIGINT  NOT NULL,                   -- unix seconds when recorded
    actor        TEXT    NOT NULL,                   -- account:ID, certificate-key, admin, system
    action       TEXT    NOT NULL,                   -- e.g. account.create, certificate.issue
    account_id   BIGINT,
    order_id     BIGINT,
    authz_id     BIGINT,
    challenge_id BIGINT,
    serial       TEXT,
    details      TEXT    NOT NULL,                   -- JSON object, exactly as hashed
    prev_hash    TEXT    NOT NULL,                   -- hash of entry seq - 1 (zeros for the first)
    hash         TEXT    NOT NULL                    -- SHA-256 of this entry's canonical form
);
CREATE INDEX audit_by_time ON audit_log(at);

-- The chain head: one row, updated by every append in the appending transaction, which
-- serializes appenders (a row lock on PostgreSQL) and records where the chain ends.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT  NOT NULL,
    hash  TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The inventory's filters.
CREATE INDEX certificates_by_not_after ON certificates(not_after);
