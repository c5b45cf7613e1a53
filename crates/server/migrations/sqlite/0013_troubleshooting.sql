-- The console's troubleshooting view (docs/console.md): authorizations by name across
-- accounts, and a challenge's validation entry in the audit trail (what the VA saw).
CREATE INDEX authorizations_by_name ON authorizations(identifier_value, id);
CREATE INDEX audit_by_challenge ON audit_log(challenge_id, seq) WHERE challenge_id IS NOT NULL;
