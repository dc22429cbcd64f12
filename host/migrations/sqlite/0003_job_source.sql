-- The source whose lead made each job: backpressure counts each source's
-- own backlog (jobs pending or leased), not the whole host's.
ALTER TABLE jobs ADD COLUMN source TEXT;
UPDATE jobs SET source = (SELECT source FROM leads WHERE leads.id = jobs.lead_id);
CREATE INDEX jobs_outstanding_source ON jobs (source) WHERE state IN ('pending', 'leased');
