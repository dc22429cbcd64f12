-- A pending job may wait instead of going out: `held` says why (the
-- destination's consent policy asks for a lawful basis the person has not
-- given, or the person withdrew consent). A held job is never leased, and
-- it holds its chain; a later lead that brings consent releases it.
ALTER TABLE jobs ADD COLUMN held TEXT CHECK (held IN ('consent_missing', 'consent_withdrawn'));
-- A source's backlog (429 backpressure) counts the jobs waiting for
-- delivery, not the held ones: the partial index follows.
DROP INDEX jobs_outstanding_source;
CREATE INDEX jobs_outstanding_source ON jobs (source)
    WHERE state IN ('pending', 'leased') AND held IS NULL;
