-- Remote validation agents (docs/remote-validation.md): a renewal keeps the certificate it
-- replaced working until the agent first uses the new one, so that an agent whose renewal
-- answer was lost (it still holds the old certificate and key) is not locked out.
ALTER TABLE agents ADD COLUMN previous_cert_sha256 TEXT;
CREATE UNIQUE INDEX agents_by_previous_cert ON agents(previous_cert_sha256);
