-- Golden records, merge audit and per-person delivery order.

-- A person's merged record (see host/src/merge.rs), written when a
-- duplicate lead changes it. A person without a row here is still its
-- first lead (leads.id = person_id).
CREATE TABLE persons (
    id              TEXT PRIMARY KEY,            -- the person's first lead
    revision        INTEGER NOT NULL,
    record          TEXT NOT NULL,               -- JSON: the golden record with provenance
    updated_at      INTEGER NOT NULL
);

-- What merging this lead into its person changed (JSON list), if anything.
ALTER TABLE leads ADD COLUMN merge TEXT;

-- person × destination: the jobs of one chain are delivered in the order
-- they were accepted (a job waits while an earlier one is pending or
-- leased).
ALTER TABLE jobs ADD COLUMN chain TEXT;
CREATE INDEX jobs_chain ON jobs (chain, seq) WHERE state IN ('pending', 'leased');

-- A dead letter discarded by an operator: JSON {"reason", "at"}. It stays
-- dead (and in the audit trail) but leaves the dead-letter queue.
ALTER TABLE jobs ADD COLUMN discarded TEXT;
