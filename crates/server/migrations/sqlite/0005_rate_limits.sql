-- Rate-limit events (see docs/rate-limits.md): one row per counted event, kept for the
-- longest window and pruned by the sweeper. Shared by every instance on the database.

CREATE TABLE rate_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    limit_name  TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX rate_events_by_key ON rate_events(limit_name, key, at);
CREATE INDEX rate_events_by_time ON rate_events(at);

-- The pending-authorizations limit counts current state.
CREATE INDEX authorizations_pending_by_account ON authorizations(account_id) WHERE status = 'pending';
