-- One-time sign-in links of the operator console (docs/console.md): `certwright-ca
-- operator add --login-link` and `operator link`. A link is found by the SHA-256 of its
-- token (never stored itself), lasts 24 hours and is deleted when used; a new link for
-- an operator replaces the old one.
CREATE TABLE operator_login_links (
    token_hash      TEXT    PRIMARY KEY,       -- hex SHA-256 of the link's token
    operator        TEXT    NOT NULL REFERENCES operators(name) ON DELETE CASCADE,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL
);
CREATE INDEX operator_login_links_by_operator ON operator_login_links(operator);
CREATE INDEX operator_login_links_by_expiry ON operator_login_links(expires_at);
