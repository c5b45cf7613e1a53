-- Remote validation agents (docs/remote-validation.md): the agents enrolled per network
-- segment, their one-time enrolment tokens, and the agent CA that issues their client
-- certificates.
--
-- An agent is found by the SHA-256 of its current client certificate; a renewal replaces
-- it (the old certificate stops working at once). Removing an agent deletes its row.
CREATE TABLE agents (
    name            TEXT    PRIMARY KEY,
    segment         TEXT    NOT NULL,
    cert_sha256     TEXT    NOT NULL,          -- hex SHA-256 of the current certificate's DER
    not_after       BIGINT  NOT NULL,          -- that certificate's expiry (Unix seconds)
    enrolled_at     BIGINT  NOT NULL,
    last_contact    BIGINT,
    jobs_done       BIGINT  NOT NULL DEFAULT 0,
    jobs_failed     BIGINT  NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX agents_by_cert ON agents(cert_sha256);
-- An enrolment token is found by its id and proved by its secret, of which only the
-- SHA-256 is stored. Redeeming it sets used_at in one guarded UPDATE: it works once.
CREATE TABLE agent_tokens (
    id              TEXT    PRIMARY KEY,
    agent           TEXT    NOT NULL,
    segment         TEXT    NOT NULL,
    secret_sha256   TEXT    NOT NULL,          -- hex SHA-256 of the token's secret
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    used_at         BIGINT,
    replace_agent   BIGINT  NOT NULL DEFAULT 0   -- 1: may replace an agent of that name
);
CREATE INDEX agent_tokens_by_expiry ON agent_tokens(expires_at);
CREATE INDEX agent_tokens_by_agent ON agent_tokens(agent);
-- The agent CA (one row): its certificate, and its PKCS#8 private key sealed with the
-- key-encryption key (as EAB keys are: `v1:` + base64url, kek_id its fingerprint).
CREATE TABLE agent_ca (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    certificate     BYTEA   NOT NULL,
    private_key     TEXT    NOT NULL,
    kek_id          TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);
