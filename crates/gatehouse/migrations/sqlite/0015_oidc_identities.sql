-- Accounts at OpenID Connect providers linked to users, keyed by the provider's issuer and the
-- subject it names (never by e-mail). The address the provider last gave is kept to show the
-- user which account is linked.
CREATE TABLE oidc_identities (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    UNIQUE (issuer, subject)
);
CREATE INDEX oidc_identities_user ON oidc_identities (user_id);

-- Single-use state of a browser flow in progress (an OpenID Connect sign-in between its start
-- and its callback, a passkey ceremony between its challenge and the answer), keyed by the SHA-256 of its random key; deleted when used or expired. Used
-- when sessions live in the database (with Redis, the same values live there with a TTL).
CREATE TABLE pending_flows (
    key_hash TEXT PRIMARY KEY NOT NULL,
    payload TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX pending_flows_expires ON pending_flows (expires_at);
