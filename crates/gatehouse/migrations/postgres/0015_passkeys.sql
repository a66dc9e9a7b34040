-- Passkeys (WebAuthn credentials): the public key and the authenticator's counter and backup
-- flags as the WebAuthn library keeps them (JSON), a name the user gave, and when it was made
-- and last used. A credential ID belongs to one account only.
CREATE TABLE passkeys (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    credential TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX passkeys_user ON passkeys (user_id, created_at);

-- A WebAuthn ceremony between its challenge and the browser's answer (when sessions live in the
-- database): the library's state, keyed by the SHA-256 of a random token, used once, for five
-- minutes.
CREATE TABLE passkey_ceremonies (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id UUID,
    state TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX passkey_ceremonies_expiry ON passkey_ceremonies (expires_at);
