-- Facts about the store itself, by name. `sealed_under`: the data key
-- every sealed value was under when the last re-sealing pass finished
-- ('' when the host last ran with encryption off).
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
