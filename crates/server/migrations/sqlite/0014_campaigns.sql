-- Renew-early campaigns (docs/console.md, "Renew-early campaigns"): who asked for the
-- early renewal of every certificate matching a filter, and exactly which certificates
-- that marked (so that its progress counts those, not whatever matches the filter now).
CREATE TABLE renew_campaigns (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    started_by      TEXT    NOT NULL,          -- the audit actor, operator:NAME
    started_at      INTEGER NOT NULL,
    filter          TEXT    NOT NULL,          -- JSON: issuer, profile, eab_label, suffix
    marked          INTEGER NOT NULL DEFAULT 0,
    finished_at     INTEGER                    -- NULL while marking (or if interrupted)
);
CREATE TABLE renew_campaign_certificates (
    campaign_id     INTEGER NOT NULL REFERENCES renew_campaigns(id),
    serial          TEXT    NOT NULL REFERENCES certificates(serial),
    PRIMARY KEY (campaign_id, serial)
);
