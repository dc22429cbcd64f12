-- Right to erasure, and retention. An erased lead keeps its id, source,
-- times, status and dedupe decision (the audit stays whole: a tombstone)
-- but nothing of the person: `erased_at` says when, `erased_by` why. Each erasure leaves its receipt (ids and counts,
-- no personal data), and the audit trail a `privacy`/`erased` entry, so
-- the events table is rebuilt for its CHECKs.
ALTER TABLE leads ADD COLUMN erased_at INTEGER;
ALTER TABLE leads ADD COLUMN erased_by TEXT CHECK (erased_by IN ('erasure', 'retention'));
-- When the source's retention removed the lead as posted (the normalized
-- lead stays until the lead's own retention).
ALTER TABLE leads ADD COLUMN raw_purged_at INTEGER;

CREATE TABLE erasures (
    person_id   TEXT PRIMARY KEY NOT NULL,
    erased_at   INTEGER NOT NULL,
    receipt     TEXT NOT NULL                -- JSON: store::ErasureReceipt
);

CREATE TABLE events_checked (
    seq             INTEGER PRIMARY KEY,
    lead_id         TEXT NOT NULL,
    job_id          TEXT,
    at              INTEGER NOT NULL,
    stage           TEXT NOT NULL CHECK (stage IN
                        ('ingest', 'normalize', 'dedupe', 'merge', 'route', 'delivery', 'dlq',
                         'privacy')),
    event           TEXT NOT NULL CHECK (event IN
                        ('received', 'normalized', 'new_person', 'duplicate', 'merged', 'queued',
                         'unmappable', 'delivered', 'retry_scheduled', 'dead_lettered',
                         'replayed', 'discarded', 'erased')),
    detail          TEXT NOT NULL                -- JSON (sealed)
);
INSERT INTO events_checked (seq, lead_id, job_id, at, stage, event, detail)
    SELECT seq, lead_id, job_id, at, stage, event, detail FROM events;
DROP TABLE events;
ALTER TABLE events_checked RENAME TO events;
CREATE INDEX events_lead ON events (lead_id, seq);
