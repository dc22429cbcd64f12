-- Audit-trail stages and events are enums (store::Stage, store::EventKind):
-- the database refuses any other value, as it does for job states. SQLite
-- cannot add a CHECK to an existing table, so the table is rebuilt.
CREATE TABLE events_checked (
    seq             INTEGER PRIMARY KEY,
    lead_id         TEXT NOT NULL,
    job_id          TEXT,
    at              INTEGER NOT NULL,
    stage           TEXT NOT NULL CHECK (stage IN
                        ('ingest', 'normalize', 'dedupe', 'merge', 'route', 'delivery', 'dlq')),
    event           TEXT NOT NULL CHECK (event IN
                        ('received', 'normalized', 'new_person', 'duplicate', 'merged', 'queued',
                         'unmappable', 'delivered', 'retry_scheduled', 'dead_lettered',
                         'replayed', 'discarded')),
    detail          TEXT NOT NULL                -- JSON
);
INSERT INTO events_checked (seq, lead_id, job_id, at, stage, event, detail)
    SELECT seq, lead_id, job_id, at, stage, event, detail FROM events;
DROP TABLE events;
ALTER TABLE events_checked RENAME TO events;
CREATE INDEX events_lead ON events (lead_id, seq);
