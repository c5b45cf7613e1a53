-- Webhooks (docs/console.md, "Webhooks"): a durable outbox of events, written in the
-- transaction of the change each describes, and one delivery per configured endpoint
-- subscribed to the event's type.
CREATE TABLE webhook_events (
    id              TEXT    PRIMARY KEY,       -- random, 32 hex digits (Webhook-Id)
    type            TEXT    NOT NULL,          -- certificate.issued, …
    body            TEXT    NOT NULL,          -- the JSON POSTed, byte for byte
    created_at      INTEGER NOT NULL
);
-- `seq` orders an endpoint's deliveries: events are written after the audit entry of
-- their transaction, which serializes writers, so `seq` follows commit order.
CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL REFERENCES webhook_events(id),
    endpoint        TEXT    NOT NULL,          -- the NAME of [webhooks.NAME]
    state           TEXT    NOT NULL,          -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,                   -- an instance is POSTing it until then
    last_attempt_at INTEGER,
    last_status     TEXT,                      -- "HTTP 503", "timed out", … (short)
    delivered_at    INTEGER,
    failed_at       INTEGER
);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries(endpoint, state, seq);
-- certificate.at_risk is sent once per certificate and threshold (days).
CREATE TABLE webhook_at_risk (
    serial          TEXT    NOT NULL,
    threshold_days  INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (serial, threshold_days)
);
