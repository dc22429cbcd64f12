-- The plugins' key-value store (the WIT `kv` import), one namespace per
-- destination. Durable, so that what an adapter remembers across calls (a
-- CRM record it just created, before the CRM's search index shows it)
-- survives a restart or a kill -9. `expires_at` is ms since the epoch.
CREATE TABLE plugin_kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX plugin_kv_expiry ON plugin_kv (namespace, expires_at) WHERE expires_at IS NOT NULL;
