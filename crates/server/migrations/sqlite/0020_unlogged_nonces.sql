-- PostgreSQL's 0020 makes its shared nonces unlogged. SQLite keeps its nonces in the
-- server's memory (wfe::nonce), so there is nothing to change here; the migration keeps
-- both backends' versions in step.
SELECT 1;
