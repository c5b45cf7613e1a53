-- The operator console (docs/console.md): who may sign in, their sessions, and the
-- failed sign-ins that throttle password guessing.
CREATE TABLE operators (
    name            TEXT    PRIMARY KEY,
    role            TEXT    NOT NULL,          -- viewer | admin
    password_hash   TEXT    NOT NULL,          -- argon2id, PHC string
    created_at      BIGINT  NOT NULL,
    disabled        BIGINT  NOT NULL DEFAULT 0
);
-- A session is found by the SHA-256 of its cookie's token: the token itself is never
-- stored, so reading the database does not sign anyone in.
CREATE TABLE operator_sessions (
    token_hash      TEXT    PRIMARY KEY,       -- hex SHA-256 of the cookie's token
    operator        TEXT    NOT NULL REFERENCES operators(name) ON DELETE CASCADE,
    csrf            TEXT    NOT NULL,          -- the session's CSRF token
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions(operator);
CREATE INDEX operator_sessions_by_expiry ON operator_sessions(expires_at);
-- One row per failed sign-in, by name and by address (both counted over a window).
CREATE TABLE operator_login_failures (
    name            TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    at              BIGINT  NOT NULL
);
CREATE INDEX operator_login_failures_by_name ON operator_login_failures(name, at);
CREATE INDEX operator_login_failures_by_address ON operator_login_failures(address, at);
-- The console's inventory pages by (not_after, serial), alone or within one account or
-- one issuer, without sorting or scanning.
CREATE INDEX certificates_by_expiry_serial ON certificates(not_after, serial);
CREATE INDEX certificates_by_account_expiry ON certificates(account_id, not_after, serial);
CREATE INDEX certificates_by_issuer_expiry_serial ON certificates(issuer, not_after, serial);
