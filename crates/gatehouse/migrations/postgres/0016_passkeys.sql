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
