-- Fencing by lease, not only by owner: every lease of a job adds one to
-- its `lease_token`, and a result applies only with the token of the lease
-- it was made under. A worker that lost a lease (its host cut from the
-- store until the lease expired) and leased the same job again later can
-- no longer complete the new lease with the old call's result.
ALTER TABLE jobs ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
