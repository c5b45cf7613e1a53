-- The shared nonces are written to no WAL: a transaction that only spends or records
-- nonces then commits without waiting for a WAL flush, which was one flush for every
-- kid-signed request. After a crash PostgreSQL empties an unlogged table, so every
-- nonce issued before the crash is refused (badNonce, and the client retries with the
-- fresh nonce of that answer): none can be replayed. A standby holds none either, so
-- after a failover the same happens once.
ALTER TABLE nonces SET UNLOGGED;
