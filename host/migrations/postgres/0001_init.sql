-- leadgate store, PostgreSQL: the schema the SQLite store reached in its
-- migrations 0001–0010, in one step, and what several hosts need to share
-- it. Times are ms since the epoch; sealed columns hold
-- `lg1:<key>:<base64url>` text (or plain JSON when encryption is off).
-- Every table a re-sealing pass walks has a `seq` to page by.

-- The dedupe turn: one host at a time decides and writes leads (and
-- erasures), holding PostgreSQL's advisory lock; taking the turn adds one
-- to `token`, and every write of leads checks it still holds the token it
-- took, so a host that lost the turn (its session cut) can never write
-- after another host decided.
CREATE TABLE dedupe_turn (
    id              INT PRIMARY KEY CHECK (id = 1),
    token           BIGINT NOT NULL,
    holder          TEXT,
    taken_at        BIGINT
);
INSERT INTO dedupe_turn (id, token) VALUES (1, 0);

-- The feed other hosts follow between their turns: new leads and
-- erasures, in the order they were written (only the turn's holder
-- writes them, so that is commit order).
CREATE SEQUENCE feed_seq;

CREATE TABLE leads (
    seq             BIGINT NOT NULL DEFAULT nextval('feed_seq') UNIQUE,  -- acceptance order
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('accepted', 'duplicate')),
    person_id       TEXT NOT NULL,               -- the person's first lead
    decision        TEXT NOT NULL,               -- the dedupe decision (sealed JSON)
    rules_version   BIGINT NOT NULL,
    fp_version      BIGINT NOT NULL,
    raw             TEXT NOT NULL,               -- the lead as posted (sealed JSON)
    normalized      TEXT NOT NULL,               -- the normalized lead (sealed JSON)
    -- Fingerprints this lead added to its person, space-separated (blind
    -- indexes when encryption is on): they rebuild the dedupe index.
    fingerprints    TEXT NOT NULL,
    merge           TEXT,                        -- what merging changed (sealed JSON)
    erased_at       BIGINT,
    erased_by       TEXT CHECK (erased_by IN ('erasure', 'retention')),
    raw_purged_at   BIGINT
);
CREATE INDEX leads_person ON leads (person_id);
CREATE INDEX leads_received ON leads (received_at);
CREATE INDEX leads_source_received ON leads (source, received_at) WHERE erased_at IS NULL;

CREATE TABLE jobs (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    lead_id         TEXT NOT NULL REFERENCES leads (id),
    destination     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'delivered', 'dead')),
    priority        BIGINT NOT NULL CHECK (priority IN (0, 1, 2)),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_expires_at BIGINT,
    payload         TEXT NOT NULL,               -- mapped CRM properties (sealed JSON)
    mapping_version TEXT NOT NULL,
    sla_deadline    BIGINT NOT NULL,
    last_error      TEXT,                        -- sealed
    crm_id          TEXT,
    outcome         TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    -- person × destination: a job waits while an earlier one of its chain
    -- is pending or leased.
    chain           TEXT,
    discarded       TEXT,                        -- JSON {"reason", "at_ms"}
    source          TEXT,
    held            TEXT CHECK (held IN ('consent_missing', 'consent_withdrawn'))
);
CREATE INDEX jobs_pending ON jobs (destination, priority, next_attempt_at, seq)
    WHERE state = 'pending';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_lead ON jobs (lead_id);
CREATE INDEX jobs_dead ON jobs (destination, seq) WHERE state = 'dead';
CREATE INDEX jobs_chain ON jobs (chain, seq) WHERE state IN ('pending', 'leased');
CREATE INDEX jobs_outstanding_source ON jobs (source)
    WHERE state IN ('pending', 'leased') AND held IS NULL;

CREATE TABLE events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id         TEXT NOT NULL,
    job_id          TEXT,
    at              BIGINT NOT NULL,
    stage           TEXT NOT NULL CHECK (stage IN
                        ('ingest', 'normalize', 'dedupe', 'merge', 'route', 'delivery', 'dlq',
                         'privacy')),
    event           TEXT NOT NULL CHECK (event IN
                        ('received', 'normalized', 'new_person', 'duplicate', 'merged', 'queued',
                         'unmappable', 'delivered', 'retry_scheduled', 'dead_lettered',
                         'replayed', 'discarded', 'erased')),
    detail          TEXT NOT NULL                -- sealed JSON
);
CREATE INDEX events_lead ON events (lead_id, seq);
CREATE INDEX events_job ON events (job_id, seq) WHERE job_id IS NOT NULL;

CREATE TABLE persons (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id              TEXT PRIMARY KEY,            -- the person's first lead
    revision        BIGINT NOT NULL,
    record          TEXT NOT NULL,               -- the golden record (sealed JSON)
    updated_at      BIGINT NOT NULL
);

CREATE TABLE plugin_kv (
    namespace       TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           BYTEA NOT NULL,
    expires_at      BIGINT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX plugin_kv_expiry ON plugin_kv (namespace, expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE oauth_tokens (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    destination     TEXT PRIMARY KEY,
    refresh_token   TEXT NOT NULL,               -- sealed
    configured_hash TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE webhook_receipts (
    destination     TEXT NOT NULL,
    digest          BYTEA NOT NULL,
    received_at     BIGINT NOT NULL,
    PRIMARY KEY (destination, digest)
);
CREATE INDEX webhook_receipts_age ON webhook_receipts (received_at);

CREATE TABLE store_meta (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL
);

CREATE TABLE erasures (
    seq             BIGINT NOT NULL DEFAULT nextval('feed_seq') UNIQUE,
    person_id       TEXT PRIMARY KEY,
    erased_at       BIGINT NOT NULL,
    receipt         TEXT NOT NULL                -- JSON: store::ErasureReceipt
);

-- The hosts sharing this store, by the heartbeat each writes every second:
-- each delivers with its part of every CRM's quota (the hosts seen lately
-- share it).
CREATE TABLE hosts (
    host            TEXT PRIMARY KEY,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL
);

-- A CRM's "stop until" that one host found holds for every host
-- delivering to it: `quota` (a 429's Retry-After, a quota header at zero)
-- or `breaker` (its circuit breaker opened: no calls until the probe).
CREATE TABLE destination_pauses (
    destination     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('quota', 'breaker')),
    until_ms        BIGINT NOT NULL,
    PRIMARY KEY (destination, kind)
);
