-- leadgate store, SQLite.

CREATE TABLE leads (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    received_at     INTEGER NOT NULL,            -- ms since the epoch
    status          TEXT NOT NULL CHECK (status IN ('accepted', 'duplicate')),
    person_id       TEXT NOT NULL,               -- the person's first lead
    decision        TEXT NOT NULL,               -- JSON: the dedupe decision
    rules_version   INTEGER NOT NULL,            -- normalization rules
    fp_version      INTEGER NOT NULL,            -- fingerprint rules
    raw             TEXT NOT NULL,               -- the lead as posted
    normalized      TEXT NOT NULL,               -- the normalized lead (JSON)
    -- Fingerprints this lead added to its person, space-separated
    -- (e.g. "email:jane@example.com phone:+14155550100"). The single
    -- writer's in-memory index is authoritative; this column rebuilds it at
    -- start-up. No index on purpose: random-key B-tree inserts would dirty
    -- a page per fingerprint on every commit.
    fingerprints    TEXT NOT NULL
);
CREATE INDEX leads_person ON leads (person_id);

CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY,         -- acceptance order
    id              TEXT NOT NULL UNIQUE,
    lead_id         TEXT NOT NULL REFERENCES leads (id),
    destination     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'delivered', 'dead')),
    priority        INTEGER NOT NULL CHECK (priority IN (0, 1, 2)),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_expires_at INTEGER,
    payload         TEXT NOT NULL,               -- JSON: mapped CRM properties
    mapping_version TEXT NOT NULL,
    sla_deadline    INTEGER NOT NULL,
    last_error      TEXT,
    crm_id          TEXT,
    outcome         TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX jobs_pending ON jobs (destination, priority, next_attempt_at, seq) WHERE state = 'pending';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_lead ON jobs (lead_id);
CREATE INDEX jobs_dead ON jobs (destination, seq) WHERE state = 'dead';

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    lead_id         TEXT NOT NULL,
    job_id          TEXT,
    at              INTEGER NOT NULL,
    stage           TEXT NOT NULL,
    event           TEXT NOT NULL,
    detail          TEXT NOT NULL                -- JSON
);
CREATE INDEX events_lead ON events (lead_id, seq);
