-- Magic sign-in links. The link's 256-bit token is stored as its SHA-256; the mailed one-time
-- code as an HMAC under a key derived from the secret key.
CREATE TABLE magic_links (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    code_mac TEXT NOT NULL,
    next_path TEXT,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    consumed_at TIMESTAMPTZ
);
CREATE INDEX magic_links_email ON magic_links (email, expires_at);
