-- The console's dashboard (docs/console.md): per-day counts as index range counts, and
-- the last periodic verification of the audit chain.

-- Issuances per day, by creation time.
CREATE INDEX certificates_by_created ON certificates(created_at);
-- Unrevoked certificates expiring in a range: those of the expiry index less these.
CREATE INDEX certificates_revoked_by_expiry ON certificates(not_after) WHERE revoked_at IS NOT NULL;

-- Failed validations per day and by problem type: when the challenge failed and the type
-- of its problem, set by finish_validation; the partial index covers both.
ALTER TABLE challenges ADD COLUMN failed_at BIGINT;
ALTER TABLE challenges ADD COLUMN problem_type TEXT;
-- Challenges that failed before this migration: the time of their validation entry in the
-- audit trail (index audit_by_challenge), else their authorization's creation.
UPDATE challenges SET
    failed_at = COALESCE(
        (SELECT MAX(at) FROM audit_log WHERE audit_log.challenge_id = challenges.id),
        (SELECT created_at FROM authorizations WHERE authorizations.id = challenges.authorization_id)),
    problem_type = json_extract(error, '$.type')
WHERE error IS NOT NULL;
CREATE INDEX challenges_failed ON challenges(failed_at, problem_type) WHERE failed_at IS NOT NULL;

-- The last periodic verification of the audit chain (one row, shared by every instance),
-- and the break last reported as audit.verification_failed (reported once per break).
CREATE TABLE audit_verification (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at      BIGINT  NOT NULL,          -- when the verification finished
    intact          BIGINT  NOT NULL,          -- 1: intact, 0: broken
    entries         BIGINT  NOT NULL,          -- entries verified (up to the break)
    broken_seq      BIGINT,                    -- where it breaks
    reason          TEXT,                      -- what is wrong there
    reported_seq    BIGINT,                    -- the break last sent as a webhook event
    reported_reason TEXT
);
