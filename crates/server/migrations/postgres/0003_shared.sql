-- Several instances on one database: shared nonces and leases on in-flight work.

CREATE TABLE nonces (
    nonce       TEXT    PRIMARY KEY,
    expires     BIGINT  NOT NULL
);
CREATE INDEX nonces_by_expiry ON nonces(expires);

ALTER TABLE challenges ADD COLUMN lease_expires BIGINT;
ALTER TABLE orders ADD COLUMN lease_expires BIGINT;
