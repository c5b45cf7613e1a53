-- Backend CAs (docs/upstream.md): an order forwarded to a backend is `processing` with a
-- job here until the backend delivers (the order becomes valid and the job goes) or the
-- order fails. The order's lease says which run holds the job.
CREATE TABLE backend_jobs (
    order_id    BIGINT  PRIMARY KEY REFERENCES orders(id),
    backend     TEXT    NOT NULL,      -- the [backends.NAME] that signs it
    request_id  TEXT    NOT NULL,      -- stable per order; the backend's idempotency key
    attempts    BIGINT  NOT NULL DEFAULT 0,
    in_flight   BIGINT  NOT NULL DEFAULT 0,  -- 1: an attempt was sent and has no outcome yet
    deadline    BIGINT  NOT NULL,      -- transient failures are retried until then
    state       TEXT,                  -- what the backend saved to resume (an upstream order URL)
    last_error  TEXT,                  -- the last failure, for operators (never for clients)
    created_at  BIGINT  NOT NULL
);
