-- The counts `/v1/stats` and every `/metrics` scrape report, kept as the
-- rows change instead of counted on each read (a full scan of the jobs
-- table and its grouping per read). Several hosts write jobs at once, so
-- a count is not one row every transaction updates (each would wait for
-- the others' commits, and two taking them in different orders would
-- deadlock): each statement that inserts, changes or deletes leads or jobs
-- adds its deltas as new rows, a read sums them, and `fold_counts()`
-- (run by each heartbeat and each read) folds them back into one row per
-- group.
CREATE TABLE lead_counts (
    status          TEXT NOT NULL,
    n               BIGINT NOT NULL
);
INSERT INTO lead_counts (status, n) SELECT status, COUNT(*) FROM leads GROUP BY status;

CREATE FUNCTION leads_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO lead_counts (status, n)
            SELECT status, COUNT(*) FROM new_rows GROUP BY status;
    ELSE  -- a lead's status never changes: no update trigger
        INSERT INTO lead_counts (status, n)
            SELECT status, -COUNT(*) FROM old_rows GROUP BY status;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER leads_counted_insert AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION leads_counted();
CREATE TRIGGER leads_counted_delete AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION leads_counted();

-- Jobs per destination × state × held (waiting for consent).
CREATE TABLE job_counts (
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL,
    held            BOOLEAN NOT NULL,
    n               BIGINT NOT NULL
);
INSERT INTO job_counts (destination, state, held, n)
    SELECT destination, state, held IS NOT NULL, COUNT(*) FROM jobs
    GROUP BY destination, state, held IS NOT NULL;

CREATE FUNCTION jobs_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts (destination, state, held, n)
            SELECT destination, state, held IS NOT NULL, COUNT(*) FROM new_rows
            GROUP BY destination, state, held IS NOT NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (destination, state, held, n)
            SELECT destination, state, held, SUM(n) FROM (
                SELECT destination, state, held IS NOT NULL AS held, -1 AS n FROM old_rows
                UNION ALL SELECT destination, state, held IS NOT NULL, 1 FROM new_rows
            ) d GROUP BY destination, state, held HAVING SUM(n) <> 0;
    ELSE
        INSERT INTO job_counts (destination, state, held, n)
            SELECT destination, state, held IS NOT NULL, -COUNT(*) FROM old_rows
            GROUP BY destination, state, held IS NOT NULL;
    END IF;
    RETURN NULL;
END $$;
-- A trigger with transition tables cannot name its columns (UPDATE OF):
-- every update of jobs runs it; one that changes no state adds nothing.
CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_counted();
CREATE TRIGGER jobs_counted_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_counted();
CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_counted();

-- Folds the deltas into one row per group. Safe beside writers and other
-- folds: it deletes only the rows its snapshot sees (a concurrent fold
-- that deleted one first wins it, and this one skips it) and puts back
-- their sum in the same transaction.
CREATE FUNCTION fold_counts() RETURNS void LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM job_counts RETURNING destination, state, held, n)
    INSERT INTO job_counts (destination, state, held, n)
        SELECT destination, state, held, SUM(n) FROM gone
        GROUP BY destination, state, held HAVING SUM(n) <> 0;
    WITH gone AS (DELETE FROM lead_counts RETURNING status, n)
    INSERT INTO lead_counts (status, n)
        SELECT status, SUM(n) FROM gone GROUP BY status HAVING SUM(n) <> 0;
$$;
