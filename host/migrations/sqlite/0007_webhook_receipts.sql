-- Webhook deliveries already taken, by a digest of what the CRM signed
-- (destination and body): a replay of a verified delivery (an attacker
-- re-sending a captured request, or the CRM retrying after a lost answer)
-- is answered as the first one was and its events are not taken again.
CREATE TABLE webhook_receipts (
    destination TEXT NOT NULL,
    digest      BLOB NOT NULL,              -- SHA-256 of the body
    received_at INTEGER NOT NULL,
    PRIMARY KEY (destination, digest)
) WITHOUT ROWID;
CREATE INDEX webhook_receipts_age ON webhook_receipts (received_at);
