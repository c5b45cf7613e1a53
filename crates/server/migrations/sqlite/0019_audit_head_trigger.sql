-- The audit trail's head follows each appended entry inside the INSERT itself: one
-- statement (and, on PostgreSQL, one round trip) fewer for every audited change. The
-- head's seq is still taken first (`UPDATE audit_head ... RETURNING`), which is what
-- serialises writers.
CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = 1;
END;
