-- OAuth 2.0 refresh tokens the host holds for destinations. When a CRM
-- rotates its refresh token the new one is the only valid one: it is
-- written here before the access token that came with it is used.
-- `configured_hash` is the SHA-256 of the refresh token in the
-- configuration this one descends from: a new token in the configuration
-- (a new authorization) replaces what is stored.
CREATE TABLE oauth_tokens (
    destination TEXT PRIMARY KEY NOT NULL,
    refresh_token TEXT NOT NULL,
    configured_hash TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
